#include "agent/network/cluster_store.h"

#include <set>

#include "agent/api/http.h"
#include "agent/network/util.h"

namespace berth::agent::network {

using nlohmann::json;

namespace {
constexpr int kMaxAttempts = 64;

std::optional<std::uint32_t> vni_of_key(const std::string& key, const std::string& prefix) {
  if (!key.starts_with(prefix)) return std::nullopt;
  try {
    std::size_t used = 0;
    unsigned long v = std::stoul(key.substr(prefix.size()), &used);
    if (used != key.size() - prefix.size() || v > kMaxVni) return std::nullopt;
    return static_cast<std::uint32_t>(v);
  } catch (const std::exception&) {
    return std::nullopt;
  }
}
}  // namespace

std::string ClusterKeys::lease(const std::string& id, std::uint32_t ip) const {
  return leases(id) + format_ipv4(ip);
}

// --- records ---

json OverlayNetworkRecord::to_json() const {
  json j = {{"Id", id},
            {"Name", name},
            {"Created", created},
            {"CreatedBy", created_by},
            {"VNI", vni},
            {"Subnet", subnet.str()},
            {"Gateway", format_ipv4(gateway)},
            {"Internal", internal},
            {"Attachable", attachable},
            {"Labels", labels},
            {"Options", options},
            {"MTU", mtu}};
  if (ip_range) j["IPRange"] = ip_range->str();
  return j;
}

OverlayNetworkRecord OverlayNetworkRecord::from_json(const json& j) {
  OverlayNetworkRecord r;
  r.id = j.at("Id").get<std::string>();
  r.name = j.at("Name").get<std::string>();
  r.created = j.value("Created", "");
  r.created_by = j.value("CreatedBy", "");
  r.vni = j.at("VNI").get<std::uint32_t>();
  auto subnet = Ipv4Net::parse(j.at("Subnet").get<std::string>());
  auto gateway = parse_ipv4(j.at("Gateway").get<std::string>());
  if (!subnet || !gateway) throw std::runtime_error("network record " + r.id + " has a bad subnet");
  r.subnet = *subnet;
  r.gateway = *gateway;
  if (j.contains("IPRange") && j["IPRange"].is_string()) r.ip_range = Ipv4Net::parse(j["IPRange"]);
  r.internal = j.value("Internal", false);
  r.attachable = j.value("Attachable", false);
  r.labels = j.value("Labels", std::map<std::string, std::string>{});
  r.options = j.value("Options", std::map<std::string, std::string>{});
  r.mtu = j.value("MTU", 1450);
  return r;
}

json ClusterEndpoint::to_json() const {
  return {{"NetworkID", network_id}, {"ContainerID", container_id}, {"Name", container_name},
          {"EndpointID", endpoint_id}, {"IP", format_ipv4(ip)},     {"Mac", mac},
          {"Aliases", aliases},        {"Machine", machine},        {"Advertise", advertise}};
}

ClusterEndpoint ClusterEndpoint::from_json(const json& j) {
  ClusterEndpoint e;
  e.network_id = j.value("NetworkID", "");
  e.container_id = j.value("ContainerID", "");
  e.container_name = j.value("Name", "");
  e.endpoint_id = j.value("EndpointID", "");
  e.ip = parse_ipv4(j.value("IP", "")).value_or(0);
  e.mac = j.value("Mac", "");
  e.aliases = j.value("Aliases", std::vector<std::string>{});
  e.machine = j.value("Machine", "");
  e.advertise = j.value("Advertise", "");
  return e;
}

// --- VNIs ---

std::uint32_t VniAllocator::allocate(const std::string& owner) {
  const std::string prefix = keys_.vnis();
  for (int attempt = 0; attempt < kMaxAttempts; ++attempt) {
    RangeResult r = etcd_.get_prefix(prefix);
    std::set<std::uint32_t> used;
    for (const KeyValue& kv : r.kvs) {
      auto v = vni_of_key(kv.key, prefix);
      if (!v) continue;
      if (kv.value == owner) return *v;
      used.insert(*v);
    }
    std::uint32_t vni = kFirstVni;
    while (used.count(vni)) ++vni;
    if (vni > kMaxVni) throw api::HttpError(503, "no free VXLAN id left in the cluster");
    TxnResult t = etcd_.txn({Compare::absent(keys_.vni(vni))}, {TxnOp::put(keys_.vni(vni), owner)});
    if (t.succeeded) return vni;
  }
  throw api::HttpError(503, "could not allocate a VXLAN id: too much contention in the cluster store");
}

void VniAllocator::release(std::uint32_t vni, const std::string& owner) {
  etcd_.txn({Compare::value_is(keys_.vni(vni), owner)}, {TxnOp::del(keys_.vni(vni))});
}

// --- IPAM ---

std::string ClusterIpam::lease_value(const std::string& container, const std::string& machine) {
  return json{{"Container", container}, {"Machine", machine}}.dump();
}

std::map<std::uint32_t, ClusterIpam::Lease> ClusterIpam::leases(const std::string& network_id) {
  const std::string prefix = keys_.leases(network_id);
  std::map<std::uint32_t, Lease> out;
  for (const KeyValue& kv : etcd_.get_prefix(prefix).kvs) {
    auto ip = parse_ipv4(kv.key.substr(prefix.size()));
    if (!ip) continue;
    json v = json::parse(kv.value, nullptr, false);
    if (!v.is_object()) continue;
    out[*ip] = {v.value("Container", ""), v.value("Machine", "")};
  }
  return out;
}

std::uint32_t ClusterIpam::allocate(const OverlayNetworkRecord& net, const std::string& container,
                                    const std::string& machine, const std::string& requested) {
  const Ipv4Net& subnet = net.subnet;
  const Ipv4Net range = net.ip_range.value_or(subnet);
  std::optional<std::uint32_t> wanted;
  if (!requested.empty()) {
    wanted = parse_ipv4(requested);
    if (!wanted) throw api::HttpError(400, "invalid IPv4 address: " + requested);
    if (!subnet.contains(*wanted) || *wanted == subnet.addr || *wanted == subnet.broadcast())
      throw api::HttpError(400, "Invalid address " + requested +
                                    ": It does not belong to any of this network's subnets");
    if (*wanted == net.gateway) throw api::HttpError(403, "Address already in use");
  }
  const std::string value = lease_value(container, machine);
  for (int attempt = 0; attempt < kMaxAttempts; ++attempt) {
    auto held = leases(net.id);
    std::optional<std::uint32_t> mine;
    for (const auto& [ip, lease] : held)
      if (lease.container == container) mine = ip;
    if (mine && (!wanted || *mine == *wanted)) return *mine;
    std::uint32_t ip = 0;
    if (wanted) {
      if (held.count(*wanted)) throw api::HttpError(403, "Address already in use");
      ip = *wanted;
    } else {
      for (std::uint64_t c = range.addr; c <= range.broadcast(); ++c) {
        const auto candidate = static_cast<std::uint32_t>(c);
        if (!subnet.contains(candidate) || candidate == net.gateway || candidate == subnet.addr ||
            candidate == subnet.broadcast() || held.count(candidate))
          continue;
        ip = candidate;
        break;
      }
      if (!ip) throw api::HttpError(503, "no available IPv4 addresses on this network's address pools");
    }
    std::vector<TxnOp> success = {TxnOp::put(keys_.lease(net.id, ip), value)};
    if (mine) success.push_back(TxnOp::del(keys_.lease(net.id, *mine)));  // a new address asked for
    TxnResult t = etcd_.txn({Compare::absent(keys_.lease(net.id, ip)), Compare::exists(keys_.network(net.id))},
                            success, {TxnOp::get(keys_.network(net.id))});
    if (t.succeeded) return ip;
    if (!t.ranges.empty() && t.ranges.front().kvs.empty())
      throw api::HttpError(404, "network " + net.name + " not found");
    // Taken meanwhile by another machine: read again.
  }
  throw api::HttpError(503, "could not allocate an address: too much contention in the cluster store");
}

void ClusterIpam::release(const std::string& network_id, std::uint32_t ip, const std::string& container) {
  // Only our own lease: the value names the container (any machine).
  const std::string key = keys_.lease(network_id, ip);
  auto kv = etcd_.get(key);
  if (!kv) return;
  json v = json::parse(kv->value, nullptr, false);
  if (!v.is_object() || v.value("Container", "") != container) return;
  etcd_.txn({Compare::mod_revision_is(key, kv->mod_revision)}, {TxnOp::del(key)});
}

// --- networks and endpoints ---

ClusterStore::ClusterStore(EtcdClient& etcd, ClusterKeys keys)
    : etcd_(etcd), keys_(std::move(keys)), vnis_(etcd, keys_), ipam_(etcd, keys_) {}

void ClusterStore::create_network(OverlayNetworkRecord& rec, const std::vector<Ipv4Net>& local_subnets) {
  const bool pick = rec.subnet.prefix == 0 && rec.subnet.addr == 0;
  std::uint32_t vni = vnis_.allocate(rec.id);
  try {
    for (int attempt = 0; attempt < kMaxAttempts; ++attempt) {
      RangeResult existing = etcd_.get_prefix(keys_.networks());
      std::vector<Ipv4Net> overlay;
      for (const KeyValue& kv : existing.kvs) {
        OverlayNetworkRecord other;
        try {
          other = OverlayNetworkRecord::from_json(json::parse(kv.value));
        } catch (const std::exception&) {
          continue;
        }
        if (other.name == rec.name)
          throw api::HttpError(409, "network with name " + rec.name + " already exists");
        overlay.push_back(other.subnet);
      }
      if (pick) {
        std::optional<Ipv4Net> chosen;
        for (std::uint32_t n = 0; n < 65536 && !chosen; ++n) {
          Ipv4Net candidate{(10u << 24) | (n << 8), 24};
          bool free = true;
          for (const Ipv4Net& u : overlay) free = free && !u.overlaps(candidate);
          for (const Ipv4Net& u : local_subnets) free = free && !u.overlaps(candidate);
          if (free) chosen = candidate;
        }
        if (!chosen) throw api::HttpError(400, "all predefined address pools have been fully subnetted");
        rec.subnet = *chosen;
        rec.gateway = chosen->addr + 1;
      } else {
        for (const Ipv4Net& u : overlay)
          if (u.overlaps(rec.subnet))
            throw api::HttpError(403, "invalid pool request: Pool overlaps with other one on this address space");
      }
      rec.vni = vni;
      TxnResult t = etcd_.txn(
          {Compare::prefix_unchanged_since(keys_.networks(), existing.revision), Compare::absent(keys_.name(rec.name)),
           Compare::value_is(keys_.vni(vni), rec.id)},
          {TxnOp::put(keys_.network(rec.id), rec.to_json().dump()), TxnOp::put(keys_.name(rec.name), rec.id)},
          {TxnOp::get(keys_.name(rec.name)), TxnOp::get(keys_.vni(vni))});
      if (t.succeeded) return;
      if (t.ranges.size() == 2 && !t.ranges[0].kvs.empty())
        throw api::HttpError(409, "network with name " + rec.name + " already exists");
      if (t.ranges.size() == 2 && t.ranges[1].kvs.empty()) vni = vnis_.allocate(rec.id);  // lost it
    }
    throw api::HttpError(503, "could not create the network: too much contention in the cluster store");
  } catch (...) {
    try {
      vnis_.release(vni, rec.id);
    } catch (const std::exception&) {
      // Left for whoever looks at vni/: it names a network that does not exist.
    }
    throw;
  }
}

void ClusterStore::remove_network(const OverlayNetworkRecord& rec) {
  TxnResult t = etcd_.txn(
      {Compare::prefix_empty(keys_.endpoints(rec.id)), Compare::exists(keys_.network(rec.id))},
      {TxnOp::del(keys_.network(rec.id)), TxnOp::del(keys_.name(rec.name)), TxnOp::del(keys_.vni(rec.vni)),
       TxnOp::del_prefix(keys_.leases(rec.id))},
      {TxnOp::get(keys_.network(rec.id))});
  if (t.succeeded) return;
  if (!t.ranges.empty() && t.ranges.front().kvs.empty()) return;  // gone already
  throw api::HttpError(403, "error while removing network: network " + rec.name + " id " + rec.id +
                                " has active endpoints");
}

void ClusterStore::put_endpoint(const ClusterEndpoint& ep) {
  TxnResult t = etcd_.txn({Compare::exists(keys_.network(ep.network_id))},
                          {TxnOp::put(keys_.endpoint(ep.network_id, ep.container_id), ep.to_json().dump())});
  if (!t.succeeded) throw api::HttpError(404, "network " + ep.network_id + " not found");
}

void ClusterStore::remove_endpoint(const std::string& network_id, const std::string& container_id,
                                   std::uint32_t ip) {
  etcd_.del(keys_.endpoint(network_id, container_id));
  if (ip) ipam_.release(network_id, ip, container_id);
}

void ClusterStore::put_machine(const std::string& machine, const std::string& advertise) {
  etcd_.put(keys_.machine(machine), json{{"Advertise", advertise}, {"Updated", rfc3339_seconds_now()}}.dump());
}

ClusterSnapshot ClusterStore::snapshot() {
  // One transaction: the three ranges at one revision.
  TxnResult t = etcd_.txn({}, {TxnOp::get_prefix(keys_.networks()), TxnOp::get_prefix(keys_.endpoints()),
                               TxnOp::get_prefix(keys_.prefix + "ipam/")});
  ClusterSnapshot snap;
  snap.revision = t.revision;
  if (t.ranges.size() != 3) throw EtcdError("etcd answered a snapshot with " + std::to_string(t.ranges.size()) + " ranges");
  for (const RangeResult& r : t.ranges)
    for (const KeyValue& kv : r.kvs) apply(snap, WatchEvent{EventType::Put, kv});
  return snap;
}

bool ClusterStore::apply(ClusterSnapshot& snap, const WatchEvent& ev) const {
  const std::string& key = ev.kv.key;
  const bool put = ev.type == EventType::Put;
  if (key.starts_with(keys_.networks())) {
    std::string id = key.substr(keys_.networks().size());
    if (!put) {
      snap.networks.erase(id);
      return true;
    }
    try {
      snap.networks[id] = OverlayNetworkRecord::from_json(json::parse(ev.kv.value));
    } catch (const std::exception&) {
      snap.networks.erase(id);  // a damaged record is no network
    }
    return true;
  }
  if (key.starts_with(keys_.endpoints())) {
    std::string rest = key.substr(keys_.endpoints().size());
    auto slash = rest.find('/');
    if (slash == std::string::npos) return false;
    std::string net = rest.substr(0, slash), container = rest.substr(slash + 1);
    if (!put) {
      auto it = snap.endpoints.find(net);
      if (it != snap.endpoints.end()) {
        it->second.erase(container);
        if (it->second.empty()) snap.endpoints.erase(it);
      }
      return true;
    }
    json j = json::parse(ev.kv.value, nullptr, false);
    if (!j.is_object()) return true;
    ClusterEndpoint ep = ClusterEndpoint::from_json(j);
    ep.network_id = net;
    ep.container_id = container;
    snap.endpoints[net][container] = std::move(ep);
    return true;
  }
  if (key.starts_with(keys_.prefix + "ipam/")) {
    if (!put) {
      snap.leases_by_key.erase(key);
      return true;
    }
    json v = json::parse(ev.kv.value, nullptr, false);
    if (v.is_object()) snap.leases_by_key[key] = {v.value("Container", ""), v.value("Machine", "")};
    return true;
  }
  return false;
}

}  // namespace berth::agent::network
