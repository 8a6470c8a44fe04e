#include "agent/server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>

#include "agent/tls_conn.h"
#include "core/error.h"

namespace berth::agent {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
using X509Ptr = std::unique_ptr<X509, decltype(&X509_free)>;

std::string sockaddr_text(const sockaddr_storage& ss) {
  char host[INET6_ADDRSTRLEN] = "?";
  unsigned port = 0;
  if (ss.ss_family == AF_INET6) {
    const auto& a = reinterpret_cast<const sockaddr_in6&>(ss);
    ::inet_ntop(AF_INET6, &a.sin6_addr, host, sizeof host);
    port = ntohs(a.sin6_port);
    return "[" + std::string(host) + "]:" + std::to_string(port);
  }
  const auto& a = reinterpret_cast<const sockaddr_in&>(ss);
  ::inet_ntop(AF_INET, &a.sin_addr, host, sizeof host);
  port = ntohs(a.sin_port);
  return std::string(host) + ":" + std::to_string(port);
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

// A read error that just means the client went away or idled out.
bool is_disconnect(const beast::error_code& ec) {
  return ec == http::error::end_of_stream || ec == boost::asio::error::eof ||
         ec == beast::error::timeout || ec == boost::asio::error::operation_aborted ||
         ec == boost::asio::error::connection_reset || ec == http::error::partial_message;
}

std::string path_of(std::string_view target) {
  return std::string(target.substr(0, target.find('?')));
}

// A lingering close: reads and drops what the client still sends (bounded in
// time and size), so closing with unread data does not reset the connection
// and make the client lose the answer it was sent (a 413, say).
void drain_input(TlsConn& conn) {
  conn.set_timeout(std::chrono::seconds(2));
  char sink[16 << 10];
  std::size_t total = 0;
  beast::error_code ec;
  while (total < (64u << 20)) {
    const std::size_t n = conn.read(sink, sizeof sink, ec);
    if (ec || n == 0) break;
    total += n;
  }
}

std::string duration_ms(std::chrono::steady_clock::duration d) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3f", std::chrono::duration<double, std::milli>(d).count());
  return buf;
}

// "HTTP/1.1 200 OK\r\nName: value\r\n..." ending with the blank line.
std::string head_text(unsigned status, const api::Headers& headers, std::string_view extra) {
  std::string reason(http::obsolete_reason(static_cast<http::status>(status)));
  if (status == 101) reason = "UPGRADED";  // what dockerd sends
  std::string out = "HTTP/1.1 " + std::to_string(status) + " " + reason + "\r\n";
  for (const auto& [name, value] : headers.items()) out += name + ": " + value + "\r\n";
  out += extra;
  out += "\r\n";
  return out;
}

bool write_fd_all(int fd, const char* data, std::size_t n) {
  while (n > 0) {
    ssize_t put = ::write(fd, data, n);
    if (put < 0 && errno == EINTR) continue;
    if (put < 0 && errno == EAGAIN) {
      pollfd p{fd, POLLOUT, 0};
      ::poll(&p, 1, 1000);
      continue;
    }
    if (put <= 0) return false;
    data += put;
    n -= static_cast<std::size_t>(put);
  }
  return true;
}

bool is_socket(int fd) {
  struct stat st {};
  return ::fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode);
}

class BodyReaderImpl : public api::BodyReader {
 public:
  BodyReaderImpl(TlsConn& conn, beast::flat_buffer& buffer,
                 http::request_parser<http::buffer_body>& parser, std::chrono::milliseconds timeout)
      : conn_(conn), buffer_(buffer), parser_(parser), timeout_(timeout) {}

  std::size_t read(char* buf, std::size_t n) override {
    if (parser_.is_done() || n == 0) return 0;
    auto& body = parser_.get().body();
    body.data = buf;
    body.size = n;
    conn_.set_timeout(timeout_);
    beast::error_code ec;
    http::read(conn_, buffer_, parser_, ec);
    if (ec == http::error::need_buffer) ec = {};
    if (ec) throw api::HttpError(400, "reading the request body failed: " + ec.message());
    return n - body.size;
  }

 private:
  TlsConn& conn_;
  beast::flat_buffer& buffer_;
  http::request_parser<http::buffer_body>& parser_;
  std::chrono::milliseconds timeout_;
};

class StreamWriterImpl : public api::StreamWriter {
 public:
  StreamWriterImpl(TlsConn& conn, std::chrono::milliseconds timeout)
      : conn_(conn), timeout_(timeout) {}

  bool write(std::string_view data) override {
    if (failed_) return false;
    if (data.empty()) return true;  // an empty chunk would end the body
    char size[32];
    std::snprintf(size, sizeof size, "%zx\r\n", data.size());
    std::string chunk = size;
    chunk.append(data);
    chunk += "\r\n";
    conn_.set_timeout(timeout_);
    failed_ = !conn_.write_all(chunk);
    return !failed_;
  }
  bool client_gone() override { return failed_ || conn_.peer_gone(); }
  bool finish() {
    if (failed_) return false;
    conn_.set_timeout(timeout_);
    return conn_.write_all("0\r\n\r\n");
  }

 private:
  TlsConn& conn_;
  std::chrono::milliseconds timeout_;
  bool failed_ = false;
};

class ConnectionImpl : public api::Connection {
 public:
  ConnectionImpl(TlsConn& conn, std::string early, std::chrono::milliseconds timeout)
      : conn_(conn), early_(std::move(early)), timeout_(timeout) {}

  bool write(std::string_view data) override {
    conn_.set_timeout(timeout_);
    return conn_.write_all(data);
  }

  void pump(int in_fd, int out_fd, const InputFilter& filter) override {
    bool in_open = in_fd >= 0;
    const bool in_is_socket = in_open && is_socket(in_fd);
    auto close_input = [&] {
      if (!in_open) return;
      if (in_is_socket) {
        ::shutdown(in_fd, SHUT_WR);
      } else {
        ::close(in_fd);
      }
      in_open = false;
    };
    if (in_open && !early_.empty() && !write_fd_all(in_fd, early_.data(), early_.size()))
      close_input();
    early_.clear();
    bool client_open = true;
    std::string buf(32 << 10, '\0');
    for (;;) {
      pollfd fds[2] = {{out_fd, POLLIN, 0}, {conn_.fd(), POLLIN, 0}};
      const bool pending = client_open && SSL_has_pending(conn_.ssl()) == 1;
      nfds_t n = client_open ? 2 : 1;
      int r = ::poll(fds, n, pending ? 0 : -1);
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) return;
      if (fds[0].revents != 0) {
        ssize_t got = ::read(out_fd, buf.data(), buf.size());
        if (got < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (got <= 0) return;  // the stream ended
        if (!write({buf.data(), static_cast<std::size_t>(got)})) return;
      }
      if (client_open && (pending || fds[1].revents != 0)) {
        conn_.set_timeout(timeout_);
        beast::error_code ec;
        std::size_t got = conn_.read(buf.data(), buf.size(), ec);
        if (ec) return;  // the client went away
        if (got == 0) {  // half-close: no more input, output goes on
          client_open = false;
          close_input();
          continue;
        }
        std::string_view input(buf.data(), got);
        std::string passed;
        if (filter) {
          const bool detached = !filter(input, passed);
          input = passed;
          if (!input.empty() && in_open && !write_fd_all(in_fd, input.data(), input.size())) close_input();
          if (detached) return;
          continue;
        }
        if (in_open && !write_fd_all(in_fd, input.data(), input.size())) close_input();
      }
    }
  }

 private:
  TlsConn& conn_;
  std::string early_;  // bytes the client sent right after its request
  std::chrono::milliseconds timeout_;
};

}  // namespace

Server::Server(ServerOptions options, TlsContextHolder& tls, const api::Api& api, Logger& log)
    : options_(std::move(options)), tls_(tls), api_(api), log_(log) {
  sockaddr_storage ss{};
  socklen_t len = 0;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&ss);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&ss);
  if (::inet_pton(AF_INET, options_.listen.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(options_.port);
    len = sizeof *v4;
  } else if (::inet_pton(AF_INET6, options_.listen.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(options_.port);
    len = sizeof *v6;
  } else {
    throw UserError("listen address \"" + options_.listen +
                    "\" is not an IP address; set \"listen\" to e.g. 0.0.0.0 or ::");
  }
  const std::string where = sockaddr_text(ss);
  auto fail = [&](const char* step) {
    int e = errno;
    if (listen_fd_ >= 0) ::close(listen_fd_);
    listen_fd_ = -1;
    throw UserError("cannot " + std::string(step) + " " + where + ": " + std::strerror(e));
  };
  listen_fd_ = ::socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listen_fd_ < 0) fail("listen on");
  int one = 1;
  ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&ss), len) != 0) fail("bind to");
  if (::listen(listen_fd_, SOMAXCONN) != 0) fail("listen on");
  sockaddr_storage bound{};
  socklen_t blen = sizeof bound;
  ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&bound), &blen);
  address_ = sockaddr_text(bound);
  port_ = ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6&>(bound).sin6_port
                                            : reinterpret_cast<sockaddr_in&>(bound).sin_port);
}

Server::~Server() { stop(); }

std::string Server::address() const { return address_; }

void Server::start() {
  // A client that goes away mid-write must not kill the process: OpenSSL
  // writes with write(2), which cannot take MSG_NOSIGNAL.
  std::signal(SIGPIPE, SIG_IGN);
  acceptor_ = std::thread([this] { accept_loop(); });
}

void Server::stop() {
  if (stopping_.exchange(true)) {
    if (acceptor_.joinable()) acceptor_.join();
    return;
  }
  if (listen_fd_ >= 0) ::shutdown(listen_fd_, SHUT_RDWR);
  if (acceptor_.joinable()) acceptor_.join();
  std::unique_lock lock(mutex_);
  for (TlsConn* conn : live_) conn->abort();
  idle_.wait(lock, [this] { return sessions_ == 0; });
  lock.unlock();
  if (listen_fd_ >= 0) ::close(listen_fd_);
  listen_fd_ = -1;
}

void Server::accept_loop() {
  while (!stopping_) {
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    int fd = ::accept4(listen_fd_, reinterpret_cast<sockaddr*>(&ss), &len, SOCK_CLOEXEC);
    if (stopping_) {
      if (fd >= 0) ::close(fd);
      return;
    }
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      log_.warn(std::string("accept failed: ") + std::strerror(errno));
      // E.g. EMFILE: back off instead of spinning on a full descriptor table.
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      continue;
    }
    const std::string peer = sockaddr_text(ss);
    int one = 1;  // small responses go out at once, as Go's do
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    std::uint64_t id;
    {
      std::unique_lock lock(mutex_);
      // Threads: the authenticated, the pending, and evicted ones winding down.
      // On a busy machine the evicted ones may not have run yet: give them a
      // moment, or a client with a certificate is refused during a flood.
      const std::size_t cap = options_.max_connections + 2 * options_.max_handshakes;
      idle_.wait_for(lock, std::chrono::seconds(1), [&] { return sessions_ < cap || stopping_; });
      if (sessions_ >= cap) {
        log_.warn("refused connection from " + peer + ": already " + std::to_string(sessions_) +
                  " connections");
        ::close(fd);
        continue;
      }
      const std::string host = peer.substr(0, peer.rfind(':'));
      make_room_for(host);
      id = ++next_id_;
      pending_.push_back({id, fd, host});
      ++sessions_;
    }
    try {
      std::thread([this, fd, peer, id] { session(fd, peer, id); }).detach();
    } catch (const std::system_error& e) {
      log_.error(std::string("cannot start a connection thread: ") + e.what());
      std::lock_guard lock(mutex_);
      leave_pending(id);
      ::close(fd);
      --sessions_;
      idle_.notify_all();
    }
  }
}

void Server::make_room_for(const std::string& host) {
  auto evict = [&](std::list<Pending>::iterator it) {
    ::shutdown(it->fd, SHUT_RDWR);  // its handshake fails at once; the thread closes the fd
    pending_.erase(it);
    ++evicted_;
  };
  std::size_t same = 0;
  for (const Pending& p : pending_) same += p.host == host;
  if (same >= options_.max_handshakes_per_peer) {
    for (auto it = pending_.begin(); it != pending_.end(); ++it)
      if (it->host == host) {
        evict(it);
        break;
      }
  }
  while (!pending_.empty() && pending_.size() >= options_.max_handshakes) evict(pending_.begin());
  const auto now = std::chrono::steady_clock::now();
  if (evicted_ > 0 && now - evicted_logged_ >= std::chrono::seconds(10)) {
    log_.warn("dropped " + std::to_string(evicted_) +
              " connections that had not finished the TLS handshake, to make room for new ones "
              "(the latest from " + host + ")");
    evicted_ = 0;
    evicted_logged_ = now;
  }
}

bool Server::leave_pending(std::uint64_t id) {
  for (auto it = pending_.begin(); it != pending_.end(); ++it)
    if (it->id == id) {
      pending_.erase(it);
      return true;
    }
  return false;
}

void Server::session(int fd, std::string peer, std::uint64_t id) {
  struct Done {
    Server& s;
    ~Done() {
      std::lock_guard lock(s.mutex_);
      --s.sessions_;
      s.idle_.notify_all();
    }
  } done{*this};
  try {
    SslContextPtr ctx = tls_.current();  // held for the connection's lifetime
    TlsConn conn(fd, ctx->native_handle());
    // Declared after conn, so it leaves pending_ before conn closes the fd.
    struct Forget {
      Server& s;
      TlsConn* c;
      std::uint64_t id;
      bool authenticated = false;
      ~Forget() {
        std::lock_guard lock(s.mutex_);
        s.live_.erase(c);
        s.leave_pending(id);
        if (authenticated) --s.authenticated_;
      }
    } forget{*this, &conn, id};
    {
      std::lock_guard lock(mutex_);
      if (stopping_) return;
      live_.insert(&conn);
    }

    conn.set_timeout(options_.handshake_timeout);
    std::string err = conn.handshake();
    {
      std::lock_guard lock(mutex_);
      const bool evicted = !leave_pending(id);
      if (err.empty() && evicted) err = "dropped to make room for newer connections";
      if (!err.empty()) {
        if (!stopping_ && !evicted) log_.warn("TLS handshake with " + peer + " failed: " + err);
        return;
      }
      if (authenticated_ >= options_.max_connections) {
        log_.warn("refused connection from " + peer + ": already " +
                  std::to_string(authenticated_) + " connections");
        return;
      }
      ++authenticated_;
      forget.authenticated = true;
    }
    const std::string cn = peer_common_name(conn.ssl());

    beast::flat_buffer buffer;
    bool body_left_unread = false;
    for (;;) {
      http::request_parser<http::buffer_body> parser;
      parser.header_limit(static_cast<std::uint32_t>(options_.max_header_bytes));
      parser.body_limit(std::numeric_limits<std::uint64_t>::max());
      conn.set_timeout(options_.header_timeout);
      beast::error_code ec;
      http::read_header(conn, buffer, parser, ec);
      const auto started = std::chrono::steady_clock::now();

      api::Response response;
      bool keep_alive = false;
      bool head = false;
      bool stream_body = false;
      std::string method = "-", path = "-";
      api::Request request;
      if (ec == http::error::header_limit) {
        response = api::Response::error(431, "request header too large");
      } else if (ec && is_disconnect(ec)) {
        break;
      } else if (ec) {
        response = api::Response::error(400, "bad request: " + ec.message());
      } else {
        const auto& header = parser.get();
        method = std::string(header.method_string());
        path = path_of(header.target());
        head = header.method() == http::verb::head;
        keep_alive = header.keep_alive() && !stopping_;
        request.method = method;
        request.target = std::string(header.target());
        for (const auto& field : header) {
          request.headers.add(std::string(field.name_string()), std::string(field.value()));
        }
        request.client_cn = cn;
        stream_body = api_.route_options(method, request.target).stream_body;
      }

      BodyReaderImpl reader(conn, buffer, parser, options_.body_timeout);
      if (!ec && !stream_body) {
        try {
          std::string body;
          char chunk[16 << 10];
          while (std::size_t n = reader.read(chunk, sizeof chunk)) {
            if (body.size() + n > options_.max_body_bytes) {
              response = api::Response::error(
                  413, "request body too large: the limit is " +
                           std::to_string(options_.max_body_bytes) + " bytes");
              keep_alive = false;
              body_left_unread = true;
              break;
            }
            body.append(chunk, n);
          }
          request.body = std::move(body);
        } catch (const api::HttpError&) {
          break;  // the client went away or sent garbage mid-body
        }
        if (response.status == 200) response = api_.handle(std::move(request));
      } else if (!ec) {
        request.body_reader = &reader;
        response = api_.handle(std::move(request));
        if (!parser.is_done()) {  // the rest of the body is unread
          keep_alive = false;
          body_left_unread = true;
        }
      }
      if (ec || response.status == 413) api::add_common_headers(response);

      bool ok = true;
      if (response.hijack) {
        const bool upgrade = parser.is_header_done() && parser.get().count(http::field::upgrade);
        api::Headers& h = response.headers;
        if (upgrade) {
          response.status = 101;
          h.set("Connection", "Upgrade");
          h.set("Upgrade", "tcp");
        }
        conn.set_timeout(options_.write_timeout);
        ok = conn.write_all(head_text(response.status, h, ""));
        log_.info("request cn=" + log_quote(cn) + " method=" + log_quote(method, 16) +
                  " path=" + log_quote(path) + " status=" + std::to_string(response.status) +
                  " hijacked peer=" + peer);
        if (ok) {
          auto early = buffer.data();
          ConnectionImpl hijacked(
              conn, std::string(static_cast<const char*>(early.data()), early.size()),
              options_.write_timeout);
          buffer.consume(buffer.size());
          response.hijack(hijacked);
        }
        break;
      }
      if (response.stream && !head) {
        conn.set_timeout(options_.write_timeout);
        ok = conn.write_all(head_text(response.status, response.headers,
                                      "Transfer-Encoding: chunked\r\n"));
        if (ok) {
          StreamWriterImpl writer(conn, options_.write_timeout);
          response.stream(writer);
          ok = writer.finish();
        }
      } else {
        conn.set_timeout(options_.write_timeout);
        if (head) {
          // Headers only; Content-Length says what a GET would have returned.
          http::response<http::empty_body> msg{static_cast<http::status>(response.status), 11};
          for (const auto& [name, value] : response.headers.items()) msg.set(name, value);
          msg.keep_alive(keep_alive);
          msg.content_length(response.body.size());
          http::write(conn, msg, ec);
        } else {
          http::response<http::string_body> msg{static_cast<http::status>(response.status), 11,
                                                std::move(response.body)};
          for (const auto& [name, value] : response.headers.items()) msg.set(name, value);
          msg.keep_alive(keep_alive);
          msg.prepare_payload();
          http::write(conn, msg, ec);
        }
        ok = !ec;
      }
      log_.info("request cn=" + log_quote(cn) + " method=" + log_quote(method, 16) +
                " path=" + log_quote(path) + " status=" + std::to_string(response.status) +
                " duration_ms=" + duration_ms(std::chrono::steady_clock::now() - started) +
                " peer=" + peer);
      if (!ok || !keep_alive) break;
    }
    if (body_left_unread && !stopping_) drain_input(conn);
    if (!stopping_) conn.shutdown();
  } catch (const std::exception& e) {
    log_.error("connection from " + peer + " failed: " + e.what());
  }
}

}  // namespace berth::agent
