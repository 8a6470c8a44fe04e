#include "agent/tls_conn.h"

#include <openssl/err.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/beast/core/error.hpp>
#include <cerrno>
#include <stdexcept>

namespace berth::agent {
namespace {

std::string ssl_reason() {
  unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (e == 0) return "connection closed";
  const char* reason = ERR_reason_error_string(e);
  return reason != nullptr ? reason : "TLS error";
}

}  // namespace

TlsConn::TlsConn(int fd, SSL_CTX* ctx) : fd_(fd), ssl_(SSL_new(ctx), &SSL_free) {
  if (!ssl_) {
    ::close(fd_);
    throw std::runtime_error("SSL_new failed");
  }
  ::fcntl(fd_, F_SETFL, ::fcntl(fd_, F_GETFL) | O_NONBLOCK);
  SSL_set_fd(ssl_.get(), fd_);
  SSL_set_accept_state(ssl_.get());
  SSL_set_mode(ssl_.get(), SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
}

TlsConn::~TlsConn() {
  ssl_.reset();
  ::close(fd_);
}

bool TlsConn::wait(short events) {
  for (;;) {
    int ms = -1;
    if (deadline_ != Clock::time_point::max()) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline_ - Clock::now());
      if (left.count() <= 0) {
        timed_out_ = true;
        return false;
      }
      ms = static_cast<int>(std::min<long long>(left.count() + 1, 1 << 30));
    }
    pollfd p{fd_, events, 0};
    int r = ::poll(&p, 1, ms);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return false;
    if (r == 0) continue;  // re-check the deadline
    return true;            // ready, or an error the next SSL call reports
  }
}

std::string TlsConn::handshake() {
  ERR_clear_error();
  for (;;) {
    int r = SSL_do_handshake(ssl_.get());
    if (r == 1) return "";
    int err = SSL_get_error(ssl_.get(), r);
    if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
      if (!wait(err == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT))
        return timed_out_ ? "timed out" : "aborted";
      continue;
    }
    return ssl_reason();
  }
}

std::size_t TlsConn::read(char* buf, std::size_t n, boost::beast::error_code& ec) {
  ec = {};
  ERR_clear_error();
  for (;;) {
    std::size_t got = 0;
    if (SSL_read_ex(ssl_.get(), buf, n, &got) == 1) return got;
    int err = SSL_get_error(ssl_.get(), 0);
    if (err == SSL_ERROR_ZERO_RETURN) return 0;
    if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
      if (!wait(err == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT)) {
        ec = timed_out_ ? boost::beast::error::timeout
                        : boost::asio::error::make_error_code(boost::asio::error::operation_aborted);
        return 0;
      }
      continue;
    }
    // EOF without close_notify, a reset, or a protocol error.
    ERR_clear_error();
    ec = boost::asio::error::make_error_code(boost::asio::error::connection_reset);
    return 0;
  }
}

bool TlsConn::write_all(std::string_view data) {
  ERR_clear_error();
  while (!data.empty()) {
    std::size_t put = 0;
    if (SSL_write_ex(ssl_.get(), data.data(), data.size(), &put) == 1) {
      data.remove_prefix(put);
      continue;
    }
    int err = SSL_get_error(ssl_.get(), 0);
    if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
      if (!wait(err == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT)) return false;
      continue;
    }
    ERR_clear_error();
    return false;
  }
  return true;
}

bool TlsConn::peer_gone() {
  pollfd p{fd_, POLLIN | POLLRDHUP, 0};
  if (::poll(&p, 1, 0) <= 0) return false;
  if (p.revents & (POLLHUP | POLLERR | POLLRDHUP)) return true;
  char c;
  ERR_clear_error();
  int r = SSL_peek(ssl_.get(), &c, 1);
  if (r > 0) return false;
  int err = SSL_get_error(ssl_.get(), r);
  ERR_clear_error();
  return !(err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE);
}

void TlsConn::shutdown() {
  set_timeout(std::chrono::seconds(1));
  ERR_clear_error();
  if (SSL_shutdown(ssl_.get()) < 0) ERR_clear_error();
}

void TlsConn::abort() { ::shutdown(fd_, SHUT_RDWR); }

}  // namespace berth::agent
