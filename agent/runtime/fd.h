#pragma once
// Small POSIX helpers for the runtime: an owning fd, full reads/writes,
// atomic file writes, unix sockets and fd passing (SCM_RIGHTS).
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace berth::agent::runtime {

class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  ~UniqueFd() { reset(); }
  UniqueFd(UniqueFd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& o) noexcept {
    if (this != &o) reset(std::exchange(o.fd_, -1));
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;

  int get() const { return fd_; }
  explicit operator bool() const { return fd_ >= 0; }
  int release() { return std::exchange(fd_, -1); }
  void reset(int fd = -1);

 private:
  int fd_ = -1;
};

// Writes all of `data` (retrying on EINTR/short writes). False on error.
bool write_all(int fd, std::string_view data);
// Reads until EOF (or error).
std::string read_all(int fd);
// The whole file; nullopt when it cannot be read.
std::optional<std::string> read_file(const std::filesystem::path& path);
// Writes path.tmp, fsyncs and renames over path. Throws std::runtime_error.
void write_file_atomic(const std::filesystem::path& path, std::string_view data,
                       unsigned mode = 0644);

// A listening SOCK_STREAM unix socket at path (an old socket file is removed).
UniqueFd listen_unix(const std::filesystem::path& path, int backlog = 16);
// Connects to a unix socket; an invalid fd on failure (errno set).
UniqueFd connect_unix(const std::filesystem::path& path);

// Sends/receives one fd over a unix socket (SCM_RIGHTS).
bool send_fd(int sock, int fd);
UniqueFd receive_fd(int sock);

// Reads one '\n'-terminated line byte by byte (so no data after it is consumed).
// nullopt at EOF before a newline or past max bytes.
std::optional<std::string> read_line(int fd, std::size_t max = 65536);

}  // namespace berth::agent::runtime
