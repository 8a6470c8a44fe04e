#pragma once
// What a berth cluster keeps in etcd for overlay networks, and the
// compare-and-swap operations on it. Every member reads and writes the same
// keys (under a prefix, "/berth/" in the agent):
//
//   networks/<id>             the network (OverlayNetworkRecord as JSON)
//   names/<name>              its id: names are unique in the cluster
//   vni/<vni>                 the id of the network that holds the VXLAN id
//   ipam/<id>/<a.b.c.d>       {"Container": id, "Machine": name}: one lease
//   endpoints/<id>/<container id>   ClusterEndpoint as JSON
//   machines/<name>           {"Advertise": ip, "Updated": time}
//
// Allocation never trusts a read: a VNI, an address or a name is taken by a
// transaction that requires its key to be absent, so two machines can never
// take the same one; the loser reads again and picks another.
//
// Errors: api::HttpError with dockerd's words for the user's mistakes (409
// name taken, 403 in use, 404 gone); StoreUnavailable when etcd cannot answer.
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "agent/network/etcd_client.h"
#include "agent/network/ipam.h"

namespace berth::agent::network {

inline constexpr std::uint32_t kFirstVni = 4096;
inline constexpr std::uint32_t kMaxVni = (1u << 24) - 1;

struct ClusterKeys {
  std::string prefix = "/berth/";
  std::string networks() const { return prefix + "networks/"; }
  std::string network(const std::string& id) const { return networks() + id; }
  std::string name(const std::string& n) const { return prefix + "names/" + n; }
  std::string vnis() const { return prefix + "vni/"; }
  std::string vni(std::uint32_t v) const { return vnis() + std::to_string(v); }
  std::string leases(const std::string& id) const { return prefix + "ipam/" + id + "/"; }
  std::string lease(const std::string& id, std::uint32_t ip) const;
  std::string endpoints() const { return prefix + "endpoints/"; }
  std::string endpoints(const std::string& id) const { return endpoints() + id + "/"; }
  std::string endpoint(const std::string& id, const std::string& container) const {
    return endpoints(id) + container;
  }
  std::string machines() const { return prefix + "machines/"; }
  std::string machine(const std::string& m) const { return machines() + m; }
};

struct OverlayNetworkRecord {
  std::string id, name, created, created_by;  // created_by: the machine
  std::uint32_t vni = 0;
  Ipv4Net subnet;
  std::uint32_t gateway = 0;
  std::optional<Ipv4Net> ip_range;  // where addresses come from; the subnet when unset
  bool internal = false, attachable = false;
  std::map<std::string, std::string> labels, options;
  int mtu = 1450;

  nlohmann::json to_json() const;
  static OverlayNetworkRecord from_json(const nlohmann::json& j);  // throws on a damaged record
};

// A container's endpoint on an overlay network, wherever it runs.
struct ClusterEndpoint {
  std::string network_id, container_id, container_name, endpoint_id;
  std::uint32_t ip = 0;
  std::string mac;
  std::vector<std::string> aliases;
  std::string machine, advertise;  // the member it runs on, and its VXLAN underlay address

  nlohmann::json to_json() const;
  static ClusterEndpoint from_json(const nlohmann::json& j);
  bool operator==(const ClusterEndpoint&) const = default;
};

// Takes the lowest free VXLAN id from kFirstVni upwards.
class VniAllocator {
 public:
  VniAllocator(EtcdClient& etcd, ClusterKeys keys) : etcd_(etcd), keys_(std::move(keys)) {}
  std::uint32_t allocate(const std::string& owner);
  // Only when `owner` still holds it.
  void release(std::uint32_t vni, const std::string& owner);

 private:
  EtcdClient& etcd_;
  ClusterKeys keys_;
};

// Addresses of overlay networks, leased in etcd.
class ClusterIpam {
 public:
  ClusterIpam(EtcdClient& etcd, ClusterKeys keys) : etcd_(etcd), keys_(std::move(keys)) {}
  // The lowest free address in the network's range (or `requested`), for
  // `container` on `machine`. The same container gets its lease back. 404
  // when the network is gone, 400/403/503 like the local IPAM.
  std::uint32_t allocate(const OverlayNetworkRecord& net, const std::string& container,
                         const std::string& machine, const std::string& requested = "");
  // Only the lease `container` holds.
  void release(const std::string& network_id, std::uint32_t ip, const std::string& container);
  struct Lease {
    std::string container, machine;
  };
  std::map<std::uint32_t, Lease> leases(const std::string& network_id);
  static std::string lease_value(const std::string& container, const std::string& machine);

 private:
  EtcdClient& etcd_;
  ClusterKeys keys_;
};

// Everything the overlay driver reads at once (one revision).
struct ClusterSnapshot {
  std::int64_t revision = 0;
  std::map<std::string, OverlayNetworkRecord> networks;  // by id
  std::map<std::string, std::map<std::string, ClusterEndpoint>> endpoints;  // network -> container -> ep
  std::map<std::string, ClusterIpam::Lease> leases_by_key;  // the whole ipam/ range, by key
};

class ClusterStore {
 public:
  ClusterStore(EtcdClient& etcd, ClusterKeys keys);

  EtcdClient& etcd() { return etcd_; }
  const ClusterKeys& keys() const { return keys_; }
  VniAllocator& vnis() { return vnis_; }
  ClusterIpam& ipam() { return ipam_; }

  // Fills in the VNI, the subnet (when unset: the first free 10.0.N.0/24 that
  // overlaps neither another overlay network nor `local_subnets`) and the
  // gateway, and stores the record. 409 when the name is taken, 403 when the
  // subnet overlaps another overlay network.
  void create_network(OverlayNetworkRecord& rec, const std::vector<Ipv4Net>& local_subnets);
  // Removes the network and its leases unless an endpoint (on any machine)
  // uses it: 403 "error while removing network: ... has active endpoints".
  // A network already gone is fine.
  void remove_network(const OverlayNetworkRecord& rec);

  // The endpoint, only while its network exists (404 otherwise).
  void put_endpoint(const ClusterEndpoint& ep);
  // The endpoint and the lease of its address.
  void remove_endpoint(const std::string& network_id, const std::string& container_id,
                       std::uint32_t ip);

  void put_machine(const std::string& machine, const std::string& advertise);

  ClusterSnapshot snapshot();
  // Applies one watch event to a snapshot; false when the key is not one
  // the snapshot holds (vni/, names/, machines/).
  bool apply(ClusterSnapshot& snap, const WatchEvent& event) const;

 private:
  EtcdClient& etcd_;
  ClusterKeys keys_;
  VniAllocator vnis_;
  ClusterIpam ipam_;
};

}  // namespace berth::agent::network
