#pragma once
// The HTTPS transport: accepts TCP connections, does the mutual-TLS handshake,
// reads HTTP/1.1 requests (keep-alive, bounded header/body size and read
// times), hands them to api::Api and writes the responses. Single-threaded:
// everything runs on the io_context it is given.
#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <set>
#include <string>

#include "agent/api/api.h"
#include "agent/log.h"
#include "agent/tls_context.h"

namespace berth::agent {

struct ServerOptions {
  std::string listen = "0.0.0.0";
  std::uint16_t port = 2376;  // 0: any free port (see Server::port())
  std::chrono::milliseconds handshake_timeout{10'000};
  std::chrono::milliseconds header_timeout{30'000};  // also the keep-alive idle limit
  std::chrono::milliseconds body_timeout{60'000};
  std::chrono::milliseconds write_timeout{60'000};
  std::size_t max_body_bytes = 1 << 20;     // 413 beyond
  std::size_t max_header_bytes = 64 << 10;  // 431 beyond
  std::size_t max_connections = 512;
};

class Server {
 public:
  // Binds and listens. Throws berth::UserError naming the address when it cannot.
  Server(boost::asio::io_context& io, ServerOptions options, TlsContextHolder& tls,
         const api::Api& api, Logger& log);

  std::uint16_t port() const { return port_; }
  std::string address() const;  // "0.0.0.0:2376", "[::1]:2376"

  void start();  // begins accepting
  // Stops accepting and closes every connection; io_context::run() then returns
  // once the connection coroutines have unwound.
  void stop();

 private:
  boost::asio::awaitable<void> accept_loop();
  boost::asio::awaitable<void> session(boost::asio::ip::tcp::socket socket);

  boost::asio::io_context& io_;
  ServerOptions options_;
  TlsContextHolder& tls_;
  const api::Api& api_;
  Logger& log_;
  boost::asio::ip::tcp::acceptor acceptor_;
  std::uint16_t port_ = 0;
  bool stopping_ = false;
  std::set<boost::beast::tcp_stream*> live_;
};

}  // namespace berth::agent
