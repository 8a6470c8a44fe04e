#pragma once
// The agent's log file: one line per event, "<RFC 3339 UTC time> <level> <message>".
// Thread-safe. Callers never pass key material or request bodies.
#include <mutex>
#include <string>
#include <string_view>

namespace berth::agent {

class Logger {
 public:
  Logger() = default;                 // discards everything (tests)
  explicit Logger(std::string path);  // opens for append; throws berth::UserError
  ~Logger();
  Logger(const Logger&) = delete;
  Logger& operator=(const Logger&) = delete;

  void info(std::string_view message);
  void warn(std::string_view message);
  void error(std::string_view message);

  // Reopens the file at the same path (after logrotate moved it). Keeps the old
  // file on failure and returns false.
  bool reopen();

  const std::string& path() const { return path_; }

 private:
  void write(std::string_view level, std::string_view message);

  std::mutex mutex_;
  std::string path_;
  int fd_ = -1;
};

// For untrusted text in log lines: "…" with quotes, backslashes and control
// characters escaped, cut at `max` bytes.
std::string log_quote(std::string_view text, std::size_t max = 256);

}  // namespace berth::agent
