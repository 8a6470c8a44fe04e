#include "agent/runtime/json_log.h"

#include <charconv>
#include <ctime>
#include <nlohmann/json.hpp>

namespace berth::agent::runtime {
namespace {

constexpr std::int64_t kNanos = 1'000'000'000;

std::string format_seconds(std::int64_t secs) {
  std::time_t t = static_cast<std::time_t>(secs);
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  return buf;
}

std::pair<std::int64_t, std::int64_t> split(std::int64_t unix_nanos) {
  std::int64_t secs = unix_nanos / kNanos;
  std::int64_t frac = unix_nanos % kNanos;
  if (frac < 0) {
    frac += kNanos;
    --secs;
  }
  return {secs, frac};
}

bool parse_int(std::string_view s, std::int64_t& out) {
  if (s.empty()) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && p == s.data() + s.size();
}

// Days since 1970-01-01 for a civil date (Howard Hinnant's algorithm).
std::int64_t days_from_civil(std::int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<std::int64_t>(doe) - 719468;
}

}  // namespace

std::int64_t to_unix_nanos(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

std::string rfc3339_nano(std::int64_t unix_nanos) {
  auto [secs, frac] = split(unix_nanos);
  std::string out = format_seconds(secs);
  if (frac != 0) {
    char buf[16];
    std::snprintf(buf, sizeof buf, ".%09lld", static_cast<long long>(frac));
    std::string f = buf;
    while (f.back() == '0') f.pop_back();
    out += f;
  }
  return out + "Z";
}

std::string rfc3339_nano_fixed(std::int64_t unix_nanos) {
  auto [secs, frac] = split(unix_nanos);
  char buf[16];
  std::snprintf(buf, sizeof buf, ".%09lld", static_cast<long long>(frac));
  return format_seconds(secs) + buf + "Z";
}

std::optional<std::int64_t> parse_rfc3339(std::string_view s) {
  // YYYY-MM-DDTHH:MM:SS[.frac](Z|+hh:mm|-hh:mm)
  if (s.size() < 20 || s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != 't') ||
      s[13] != ':' || s[16] != ':')
    return std::nullopt;
  std::int64_t y, mo, d, h, mi, se;
  if (!parse_int(s.substr(0, 4), y) || !parse_int(s.substr(5, 2), mo) ||
      !parse_int(s.substr(8, 2), d) || !parse_int(s.substr(11, 2), h) ||
      !parse_int(s.substr(14, 2), mi) || !parse_int(s.substr(17, 2), se))
    return std::nullopt;
  if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || se > 60) return std::nullopt;
  std::size_t i = 19;
  std::int64_t frac = 0;
  if (i < s.size() && s[i] == '.') {
    ++i;
    int digits = 0;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
      if (digits < 9) {
        frac = frac * 10 + (s[i] - '0');
        ++digits;
      }
      ++i;
    }
    if (digits == 0) return std::nullopt;
    for (; digits < 9; ++digits) frac *= 10;
  }
  std::int64_t offset = 0;
  std::string_view zone = s.substr(i);
  if (zone == "Z" || zone == "z") {
  } else if (zone.size() == 6 && (zone[0] == '+' || zone[0] == '-') && zone[3] == ':') {
    std::int64_t zh, zm;
    if (!parse_int(zone.substr(1, 2), zh) || !parse_int(zone.substr(4, 2), zm))
      return std::nullopt;
    offset = (zh * 3600 + zm * 60) * (zone[0] == '+' ? 1 : -1);
  } else {
    return std::nullopt;
  }
  std::int64_t secs = days_from_civil(y, static_cast<unsigned>(mo), static_cast<unsigned>(d)) *
                          86400 +
                      h * 3600 + mi * 60 + se - offset;
  return secs * kNanos + frac;
}

std::optional<std::int64_t> parse_log_time(std::string_view text) {
  if (text.empty()) return std::nullopt;
  if (auto t = parse_rfc3339(text)) return t;
  auto dot = text.find('.');
  std::int64_t secs;
  if (!parse_int(text.substr(0, dot), secs)) return std::nullopt;
  std::int64_t frac = 0;
  if (dot != std::string_view::npos) {
    std::string_view f = text.substr(dot + 1);
    if (f.empty() || f.size() > 9) return std::nullopt;
    if (!parse_int(f, frac) || frac < 0) return std::nullopt;
    for (std::size_t n = f.size(); n < 9; ++n) frac *= 10;
  }
  return secs * kNanos + frac;
}

std::string format_log_line(std::string_view text, std::string_view stream,
                            std::int64_t unix_nanos) {
  nlohmann::json j = {{"log", std::string(text)},
                      {"stream", std::string(stream)},
                      {"time", rfc3339_nano(unix_nanos)}};
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

std::optional<LogEntry> parse_log_line(std::string_view line) {
  nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return std::nullopt;
  auto log = j.find("log");
  auto stream = j.find("stream");
  auto time = j.find("time");
  if (log == j.end() || !log->is_string() || stream == j.end() || !stream->is_string() ||
      time == j.end() || !time->is_string())
    return std::nullopt;
  LogEntry e;
  e.text = log->get<std::string>();
  e.stream = stream->get<std::string>();
  e.time = time->get<std::string>();
  auto t = parse_rfc3339(e.time);
  if (!t) return std::nullopt;
  e.unix_nanos = *t;
  return e;
}

std::vector<std::string> LineSplitter::feed(std::string_view data) {
  std::vector<std::string> out;
  pending_.append(data);
  std::size_t start = 0;
  for (;;) {
    auto nl = pending_.find('\n', start);
    if (nl != std::string::npos && nl - start < kMaxLine) {
      out.push_back(pending_.substr(start, nl - start + 1));
      start = nl + 1;
    } else if (pending_.size() - start >= kMaxLine) {
      out.push_back(pending_.substr(start, kMaxLine));
      start += kMaxLine;
    } else {
      break;
    }
  }
  pending_.erase(0, start);
  return out;
}

std::optional<std::string> LineSplitter::flush() {
  if (pending_.empty()) return std::nullopt;
  return std::exchange(pending_, std::string());
}

std::optional<std::size_t> parse_tail(std::string_view text) {
  if (text.empty() || text == "all") return std::nullopt;
  std::int64_t n;
  if (!parse_int(text, n) || n < 0) return std::nullopt;
  return static_cast<std::size_t>(n);
}

bool log_entry_matches(const LogEntry& e, const LogFilter& f) {
  if (e.stream == "stdout" && !f.stdout_stream) return false;
  if (e.stream == "stderr" && !f.stderr_stream) return false;
  if (f.since && *f.since > 0 && e.unix_nanos < *f.since) return false;
  if (f.until && *f.until > 0 && e.unix_nanos >= *f.until) return false;
  return true;
}

std::vector<LogEntry> select_logs(std::string_view text, const LogFilter& f) {
  std::vector<LogEntry> out;
  std::size_t pos = 0;
  while (pos < text.size()) {
    auto nl = text.find('\n', pos);
    if (nl == std::string_view::npos) break;  // a partial line still being written
    auto e = parse_log_line(text.substr(pos, nl - pos));
    pos = nl + 1;
    if (e && log_entry_matches(*e, f)) out.push_back(std::move(*e));
  }
  if (f.tail && out.size() > *f.tail)
    out.erase(out.begin(), out.end() - static_cast<std::ptrdiff_t>(*f.tail));
  return out;
}

std::string frame(StreamType type, std::string_view data) {
  std::string out;
  out.reserve(8 + data.size());
  auto n = static_cast<std::uint32_t>(data.size());
  out += static_cast<char>(type);
  out.append(3, '\0');
  out += static_cast<char>((n >> 24) & 0xff);
  out += static_cast<char>((n >> 16) & 0xff);
  out += static_cast<char>((n >> 8) & 0xff);
  out += static_cast<char>(n & 0xff);
  out.append(data);
  return out;
}

std::string render_log_entry(const LogEntry& e, bool timestamps, bool tty) {
  std::string text = timestamps ? rfc3339_nano_fixed(e.unix_nanos) + " " + e.text : e.text;
  if (tty) return text;
  return frame(e.stream == "stderr" ? StreamType::Stderr : StreamType::Stdout, text);
}

}  // namespace berth::agent::runtime
