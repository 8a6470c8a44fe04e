#pragma once
// Where progress output goes in these tests: a pty (a terminal, in raw mode so
// "\n" stays "\n") or a pipe (not a terminal). Read everything written so far
// with text(); the reading side never blocks.
#include <fcntl.h>
#include <poll.h>
#include <pty.h>
#include <termios.h>
#include <unistd.h>

#include <cstdio>
#include <stdexcept>
#include <string>

namespace berth::testing {

class Capture {
 public:
  enum class Kind { Pty, Pipe };
  explicit Capture(Kind kind) {
    int read_fd = -1, write_fd = -1;
    if (kind == Kind::Pty) {
      termios raw{};
      ::cfmakeraw(&raw);
      if (::openpty(&read_fd, &write_fd, nullptr, &raw, nullptr) != 0) throw std::runtime_error("openpty failed");
    } else {
      int fds[2];
      if (::pipe(fds) != 0) throw std::runtime_error("pipe failed");
      read_fd = fds[0];
      write_fd = fds[1];
    }
    ::fcntl(read_fd, F_SETFL, ::fcntl(read_fd, F_GETFL) | O_NONBLOCK);
    read_fd_ = read_fd;
    file_ = ::fdopen(write_fd, "w");
    if (!file_) throw std::runtime_error("fdopen failed");
  }
  ~Capture() {
    std::fclose(file_);
    ::close(read_fd_);
  }
  Capture(const Capture&) = delete;
  Capture& operator=(const Capture&) = delete;

  std::FILE* file() const { return file_; }

  // Everything written so far (call often for large outputs: a pipe holds 64 KB).
  std::string text() {
    std::fflush(file_);
    char buf[4096];
    while (true) {
      pollfd p{read_fd_, POLLIN, 0};
      if (::poll(&p, 1, 20) <= 0) break;
      ssize_t n = ::read(read_fd_, buf, sizeof buf);
      if (n <= 0) break;
      seen_.append(buf, static_cast<size_t>(n));
    }
    return seen_;
  }

 private:
  int read_fd_ = -1;
  std::FILE* file_ = nullptr;
  std::string seen_;
};

inline int count(const std::string& text, const std::string& what) {
  int n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + what.size())) ++n;
  return n;
}

}  // namespace berth::testing
