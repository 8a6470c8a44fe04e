#pragma once
// One server-side TLS connection on a non-blocking socket, driven with poll()
// so every read and write has a deadline. Also a Beast SyncStream, so the
// Beast HTTP parser and serializer run on it directly. Not thread-safe: one
// connection, one thread.
#include <openssl/ssl.h>

#include <boost/asio/buffer.hpp>
#include <boost/asio/error.hpp>
#include <boost/beast/core/error.hpp>
#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

namespace berth::agent {

class TlsConn {
 public:
  using Clock = std::chrono::steady_clock;

  // Takes ownership of `fd` (closed by the destructor).
  TlsConn(int fd, SSL_CTX* ctx);
  ~TlsConn();
  TlsConn(const TlsConn&) = delete;
  TlsConn& operator=(const TlsConn&) = delete;

  int fd() const { return fd_; }
  SSL* ssl() const { return ssl_.get(); }

  // The deadline for the following operations; Clock::time_point::max() for none.
  void set_timeout(std::chrono::milliseconds timeout) { deadline_ = Clock::now() + timeout; }
  void clear_timeout() { deadline_ = Clock::time_point::max(); }

  // Empty on success, else the reason ("timed out", OpenSSL's reason).
  std::string handshake();
  // Bytes read; 0 when the peer closed (close_notify or EOF). ec on errors and timeouts.
  std::size_t read(char* buf, std::size_t n, boost::beast::error_code& ec);
  bool write_all(std::string_view data);
  // Non-blocking: the peer closed or reset its side (pending data is not "gone").
  bool peer_gone();
  // close_notify, best effort and briefly.
  void shutdown();
  // Wakes a blocked read/write from another thread (Server::stop).
  void abort();

  // Beast SyncReadStream / SyncWriteStream.
  template <class MutableBuffers>
  std::size_t read_some(const MutableBuffers& buffers, boost::beast::error_code& ec) {
    auto it = boost::asio::buffer_sequence_begin(buffers);
    auto end = boost::asio::buffer_sequence_end(buffers);
    for (; it != end; ++it) {
      boost::asio::mutable_buffer b = *it;
      if (b.size() == 0) continue;
      std::size_t n = read(static_cast<char*>(b.data()), b.size(), ec);
      if (!ec && n == 0) ec = boost::asio::error::eof;
      return n;
    }
    ec = {};
    return 0;
  }
  template <class MutableBuffers>
  std::size_t read_some(const MutableBuffers& buffers) {
    boost::beast::error_code ec;
    std::size_t n = read_some(buffers, ec);
    if (ec) throw boost::system::system_error(ec);
    return n;
  }
  template <class ConstBuffers>
  std::size_t write_some(const ConstBuffers& buffers, boost::beast::error_code& ec) {
    std::size_t total = 0;
    auto end = boost::asio::buffer_sequence_end(buffers);
    for (auto it = boost::asio::buffer_sequence_begin(buffers); it != end; ++it) {
      boost::asio::const_buffer b = *it;
      if (!write_all({static_cast<const char*>(b.data()), b.size()})) {
        ec = boost::asio::error::broken_pipe;
        return total;
      }
      total += b.size();
    }
    ec = {};
    return total;
  }
  template <class ConstBuffers>
  std::size_t write_some(const ConstBuffers& buffers) {
    boost::beast::error_code ec;
    std::size_t n = write_some(buffers, ec);
    if (ec) throw boost::system::system_error(ec);
    return n;
  }

 private:
  // Waits for `events` on the socket until the deadline. False on timeout/abort.
  bool wait(short events);

  int fd_;
  std::unique_ptr<SSL, decltype(&SSL_free)> ssl_;
  Clock::time_point deadline_ = Clock::time_point::max();
  bool timed_out_ = false;
};

}  // namespace berth::agent
