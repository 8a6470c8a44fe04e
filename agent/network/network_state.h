#pragma once
// The network manager's records of networks and of the endpoints of this
// machine's containers, shared by the drivers (bridge_driver, overlay_driver).
// Internal to agent/network. Not thread-safe: NetworkManager locks.
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "agent/network/cluster_store.h"
#include "agent/network/dns.h"
#include "agent/network/ipam.h"
#include "agent/network/ipam6.h"

namespace berth::agent::network {

std::string lower(std::string s);

// What the DNS thread of a network reads; updated on connect/disconnect (and,
// on overlay networks, whenever an endpoint anywhere in the cluster changes).
struct NameTable {
  std::mutex mutex;
  std::string network_name;
  std::map<std::string, dns::Addresses> names;  // lowercase
  // Each container's links (--link TARGET:ALIAS), by its IPv4 address:
  // alias -> target, both lowercase. Only that container resolves them.
  std::map<std::uint32_t, std::map<std::string, std::string>> links;

  std::optional<dns::Addresses> lookup(std::string name, std::uint32_t client = 0);
};

// A container's endpoint on a network of this machine.
struct EndpointRec {
  std::string container_id, container_name, endpoint_id, mac, host_veth, ifname, sandbox;
  std::uint32_t ip = 0;
  Ipv6Addr ip6 = 0;  // on a network with IPv6
  std::vector<std::string> aliases;
  std::vector<std::string> links;  // "target:alias", as EndpointSettings.Links

  nlohmann::json to_json() const;
  static EndpointRec from_json(const nlohmann::json& j);
  std::vector<std::string> dns_names() const;  // name, aliases, short id
};

struct Net {
  std::string id, name, driver, created, bridge;
  bool internal = false, attachable = false, predefined = false;
  std::map<std::string, std::string> labels, options;
  Ipam ipam;  // bridge: subnet, gateway and leases; overlay: subnet and gateway (leases are in etcd)
  bool ipv6 = false;  // bridge networks made with --ipv6
  Ipam6 ipam6;
  std::map<std::string, EndpointRec> endpoints;  // this machine's, by container id
  std::shared_ptr<NameTable> names = std::make_shared<NameTable>();
  std::unique_ptr<DnsServer> dns;

  // Overlay networks only.
  std::uint32_t vni = 0;
  std::optional<Ipv4Net> ip_range;
  std::string created_by;
  int mtu = 0;  // 0: the kernel's default
  std::map<std::string, ClusterEndpoint> peers;  // every endpoint in the cluster, by container id
  bool dataplane = false;  // its bridge and vxlan device are up here (not saved)

  bool is_bridge() const { return driver == "bridge"; }
  bool is_overlay() const { return driver == "overlay"; }
  bool has_links() const { return is_bridge() || is_overlay(); }  // veths, addresses
  bool user_defined() const { return has_links() && !predefined; }
  const char* scope() const { return is_overlay() ? "global" : "local"; }

  nlohmann::json to_state() const;
  static std::unique_ptr<Net> from_state(const nlohmann::json& j);
  // Name resolution from the endpoints: this machine's, and the cluster's on overlay networks.
  void refresh_names();
};

using NetMap = std::map<std::string, std::unique_ptr<Net>>;

}  // namespace berth::agent::network
