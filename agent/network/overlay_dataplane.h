#pragma once
// The forwarding state of one overlay network on this machine, as flannel's
// VXLAN backend keeps it: for every endpoint on ANOTHER machine, a static
// FDB entry on the network's vxlan device (container MAC -> that machine's
// underlay address) and a permanent neighbour entry (container IP -> MAC),
// so ARP is answered here (the device's proxy) and nothing is flooded.
// The kernel keeps forwarding with these when etcd or the agent is down.
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "agent/network/cluster_store.h"
#include "agent/network/netlink.h"

namespace berth::agent::network {

std::string overlay_bridge_name(const std::string& network_id);  // "ov-" + 12 hex
std::string overlay_vxlan_name(const std::string& network_id);   // "vx-" + 12 hex

struct Forwarding {
  std::set<netlink::FdbEntry> fdb;
  std::set<netlink::NeighEntry> neigh;
  bool operator==(const Forwarding&) const = default;
};

// What the device should hold: the endpoints of other machines only.
Forwarding desired_forwarding(const std::map<std::string, ClusterEndpoint>& peers,
                              const std::string& self_machine);

struct ForwardingChanges {
  std::vector<netlink::FdbEntry> fdb_add, fdb_remove;
  std::vector<netlink::NeighEntry> neigh_add, neigh_remove;
  bool empty() const {
    return fdb_add.empty() && fdb_remove.empty() && neigh_add.empty() && neigh_remove.empty();
  }
};

ForwardingChanges diff_forwarding(const Forwarding& current, const Forwarding& desired);

// The device's entries now (permanent ones only).
Forwarding read_forwarding(const std::string& vxlan);
// Reads the device's entries and applies the difference (removals first).
// Returns what it changed. Throws std::runtime_error from netlink.
ForwardingChanges reconcile_forwarding(const std::string& vxlan, const Forwarding& desired);

}  // namespace berth::agent::network
