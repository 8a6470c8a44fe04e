#include "agent/network/ipam6.h"

#include <arpa/inet.h>
#include <openssl/sha.h>

#include <charconv>
#include <cstring>

#include "agent/api/http.h"

namespace berth::agent::network {

std::optional<Ipv6Addr> parse_ipv6(const std::string& text) {
  in6_addr a{};
  if (text.find(':') == std::string::npos || ::inet_pton(AF_INET6, text.c_str(), &a) != 1)
    return std::nullopt;
  Ipv6Addr ip = 0;
  for (unsigned char byte : a.s6_addr) ip = (ip << 8) | byte;
  return ip;
}

std::array<std::uint8_t, 16> ipv6_bytes(Ipv6Addr ip) {
  std::array<std::uint8_t, 16> out{};
  for (int i = 15; i >= 0; --i, ip >>= 8) out[static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(ip);
  return out;
}

std::string format_ipv6(Ipv6Addr ip) {
  in6_addr a{};
  auto bytes = ipv6_bytes(ip);
  std::memcpy(a.s6_addr, bytes.data(), 16);
  char buf[INET6_ADDRSTRLEN];
  ::inet_ntop(AF_INET6, &a, buf, sizeof buf);
  return buf;
}

std::optional<Ipv6Net> Ipv6Net::parse(const std::string& cidr) {
  auto slash = cidr.find('/');
  if (slash == std::string::npos) return std::nullopt;
  auto ip = parse_ipv6(cidr.substr(0, slash));
  int prefix = -1;
  const char* begin = cidr.data() + slash + 1;
  const char* end = cidr.data() + cidr.size();
  auto [ptr, ec] = std::from_chars(begin, end, prefix);
  if (!ip || ec != std::errc() || ptr != end || begin == end || prefix < 0 || prefix > 128)
    return std::nullopt;
  Ipv6Net net;
  net.prefix = prefix;
  net.addr = *ip & net.mask();
  return net;
}

bool Ipv6Net::overlaps(const Ipv6Net& other) const {
  Ipv6Net wider{0, std::min(prefix, other.prefix)};
  return (addr & wider.mask()) == (other.addr & wider.mask());
}

std::string Ipv6Net::str() const { return format_ipv6(addr) + "/" + std::to_string(prefix); }

Ipv6Net ula_prefix(const std::string& seed) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(seed.data()), seed.size(), digest);
  Ipv6Addr addr = 0xfd;
  for (int i = 0; i < 5; ++i) addr = (addr << 8) | digest[i];
  return {addr << 80, 48};
}

Ipv6Net pick_subnet6(const Ipv6Net& ula48, const std::vector<Ipv6Net>& used) {
  for (Ipv6Addr i = 0; i < 0x10000; ++i) {
    Ipv6Net candidate{ula48.addr | (i << 64), 64};
    bool free = true;
    for (const Ipv6Net& u : used) free = free && !candidate.overlaps(u);
    if (free) return candidate;
  }
  throw api::HttpError(400, "all predefined address pools have been fully subnetted");
}

Ipv6Addr Ipam6::allocate(const std::string& owner, const std::string& requested) {
  if (!requested.empty()) {
    auto ip = parse_ipv6(requested);
    if (!ip) throw api::HttpError(400, "invalid IPv6 address: " + requested);
    if (!subnet_.contains(*ip) || *ip == subnet_.addr)
      throw api::HttpError(400, "Invalid address " + requested +
                                    ": It does not belong to any of this network's subnets");
    auto it = leases_.find(*ip);
    if (it != leases_.end() && it->second == owner) return *ip;
    if (it != leases_.end() || *ip == gateway_) throw api::HttpError(403, "Address already in use");
    release(owner);
    leases_[*ip] = owner;
    return *ip;
  }
  if (auto held = lease_of(owner)) return *held;
  // Sequential from the start of the subnet, as dockerd; a /64 never fills.
  for (Ipv6Addr ip = subnet_.addr + 1; ip <= subnet_.last() && ip - subnet_.addr < (1u << 24); ++ip) {
    if (ip == gateway_ || leases_.count(ip)) continue;
    leases_[ip] = owner;
    return ip;
  }
  throw api::HttpError(503, "no available IPv6 addresses on this network's address pools");
}

void Ipam6::release(const std::string& owner) {
  std::erase_if(leases_, [&](const auto& lease) { return lease.second == owner; });
}

std::optional<Ipv6Addr> Ipam6::lease_of(const std::string& owner) const {
  for (const auto& [ip, o] : leases_)
    if (o == owner) return ip;
  return std::nullopt;
}

nlohmann::json Ipam6::to_json() const {
  nlohmann::json leases = nlohmann::json::object();
  for (const auto& [ip, owner] : leases_) leases[format_ipv6(ip)] = owner;
  return {{"Subnet", subnet_.str()}, {"Gateway", format_ipv6(gateway_)}, {"Leases", leases}};
}

Ipam6 Ipam6::from_json(const nlohmann::json& j) {
  auto subnet = Ipv6Net::parse(j.at("Subnet").get<std::string>());
  auto gateway = parse_ipv6(j.at("Gateway").get<std::string>());
  if (!subnet || !gateway) throw std::runtime_error("bad IPv6 IPAM record");
  Ipam6 ipam(*subnet, *gateway);
  if (j.contains("Leases"))
    for (auto& [ip, owner] : j["Leases"].items())
      if (auto a = parse_ipv6(ip)) ipam.leases_[*a] = owner.get<std::string>();
  return ipam;
}

}  // namespace berth::agent::network
