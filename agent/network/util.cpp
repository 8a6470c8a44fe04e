#include "agent/network/util.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>

#include "agent/api/http.h"

namespace berth::agent::network {

std::string random_hex(std::size_t bytes) {
  std::string raw(bytes, '\0');
  int fd = ::open("/dev/urandom", O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw std::runtime_error("cannot open /dev/urandom");
  std::size_t got = 0;
  while (got < bytes) {
    ssize_t n = ::read(fd, raw.data() + got, bytes - got);
    if (n <= 0) {
      if (n < 0 && errno == EINTR) continue;
      ::close(fd);
      throw std::runtime_error("cannot read /dev/urandom");
    }
    got += static_cast<std::size_t>(n);
  }
  ::close(fd);
  static const char* digits = "0123456789abcdef";
  std::string hex;
  for (unsigned char c : raw) {
    hex += digits[c >> 4];
    hex += digits[c & 15];
  }
  return hex;
}

void write_file_atomic(const std::filesystem::path& path, std::string_view content) {
  std::filesystem::path tmp = path;
  tmp += ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) throw std::runtime_error("cannot write " + tmp.string() + ": " + std::strerror(errno));
  std::size_t done = 0;
  bool ok = true;
  while (done < content.size()) {
    ssize_t n = ::write(fd, content.data() + done, content.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      ok = false;
      break;
    }
    done += static_cast<std::size_t>(n);
  }
  int saved = errno;
  if (ok && ::fsync(fd) != 0) {
    ok = false;
    saved = errno;
  }
  ::close(fd);
  if (!ok || ::rename(tmp.c_str(), path.c_str()) != 0) {
    if (ok) saved = errno;
    ::unlink(tmp.c_str());
    throw std::runtime_error("cannot write " + path.string() + ": " + std::strerror(saved));
  }
}

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path.string());
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

namespace {
std::string format_utc(bool nanos) {
  using namespace std::chrono;
  auto now = system_clock::now();
  std::time_t secs = system_clock::to_time_t(now);
  long ns = static_cast<long>(duration_cast<nanoseconds>(now.time_since_epoch()).count() %
                              1000000000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  std::string s = buf;
  if (nanos) {
    char frac[16];
    std::snprintf(frac, sizeof frac, ".%09ld", ns);
    s += frac;
  }
  return s + "Z";
}
}  // namespace

std::string rfc3339_seconds_now() { return format_utc(false); }
std::string rfc3339_nanos_now() { return format_utc(true); }

Filters parse_filters(const std::string& raw, const std::vector<std::string>& allowed) {
  Filters out;
  if (raw.empty()) return out;
  nlohmann::json j = nlohmann::json::parse(raw, nullptr, false);
  if (j.is_discarded() || !j.is_object())
    throw api::HttpError(400, "invalid filter: " + raw.substr(0, 200));
  for (auto& [key, value] : j.items()) {
    if (std::find(allowed.begin(), allowed.end(), key) == allowed.end())
      throw api::HttpError(400, "invalid filter '" + key + "'");
    std::vector<std::string>& values = out[key];
    if (value.is_object()) {
      for (auto& [v, on] : value.items())
        if (!on.is_boolean() || on.get<bool>()) values.push_back(v);
    } else if (value.is_array()) {
      for (auto& v : value)
        if (v.is_string()) values.push_back(v.get<std::string>());
    } else if (value.is_string()) {
      values.push_back(value.get<std::string>());
    } else {
      throw api::HttpError(400, "invalid filter '" + key + "'");
    }
  }
  return out;
}

bool label_matches(const std::map<std::string, std::string>& labels, const std::string& filter) {
  auto eq = filter.find('=');
  if (eq == std::string::npos) return labels.count(filter) > 0;
  auto it = labels.find(filter.substr(0, eq));
  return it != labels.end() && it->second == filter.substr(eq + 1);
}

bool filter_bool(const std::string& key, const std::string& value) {
  if (value == "true" || value == "1") return true;
  if (value == "false" || value == "0") return false;
  throw api::HttpError(400, "Invalid filter '" + key + "=" + value + "'");
}

}  // namespace berth::agent::network
