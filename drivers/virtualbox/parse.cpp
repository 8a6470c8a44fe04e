#include "drivers/virtualbox/parse.h"

#include <fmt/format.h>

#include <cctype>
#include <sstream>

namespace berth::vbox {
namespace {

std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(" \t\r\n") - b + 1);
}

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    out.push_back(line);
  }
  return out;
}

// "Key:   value" -> {lowercased key, value}; nullopt when the line has no colon.
std::optional<std::pair<std::string, std::string>> key_value(const std::string& line) {
  const auto colon = line.find(':');
  if (colon == std::string::npos) return std::nullopt;
  return std::make_pair(lower(trim(line.substr(0, colon))), trim(line.substr(colon + 1)));
}

// Reads a "..." token at `i` (pointing at the opening quote) across lines; returns false when unterminated.
bool read_quoted(const std::string& s, size_t& i, std::string& out) {
  ++i;
  while (i < s.size()) {
    const char c = s[i];
    if (c == '\\' && i + 1 < s.size() && (s[i + 1] == '"' || s[i + 1] == '\\')) {
      out += s[i + 1];
      i += 2;
    } else if (c == '"') {
      ++i;
      return true;
    } else {
      out += c;
      ++i;
    }
  }
  return false;
}

}  // namespace

std::optional<Version> parse_version(const std::string& out) {
  std::optional<Version> found;
  for (const auto& raw : lines_of(out)) {
    const std::string line = trim(raw);
    int ma = 0, mi = 0, pa = 0, used = 0;
    if (line.empty() || !std::isdigit(static_cast<unsigned char>(line[0]))) continue;
    if (std::sscanf(line.c_str(), "%d.%d%n", &ma, &mi, &used) < 2) continue;
    if (used < static_cast<int>(line.size()) && line[static_cast<size_t>(used)] == '.')
      std::sscanf(line.c_str() + used + 1, "%d", &pa);
    found = Version{ma, mi, pa, line};
  }
  return found;
}

std::map<std::string, std::string> parse_machinereadable(const std::string& out) {
  std::map<std::string, std::string> kv;
  size_t i = 0;
  const size_t n = out.size();
  while (i < n) {
    // one entry: key (bare or quoted) '=' value (bare, to end of line, or quoted)
    while (i < n && (out[i] == '\n' || out[i] == '\r' || out[i] == ' ' || out[i] == '\t')) ++i;
    if (i >= n) break;
    std::string key;
    bool ok = true;
    if (out[i] == '"') {
      ok = read_quoted(out, i, key);
    } else {
      while (i < n && out[i] != '=' && out[i] != '\n') key += out[i++];
    }
    if (!ok) break;
    if (i >= n || out[i] != '=') {  // not a key=value line: skip it
      while (i < n && out[i] != '\n') ++i;
      continue;
    }
    ++i;
    std::string value;
    if (i < n && out[i] == '"') {
      if (!read_quoted(out, i, value)) break;
      while (i < n && out[i] != '\n') ++i;
    } else {
      while (i < n && out[i] != '\n') value += out[i++];
      value = trim(value);
    }
    kv[trim(key)] = value;
  }
  return kv;
}

std::vector<HostOnlyIf> parse_hostonlyifs(const std::string& out) {
  std::vector<HostOnlyIf> all;
  bool open = false;  // all.back() is the block being read
  for (const auto& line : lines_of(out)) {
    if (trim(line).empty()) {
      open = false;
      continue;
    }
    auto kv = key_value(line);
    if (!kv) continue;
    auto& [k, v] = *kv;
    if (k == "name") {
      all.emplace_back();
      all.back().name = v;
      open = true;
    }
    if (!open) continue;
    auto& cur = all.back();
    if (k == "guid")
      cur.guid = v;
    else if (k == "dhcp")
      cur.dhcp = lower(v) == "enabled";
    else if (k == "ipaddress")
      cur.ip = v;
    else if (k == "networkmask")
      cur.netmask = v;
    else if (k == "status")
      cur.status = v;
    else if (k == "vboxnetworkname")
      cur.network_name = v;
  }
  return all;
}

std::vector<DhcpServer> parse_dhcpservers(const std::string& out) {
  std::vector<DhcpServer> all;
  for (const auto& line : lines_of(out)) {
    if (line.empty() || line[0] == ' ' || line[0] == '\t') continue;  // 6.1+ nested option blocks
    auto kv = key_value(line);
    if (!kv) continue;
    auto& [k, v] = *kv;
    if (k == "networkname") {
      all.push_back(DhcpServer{});
      all.back().network_name = v;
      continue;
    }
    if (all.empty()) continue;
    auto& s = all.back();
    if (k == "ip" || k == "dhcpd ip")
      s.ip = v;
    else if (k == "networkmask")
      s.netmask = v;
    else if (k == "loweripaddress")
      s.lower_ip = v;
    else if (k == "upperipaddress")
      s.upper_ip = v;
    else if (k == "enabled")
      s.enabled = lower(v) == "yes";
  }
  return all;
}

std::optional<std::uint32_t> parse_ipv4(const std::string& s) {
  unsigned a, b, c, d;
  char extra;
  if (std::sscanf(s.c_str(), "%u.%u.%u.%u%c", &a, &b, &c, &d, &extra) != 4) return std::nullopt;
  if (a > 255 || b > 255 || c > 255 || d > 255) return std::nullopt;
  if (s.find_first_not_of("0123456789.") != std::string::npos) return std::nullopt;
  return (a << 24) | (b << 16) | (c << 8) | d;
}

std::string format_ipv4(std::uint32_t ip) {
  return fmt::format("{}.{}.{}.{}", ip >> 24, (ip >> 16) & 255, (ip >> 8) & 255, ip & 255);
}

std::optional<Cidr> parse_cidr(const std::string& s) {
  const auto slash = s.find('/');
  if (slash == std::string::npos) return std::nullopt;
  auto ip = parse_ipv4(s.substr(0, slash));
  const std::string p = s.substr(slash + 1);
  if (!ip || p.empty() || p.size() > 2 || p.find_first_not_of("0123456789") != std::string::npos) return std::nullopt;
  const int prefix = std::stoi(p);
  if (prefix > 32) return std::nullopt;
  return Cidr{*ip, prefix};
}

bool hostonly_range_allowed(const Cidr& cidr, const std::string& networks_conf) {
  if (Cidr{0xC0A83800u /*192.168.56.0*/, 21}.contains(cidr)) return true;
  for (const auto& raw : lines_of(networks_conf)) {
    std::istringstream in(raw);
    std::string star;
    if (!(in >> star) || star != "*") continue;
    for (std::string tok; in >> tok;) {
      if (tok[0] == '#') break;
      if (auto range = parse_cidr(tok); range && range->contains(cidr)) return true;
    }
  }
  return false;
}

HostOnlyPlan plan_hostonly(const Cidr& cidr) {
  const std::uint32_t net = cidr.network();
  const std::uint32_t broadcast = net | ~cidr.mask();
  return {format_ipv4(cidr.ip), format_ipv4(cidr.mask()), format_ipv4(net + 100), format_ipv4(net + 101),
          format_ipv4(broadcast - 1)};
}

}  // namespace berth::vbox
