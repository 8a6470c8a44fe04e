#pragma once
// IPv4 address management for one network: a subnet, its gateway and the
// leases (one address per container). Not thread-safe: NetworkManager locks.
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace berth::agent::network {

std::optional<std::uint32_t> parse_ipv4(const std::string& text);  // host byte order
std::string format_ipv4(std::uint32_t ip);

struct Ipv4Net {
  std::uint32_t addr = 0;  // the network address (host bits cleared)
  int prefix = 0;
  static std::optional<Ipv4Net> parse(const std::string& cidr);  // "172.18.0.0/16"
  std::uint32_t mask() const { return prefix == 0 ? 0 : ~std::uint32_t{0} << (32 - prefix); }
  std::uint32_t broadcast() const { return addr | ~mask(); }
  bool contains(std::uint32_t ip) const { return (ip & mask()) == addr; }
  bool overlaps(const Ipv4Net& other) const;
  std::string str() const;  // "172.18.0.0/16"
  bool operator==(const Ipv4Net&) const = default;
};

// Docker's default pools: 172.17.0.0/16 .. 172.31.0.0/16, then
// 192.168.0.0/20, 192.168.16.0/20, ... The first that overlaps none of `used`.
// Throws api::HttpError(400) when all are taken, as dockerd words it.
Ipv4Net pick_subnet(const std::vector<Ipv4Net>& used);

// 02:42 followed by the four address bytes, as docker derives MACs.
std::string mac_for(std::uint32_t ip);
// --mac-address: "AA-bb:cc..." to "aa:bb:cc:dd:ee:ff" ("" stays ""). Throws
// api::HttpError(400) "invalid MAC address: X" unless six hex bytes, unicast.
std::string normalize_mac(const std::string& text);

class Ipam {
 public:
  Ipam() = default;
  Ipam(Ipv4Net subnet, std::uint32_t gateway) : subnet_(subnet), gateway_(gateway) {}

  // The lowest free address (or `requested` when given and free) for `owner`.
  // An owner that holds a lease gets it back. Throws api::HttpError: 400 for
  // an address outside the subnet, 403 "Address already in use", 503 when full.
  std::uint32_t allocate(const std::string& owner, const std::string& requested = "");
  void release(const std::string& owner);
  std::optional<std::uint32_t> lease_of(const std::string& owner) const;
  const std::map<std::uint32_t, std::string>& leases() const { return leases_; }

  const Ipv4Net& subnet() const { return subnet_; }
  std::uint32_t gateway() const { return gateway_; }

  nlohmann::json to_json() const;  // {"Subnet","Gateway","Leases":{ip: owner}}
  static Ipam from_json(const nlohmann::json& j);

 private:
  Ipv4Net subnet_;
  std::uint32_t gateway_ = 0;
  std::map<std::uint32_t, std::string> leases_;  // ip -> owner
};

}  // namespace berth::agent::network
