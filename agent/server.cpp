#include "agent/server.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <cstdio>
#include <functional>
#include <memory>
#include <tuple>

#include "core/error.h"

namespace berth::agent {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using Stream = beast::ssl_stream<beast::tcp_stream>;

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

using X509Ptr = std::unique_ptr<X509, decltype(&X509_free)>;

std::string endpoint_text(const tcp::endpoint& ep) {
  std::string addr = ep.address().to_string();
  if (ep.address().is_v6()) addr = "[" + addr + "]";
  return addr + ":" + std::to_string(ep.port());
}

std::string peer_text(const tcp::socket& socket) {
  boost::system::error_code ec;
  auto ep = socket.remote_endpoint(ec);
  return ec ? "unknown peer" : endpoint_text(ep);
}

std::string peer_common_name(SSL* ssl) {
  X509Ptr cert(SSL_get1_peer_certificate(ssl), &X509_free);
  if (!cert) return "";
  char cn[256] = {};
  if (X509_NAME_get_text_by_NID(X509_get_subject_name(cert.get()), NID_commonName, cn, sizeof cn) <
      0) {
    return "";
  }
  return cn;
}

// The reason a handshake failed, from OpenSSL's error rather than asio's category name.
std::string handshake_error(const boost::system::error_code& ec) {
  if (ec == beast::error::timeout) return "timed out";
  if (ec.category() == asio::error::get_ssl_category()) {
    const char* reason = ERR_reason_error_string(static_cast<unsigned long>(ec.value()));
    if (reason != nullptr) return reason;
  }
  return ec.message();
}

// A read error that just means the client went away or idled out.
bool is_disconnect(const boost::system::error_code& ec) {
  return ec == http::error::end_of_stream || ec == asio::error::eof ||
         ec == asio::ssl::error::stream_truncated || ec == beast::error::timeout ||
         ec == asio::error::operation_aborted || ec == asio::error::connection_reset;
}

std::string path_of(std::string_view target) {
  return std::string(target.substr(0, target.find('?')));
}

std::string duration_ms(std::chrono::steady_clock::duration d) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3f", std::chrono::duration<double, std::milli>(d).count());
  return buf;
}

asio::awaitable<boost::system::error_code> write_response(Stream& stream, const api::Response& r,
                                                          unsigned version, bool keep_alive,
                                                          bool head) {
  auto fill = [&](auto& msg) {
    for (const auto& [name, value] : r.headers.items()) msg.set(name, value);
    msg.keep_alive(keep_alive);
  };
  if (head) {
    // Headers only; Content-Length says what a GET would have returned.
    http::response<http::empty_body> msg{static_cast<http::status>(r.status), version};
    fill(msg);
    msg.content_length(r.body.size());
    auto [ec, n] = co_await http::async_write(stream, msg, use_tuple);
    co_return ec;
  }
  http::response<http::string_body> msg{static_cast<http::status>(r.status), version, r.body};
  fill(msg);
  msg.prepare_payload();
  auto [ec, n] = co_await http::async_write(stream, msg, use_tuple);
  co_return ec;
}

class ScopeExit {
 public:
  explicit ScopeExit(std::function<void()> fn) : fn_(std::move(fn)) {}
  ~ScopeExit() { fn_(); }
  ScopeExit(const ScopeExit&) = delete;
  ScopeExit& operator=(const ScopeExit&) = delete;

 private:
  std::function<void()> fn_;
};

}  // namespace

Server::Server(asio::io_context& io, ServerOptions options, TlsContextHolder& tls,
               const api::Api& api, Logger& log)
    : io_(io), options_(std::move(options)), tls_(tls), api_(api), log_(log), acceptor_(io) {
  boost::system::error_code ec;
  auto address = asio::ip::make_address(options_.listen, ec);
  if (ec) {
    throw UserError("listen address \"" + options_.listen +
                    "\" is not an IP address; set \"listen\" to e.g. 0.0.0.0 or ::");
  }
  tcp::endpoint endpoint(address, options_.port);
  const std::string where = endpoint_text(endpoint);
  auto check = [&](const char* step) {
    if (ec) throw UserError("cannot " + std::string(step) + " " + where + ": " + ec.message());
  };
  acceptor_.open(endpoint.protocol(), ec);
  check("listen on");
  acceptor_.set_option(tcp::acceptor::reuse_address(true), ec);
  check("listen on");
  acceptor_.bind(endpoint, ec);
  check("bind to");
  acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  check("listen on");
  port_ = acceptor_.local_endpoint().port();
}

std::string Server::address() const {
  boost::system::error_code ec;
  auto ep = acceptor_.local_endpoint(ec);
  return ec ? options_.listen + ":" + std::to_string(port_) : endpoint_text(ep);
}

void Server::start() {
  asio::co_spawn(io_, accept_loop(), [this](std::exception_ptr e) {
    if (!e) return;
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& x) {
      log_.error(std::string("accept loop failed: ") + x.what());
    }
  });
}

void Server::stop() {
  stopping_ = true;
  boost::system::error_code ec;
  acceptor_.close(ec);
  for (beast::tcp_stream* stream : live_) {
    stream->socket().shutdown(tcp::socket::shutdown_both, ec);
    stream->close();
  }
}

asio::awaitable<void> Server::accept_loop() {
  while (!stopping_) {
    auto [ec, socket] = co_await acceptor_.async_accept(use_tuple);
    if (stopping_ || ec == asio::error::operation_aborted) co_return;
    if (ec) {
      log_.warn("accept failed: " + ec.message());
      // E.g. EMFILE: back off instead of spinning on a full descriptor table.
      asio::steady_timer pause(io_, std::chrono::milliseconds(100));
      co_await pause.async_wait(use_tuple);
      continue;
    }
    if (live_.size() >= options_.max_connections) {
      log_.warn("refused connection from " + peer_text(socket) + ": already " +
                std::to_string(live_.size()) + " connections");
      continue;  // the socket closes as it goes out of scope
    }
    asio::co_spawn(io_, session(std::move(socket)), [this](std::exception_ptr e) {
      if (!e) return;
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& x) {
        log_.error(std::string("connection failed: ") + x.what());
      }
    });
  }
}

asio::awaitable<void> Server::session(tcp::socket socket) {
  const std::string peer = peer_text(socket);
  boost::system::error_code nodelay_ec;  // small responses go out at once, as Go's do
  socket.set_option(tcp::no_delay(true), nodelay_ec);
  SslContextPtr ctx = tls_.current();  // held for the connection's lifetime
  Stream stream(std::move(socket), *ctx);
  beast::tcp_stream& tcp_layer = beast::get_lowest_layer(stream);
  live_.insert(&tcp_layer);
  ScopeExit forget([this, &tcp_layer] { live_.erase(&tcp_layer); });

  tcp_layer.expires_after(options_.handshake_timeout);
  auto [hs_ec] = co_await stream.async_handshake(asio::ssl::stream_base::server, use_tuple);
  if (hs_ec) {
    if (!stopping_) log_.warn("TLS handshake with " + peer + " failed: " + handshake_error(hs_ec));
    co_return;
  }
  const std::string cn = peer_common_name(stream.native_handle());

  beast::flat_buffer buffer;
  for (;;) {
    http::request_parser<http::string_body> parser;
    parser.body_limit(options_.max_body_bytes);
    parser.header_limit(static_cast<std::uint32_t>(options_.max_header_bytes));

    tcp_layer.expires_after(options_.header_timeout);
    auto [ec, n] = co_await http::async_read_header(stream, buffer, parser, use_tuple);
    const auto started = std::chrono::steady_clock::now();
    if (!ec && !parser.is_done()) {
      tcp_layer.expires_after(options_.body_timeout);
      std::tie(ec, n) = co_await http::async_read(stream, buffer, parser, use_tuple);
    }

    api::Response response;
    unsigned version = 11;
    bool keep_alive = false;
    bool head = false;
    std::string method = "-", path = "-";
    if (parser.is_header_done()) {
      const auto& header = parser.get();
      version = header.version();
      method = std::string(header.method_string());
      path = path_of(header.target());
      head = header.method() == http::verb::head;
    }
    if (ec == http::error::body_limit) {
      response = api::Response::error(413, "request body too large: the limit is " +
                                               std::to_string(options_.max_body_bytes) + " bytes");
    } else if (ec == http::error::header_limit) {
      response = api::Response::error(431, "request header too large");
    } else if (ec && is_disconnect(ec)) {
      break;
    } else if (ec) {
      response = api::Response::error(400, "bad request: " + ec.message());
    } else {
      http::request<http::string_body> req = parser.release();
      keep_alive = req.keep_alive() && !stopping_;
      api::Request request;
      request.method = method;
      request.target = std::string(req.target());
      for (const auto& field : req) {
        request.headers.add(std::string(field.name_string()), std::string(field.value()));
      }
      request.body = std::move(req.body());
      request.client_cn = cn;
      response = api_.handle(std::move(request));
    }
    if (ec) api::add_common_headers(response);

    tcp_layer.expires_after(options_.write_timeout);
    auto write_ec = co_await write_response(stream, response, version, keep_alive, head);
    log_.info("request cn=" + log_quote(cn) + " method=" + log_quote(method, 16) +
              " path=" + log_quote(path) + " status=" + std::to_string(response.status) +
              " duration_ms=" + duration_ms(std::chrono::steady_clock::now() - started) +
              " peer=" + peer);
    if (write_ec || !keep_alive) break;
  }

  // Send close_notify, but do not wait long for the client's.
  if (!stopping_) {
    tcp_layer.expires_after(std::chrono::seconds(1));
    co_await stream.async_shutdown(use_tuple);
  }
}

}  // namespace berth::agent
