#include "agent/network/cluster_admin.h"

#include <map>

#include "agent/api/http.h"
#include "agent/network/overlay_driver.h"

namespace berth::agent::network {

using nlohmann::json;

namespace {

template <class Fn>
auto store_call(Fn&& fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const StoreUnavailable& e) {
    throw api::HttpError(503, e.what());
  } catch (const EtcdError& e) {
    throw api::HttpError(500, std::string("cluster store: ") + e.what());
  }
}

// A member answers for itself: reachable, with a leader (a linearizable read).
bool member_healthy(const EtcdOptions& base, const std::string& client_url) {
  EtcdOptions one = base;
  one.endpoints = {client_url};
  one.request_timeout = std::chrono::milliseconds(2000);
  try {
    EtcdClient client(one);
    RangeOptions count;
    count.count_only = true;
    client.range("/berth/health", count);
    return true;
  } catch (const std::exception&) {
    return false;
  }
}

std::string initial_cluster(const std::vector<EtcdMember>& members, const std::string& name,
                            const std::string& peer_url) {
  std::string out;
  for (const EtcdMember& m : members) {
    if (m.peer_urls.empty()) continue;
    const bool is_new = m.peer_urls.front() == peer_url;
    const std::string member_name = is_new ? name : m.name;
    if (member_name.empty()) continue;  // another member added but never started
    if (!out.empty()) out += ",";
    out += member_name + "=" + m.peer_urls.front();
  }
  return out;
}

}  // namespace

OverlayDriver& ClusterAdmin::driver() {
  if (!overlay_) throw api::HttpError(400, "this machine is not a member of a berth cluster");
  return *overlay_;
}

json ClusterAdmin::status() {
  OverlayDriver& d = driver();
  json out = {{"Cluster", d.cluster().name},    {"Machine", d.cluster().machine},
              {"StoreHealthy", false},          {"StoreError", ""},
              {"Members", json::array()},       {"Networks", json::array()},
              {"Endpoints", json::array()}};
  try {
    ClusterSnapshot snap = d.store().snapshot();
    out["StoreHealthy"] = true;
    for (const auto& [id, rec] : snap.networks)
      out["Networks"].push_back({{"Name", rec.name}, {"Id", id}, {"VNI", rec.vni}, {"Subnet", rec.subnet.str()}});
    std::map<std::string, int> per_machine;
    for (const auto& [network, eps] : snap.endpoints)
      for (const auto& [container, ep] : eps) ++per_machine[ep.machine];
    for (const auto& [machine, count] : per_machine)
      out["Endpoints"].push_back({{"Machine", machine}, {"Containers", count}});
    for (const EtcdMember& m : d.store().etcd().member_list()) {
      const std::string client = m.client_urls.empty() ? "" : m.client_urls.front();
      out["Members"].push_back({{"Name", m.name},
                                {"PeerURL", m.peer_urls.empty() ? "" : m.peer_urls.front()},
                                {"Healthy", !client.empty() && member_healthy(d.cluster().etcd, client)}});
    }
  } catch (const std::exception& e) {
    out["StoreError"] = e.what();
  }
  return out;
}

std::string ClusterAdmin::add_member(const std::string& name, const std::string& peer_url) {
  if (name.empty() || peer_url.rfind("https://", 0) != 0)
    throw api::HttpError(400, "a new member needs a Name and an https:// PeerURL");
  EtcdClient& etcd = driver().store().etcd();
  return store_call([&] {
    std::vector<EtcdMember> members = etcd.member_list();
    bool known = false;
    for (const EtcdMember& m : members) {
      for (const std::string& url : m.peer_urls) known = known || url == peer_url;
      if (m.name == name && !known)
        throw api::HttpError(409, "the cluster store already has a member named " + name +
                                      " at another address: remove it first (berth cluster leave)");
    }
    if (!known) {
      etcd.member_add({peer_url});
      members = etcd.member_list();
    }
    return initial_cluster(members, name, peer_url);
  });
}

bool ClusterAdmin::remove_member(const std::string& name) {
  EtcdClient& etcd = driver().store().etcd();
  return store_call([&] {
    for (const EtcdMember& m : etcd.member_list()) {
      bool match = m.name == name;
      for (const std::string& url : m.peer_urls) match = match || url == name;
      if (match) {
        etcd.member_remove(m.id);
        return true;
      }
    }
    return false;
  });
}

int ClusterAdmin::leave() {
  OverlayDriver& d = driver();
  const std::string me = d.cluster().machine;
  return store_call([&] {
    int removed = 0;
    ClusterSnapshot snap = d.store().snapshot();
    for (const auto& [network, eps] : snap.endpoints)
      for (const auto& [container, ep] : eps)
        if (ep.machine == me) {
          d.store().remove_endpoint(network, container, ep.ip);
          ++removed;
        }
    const std::string leases = d.store().keys().prefix + "ipam/";
    for (const auto& [key, lease] : snap.leases_by_key)
      if (lease.machine == me && key.rfind(leases, 0) == 0) d.store().etcd().del(key);
    d.store().etcd().del(d.store().keys().machine(me));
    return removed;
  });
}

}  // namespace berth::agent::network
