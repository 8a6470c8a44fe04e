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
  std::chrono::milliseconds handshake_timeout{10'000};
  std::chrono::milliseconds header_timeout{30'000};  // also the keep-alive idle limit
  std::chrono::milliseconds body_timeout{60'000};    // per read while a body arrives
  std::chrono::milliseconds write_timeout{60'000};   // per write
  std::size_t max_body_bytes = 1 << 20;  // 413 beyond, except stream_body routes
  std::size_t max_header_bytes = 64 << 10;  // 431 beyond
  std::size_t max_connections = 512;
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
  void accept_loop();
  void session(int fd, std::string peer);

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
};

}  // namespace berth::agent
