#include "agent/network/overlay_driver.h"

#include "agent/api/http.h"
#include "agent/network/local_bridge.h"
#include "agent/network/netlink.h"
#include "agent/network/overlay_dataplane.h"
#include "agent/network/util.h"

namespace berth::agent::network {

using nlohmann::json;

namespace {

constexpr const char* kMtuOption = "com.docker.network.driver.mtu";
constexpr const char* kVniOption = "com.docker.network.driver.overlay.vxlanid_list";

// The store's failures as the API words them: one line, 503 when etcd cannot answer.
template <class Fn>
auto translated(Fn&& fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const StoreUnavailable& e) {
    throw api::HttpError(503, e.what());
  } catch (const EtcdError& e) {
    throw api::HttpError(500, std::string("cluster store: ") + e.what());
  }
}

}  // namespace

std::unique_ptr<Net> overlay_net_from_record(const OverlayNetworkRecord& rec) {
  auto n = std::make_unique<Net>();
  n->id = rec.id;
  n->name = rec.name;
  n->driver = "overlay";
  n->created = rec.created;
  n->created_by = rec.created_by;
  n->internal = rec.internal;
  n->attachable = rec.attachable;
  n->labels = rec.labels;
  n->options = rec.options;
  n->ipam = Ipam(rec.subnet, rec.gateway);
  n->ip_range = rec.ip_range;
  n->vni = rec.vni;
  n->mtu = rec.mtu;
  n->bridge = overlay_bridge_name(rec.id);
  n->names->network_name = lower(rec.name);
  return n;
}

OverlayDriver::OverlayDriver(DriverContext ctx, ClusterSettings cluster, OverlayHost& host)
    : ctx_(std::move(ctx)),
      cluster_(std::move(cluster)),
      host_(host),
      etcd_(cluster_.etcd),
      store_(etcd_, ClusterKeys{cluster_.key_prefix}) {
  if (!parse_ipv4(cluster_.advertise))
    throw std::runtime_error("cluster advertise address " + cluster_.advertise + " is not an IPv4 address");
}

OverlayDriver::~OverlayDriver() { stop(); }

void OverlayDriver::warn(const std::string& message) const {
  if (cluster_.log) cluster_.log(message);
}

OverlayNetworkRecord OverlayDriver::record_of(const Net& n) const {
  OverlayNetworkRecord r;
  r.id = n.id;
  r.name = n.name;
  r.created = n.created;
  r.created_by = n.created_by;
  r.vni = n.vni;
  r.subnet = n.ipam.subnet();
  r.gateway = n.ipam.gateway();
  r.ip_range = n.ip_range;
  r.internal = n.internal;
  r.attachable = n.attachable;
  r.labels = n.labels;
  r.options = n.options;
  r.mtu = n.mtu;
  return r;
}

ClusterEndpoint OverlayDriver::cluster_endpoint(const Net& n, const EndpointRec& e) const {
  ClusterEndpoint ep;
  ep.network_id = n.id;
  ep.container_id = e.container_id;
  ep.container_name = e.container_name;
  ep.endpoint_id = e.endpoint_id;
  ep.ip = e.ip;
  ep.mac = e.mac;
  ep.aliases = e.aliases;
  ep.machine = cluster_.machine;
  ep.advertise = cluster_.advertise;
  return ep;
}

// --- the driver API ---

void OverlayDriver::create_network(Net& n, const NetworkCreate& req, const TakenResources& taken) {
  if (req.options.count("encrypted"))
    throw api::HttpError(400, "encrypted overlay networks are not supported by berth yet: create the "
                              "network without --opt encrypted (its traffic crosses the cluster "
                              "segment as plain VXLAN)");
  OverlayNetworkRecord rec;
  rec.id = n.id;
  rec.name = n.name;
  rec.created = n.created;
  rec.created_by = cluster_.machine;
  rec.internal = req.internal;
  rec.attachable = req.attachable;
  rec.labels = req.labels;
  rec.options = req.options;
  rec.options.erase(kVniOption);  // the cluster picks it
  if (auto it = req.options.find(kMtuOption); it != req.options.end()) {
    int mtu = 0;
    try {
      mtu = std::stoi(it->second);
    } catch (const std::exception&) {
    }
    if (mtu < 576 || mtu > 9000) throw api::HttpError(400, "invalid MTU " + it->second + ": use 576..9000");
    rec.mtu = mtu;
  }
  if (!req.subnet.empty()) {
    auto subnet = Ipv4Net::parse(req.subnet);
    if (!subnet) throw api::HttpError(400, "invalid CIDR address: " + req.subnet);
    if (subnet->prefix > 30) throw api::HttpError(400, "invalid subnet " + req.subnet + ": too small for containers");
    for (const Ipv4Net& u : taken.subnets)
      if (u.overlaps(*subnet))
        throw api::HttpError(403, "invalid pool request: Pool overlaps with other one on this address space");
    rec.subnet = *subnet;
    rec.gateway = subnet->addr + 1;
    if (!req.gateway.empty()) {
      auto gw = parse_ipv4(req.gateway);
      if (!gw) throw api::HttpError(400, "invalid gateway address: " + req.gateway);
      if (!subnet->contains(*gw) || *gw == subnet->addr || *gw == subnet->broadcast())
        throw api::HttpError(400, "no matching subnet for gateway " + req.gateway);
      rec.gateway = *gw;
    }
    if (!req.ip_range.empty()) {
      auto range = Ipv4Net::parse(req.ip_range);
      if (!range) throw api::HttpError(400, "invalid CIDR address: " + req.ip_range);
      if (range->prefix < subnet->prefix || !subnet->contains(range->addr))
        throw api::HttpError(400, "invalid ip-range " + req.ip_range + ": it is not in subnet " + req.subnet);
      rec.ip_range = *range;
    }
  } else {
    if (!req.gateway.empty()) throw api::HttpError(400, "a subnet is needed with a gateway");
    if (!req.ip_range.empty()) throw api::HttpError(400, "a subnet is needed with an ip-range");
  }
  translated([&] { store_.create_network(rec, taken.subnets); });
  auto made = overlay_net_from_record(rec);
  n.driver = made->driver;
  n.created_by = made->created_by;
  n.options = made->options;
  n.ipam = made->ipam;
  n.ip_range = made->ip_range;
  n.vni = made->vni;
  n.mtu = made->mtu;
  n.bridge = made->bridge;
}

void OverlayDriver::delete_network(Net& n) {
  translated([&] { store_.remove_network(record_of(n)); });
  teardown_dataplane(n);
}

void OverlayDriver::restore(Net& n) {
  n.bridge = overlay_bridge_name(n.id);
  if (n.endpoints.empty() || !ctx_.settings.manage_host) return;
  try {
    ensure_dataplane(n);
  } catch (const std::exception& e) {
    warn("overlay network " + n.name + ": cannot restore its bridge and vxlan device: " + e.what());
  }
}

void OverlayDriver::join(Net& n, EndpointRec& e, const EndpointRequest& req,
                         const std::filesystem::path& sandbox) {
  if (!ctx_.settings.manage_host) throw api::HttpError(500, "container networking is disabled on this host");
  if (!req.ipv6.empty())
    throw api::HttpError(400, "IPv6 address " + req.ipv6 + " given, but network " + n.name +
                                  " has no IPv6: overlay networks are IPv4");
  for (const auto& [id, other] : host_.networks())
    if (other.get() != &n && other->is_bridge() && other->ipam.subnet().overlaps(n.ipam.subnet()))
      throw api::HttpError(403, "overlay network " + n.name + " (" + n.ipam.subnet().str() +
                                    ") overlaps network " + other->name + " on this machine");
  const OverlayNetworkRecord rec = record_of(n);
  e.ip = translated([&] { return store_.ipam().allocate(rec, e.container_id, cluster_.machine, req.ipv4); });
  e.mac = mac_for(e.ip);
  e.aliases = req.aliases;
  const bool others_here =
      std::any_of(n.endpoints.begin(), n.endpoints.end(), [&](const auto& kv) { return kv.first != e.container_id; });
  try {
    ensure_dataplane(n);
    attach_veth(n, e, sandbox);
    ClusterEndpoint ep = cluster_endpoint(n, e);
    translated([&] { store_.put_endpoint(ep); });
    n.peers[e.container_id] = ep;
  } catch (...) {
    detach_veth(e);
    try {
      store_.ipam().release(n.id, e.ip, e.container_id);
    } catch (const std::exception&) {
      // The next full resync releases it.
    }
    if (!others_here) teardown_dataplane(n);
    throw;
  }
}

void OverlayDriver::leave(Net& n, const EndpointRec& e) {
  detach_veth(e);
  n.peers.erase(e.container_id);
  try {
    store_.remove_endpoint(n.id, e.container_id, e.ip);
  } catch (const std::exception& x) {
    warn("overlay network " + n.name + ": endpoint of " + e.container_id.substr(0, 12) +
         " stays in the cluster store until it answers: " + x.what());
  }
  const bool others_here =
      std::any_of(n.endpoints.begin(), n.endpoints.end(), [&](const auto& kv) { return kv.first != e.container_id; });
  if (!others_here) teardown_dataplane(n);
}

void OverlayDriver::forget(Net& n, const EndpointRec& e) {
  // The next full read withdraws it from the store (collect_garbage).
  n.peers.erase(e.container_id);
}

// --- the data plane ---

void OverlayDriver::ensure_dataplane(Net& n) {
  if (!ctx_.settings.manage_host) return;
  n.bridge = overlay_bridge_name(n.id);
  bring_up_bridge(ctx_, n);
  {
    netlink::Socket s;
    netlink::VxlanSpec spec;
    spec.name = overlay_vxlan_name(n.id);
    spec.vni = n.vni;
    spec.local = *parse_ipv4(cluster_.advertise);
    spec.port = cluster_.vxlan_port;
    spec.mtu = n.mtu > 0 ? n.mtu : 1450;
    spec.master = n.bridge;
    netlink::ensure_vxlan(s, spec);
  }
  n.dataplane = true;
  reconcile(n);
}

void OverlayDriver::teardown_dataplane(Net& n) {
  if (!ctx_.settings.manage_host) return;
  try {
    netlink::Socket s;
    netlink::delete_link(s, overlay_vxlan_name(n.id));
  } catch (const std::exception&) {
  }
  tear_down_bridge(ctx_, n);
  n.dataplane = false;
}

void OverlayDriver::reconcile(Net& n) {
  if (!n.dataplane) return;
  reconcile_forwarding(overlay_vxlan_name(n.id), desired_forwarding(n.peers, cluster_.machine));
}

// --- what the watch learns ---

void OverlayDriver::sync(NetMap& nets, const ClusterSnapshot& snap, bool full) {
  static const std::map<std::string, ClusterEndpoint> kNone;
  for (const auto& [id, rec] : snap.networks) {
    auto it = nets.find(id);
    if (it == nets.end()) {
      auto made = overlay_net_from_record(rec);
      it = nets.emplace(id, std::move(made)).first;
      host_.save(*it->second);
    }
    Net& n = *it->second;
    if (!n.is_overlay()) continue;
    auto eps = snap.endpoints.find(id);
    const auto& peers = eps == snap.endpoints.end() ? kNone : eps->second;
    bool changed = peers != n.peers;
    if (changed) {
      n.peers = peers;
      n.refresh_names();
      host_.save(n);
    }
    if (changed || full) {
      try {
        reconcile(n);
      } catch (const std::exception& e) {
        warn("overlay network " + n.name + ": cannot program its forwarding entries: " + e.what());
      }
    }
  }
  for (auto it = nets.begin(); it != nets.end();) {
    Net& n = *it->second;
    if (!n.is_overlay() || snap.networks.count(n.id)) {
      ++it;
      continue;
    }
    if (!n.endpoints.empty()) {
      if (full)
        warn("overlay network " + n.name + " is gone from the cluster store, but containers here still use it");
      ++it;
      continue;
    }
    teardown_dataplane(n);
    host_.forget_network(n);
    it = nets.erase(it);
  }
  if (full) collect_garbage(nets, snap);
}

// This machine's records in the store against its live endpoints: what a
// container left while etcd could not answer (or before an agent restart)
// is withdrawn now; what the store lost is written again.
void OverlayDriver::collect_garbage(NetMap& nets, const ClusterSnapshot& snap) {
  auto local = [&](const std::string& net_id, const std::string& container) -> const EndpointRec* {
    auto it = nets.find(net_id);
    if (it == nets.end()) return nullptr;
    auto e = it->second->endpoints.find(container);
    return e == it->second->endpoints.end() ? nullptr : &e->second;
  };
  try {
    for (const auto& [net_id, eps] : snap.endpoints)
      for (const auto& [cid, ep] : eps)
        if (ep.machine == cluster_.machine && !local(net_id, cid)) store_.remove_endpoint(net_id, cid, 0);
    const std::string ipam = store_.keys().prefix + "ipam/";
    for (const auto& [key, lease] : snap.leases_by_key) {
      if (lease.machine != cluster_.machine) continue;
      std::string rest = key.substr(ipam.size());
      auto slash = rest.find('/');
      if (slash == std::string::npos) continue;
      std::string net_id = rest.substr(0, slash);
      auto ip = parse_ipv4(rest.substr(slash + 1));
      if (!ip) continue;
      const EndpointRec* e = local(net_id, lease.container);
      if (!e || e->ip != *ip) store_.ipam().release(net_id, *ip, lease.container);
    }
    for (auto& [id, n] : nets) {
      if (!n->is_overlay() || !snap.networks.count(id)) continue;
      auto eps = snap.endpoints.find(id);
      for (const auto& [cid, e] : n->endpoints) {
        ClusterEndpoint want = cluster_endpoint(*n, e);
        if (eps == snap.endpoints.end() || !eps->second.count(cid) || !(eps->second.at(cid) == want)) {
          store_.put_endpoint(want);
          n->peers[cid] = want;
        }
      }
    }
  } catch (const std::exception& e) {
    warn(std::string("cleaning up this machine's records in the cluster store: ") + e.what());
  }
}

std::optional<OverlayNetworkRecord> OverlayDriver::fetch(const std::string& name_or_id) {
  if (name_or_id.empty()) return std::nullopt;
  try {
    const ClusterKeys& keys = store_.keys();
    std::string id;
    if (name_or_id.find('/') != std::string::npos) return std::nullopt;
    if (auto kv = etcd_.get(keys.name(name_or_id))) {
      id = kv->value;
    } else {
      RangeOptions o;
      o.range_end = prefix_end(keys.network(name_or_id));
      o.keys_only = true;
      o.limit = 2;
      RangeResult r = etcd_.range(keys.network(name_or_id), o);
      if (r.kvs.size() != 1) return std::nullopt;  // none, or ambiguous
      id = r.kvs.front().key.substr(keys.networks().size());
    }
    auto kv = etcd_.get(keys.network(id));
    if (!kv) return std::nullopt;
    return OverlayNetworkRecord::from_json(json::parse(kv->value));
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

void OverlayDriver::apply(const ClusterSnapshot& snap, bool full) {
  host_.with_networks([&](NetMap& nets) { sync(nets, snap, full); });
}

void OverlayDriver::resync() {
  ClusterSnapshot snap = store_.snapshot();
  apply(snap, true);
  available_ = true;
}

void OverlayDriver::start() {
  std::lock_guard lock(run_mutex_);
  if (thread_.joinable()) return;
  stopping_ = false;
  thread_ = std::thread([this] { run(); });
}

void OverlayDriver::stop() {
  {
    std::lock_guard lock(run_mutex_);
    stopping_ = true;
  }
  run_cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void OverlayDriver::run() {
  auto stopping = [this] {
    std::lock_guard lock(run_mutex_);
    return stopping_;
  };
  auto pause = [this](std::chrono::milliseconds d) {
    std::unique_lock lock(run_mutex_);
    return run_cv_.wait_for(lock, d, [this] { return stopping_; });
  };
  std::chrono::milliseconds backoff{250};
  bool reported = false;
  const std::string prefix = store_.keys().prefix;
  while (!stopping()) {
    try {
      ClusterSnapshot snap = store_.snapshot();
      apply(snap, true);
      available_ = true;
      if (reported) warn("the cluster store answers again; overlay networks are in sync");
      reported = false;
      backoff = std::chrono::milliseconds(250);
      try {
        store_.put_machine(cluster_.machine, cluster_.advertise);
      } catch (const std::exception&) {
      }
      auto watch = etcd_.watch(prefix, prefix_end(prefix), snap.revision + 1);
      const auto until = std::chrono::steady_clock::now() + cluster_.resync_interval;
      while (!stopping() && std::chrono::steady_clock::now() < until) {
        auto batch = watch->next(std::chrono::milliseconds(200));
        if (!batch) continue;
        bool relevant = false;
        for (const WatchEvent& ev : batch->events) relevant = store_.apply(snap, ev) || relevant;
        snap.revision = batch->revision;
        if (relevant) apply(snap, false);
      }
      // Then a full read again, and a new watch (maybe on another member).
    } catch (const WatchCompacted&) {
      continue;
    } catch (const std::exception& e) {
      available_ = false;
      if (!reported) warn(std::string("overlay networks: ") + e.what() + "; retrying");
      reported = true;
      if (pause(backoff)) break;
      backoff = std::min(backoff * 2, std::chrono::milliseconds(5000));
    }
  }
}

}  // namespace berth::agent::network
