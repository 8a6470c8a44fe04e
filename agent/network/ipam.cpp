#include "agent/network/ipam.h"

#include <cctype>

#include <arpa/inet.h>

#include <charconv>
#include <cstdio>

#include "agent/api/http.h"

namespace berth::agent::network {

std::optional<std::uint32_t> parse_ipv4(const std::string& text) {
  in_addr a{};
  if (::inet_pton(AF_INET, text.c_str(), &a) != 1) return std::nullopt;
  return ntohl(a.s_addr);
}

std::string format_ipv4(std::uint32_t ip) {
  char buf[INET_ADDRSTRLEN];
  in_addr a{htonl(ip)};
  ::inet_ntop(AF_INET, &a, buf, sizeof buf);
  return buf;
}

std::optional<Ipv4Net> Ipv4Net::parse(const std::string& cidr) {
  auto slash = cidr.find('/');
  if (slash == std::string::npos) return std::nullopt;
  auto ip = parse_ipv4(cidr.substr(0, slash));
  int prefix = -1;
  const char* begin = cidr.data() + slash + 1;
  const char* end = cidr.data() + cidr.size();
  auto [ptr, ec] = std::from_chars(begin, end, prefix);
  if (!ip || ec != std::errc() || ptr != end || begin == end || prefix < 0 || prefix > 32)
    return std::nullopt;
  Ipv4Net net;
  net.prefix = prefix;
  net.addr = *ip & net.mask();
  return net;
}

bool Ipv4Net::overlaps(const Ipv4Net& other) const {
  int p = std::min(prefix, other.prefix);
  std::uint32_t m = p == 0 ? 0 : ~std::uint32_t{0} << (32 - p);
  return (addr & m) == (other.addr & m);
}

std::string Ipv4Net::str() const { return format_ipv4(addr) + "/" + std::to_string(prefix); }

Ipv4Net pick_subnet(const std::vector<Ipv4Net>& used) {
  std::vector<Ipv4Net> candidates;
  for (std::uint32_t b = 17; b <= 31; ++b) candidates.push_back({(172u << 24) | (b << 16), 16});
  for (std::uint32_t c = 0; c < 256; c += 16)
    candidates.push_back({(192u << 24) | (168u << 16) | (c << 8), 20});
  for (const Ipv4Net& c : candidates) {
    bool free = true;
    for (const Ipv4Net& u : used) free = free && !c.overlaps(u);
    if (free) return c;
  }
  throw api::HttpError(
      400, "all predefined address pools have been fully subnetted");
}

std::string mac_for(std::uint32_t ip) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "02:42:%02x:%02x:%02x:%02x", (ip >> 24) & 0xff, (ip >> 16) & 0xff,
                (ip >> 8) & 0xff, ip & 0xff);
  return buf;
}

std::string normalize_mac(const std::string& text) {
  if (text.empty()) return text;
  auto bad = [&] { return api::HttpError(400, "invalid MAC address: " + text); };
  if (text.size() != 17) throw bad();
  std::string out;
  unsigned first = 0;
  for (std::size_t i = 0; i < 17; ++i) {
    char ch = text[i];
    if (i % 3 == 2) {
      if (ch != ':' && ch != '-') throw bad();
      out += ':';
      continue;
    }
    if (!std::isxdigit(static_cast<unsigned char>(ch))) throw bad();
    out += static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  }
  first = static_cast<unsigned>(std::stoul(out.substr(0, 2), nullptr, 16));
  if (first & 1) throw bad();  // a multicast address cannot be an interface's
  return out;
}

std::uint32_t Ipam::allocate(const std::string& owner, const std::string& requested) {
  if (!requested.empty()) {
    auto ip = parse_ipv4(requested);
    if (!ip) throw api::HttpError(400, "invalid IPv4 address: " + requested);
    if (!subnet_.contains(*ip) || *ip == subnet_.addr || *ip == subnet_.broadcast())
      throw api::HttpError(400, "Invalid address " + requested +
                                    ": It does not belong to any of this network's subnets");
    auto it = leases_.find(*ip);
    if (it != leases_.end() && it->second == owner) return *ip;
    if (it != leases_.end() || *ip == gateway_)
      throw api::HttpError(403, "Address already in use");
    release(owner);
    leases_[*ip] = owner;
    return *ip;
  }
  if (auto held = lease_of(owner)) return *held;
  for (std::uint32_t ip = subnet_.addr + 1; ip < subnet_.broadcast(); ++ip) {
    if (ip == gateway_ || leases_.count(ip)) continue;
    leases_[ip] = owner;
    return ip;
  }
  throw api::HttpError(503, "no available IPv4 addresses on this network's address pools");
}

void Ipam::release(const std::string& owner) {
  for (auto it = leases_.begin(); it != leases_.end();) {
    if (it->second == owner)
      it = leases_.erase(it);
    else
      ++it;
  }
}

std::optional<std::uint32_t> Ipam::lease_of(const std::string& owner) const {
  for (const auto& [ip, o] : leases_)
    if (o == owner) return ip;
  return std::nullopt;
}

nlohmann::json Ipam::to_json() const {
  nlohmann::json leases = nlohmann::json::object();
  for (const auto& [ip, owner] : leases_) leases[format_ipv4(ip)] = owner;
  return {{"Subnet", subnet_.str()}, {"Gateway", format_ipv4(gateway_)}, {"Leases", leases}};
}

Ipam Ipam::from_json(const nlohmann::json& j) {
  auto subnet = Ipv4Net::parse(j.at("Subnet").get<std::string>());
  auto gateway = parse_ipv4(j.at("Gateway").get<std::string>());
  if (!subnet || !gateway) throw std::runtime_error("bad IPAM record");
  Ipam ipam(*subnet, *gateway);
  if (j.contains("Leases"))
    for (auto& [ip, owner] : j["Leases"].items())
      if (auto a = parse_ipv4(ip)) ipam.leases_[*a] = owner.get<std::string>();
  return ipam;
}

}  // namespace berth::agent::network
