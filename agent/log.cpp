#include "agent/log.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>

#include "core/error.h"

namespace berth::agent {
namespace {

int open_log(const std::string& path) {
  return ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
}

std::string now_utc() {
  using namespace std::chrono;
  auto now = system_clock::now();
  std::time_t secs = system_clock::to_time_t(now);
  auto millis = duration_cast<milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[96];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<int>(millis));
  return buf;
}

}  // namespace

Logger::Logger(std::string path) : path_(std::move(path)) {
  fd_ = open_log(path_);
  if (fd_ < 0) {
    throw UserError("cannot open log file " + path_ + ": " + std::strerror(errno) +
                    "; fix \"log_file\" in the config or the directory's permissions");
  }
}

Logger::~Logger() {
  if (fd_ >= 0) ::close(fd_);
}

void Logger::info(std::string_view message) { write("info", message); }
void Logger::warn(std::string_view message) { write("warn", message); }
void Logger::error(std::string_view message) { write("error", message); }

bool Logger::reopen() {
  if (path_.empty()) return true;
  int fd = open_log(path_);
  if (fd < 0) return false;
  std::lock_guard lock(mutex_);
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
  return true;
}

void Logger::write(std::string_view level, std::string_view message) {
  std::string line = now_utc();
  line += ' ';
  line += level;
  line += ' ';
  line += message;
  line += '\n';
  std::lock_guard lock(mutex_);
  if (fd_ < 0) return;
  // One write(2) per line so O_APPEND keeps lines whole; a full disk drops the line.
  ssize_t n = ::write(fd_, line.data(), line.size());
  (void)n;
}

std::string log_quote(std::string_view text, std::size_t max) {
  std::string out = "\"";
  for (std::size_t i = 0; i < text.size() && i < max; ++i) {
    unsigned char c = static_cast<unsigned char>(text[i]);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20 || c == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  if (text.size() > max) out += "...";
  out += '"';
  return out;
}

}  // namespace berth::agent
