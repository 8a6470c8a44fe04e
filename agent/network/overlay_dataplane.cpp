#include "agent/network/overlay_dataplane.h"

#include <algorithm>

namespace berth::agent::network {

std::string overlay_bridge_name(const std::string& network_id) { return "ov-" + network_id.substr(0, 12); }
std::string overlay_vxlan_name(const std::string& network_id) { return "vx-" + network_id.substr(0, 12); }

Forwarding desired_forwarding(const std::map<std::string, ClusterEndpoint>& peers,
                              const std::string& self_machine) {
  // One remote per MAC and one MAC per IP, whatever the records say.
  std::map<std::string, std::uint32_t> by_mac;
  std::map<std::uint32_t, std::string> by_ip;
  for (const auto& [cid, p] : peers) {
    if (p.machine == self_machine || !p.ip || p.mac.empty()) continue;
    auto remote = parse_ipv4(p.advertise);
    if (!remote) continue;
    std::string mac = p.mac;
    std::transform(mac.begin(), mac.end(), mac.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    by_mac[mac] = *remote;
    by_ip[p.ip] = mac;
  }
  Forwarding f;
  for (const auto& [mac, remote] : by_mac) f.fdb.insert({mac, remote});
  for (const auto& [ip, mac] : by_ip) f.neigh.insert({ip, mac});
  return f;
}

ForwardingChanges diff_forwarding(const Forwarding& current, const Forwarding& desired) {
  ForwardingChanges c;
  std::set_difference(desired.fdb.begin(), desired.fdb.end(), current.fdb.begin(), current.fdb.end(),
                      std::back_inserter(c.fdb_add));
  std::set_difference(current.fdb.begin(), current.fdb.end(), desired.fdb.begin(), desired.fdb.end(),
                      std::back_inserter(c.fdb_remove));
  std::set_difference(desired.neigh.begin(), desired.neigh.end(), current.neigh.begin(),
                      current.neigh.end(), std::back_inserter(c.neigh_add));
  std::set_difference(current.neigh.begin(), current.neigh.end(), desired.neigh.begin(),
                      desired.neigh.end(), std::back_inserter(c.neigh_remove));
  // A changed entry is replaced in place: do not remove what is re-added.
  std::erase_if(c.fdb_remove, [&](const netlink::FdbEntry& e) {
    return std::any_of(c.fdb_add.begin(), c.fdb_add.end(),
                       [&](const netlink::FdbEntry& a) { return a.mac == e.mac; });
  });
  std::erase_if(c.neigh_remove, [&](const netlink::NeighEntry& e) {
    return std::any_of(c.neigh_add.begin(), c.neigh_add.end(),
                       [&](const netlink::NeighEntry& a) { return a.ip == e.ip; });
  });
  return c;
}

Forwarding read_forwarding(const std::string& vxlan) {
  netlink::Socket s;
  Forwarding f;
  for (const auto& e : netlink::fdb_entries(s, vxlan)) f.fdb.insert(e);
  for (const auto& e : netlink::neigh_entries(s, vxlan)) f.neigh.insert(e);
  return f;
}

ForwardingChanges reconcile_forwarding(const std::string& vxlan, const Forwarding& desired) {
  ForwardingChanges c = diff_forwarding(read_forwarding(vxlan), desired);
  if (c.empty()) return c;
  netlink::Socket s;
  for (const auto& e : c.neigh_remove) netlink::delete_neigh(s, vxlan, e);
  for (const auto& e : c.fdb_remove) netlink::delete_fdb(s, vxlan, e);
  for (const auto& e : c.fdb_add) netlink::replace_fdb(s, vxlan, e);
  for (const auto& e : c.neigh_add) netlink::replace_neigh(s, vxlan, e);
  return c;
}

}  // namespace berth::agent::network
