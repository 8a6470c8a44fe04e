#include "agent/build/text.h"

#include <algorithm>

namespace berth::agent::build::text {

Rune decode(std::string_view s, std::size_t pos) {
  auto byte = [&](std::size_t i) { return static_cast<unsigned char>(s[i]); };
  const unsigned char b0 = byte(pos);
  if (b0 < 0x80) return {b0, 1, true};
  std::size_t len = 0;
  char32_t cp = 0;
  char32_t min = 0;
  if ((b0 & 0xE0) == 0xC0) {
    len = 2, cp = b0 & 0x1F, min = 0x80;
  } else if ((b0 & 0xF0) == 0xE0) {
    len = 3, cp = b0 & 0x0F, min = 0x800;
  } else if ((b0 & 0xF8) == 0xF0) {
    len = 4, cp = b0 & 0x07, min = 0x10000;
  } else {
    return {b0, 1, false};
  }
  if (pos + len > s.size()) return {b0, 1, false};
  for (std::size_t i = 1; i < len; ++i) {
    const unsigned char b = byte(pos + i);
    if ((b & 0xC0) != 0x80) return {b0, 1, false};
    cp = (cp << 6) | (b & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return {b0, 1, false};
  return {cp, len, true};
}

void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

bool is_space(char32_t cp) {
  switch (cp) {
    case '\t':
    case '\n':
    case '\v':
    case '\f':
    case '\r':
    case ' ':
    case 0x85:
    case 0xA0:
    case 0x1680:
    case 0x2028:
    case 0x2029:
    case 0x202F:
    case 0x205F:
    case 0x3000:
      return true;
    default:
      return cp >= 0x2000 && cp <= 0x200A;
  }
}

bool is_ascii_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

std::string_view trim_space(std::string_view s) {
  while (!s.empty() && is_ascii_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_ascii_space(s.back())) s.remove_suffix(1);
  return s;
}

std::string to_lower(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

std::string to_upper(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  return out;
}

bool iequals(std::string_view a, std::string_view b) { return to_lower(a) == to_lower(b); }

std::string go_quote(std::string_view s) {
  static const char* hex = "0123456789abcdef";
  std::string out = "\"";
  for (std::size_t i = 0; i < s.size();) {
    Rune r = decode(s, i);
    if (!r.valid) {
      out += "\\x";
      out += hex[r.cp >> 4];
      out += hex[r.cp & 15];
    } else if (r.cp == '"' || r.cp == '\\') {
      out += '\\';
      out += static_cast<char>(r.cp);
    } else if (r.cp >= 0x20 && r.cp != 0x7F) {
      out.append(s.substr(i, r.width));
    } else {
      switch (r.cp) {
        case '\a':
          out += "\\a";
          break;
        case '\b':
          out += "\\b";
          break;
        case '\f':
          out += "\\f";
          break;
        case '\n':
          out += "\\n";
          break;
        case '\r':
          out += "\\r";
          break;
        case '\t':
          out += "\\t";
          break;
        case '\v':
          out += "\\v";
          break;
        default:
          out += "\\x";
          out += hex[r.cp >> 4];
          out += hex[r.cp & 15];
      }
    }
    i += r.width;
  }
  return out + "\"";
}

std::string clean_path(std::string_view path) {
  if (path.empty()) return ".";
  const bool rooted = path.front() == '/';
  std::vector<std::string_view> parts;
  std::size_t i = 0;
  while (i <= path.size()) {
    std::size_t j = path.find('/', i);
    if (j == std::string_view::npos) j = path.size();
    std::string_view part = path.substr(i, j - i);
    if (part.empty() || part == ".") {
      // skip
    } else if (part == "..") {
      if (!parts.empty() && parts.back() != "..") {
        parts.pop_back();
      } else if (!rooted) {
        parts.push_back(part);
      }
    } else {
      parts.push_back(part);
    }
    i = j + 1;
  }
  std::string out = rooted ? "/" : "";
  for (std::size_t k = 0; k < parts.size(); ++k) {
    if (k) out += '/';
    out.append(parts[k]);
  }
  return out.empty() ? "." : out;
}

bool parse_go_duration(std::string_view s, std::int64_t& nanos, std::string& error) {
  const std::string orig(s);
  auto invalid = [&] {
    error = "time: invalid duration " + go_quote(orig);
    return false;
  };
  constexpr std::uint64_t kMax = std::uint64_t{1} << 63;
  std::uint64_t d = 0;
  bool neg = false;
  if (!s.empty() && (s[0] == '-' || s[0] == '+')) {
    neg = s[0] == '-';
    s.remove_prefix(1);
  }
  if (s == "0") {
    nanos = 0;
    return true;
  }
  if (s.empty()) return invalid();
  auto digit = [](char c) { return c >= '0' && c <= '9'; };
  while (!s.empty()) {
    if (!(s[0] == '.' || digit(s[0]))) return invalid();
    // The integer part.
    std::uint64_t v = 0;
    std::size_t i = 0;
    for (; i < s.size() && digit(s[i]); ++i) {
      if (v > (kMax - 1) / 10) return invalid();
      v = v * 10 + static_cast<std::uint64_t>(s[i] - '0');
      if (v > kMax) return invalid();
    }
    const bool pre = i > 0;
    s.remove_prefix(i);
    // The fraction.
    std::uint64_t f = 0;
    double scale = 1;
    bool post = false;
    if (!s.empty() && s[0] == '.') {
      s.remove_prefix(1);
      bool overflow = false;
      std::size_t j = 0;
      for (; j < s.size() && digit(s[j]); ++j) {
        if (overflow) continue;
        if (f > (kMax - 1) / 10) {
          overflow = true;
          continue;
        }
        const std::uint64_t y = f * 10 + static_cast<std::uint64_t>(s[j] - '0');
        if (y > kMax) {
          overflow = true;
          continue;
        }
        f = y;
        scale *= 10;
      }
      post = j > 0;
      s.remove_prefix(j);
    }
    if (!pre && !post) return invalid();
    // The unit.
    std::size_t u = 0;
    while (u < s.size() && s[u] != '.' && !digit(s[u])) ++u;
    if (u == 0) {
      error = "time: missing unit in duration " + go_quote(orig);
      return false;
    }
    const std::string_view unit_name = s.substr(0, u);
    s.remove_prefix(u);
    std::uint64_t unit = 0;
    if (unit_name == "ns") {
      unit = 1;
    } else if (unit_name == "us" || unit_name == "\xC2\xB5s" || unit_name == "\xCE\xBCs") {
      unit = 1000;
    } else if (unit_name == "ms") {
      unit = 1000000;
    } else if (unit_name == "s") {
      unit = 1000000000;
    } else if (unit_name == "m") {
      unit = 60 * std::uint64_t{1000000000};
    } else if (unit_name == "h") {
      unit = 3600 * std::uint64_t{1000000000};
    } else {
      error = "time: unknown unit " + go_quote(unit_name) + " in duration " + go_quote(orig);
      return false;
    }
    if (v > kMax / unit) return invalid();
    v *= unit;
    if (f > 0) {
      v += static_cast<std::uint64_t>(static_cast<double>(f) * (static_cast<double>(unit) / scale));
      if (v > kMax) return invalid();
    }
    d += v;
    if (d > kMax) return invalid();
  }
  if (neg) {
    nanos = d == kMax ? INT64_MIN : -static_cast<std::int64_t>(d);
    return true;
  }
  if (d > kMax - 1) return invalid();
  nanos = static_cast<std::int64_t>(d);
  return true;
}

bool parse_go_int32(std::string_view s, std::int32_t& value, std::string& error) {
  const std::string prefix = "strconv.ParseInt: parsing " + go_quote(s) + ": ";
  std::string_view digits = s;
  bool neg = false;
  if (!digits.empty() && (digits[0] == '+' || digits[0] == '-')) {
    neg = digits[0] == '-';
    digits.remove_prefix(1);
  }
  if (digits.empty()) {
    error = prefix + "invalid syntax";
    return false;
  }
  std::int64_t v = 0;
  bool range = false;
  for (char c : digits) {
    if (c < '0' || c > '9') {
      error = prefix + "invalid syntax";
      return false;
    }
    if (!range) {
      v = v * 10 + (c - '0');
      if (v > (std::int64_t{1} << 31)) range = true;
    }
  }
  if (neg) v = -v;
  if (range || v > INT32_MAX || v < INT32_MIN) {
    error = prefix + "value out of range";
    return false;
  }
  value = static_cast<std::int32_t>(v);
  return true;
}

namespace {

std::vector<char32_t> runes(std::string_view s) {
  std::vector<char32_t> out;
  for (std::size_t i = 0; i < s.size();) {
    Rune r = decode(s, i);
    out.push_back(r.valid ? r.cp : 0xFFFD);
    i += r.width;
  }
  return out;
}

std::size_t levenshtein(std::string_view a, std::string_view b) {
  const auto ra = runes(a), rb = runes(b);
  std::vector<std::size_t> row(rb.size() + 1);
  for (std::size_t j = 0; j <= rb.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= ra.size(); ++i) {
    std::size_t diag = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= rb.size(); ++j) {
      const std::size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (ra[i - 1] == rb[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[rb.size()];
}

}  // namespace

std::string suggest(std::string_view value, const std::vector<std::string>& options,
                    bool case_sensitive) {
  const std::string val = case_sensitive ? std::string(value) : to_lower(value);
  std::string match;
  std::size_t best = 3;
  const std::size_t val_runes = runes(val).size();
  for (const std::string& option : options) {
    const std::string opt = case_sensitive ? option : to_lower(option);
    if (opt == val) return "";
    // The distance is at least the difference in length: skip hopeless options.
    const std::size_t opt_runes = runes(opt).size();
    if ((val_runes > opt_runes ? val_runes - opt_runes : opt_runes - val_runes) >= best) continue;
    const std::size_t d = levenshtein(val, opt);
    if (d < best) {
      best = d;
      match = opt;
      // matchCase: all-lower input gets a lower-case answer, all-upper an upper-case one.
      if (!case_sensitive && value != to_lower(value) && value == to_upper(value))
        match = to_upper(opt);
    }
  }
  return match;
}

}  // namespace berth::agent::build::text
