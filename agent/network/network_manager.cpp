#include "agent/network/network_manager.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <sstream>

#include "agent/api/http.h"
#include "agent/events/event_bus.h"
#include "agent/network/dns.h"
#include "agent/network/ipam.h"
#include "agent/network/netlink.h"
#include "agent/network/network_manager_impl.h"
#include "agent/network/util.h"

namespace berth::agent::network {

namespace fs = std::filesystem;
using nlohmann::json;

json Endpoint::to_json() const {
  json j = {{"IPAMConfig", nullptr},
            {"Links", nullptr},
            {"Aliases", aliases.empty() ? json(nullptr) : json(aliases)},
            {"MacAddress", mac},
            {"DriverOpts", nullptr},
            {"NetworkID", network_id},
            {"EndpointID", endpoint_id},
            {"Gateway", gateway},
            {"IPAddress", ip},
            {"IPPrefixLen", prefix_len},
            {"IPv6Gateway", ipv6_gateway},
            {"GlobalIPv6Address", ipv6},
            {"GlobalIPv6PrefixLen", ipv6_prefix_len},
            {"DNSNames", dns_names.empty() ? json(nullptr) : json(dns_names)}};
  if (!links.empty()) j["Links"] = links;
  return j;
}

std::string normalize_link(const std::string& link) {
  auto colon = link.find(':');
  std::string target = link.substr(0, colon);
  std::string alias = colon == std::string::npos ? target : link.substr(colon + 1);
  if (target.starts_with("/")) target.erase(0, 1);
  if (auto slash = alias.rfind('/'); slash != std::string::npos) alias.erase(0, slash + 1);
  if (target.empty() || alias.empty() || target.find('/') != std::string::npos)
    throw api::HttpError(400, "invalid link: " + link + " (want NAME or NAME:ALIAS)");
  return target + ":" + alias;
}

EndpointRequest EndpointRequest::from_json(const json& settings) {
  EndpointRequest r;
  if (!settings.is_object()) return r;
  auto strings = [&](const char* key) {
    std::vector<std::string> out;
    if (auto it = settings.find(key); it != settings.end() && it->is_array())
      for (const json& v : *it)
        if (v.is_string()) out.push_back(v.get<std::string>());
    return out;
  };
  r.aliases = strings("Aliases");
  for (const std::string& l : strings("Links")) r.links.push_back(normalize_link(l));
  if (auto ipam = settings.find("IPAMConfig"); ipam != settings.end() && ipam->is_object()) {
    if (ipam->contains("IPv4Address") && (*ipam)["IPv4Address"].is_string())
      r.ipv4 = (*ipam)["IPv4Address"];
    if (ipam->contains("IPv6Address") && (*ipam)["IPv6Address"].is_string())
      r.ipv6 = (*ipam)["IPv6Address"];
  }
  if (settings.contains("MacAddress") && settings["MacAddress"].is_string())
    r.mac = settings["MacAddress"];
  return r;
}

json EndpointRequest::to_json() const {
  json r = json::object();
  if (!aliases.empty()) r["Aliases"] = aliases;
  if (!links.empty()) r["Links"] = links;
  json ipam = json::object();
  if (!ipv4.empty()) ipam["IPv4Address"] = ipv4;
  if (!ipv6.empty()) ipam["IPv6Address"] = ipv6;
  if (!ipam.empty()) r["IPAMConfig"] = ipam;
  if (!mac.empty()) r["MacAddress"] = mac;
  return r;
}

namespace {

std::string read_boot_id() {
  try {
    std::string id = read_file("/proc/sys/kernel/random/boot_id");
    while (!id.empty() && std::isspace(static_cast<unsigned char>(id.back()))) id.pop_back();
    return id;
  } catch (const std::exception&) {
    return "";
  }
}

// The agent changes a machine's network only where it is meant to: in a
// berth-os VM, or where BERTH_MANAGE_HOST_NETWORK=1 says so (other hosts).
NetworkSettings default_settings() {
  NetworkSettings s;
  const char* force = std::getenv("BERTH_MANAGE_HOST_NETWORK");
  s.manage_host = fs::exists("/etc/berth-os") || (force && std::string(force) == "1");
  if (force && std::string(force) == "0") s.manage_host = false;
  return s;
}

}  // namespace

// --- Impl ---

NetworkManager::Impl::Impl(fs::path r, NetworkSettings s)
    : root(std::move(r)),
      settings(std::move(s)),
      ipt(settings.iptables),
      ipt6(settings.ip6tables),
      ctx{settings, ipt, ipt6, [this] { return upstreams(); }},
      bridge_driver(ctx) {
  if (settings.cluster) overlay = std::make_unique<OverlayDriver>(ctx, *settings.cluster, *this);
}

NetworkManager::Impl::~Impl() {
  // Its watch thread calls back into this object.
  if (overlay) overlay->stop();
}

// dockerd's network event: Actor.ID the network id, name and type; connect
// and disconnect name the container.
void NetworkManager::Impl::emit(const char* action, const Net& n, const std::string& container_id) {
  if (!events) return;
  events::Attributes a{{"name", n.name}, {"type", n.driver}};
  if (!container_id.empty()) a["container"] = container_id;
  events->emit("network", action, n.id, std::move(a));
}

NetworkDriver* NetworkManager::Impl::driver_for(const Net& n) {
  if (n.is_bridge()) return &bridge_driver;
  if (n.is_overlay()) return overlay.get();
  return nullptr;  // host, none: records only
}

Net* NetworkManager::Impl::find(const std::string& name_or_id) const {
  for (auto& [id, n] : nets)
    if (n->name == name_or_id) return n.get();
  if (auto it = nets.find(name_or_id); it != nets.end()) return it->second.get();
  if (name_or_id.empty()) return nullptr;
  Net* match = nullptr;
  for (auto& [id, n] : nets) {
    if (id.starts_with(name_or_id)) {
      if (match) throw api::HttpError(400, "network " + name_or_id + " is ambiguous");
      match = n.get();
    }
  }
  return match;
}

Net& NetworkManager::Impl::require(const std::string& name_or_id) const {
  Net* n = find(name_or_id);
  if (!n) throw api::HttpError(404, "network " + name_or_id + " not found");
  return *n;
}

Net& NetworkManager::Impl::require_fresh(const std::string& name_or_id) {
  if (Net* n = find(name_or_id)) return *n;
  if (overlay) {
    if (auto rec = overlay->fetch(name_or_id)) {
      auto& slot = nets[rec->id];
      if (!slot) {
        slot = overlay_net_from_record(*rec);
        save(*slot);
      }
      return *slot;
    }
  }
  throw api::HttpError(404, "network " + name_or_id + " not found");
}

fs::path NetworkManager::Impl::net_file(const Net& n) const { return root / "networks" / (n.id + ".json"); }

void NetworkManager::Impl::save(const Net& n) { write_file_atomic(net_file(n), n.to_state().dump(2)); }

void NetworkManager::Impl::forget_network(const Net& n) {
  std::error_code ec;
  fs::remove(net_file(n), ec);
}

void NetworkManager::Impl::with_networks(const std::function<void(NetMap&)>& fn) {
  std::lock_guard lock(mutex);
  fn(nets);
}

std::vector<std::string> NetworkManager::Impl::upstreams() const {
  try {
    return resolv_nameservers(read_file(settings.host_resolv_conf));
  } catch (const std::exception&) {
    return {};
  }
}

Ipv6Net NetworkManager::Impl::ula48() const {
  fs::path seed_file = root / "ula-seed";
  std::string seed;
  try {
    seed = read_file(seed_file);
  } catch (const std::exception&) {
  }
  if (seed.empty()) {
    seed = random_hex(16);
    write_file_atomic(seed_file, seed);
  }
  return ula_prefix(seed);
}

Endpoint NetworkManager::Impl::endpoint_of(const Net& n, const EndpointRec& e) const {
  Endpoint ep;
  ep.network_name = n.name;
  ep.network_id = n.id;
  ep.endpoint_id = e.endpoint_id;
  ep.aliases = e.aliases;
  if (n.has_links()) {
    ep.ip = format_ipv4(e.ip);
    ep.prefix_len = n.ipam.subnet().prefix;
    ep.gateway = n.internal ? "" : format_ipv4(n.ipam.gateway());
    ep.mac = e.mac;
    if (n.user_defined()) ep.dns_names = e.dns_names();
    ep.links = e.links;
  }
  if (n.ipv6 && e.ip6) {
    ep.ipv6 = format_ipv6(e.ip6);
    ep.ipv6_prefix_len = n.ipam6.subnet().prefix;
    ep.ipv6_gateway = n.internal ? "" : format_ipv6(n.ipam6.gateway());
  }
  return ep;
}

// Removes the veth and the address (the caller saves).
void NetworkManager::Impl::drop_endpoint(Net& n, const std::string& container_id) {
  auto it = n.endpoints.find(container_id);
  if (it == n.endpoints.end()) return;
  if (n.has_links()) unpublish_ip(container_id, format_ipv4(it->second.ip));
  if (NetworkDriver* d = driver_for(n)) d->leave(n, it->second);
  n.endpoints.erase(it);
  n.refresh_names();
}

std::unique_ptr<Net> NetworkManager::Impl::predefined(const std::string& name, const std::string& driver) {
  auto n = std::make_unique<Net>();
  n->id = random_hex(32);
  n->name = name;
  n->driver = driver;
  n->created = rfc3339_nanos_now();
  n->predefined = true;
  n->names->network_name = name;
  if (driver == "bridge") {
    auto subnet = Ipv4Net::parse(settings.default_subnet);
    if (!subnet) throw std::runtime_error("bad default subnet " + settings.default_subnet);
    n->ipam = Ipam(*subnet, subnet->addr + 1);
    n->bridge = settings.default_bridge;
    n->options = {{"com.docker.network.bridge.default_bridge", "true"},
                  {"com.docker.network.bridge.enable_icc", "true"},
                  {"com.docker.network.bridge.enable_ip_masquerade", "true"},
                  {"com.docker.network.bridge.host_binding_ipv4", "0.0.0.0"},
                  {"com.docker.network.bridge.name", settings.default_bridge},
                  {"com.docker.network.driver.mtu", "1500"}};
  }
  return n;
}

json NetworkManager::Impl::net_json(const Net& n, bool with_containers) const {
  json config = nullptr;
  if (n.has_links()) {
    json pool = {{"Subnet", n.ipam.subnet().str()}, {"Gateway", format_ipv4(n.ipam.gateway())}};
    if (n.ip_range) pool["IPRange"] = n.ip_range->str();
    config = json::array({pool});
    if (n.ipv6)
      config.push_back({{"Subnet", n.ipam6.subnet().str()}, {"Gateway", format_ipv6(n.ipam6.gateway())}});
  }
  json containers = json::object();
  if (with_containers) {
    for (const auto& [cid, e] : n.endpoints) {
      containers[cid] = {{"Name", e.container_name},
                         {"EndpointID", e.endpoint_id},
                         {"MacAddress", e.mac},
                         {"IPv4Address", n.has_links() ? format_ipv4(e.ip) + "/" +
                                                             std::to_string(n.ipam.subnet().prefix)
                                                       : ""},
                         {"IPv6Address", n.ipv6 && e.ip6 ? format_ipv6(e.ip6) + "/" +
                                                               std::to_string(n.ipam6.subnet().prefix)
                                                         : ""}};
    }
  }
  json options = n.options;
  if (n.is_overlay()) options["com.docker.network.driver.overlay.vxlanid_list"] = std::to_string(n.vni);
  json out = {{"Name", n.name},
              {"Id", n.id},
              {"Created", n.created},
              {"Scope", n.scope()},
              {"Driver", n.driver},
              {"EnableIPv6", n.ipv6},
              {"IPAM",
               {{"Driver", "default"},
                {"Options", n.predefined ? json(nullptr) : json::object()},
                {"Config", config}}},
              {"Internal", n.internal},
              {"Attachable", n.attachable},
              {"Ingress", false},
              {"ConfigFrom", {{"Network", ""}}},
              {"ConfigOnly", false},
              {"Containers", containers},
              {"Options", options},
              {"Labels", n.labels}};
  if (n.is_overlay() && with_containers) {
    // The machines with endpoints on it, as swarm's inspect lists them.
    std::map<std::string, std::string> machines;
    for (const auto& [cid, p] : n.peers) machines[p.machine] = p.advertise;
    json peers = json::array();
    for (const auto& [m, ip] : machines) peers.push_back({{"Name", m}, {"IP", ip}});
    out["Peers"] = peers;
  }
  return out;
}

// --- NetworkManager ---

NetworkManager::NetworkManager(fs::path root) : NetworkManager(std::move(root), default_settings()) {}

NetworkManager::NetworkManager(fs::path root, NetworkSettings settings)
    : impl_(std::make_unique<Impl>(std::move(root), std::move(settings))) {}

NetworkManager::~NetworkManager() = default;

void NetworkManager::init() {
  Impl& m = *impl_;
  {
    std::lock_guard lock(m.mutex);
    fs::create_directories(m.root / "networks");
    fs::create_directories(m.settings.netns_dir);

    for (const auto& entry : fs::directory_iterator(m.root / "networks")) {
      if (entry.path().extension() != ".json") continue;
      try {
        auto n = Net::from_state(json::parse(read_file(entry.path())));
        std::string id = n->id;
        m.nets[id] = std::move(n);
      } catch (const std::exception&) {
        // A damaged record: skip it rather than refuse to start.
      }
    }
    for (auto [name, driver] : {std::pair{"bridge", "bridge"}, {"host", "host"}, {"none", "null"}}) {
      bool found = false;
      for (auto& [id, n] : m.nets) found = found || (n->predefined && n->name == name);
      if (!found) {
        auto n = m.predefined(name, driver);
        m.save(*n);
        std::string id = n->id;
        m.nets[id] = std::move(n);
      }
    }

    // Endpoints from a previous boot (or whose namespace is gone) are stale.
    std::string boot_id = read_boot_id();
    fs::path state_file = m.root / "state.json";
    std::string previous_boot;
    try {
      previous_boot = json::parse(read_file(state_file)).value("BootId", "");
    } catch (const std::exception&) {
    }
    bool rebooted = previous_boot != boot_id;
    write_file_atomic(state_file, json{{"BootId", boot_id}}.dump());

    if (m.settings.manage_host) {
      // The DROP policy before forwarding is on, as dockerd does.
      m.ipt.ensure_chains(base_chains());
      m.ipt.ensure_all(base_rules());
      m.ipt.set_policy("filter", "FORWARD", kForwardPolicy);
      netlink::write_sysctl("net/ipv4/ip_forward", "1");
    }

    for (auto it = m.nets.begin(); it != m.nets.end();) {
      Net& n = *it->second;
      NetworkDriver* driver = m.driver_for(n);
      if (n.is_overlay() && !driver) {
        // No longer a cluster member: its records go, the state file too.
        m.forget_network(n);
        it = m.nets.erase(it);
        continue;
      }
      bool changed = false;
      for (auto e = n.endpoints.begin(); e != n.endpoints.end();) {
        bool stale = rebooted || (!e->second.sandbox.empty() && !netlink::is_netns(e->second.sandbox));
        if (stale) {
          if (driver) driver->forget(n, e->second);
          e = n.endpoints.erase(e);
          changed = true;
        } else {
          ++e;
        }
      }
      n.refresh_names();
      if (driver) driver->restore(n);
      if (changed) m.save(n);
      ++it;
    }

    // Published ports of containers still connected: hold the ports again.
    if (m.settings.manage_host) m.restore_ports();
  }
  if (m.overlay) m.overlay->start();
}

std::string NetworkManager::network_id(const std::string& name_or_id) const {
  std::lock_guard lock(impl_->mutex);
  return impl_->require_fresh(name_or_id).id;
}

bool NetworkManager::is_bridge_like(const std::string& name_or_id) const {
  std::lock_guard lock(impl_->mutex);
  Net* n = impl_->find(name_or_id);
  return n && n->has_links();
}

bool NetworkManager::is_predefined(const std::string& name_or_id) const {
  std::lock_guard lock(impl_->mutex);
  return impl_->require(name_or_id).predefined;
}

bool NetworkManager::has_endpoints(const std::string& name_or_id) const {
  std::lock_guard lock(impl_->mutex);
  const Net& n = impl_->require(name_or_id);
  return !n.endpoints.empty() || !n.peers.empty();  // peers: anywhere in the cluster
}

fs::path NetworkManager::create_sandbox(const std::string& container_id) {
  fs::path path = impl_->settings.netns_dir / container_id;
  netlink::create_netns(path);
  return path;
}

void NetworkManager::destroy_sandbox(const std::string& container_id) {
  {
    std::lock_guard lock(impl_->mutex);
    impl_->unpublish_ip(container_id, "");
    for (auto& [id, n] : impl_->nets) {
      if (n->endpoints.count(container_id)) {
        impl_->drop_endpoint(*n, container_id);
        impl_->save(*n);
        impl_->emit("disconnect", *n, container_id);
      }
    }
  }
  netlink::remove_netns(impl_->settings.netns_dir / container_id);
}

Endpoint NetworkManager::connect(const std::string& network, const std::string& container_id,
                                 const std::string& container_name, const fs::path& sandbox,
                                 const EndpointRequest& request) {
  Impl& m = *impl_;
  std::lock_guard lock(m.mutex);
  Net& n = m.require_fresh(network);
  std::string name = container_name.starts_with("/") ? container_name.substr(1) : container_name;
  if (auto it = n.endpoints.find(container_id); it != n.endpoints.end()) {
    if (it->second.sandbox == sandbox.string()) return m.endpoint_of(n, it->second);
    m.drop_endpoint(n, container_id);  // left from an earlier run
  }
  EndpointRec e;
  e.container_id = container_id;
  e.container_name = name;
  e.endpoint_id = random_hex(32);
  e.sandbox = sandbox.string();
  if (NetworkDriver* driver = m.driver_for(n)) {
    driver->join(n, e, request, sandbox);
    e.aliases = request.aliases;
    e.links = request.links;
  }
  n.endpoints[container_id] = e;
  n.refresh_names();
  m.save(n);
  m.emit("connect", n, container_id);
  return m.endpoint_of(n, e);
}

void NetworkManager::disconnect(const std::string& network, const std::string& container_id) {
  std::lock_guard lock(impl_->mutex);
  Net& n = impl_->require(network);
  if (!n.endpoints.count(container_id)) return;
  impl_->drop_endpoint(n, container_id);
  impl_->save(n);
  impl_->emit("disconnect", n, container_id);
}

std::optional<Endpoint> NetworkManager::endpoint(const std::string& network,
                                                 const std::string& container_id) const {
  std::lock_guard lock(impl_->mutex);
  Net& n = impl_->require(network);
  auto it = n.endpoints.find(container_id);
  if (it == n.endpoints.end()) return std::nullopt;
  return impl_->endpoint_of(n, it->second);
}

std::string NetworkManager::resolv_conf(const std::string& network) const {
  std::string host;
  try {
    host = read_file(impl_->settings.host_resolv_conf);
  } catch (const std::exception&) {
  }
  bool user_defined = false;
  bool host_mode = false;
  std::string gateway;
  {
    std::lock_guard lock(impl_->mutex);
    Net* n = nullptr;
    try {
      n = impl_->find(network);
    } catch (const api::HttpError&) {
    }
    if (n) {
      user_defined = n->user_defined();
      host_mode = n->driver == "host";
      if (user_defined) gateway = format_ipv4(n->ipam.gateway());
    }
  }
  if (host_mode) return host;
  std::string other;  // search and options lines
  std::vector<std::string> servers;
  std::istringstream in(host);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream words(line);
    std::string key, value;
    if (!(words >> key)) continue;
    if (key == "nameserver" && words >> value) {
      bool loopback = value.starts_with("127.") || value == "::1";
      if (!loopback && value.find(':') == std::string::npos) servers.push_back(value);
    } else if (key == "search" || key == "options" || key == "domain") {
      if (!(user_defined && key == "options")) other += line + "\n";
    }
  }
  std::string out;
  if (user_defined) {
    out = "nameserver " + gateway + "\n" + other + "options ndots:0\n";
    return out;
  }
  if (servers.empty()) servers = {"8.8.8.8", "8.8.4.4"};
  for (const std::string& s : servers) out += "nameserver " + s + "\n";
  return out + other;
}

json NetworkManager::inspect(const std::string& name_or_id, bool with_containers) const {
  std::lock_guard lock(impl_->mutex);
  return impl_->net_json(impl_->require_fresh(name_or_id), with_containers);
}

std::vector<json> NetworkManager::list() const {
  std::lock_guard lock(impl_->mutex);
  std::vector<json> out;
  for (const auto& [id, n] : impl_->nets) out.push_back(impl_->net_json(*n, false));
  return out;
}

std::string NetworkManager::create_network(const NetworkCreate& req) {
  Impl& m = *impl_;
  std::lock_guard lock(m.mutex);
  if (req.name.empty()) throw api::HttpError(400, "network name cannot be empty");
  std::string driver_name = req.driver.empty() ? "bridge" : req.driver;
  if (driver_name == "host" || driver_name == "null")
    throw api::HttpError(403, "only one instance of \"" + driver_name + "\" network is allowed");
  if (driver_name == "overlay" && !m.overlay)
    throw api::HttpError(400, "overlay networks need a berth cluster: make the machine with "
                              "berth create --cluster NAME");
  if (driver_name != "bridge" && driver_name != "overlay")
    throw api::HttpError(404, "could not find plugin " + driver_name +
                                  " in v1 plugin registry: plugin not found");
  for (auto& [id, n] : m.nets)
    if (n->name == req.name)
      throw api::HttpError(409, "network with name " + req.name + " already exists");
  if (req.enable_ipv6 && driver_name != "bridge")
    throw api::HttpError(400, "IPv6 is supported on bridge networks only (overlay networks are IPv4)");
  TakenResources taken;
  for (auto& [id, n] : m.nets) {
    if (n->has_links()) taken.subnets.push_back(n->ipam.subnet());
    if (n->ipv6) taken.subnets6.push_back(n->ipam6.subnet());
    if (!n->bridge.empty()) taken.bridges[n->bridge] = n->name;
  }
  if (req.enable_ipv6) taken.ula48 = m.ula48();
  auto n = std::make_unique<Net>();
  n->id = random_hex(32);
  n->name = req.name;
  n->names->network_name = lower(req.name);
  n->driver = driver_name;
  n->created = rfc3339_nanos_now();
  n->internal = req.internal;
  n->attachable = req.attachable;
  n->labels = req.labels;
  n->options = req.options;
  m.driver_for(*n)->create_network(*n, req, taken);
  m.save(*n);
  m.emit("create", *n);
  std::string id = n->id;
  m.nets[id] = std::move(n);
  return id;
}

void NetworkManager::remove_network(const std::string& name_or_id) {
  Impl& m = *impl_;
  std::lock_guard lock(m.mutex);
  Net& n = m.require(name_or_id);
  if (n.predefined)
    throw api::HttpError(403, n.name + " is a pre-defined network and cannot be removed");
  if (!n.endpoints.empty())
    throw api::HttpError(403, "error while removing network: network " + n.name + " id " + n.id +
                                  " has active endpoints");
  if (NetworkDriver* driver = m.driver_for(n)) driver->delete_network(n);
  m.forget_network(n);
  m.emit("destroy", n);
  std::string id = n.id;
  m.nets.erase(id);
}

void NetworkManager::set_container_hooks(ContainerHooks hooks) {
  std::lock_guard lock(impl_->hooks_mutex);
  impl_->hooks = std::move(hooks);
}

void NetworkManager::set_events(std::shared_ptr<events::EventBus> bus) {
  std::lock_guard lock(impl_->mutex);
  impl_->events = std::move(bus);
}

ContainerHooks NetworkManager::container_hooks() const {
  std::lock_guard lock(impl_->hooks_mutex);
  return impl_->hooks;
}

OverlayDriver* NetworkManager::overlay() { return impl_->overlay.get(); }

}  // namespace berth::agent::network
