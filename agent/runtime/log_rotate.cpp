#include "agent/runtime/log_rotate.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <charconv>
#include <cmath>
#include <cstring>
#include <stdexcept>

#include "agent/api/http.h"

namespace berth::agent::runtime {

namespace fs = std::filesystem;
using nlohmann::json;

std::optional<std::int64_t> parse_ram_in_bytes(std::string_view s) {
  // go-units: ^(\d+(\.\d+)*) ?([kKmMgGtTpP])?[iI]?[bB]?$, binary multiples.
  std::size_t i = 0;
  while (i < s.size() && (std::isdigit(static_cast<unsigned char>(s[i])) || s[i] == '.')) ++i;
  if (i == 0 || s[0] == '.') return std::nullopt;
  double value;
  std::string number(s.substr(0, i));
  auto [p, ec] = std::from_chars(number.data(), number.data() + number.size(), value);
  if (ec != std::errc() || p != number.data() + number.size()) return std::nullopt;
  std::string_view rest = s.substr(i);
  if (!rest.empty() && rest[0] == ' ') rest.remove_prefix(1);
  double mult = 1;
  if (!rest.empty()) {
    switch (std::tolower(static_cast<unsigned char>(rest[0]))) {
      case 'k': mult = 1024.0; break;
      case 'm': mult = 1024.0 * 1024; break;
      case 'g': mult = 1024.0 * 1024 * 1024; break;
      case 't': mult = 1024.0 * 1024 * 1024 * 1024; break;
      case 'p': mult = 1024.0 * 1024 * 1024 * 1024 * 1024; break;
      default: mult = 0;
    }
    if (mult != 0) rest.remove_prefix(1);
    else mult = 1;
  }
  if (!rest.empty() && (rest[0] == 'i' || rest[0] == 'I')) rest.remove_prefix(1);
  if (!rest.empty() && (rest[0] == 'b' || rest[0] == 'B')) rest.remove_prefix(1);
  if (!rest.empty()) return std::nullopt;
  return static_cast<std::int64_t>(value * mult);
}

LogRotation parse_log_rotation(const json& lc) {
  LogRotation r;
  if (!lc.is_object()) return r;
  std::string type = lc.value("Type", "");
  if (!type.empty() && type != "json-file") return r;
  auto cfg = lc.find("Config");
  if (cfg == lc.end() || !cfg->is_object()) return r;
  static const char* known[] = {"max-file", "max-size", "compress", "labels", "labels-regex",
                                "env",      "env-regex", "tag"};
  for (auto& [k, v] : cfg->items()) {
    if (std::none_of(std::begin(known), std::end(known), [&](const char* n) { return k == n; }))
      throw api::HttpError(400, "unknown log opt '" + k + "' for json-file log driver");
    if (!v.is_string()) throw api::HttpError(400, "log opt '" + k + "' must be a string");
  }
  if (auto s = cfg->find("max-size"); s != cfg->end()) {
    std::string text = s->get<std::string>();
    auto v = parse_ram_in_bytes(text);
    if (!v) throw api::HttpError(400, "invalid size: '" + text + "'");
    if (*v <= 0) throw api::HttpError(400, "max-size must be a positive number");
    r.max_size = *v;
  }
  if (auto f = cfg->find("max-file"); f != cfg->end()) {
    std::string text = f->get<std::string>();
    int n = 0;
    auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
    if (text.empty() || ec != std::errc() || p != text.data() + text.size())
      throw api::HttpError(400, "strconv.Atoi: parsing \"" + text + "\": invalid syntax");
    if (n < 1) throw api::HttpError(400, "max-file cannot be less than 1");
    r.max_file = n;
  }
  if (r.max_file > 1 && r.max_size == -1)
    throw api::HttpError(400, "max-file cannot be greater than 1 when max-size is not set");
  return r;
}

RotatingLogFile::RotatingLogFile(fs::path path, LogRotation rotation)
    : path_(std::move(path)), rot_(rotation) {
  fd_.reset(::open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640));
  if (!fd_) throw std::runtime_error("cannot open " + path_.string() + ": " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd_.get(), &st) == 0) size_ = st.st_size;
}

void RotatingLogFile::rotate() {
  std::error_code ec;
  if (rot_.max_file >= 2) {
    auto name = [&](int i) { return fs::path(path_.string() + "." + std::to_string(i)); };
    fs::remove(name(rot_.max_file - 1), ec);
    for (int i = rot_.max_file - 1; i > 1; --i) {
      if (fs::exists(name(i - 1), ec)) fs::rename(name(i - 1), name(i), ec);
    }
    fs::rename(path_, name(1), ec);
  }
  UniqueFd fresh(::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0640));
  if (!fresh) return;  // keep writing to the old file rather than lose records
  fd_ = std::move(fresh);
  size_ = 0;
}

void RotatingLogFile::write(std::string_view record) {
  if (!fd_) return;
  if (rot_.max_size > 0 && size_ >= rot_.max_size) rotate();
  if (write_all(fd_.get(), record)) size_ += static_cast<std::int64_t>(record.size());
}

std::vector<fs::path> rotated_log_files(const fs::path& path) {
  std::vector<fs::path> out;
  std::error_code ec;
  int n = 1;
  while (fs::exists(path.string() + "." + std::to_string(n), ec)) ++n;
  for (int i = n - 1; i >= 1; --i) out.emplace_back(path.string() + "." + std::to_string(i));
  out.push_back(path);
  return out;
}

}  // namespace berth::agent::runtime
