#pragma once
// The HTTPS transport: accepts TCP connections and serves each on its own
// thread: the mutual-TLS handshake, HTTP/1.1 requests (keep-alive, bounded
// header/body size and read times), streamed request and response bodies, and
// hijacked connections (attach, exec) handed to the handler.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <list>
#include <mutex>
#include <set>
#include <string>
#include <thread>

#include "agent/api/api.h"
#include "agent/log.h"
#include "agent/tls_context.h"

namespace berth::agent {

class TlsConn;

struct ServerOptions {
  std::string listen = "0.0.0.0";
  std::uint16_t port = 2376;  // 0: any free port (see Server::port())
  // Before the TLS handshake a peer has proved nothing: it gets a short deadline
  // and one of few slots (overall and per source address). When they are full,
  // the oldest unfinished handshake gives way, so idle sockets cannot lock out
  // a client that holds a certificate.
  std::chrono::milliseconds handshake_timeout{5'000};
  std::size_t max_handshakes = 64;
  std::size_t max_handshakes_per_peer = 32;
  std::chrono::milliseconds header_timeout{30'000};  // also the keep-alive idle limit
  std::chrono::milliseconds body_timeout{60'000};    // per read while a body arrives
  std::chrono::milliseconds write_timeout{60'000};   // per write
  std::size_t max_body_bytes = 1 << 20;  // 413 beyond, except stream_body routes
  std::size_t max_header_bytes = 64 << 10;  // 431 beyond
  std::size_t max_connections = 512;  // authenticated ones
};

class Server {
 public:
  // Binds and listens. Throws berth::UserError naming the address when it cannot.
  Server(ServerOptions options, TlsContextHolder& tls, const api::Api& api, Logger& log);
  ~Server();  // stop()s

  std::uint16_t port() const { return port_; }
  std::string address() const;  // "0.0.0.0:2376", "[::1]:2376"

  void start();  // begins accepting on a thread of its own
  // Stops accepting, closes every connection and waits for their threads.
  void stop();

 private:
  struct Pending {
    std::uint64_t id;
    int fd;
    std::string host;  // the peer's address without the port
  };

  void accept_loop();
  void session(int fd, std::string peer, std::uint64_t id);
  // Under mutex_: makes room for one more handshake from `host` by aborting the oldest.
  void make_room_for(const std::string& host);
  bool leave_pending(std::uint64_t id);  // under mutex_; false when it was evicted

  ServerOptions options_;
  TlsContextHolder& tls_;
  const api::Api& api_;
  Logger& log_;
  int listen_fd_ = -1;
  std::uint16_t port_ = 0;
  std::string address_;
  std::atomic<bool> stopping_{false};
  std::thread acceptor_;
  std::mutex mutex_;
  std::condition_variable idle_;
  std::set<TlsConn*> live_;
  std::size_t sessions_ = 0;  // threads still running (live_ may be smaller)
  std::list<Pending> pending_;  // handshakes not yet done, oldest first
  std::uint64_t next_id_ = 0;
  std::size_t authenticated_ = 0;
  std::size_t evicted_ = 0;  // since the last log line about it
  std::chrono::steady_clock::time_point evicted_logged_{};
};

}  // namespace berth::agent
