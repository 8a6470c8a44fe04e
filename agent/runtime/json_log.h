#pragma once
// Docker's json-file log driver format, the log query filters (since, until,
// tail) and the multiplexed stream framing of attach/logs.
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace berth::agent::runtime {

using Clock = std::chrono::system_clock;

// Nanoseconds since the epoch.
std::int64_t to_unix_nanos(Clock::time_point t);
// "2024-05-01T10:00:00.12345Z" (Go's RFC3339Nano: trailing zeros trimmed).
std::string rfc3339_nano(std::int64_t unix_nanos);
// Nine fraction digits always (dockerd's RFC3339NanoFixed for logs --timestamps).
std::string rfc3339_nano_fixed(std::int64_t unix_nanos);
// Parses RFC 3339 with optional fraction and Z or +hh:mm; nullopt when malformed.
std::optional<std::int64_t> parse_rfc3339(std::string_view text);
// The since/until query values: "1700000000", "1700000000.5", or RFC 3339.
std::optional<std::int64_t> parse_log_time(std::string_view text);
// dockerd's zero time for StartedAt/FinishedAt of a never-run container.
inline constexpr const char* kZeroTime = "0001-01-01T00:00:00Z";

// One line of <id>-json.log: {"log":"...","stream":"stdout","time":"..."}\n
std::string format_log_line(std::string_view text, std::string_view stream,
                            std::int64_t unix_nanos);

struct LogEntry {
  std::string stream;  // "stdout" or "stderr"
  std::string text;    // with its trailing newline, if it had one
  std::int64_t unix_nanos = 0;
  std::string time;    // as stored
};
std::optional<LogEntry> parse_log_line(std::string_view line);

// Splits a byte stream into log records the way docker does: at each '\n'
// (kept), and at 16 KiB for very long lines. flush() returns the partial rest.
class LineSplitter {
 public:
  static constexpr std::size_t kMaxLine = 16 * 1024;
  std::vector<std::string> feed(std::string_view data);
  std::optional<std::string> flush();

 private:
  std::string pending_;
};

struct LogFilter {
  bool stdout_stream = true;
  bool stderr_stream = true;
  std::optional<std::int64_t> since;  // entries at or after (dockerd: strictly after when > 0)
  std::optional<std::int64_t> until;  // entries before
  std::optional<std::size_t> tail;    // last N after the other filters; nullopt: all
};
// Parses "all" / "" (nullopt) or a count; negative means all. nullopt on garbage too.
std::optional<std::size_t> parse_tail(std::string_view text);
bool log_entry_matches(const LogEntry& e, const LogFilter& f);
// Parses a whole log file's text and applies the filter.
std::vector<LogEntry> select_logs(std::string_view file_text, const LogFilter& f);

// The stream header of the multiplexed format: [type,0,0,0,size(be32)] + data.
enum class StreamType : unsigned char { Stdin = 0, Stdout = 1, Stderr = 2, System = 3 };
std::string frame(StreamType type, std::string_view data);

// Renders one entry for the logs endpoint: optionally "<time> " prefix, and
// framed unless the container has a TTY.
std::string render_log_entry(const LogEntry& e, bool timestamps, bool tty);

}  // namespace berth::agent::runtime
