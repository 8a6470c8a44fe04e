#pragma once
// IPv6 address management for a user network created with --ipv6: a subnet
// (given, or a /64 from a unique local /48 as dockerd picks), its gateway and
// one address per container. Not thread-safe: NetworkManager locks.
#include <array>
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace berth::agent::network {

__extension__ typedef unsigned __int128 Ipv6Addr;  // host order
std::optional<Ipv6Addr> parse_ipv6(const std::string& text);
std::string format_ipv6(Ipv6Addr ip);
std::array<std::uint8_t, 16> ipv6_bytes(Ipv6Addr ip);  // network order

struct Ipv6Net {
  Ipv6Addr addr = 0;  // the network address (host bits cleared)
  int prefix = 0;
  static std::optional<Ipv6Net> parse(const std::string& cidr);  // "fd00:1::/64"
  Ipv6Addr mask() const { return prefix == 0 ? 0 : ~Ipv6Addr{0} << (128 - prefix); }
  Ipv6Addr last() const { return addr | ~mask(); }
  bool contains(Ipv6Addr ip) const { return (ip & mask()) == addr; }
  bool overlaps(const Ipv6Net& other) const;
  std::string str() const;
  bool operator==(const Ipv6Net&) const = default;
};

// The first /64 of `ula48` (an fdXX:XXXX:XXXX::/48 unique to this machine)
// that overlaps none of `used`. Throws api::HttpError(400) when all are taken.
Ipv6Net pick_subnet6(const Ipv6Net& ula48, const std::vector<Ipv6Net>& used);
// fd + 40 bits from `seed` (the machine's engine id), as RFC 4193 asks.
Ipv6Net ula_prefix(const std::string& seed);

class Ipam6 {
 public:
  Ipam6() = default;
  Ipam6(Ipv6Net subnet, Ipv6Addr gateway) : subnet_(subnet), gateway_(gateway) {}

  // The lowest free address after the gateway (or `requested`) for `owner`;
  // the same HttpErrors as Ipam::allocate.
  Ipv6Addr allocate(const std::string& owner, const std::string& requested = "");
  void release(const std::string& owner);
  std::optional<Ipv6Addr> lease_of(const std::string& owner) const;

  const Ipv6Net& subnet() const { return subnet_; }
  Ipv6Addr gateway() const { return gateway_; }

  nlohmann::json to_json() const;  // {"Subnet","Gateway","Leases":{ip: owner}}
  static Ipam6 from_json(const nlohmann::json& j);

 private:
  Ipv6Net subnet_;
  Ipv6Addr gateway_ = 0;
  std::map<Ipv6Addr, std::string> leases_;
};

}  // namespace berth::agent::network
