#include "agent/network/network_manager.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <list>
#include <mutex>
#include <set>
#include <sstream>

#include "agent/api/http.h"
#include "agent/events/event_bus.h"
#include "agent/network/dns.h"
#include "agent/network/iptables.h"
#include "agent/network/ipam.h"
#include "agent/network/netlink.h"
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
            {"IPv6Gateway", ""},
            {"GlobalIPv6Address", ""},
            {"GlobalIPv6PrefixLen", 0},
            {"DNSNames", dns_names.empty() ? json(nullptr) : json(dns_names)}};
  return j;
}

namespace {

constexpr const char* kBridgeNameOption = "com.docker.network.bridge.name";
// The alias of the bridges this manager creates (`ip link` shows it).
constexpr const char* kBridgeAlias = "berth";

struct Fd {
  int fd = -1;
  Fd() = default;
  explicit Fd(int f) : fd(f) {}
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
  Fd(Fd&& o) noexcept : fd(o.fd) { o.fd = -1; }
  Fd& operator=(Fd&& o) noexcept {
    std::swap(fd, o.fd);
    return *this;
  }
};

// What the DNS thread of a network reads; updated on connect/disconnect.
struct NameTable {
  std::mutex mutex;
  std::string network_name;
  std::map<std::string, std::vector<std::uint32_t>> names;  // lowercase

  std::optional<std::vector<std::uint32_t>> lookup(std::string name) {
    std::lock_guard lock(mutex);
    auto it = names.find(name);
    if (it != names.end()) return it->second;
    // "web.mynet" as well as "web".
    std::string suffix = "." + network_name;
    if (name.size() > suffix.size() && name.ends_with(suffix)) {
      it = names.find(name.substr(0, name.size() - suffix.size()));
      if (it != names.end()) return it->second;
    }
    return std::nullopt;
  }
};

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

struct EndpointRec {
  std::string container_id, container_name, endpoint_id, mac, host_veth, ifname, sandbox;
  std::uint32_t ip = 0;
  std::vector<std::string> aliases;

  json to_json() const {
    return {{"ContainerID", container_id}, {"ContainerName", container_name},
            {"EndpointID", endpoint_id},   {"Mac", mac},
            {"HostVeth", host_veth},       {"Ifname", ifname},
            {"Sandbox", sandbox},          {"IP", ip ? format_ipv4(ip) : ""},
            {"Aliases", aliases}};
  }
  static EndpointRec from_json(const json& j) {
    EndpointRec e;
    e.container_id = j.value("ContainerID", "");
    e.container_name = j.value("ContainerName", "");
    e.endpoint_id = j.value("EndpointID", "");
    e.mac = j.value("Mac", "");
    e.host_veth = j.value("HostVeth", "");
    e.ifname = j.value("Ifname", "");
    e.sandbox = j.value("Sandbox", "");
    e.ip = parse_ipv4(j.value("IP", "")).value_or(0);
    e.aliases = j.value("Aliases", std::vector<std::string>{});
    return e;
  }
  std::vector<std::string> dns_names() const {
    std::vector<std::string> out = {container_name};
    for (const std::string& a : aliases)
      if (std::find(out.begin(), out.end(), a) == out.end()) out.push_back(a);
    out.push_back(container_id.substr(0, 12));
    return out;
  }
};

struct Net {
  std::string id, name, driver, created, bridge;
  bool internal = false, attachable = false, predefined = false;
  std::map<std::string, std::string> labels, options;
  Ipam ipam;
  std::map<std::string, EndpointRec> endpoints;  // by container id
  std::shared_ptr<NameTable> names = std::make_shared<NameTable>();
  std::unique_ptr<DnsServer> dns;

  bool is_bridge() const { return driver == "bridge"; }
  bool user_defined() const { return is_bridge() && !predefined; }

  json to_state() const {
    json eps = json::object();
    for (const auto& [cid, e] : endpoints) eps[cid] = e.to_json();
    json j = {{"Id", id},
              {"Name", name},
              {"Driver", driver},
              {"Created", created},
              {"Bridge", bridge},
              {"Internal", internal},
              {"Attachable", attachable},
              {"Predefined", predefined},
              {"Labels", labels},
              {"Options", options},
              {"Endpoints", eps}};
    if (is_bridge()) j["IPAM"] = ipam.to_json();
    return j;
  }
  static std::unique_ptr<Net> from_state(const json& j) {
    auto n = std::make_unique<Net>();
    n->id = j.at("Id").get<std::string>();
    n->name = j.at("Name").get<std::string>();
    n->driver = j.value("Driver", "bridge");
    n->created = j.value("Created", "");
    n->bridge = j.value("Bridge", "");
    n->internal = j.value("Internal", false);
    n->attachable = j.value("Attachable", false);
    n->predefined = j.value("Predefined", false);
    n->labels = j.value("Labels", std::map<std::string, std::string>{});
    n->options = j.value("Options", std::map<std::string, std::string>{});
    if (j.contains("IPAM")) n->ipam = Ipam::from_json(j["IPAM"]);
    if (j.contains("Endpoints"))
      for (auto& [cid, e] : j["Endpoints"].items()) n->endpoints[cid] = EndpointRec::from_json(e);
    n->names->network_name = lower(n->name);
    return n;
  }
};

struct PortRec {
  std::string container_id, proto, host_ip, container_ip, bridge;
  int host_port = 0, container_port = 0;
  Fd reservation;  // the host port, bound (not listening) while published

  PortSpec spec() const {
    return {proto, host_ip, host_port, container_ip, container_port, bridge};
  }
  json to_json() const {
    return {{"ContainerID", container_id}, {"Proto", proto},
            {"HostIP", host_ip},           {"HostPort", host_port},
            {"ContainerIP", container_ip}, {"ContainerPort", container_port},
            {"Bridge", bridge}};
  }
  static PortRec from_json(const json& j) {
    PortRec p;
    p.container_id = j.value("ContainerID", "");
    p.proto = j.value("Proto", "tcp");
    p.host_ip = j.value("HostIP", "0.0.0.0");
    p.host_port = j.value("HostPort", 0);
    p.container_ip = j.value("ContainerIP", "");
    p.container_port = j.value("ContainerPort", 0);
    p.bridge = j.value("Bridge", "");
    return p;
  }
};

// Binds proto host_ip:port without listening: the port is ours while held.
Fd reserve_port(const std::string& proto, const std::string& host_ip, int port) {
  Fd s(::socket(AF_INET, (proto == "udp" ? SOCK_DGRAM : SOCK_STREAM) | SOCK_CLOEXEC, 0));
  if (s.fd < 0) return Fd();
  int one = 1;
  if (proto != "udp") ::setsockopt(s.fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  a.sin_addr.s_addr = htonl(parse_ipv4(host_ip).value_or(0));
  if (::bind(s.fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return Fd();
  return s;
}

std::optional<int> parse_port(std::string_view text) {
  int v = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || p != text.data() + text.size() || v < 1 || v > 65535)
    return std::nullopt;
  return v;
}

std::string read_boot_id() {
  try {
    std::string id = read_file("/proc/sys/kernel/random/boot_id");
    while (!id.empty() && std::isspace(static_cast<unsigned char>(id.back()))) id.pop_back();
    return id;
  } catch (const std::exception&) {
    return "";
  }
}

bool ip_overlaps(const std::string& a, const std::string& b) {
  return a == b || a == "0.0.0.0" || b == "0.0.0.0";
}

}  // namespace

struct NetworkManager::Impl {
  fs::path root;
  NetworkSettings settings;
  Iptables ipt;
  mutable std::mutex mutex;
  std::map<std::string, std::unique_ptr<Net>> nets;  // by id
  std::list<PortRec> ports;
  std::map<std::string, int> next_port;  // by proto, for -P
  mutable std::mutex hooks_mutex;
  ContainerHooks hooks;
  std::shared_ptr<events::EventBus> events;  // set once at agent start

  // dockerd's network event: Actor.ID the network id, name and type; connect
  // and disconnect name the container.
  void emit(const char* action, const Net& n, const std::string& container_id = "") {
    if (!events) return;
    events::Attributes a{{"name", n.name}, {"type", n.driver}};
    if (!container_id.empty()) a["container"] = container_id;
    events->emit("network", action, n.id, std::move(a));
  }

  Impl(fs::path r, NetworkSettings s)
      : root(std::move(r)), settings(std::move(s)), ipt(settings.iptables) {}

  // --- lookup ---
  Net* find(const std::string& name_or_id) const {
    for (auto& [id, n] : nets)
      if (n->name == name_or_id) return n.get();
    if (auto it = nets.find(name_or_id); it != nets.end()) return it->second.get();
    if (name_or_id.empty()) return nullptr;
    Net* match = nullptr;
    for (auto& [id, n] : nets) {
      if (id.starts_with(name_or_id)) {
        if (match)
          throw api::HttpError(400, "network " + name_or_id + " is ambiguous");
        match = n.get();
      }
    }
    return match;
  }
  Net& require(const std::string& name_or_id) const {
    Net* n = find(name_or_id);
    if (!n) throw api::HttpError(404, "network " + name_or_id + " not found");
    return *n;
  }

  // --- persistence ---
  fs::path net_file(const Net& n) const { return root / "networks" / (n.id + ".json"); }
  void save(const Net& n) const { write_file_atomic(net_file(n), n.to_state().dump(2)); }
  void save_ports() const {
    json j = json::array();
    for (const PortRec& p : ports) j.push_back(p.to_json());
    write_file_atomic(root / "ports.json", j.dump(2));
  }

  std::vector<std::string> upstreams() const {
    try {
      return resolv_nameservers(read_file(settings.host_resolv_conf));
    } catch (const std::exception&) {
      return {};
    }
  }

  // --- bridges ---
  // A new network may name a bridge only when no interface has that name
  // yet, or when it is a bridge this manager made (left by a crash): never
  // an interface such as eth0 or lo, which `network rm` would delete.
  void check_bridge_name(const std::string& name) const {
    if (!settings.manage_host) return;
    netlink::Socket s;
    auto info = netlink::link_info(s, name);
    if (!info) return;
    if (info->kind != "bridge")
      throw api::HttpError(400, "existing interface " + name + " is not a bridge");
    if (info->alias != kBridgeAlias)
      throw api::HttpError(409, "existing bridge " + name + " was not created by berth");
  }

  bool names_other_interface(const Net& n) const {
    if (!settings.manage_host) return false;
    netlink::Socket s;
    auto info = netlink::link_info(s, n.bridge);
    return info && info->kind != "bridge";
  }

  // Route_localnet lets the machine's own 127.0.0.1 reach ports published on
  // it; the raw PREROUTING guard (base_rules) keeps 127/8 from arriving here.
  void setup_bridge(Net& n) {
    if (!settings.manage_host) return;
    {
      netlink::Socket s;
      netlink::ensure_bridge(s, n.bridge, kBridgeAlias);
      netlink::ensure_address(s, n.bridge, n.ipam.gateway(), n.ipam.subnet().prefix);
      netlink::set_link_up(s, n.bridge);
    }
    netlink::write_sysctl("net/ipv4/conf/" + n.bridge + "/route_localnet", "1");
    ipt.ensure_all(bridge_rules({n.bridge, n.ipam.subnet().str(), n.internal}));
    if (n.user_defined() && !n.dns) {
      DnsServerConfig dns;
      dns.ip = n.ipam.gateway();
      dns.port = settings.dns_port;
      dns.client_net = n.ipam.subnet().addr;
      dns.client_prefix = n.ipam.subnet().prefix;
      dns.lookup = [names = n.names](const std::string& q) { return names->lookup(q); };
      dns.upstreams = [this] { return upstreams(); };
      try {
        n.dns = std::make_unique<DnsServer>(std::move(dns));
      } catch (const std::exception&) {
        // Containers on it still work, only without name resolution.
      }
    }
  }

  void teardown_bridge(Net& n) {
    n.dns.reset();
    if (!settings.manage_host) return;
    ipt.remove_all(bridge_rules({n.bridge, n.ipam.subnet().str(), n.internal}));
    netlink::Socket s;
    // Only a bridge: state from older agents may name an interface like eth0.
    auto info = netlink::link_info(s, n.bridge);
    if (info && info->kind == "bridge") netlink::delete_link(s, n.bridge);
  }

  void refresh_names(Net& n) {
    if (!n.user_defined()) return;
    std::map<std::string, std::vector<std::uint32_t>> names;
    for (const auto& [cid, e] : n.endpoints)
      for (const std::string& name : e.dns_names()) names[lower(name)].push_back(e.ip);
    std::lock_guard lock(n.names->mutex);
    n.names->names = std::move(names);
  }

  Endpoint endpoint_of(const Net& n, const EndpointRec& e) const {
    Endpoint ep;
    ep.network_name = n.name;
    ep.network_id = n.id;
    ep.endpoint_id = e.endpoint_id;
    ep.aliases = e.aliases;
    if (n.is_bridge()) {
      ep.ip = format_ipv4(e.ip);
      ep.prefix_len = n.ipam.subnet().prefix;
      ep.gateway = n.internal ? "" : format_ipv4(n.ipam.gateway());
      ep.mac = e.mac;
      if (n.user_defined()) ep.dns_names = e.dns_names();
    }
    return ep;
  }

  // Removes the veth and the lease (the caller saves).
  void drop_endpoint(Net& n, const std::string& container_id) {
    auto it = n.endpoints.find(container_id);
    if (it == n.endpoints.end()) return;
    if (n.is_bridge()) {
      unpublish_ip(container_id, format_ipv4(it->second.ip));
      if (!it->second.host_veth.empty()) {
        try {
          netlink::Socket s;
          netlink::delete_link(s, it->second.host_veth);
        } catch (const std::exception&) {
          // Gone with its namespace already.
        }
      }
      n.ipam.release(container_id);
    }
    n.endpoints.erase(it);
    refresh_names(n);
  }

  void unpublish_ip(const std::string& container_id, const std::string& ip) {
    bool changed = false;
    for (auto it = ports.begin(); it != ports.end();) {
      if (it->container_id == container_id && (ip.empty() || it->container_ip == ip)) {
        try {
          ipt.remove_all(port_rules(it->spec()));
        } catch (const std::exception&) {
        }
        it = ports.erase(it);
        changed = true;
      } else {
        ++it;
      }
    }
    if (changed) save_ports();
  }

  std::unique_ptr<Net> predefined(const std::string& name, const std::string& driver) {
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
                    {kBridgeNameOption, settings.default_bridge},
                    {"com.docker.network.driver.mtu", "1500"}};
    }
    return n;
  }

  json net_json(const Net& n, bool with_containers) const {
    json config = nullptr;
    if (n.is_bridge())
      config = json::array({{{"Subnet", n.ipam.subnet().str()},
                             {"Gateway", format_ipv4(n.ipam.gateway())}}});
    json containers = json::object();
    if (with_containers) {
      for (const auto& [cid, e] : n.endpoints) {
        containers[cid] = {{"Name", e.container_name},
                           {"EndpointID", e.endpoint_id},
                           {"MacAddress", e.mac},
                           {"IPv4Address", n.is_bridge() ? format_ipv4(e.ip) + "/" +
                                                               std::to_string(n.ipam.subnet().prefix)
                                                         : ""},
                           {"IPv6Address", ""}};
      }
    }
    return {{"Name", n.name},
            {"Id", n.id},
            {"Created", n.created},
            {"Scope", "local"},
            {"Driver", n.is_bridge() ? "bridge" : n.driver},
            {"EnableIPv6", false},
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
            {"Options", n.options},
            {"Labels", n.labels}};
  }
};

namespace {
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

NetworkManager::NetworkManager(fs::path root) : NetworkManager(std::move(root), default_settings()) {}

NetworkManager::NetworkManager(fs::path root, NetworkSettings settings)
    : impl_(std::make_unique<Impl>(std::move(root), std::move(settings))) {}

NetworkManager::~NetworkManager() = default;

void NetworkManager::init() {
  Impl& m = *impl_;
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
    for (const auto& [table, chain] : base_chains()) m.ipt.ensure_chain(table, chain);
    m.ipt.ensure_all(base_rules());
    m.ipt.set_policy("filter", "FORWARD", kForwardPolicy);
    netlink::write_sysctl("net/ipv4/ip_forward", "1");
  }

  for (auto& [id, n] : m.nets) {
    bool changed = false;
    for (auto it = n->endpoints.begin(); it != n->endpoints.end();) {
      bool stale = rebooted || (!it->second.sandbox.empty() && !netlink::is_netns(it->second.sandbox));
      if (stale) {
        n->ipam.release(it->first);
        it = n->endpoints.erase(it);
        changed = true;
      } else {
        ++it;
      }
    }
    m.refresh_names(*n);
    // State from older agents may give a user network an interface that is
    // not a bridge (eth0): it stays listed, and that interface alone.
    if (n->is_bridge() && (n->predefined || !m.names_other_interface(*n))) m.setup_bridge(*n);
    if (changed) m.save(*n);
  }

  // Published ports of containers still connected: hold the ports again.
  if (!m.settings.manage_host) return;
  try {
    json saved = json::parse(read_file(m.root / "ports.json"));
    for (const json& j : saved) {
      PortRec p = PortRec::from_json(j);
      bool live = false;
      for (auto& [id, n] : m.nets) {
        auto it = n->endpoints.find(p.container_id);
        live = live || (it != n->endpoints.end() && n->is_bridge() &&
                        format_ipv4(it->second.ip) == p.container_ip);
      }
      try {
        m.ipt.remove_all(legacy_port_rules(p.spec()));
        if (!live) m.ipt.remove_all(port_rules(p.spec()));
      } catch (const std::exception&) {
      }
      if (!live) continue;
      p.reservation = reserve_port(p.proto, p.host_ip, p.host_port);
      m.ipt.ensure_all(port_rules(p.spec()));
      m.ports.push_back(std::move(p));
    }
  } catch (const std::exception&) {
  }
  m.save_ports();
}

std::string NetworkManager::network_id(const std::string& name_or_id) const {
  std::lock_guard lock(impl_->mutex);
  return impl_->require(name_or_id).id;
}

bool NetworkManager::is_bridge_like(const std::string& name_or_id) const {
  std::lock_guard lock(impl_->mutex);
  Net* n = impl_->find(name_or_id);
  return n && n->is_bridge();
}

bool NetworkManager::is_predefined(const std::string& name_or_id) const {
  std::lock_guard lock(impl_->mutex);
  return impl_->require(name_or_id).predefined;
}

bool NetworkManager::has_endpoints(const std::string& name_or_id) const {
  std::lock_guard lock(impl_->mutex);
  return !impl_->require(name_or_id).endpoints.empty();
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
  Net& n = m.require(network);
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
  if (n.is_bridge() && !m.settings.manage_host)
    throw api::HttpError(500, "container networking is disabled on this host");
  if (!n.is_bridge()) {  // host, none: recorded only
    n.endpoints[container_id] = e;
    m.save(n);
    m.emit("connect", n, container_id);
    return m.endpoint_of(n, e);
  }
  if (n.predefined && !request.ipv4.empty())
    throw api::HttpError(400, "user specified IP address is supported on user defined networks only");
  if (n.predefined && !request.aliases.empty())
    throw api::HttpError(400, "network-scoped alias is supported only for containers in user defined networks");
  e.aliases = request.aliases;
  e.ip = n.ipam.allocate(container_id, request.ipv4);
  e.mac = mac_for(e.ip);
  e.host_veth = "veth" + random_hex(4).substr(0, 7);
  try {
    netlink::run_in_netns(sandbox, [&] {
      netlink::Socket s;
      std::set<std::string> taken;
      for (const std::string& l : netlink::link_names(s)) taken.insert(l);
      for (int i = 0;; ++i) {
        std::string candidate = "eth" + std::to_string(i);
        if (!taken.count(candidate)) {
          e.ifname = candidate;
          break;
        }
      }
    });
    Fd ns(::open(sandbox.c_str(), O_RDONLY | O_CLOEXEC));
    if (ns.fd < 0) throw std::runtime_error("open " + sandbox.string() + ": " + std::strerror(errno));
    {
      netlink::Socket s;
      netlink::create_veth(s, e.host_veth, n.bridge, e.ifname, ns.fd, e.mac);
      netlink::set_link_up(s, e.host_veth);
    }
    const std::uint32_t gateway = n.ipam.gateway();
    const int prefix = n.ipam.subnet().prefix;
    const bool route = !n.internal;
    netlink::run_in_netns(sandbox, [&] {
      netlink::Socket s;
      netlink::ensure_address(s, e.ifname, e.ip, prefix);
      netlink::set_link_up(s, e.ifname);
      if (route && !netlink::has_default_route(s)) netlink::add_default_route(s, e.ifname, gateway);
    });
  } catch (...) {
    try {
      netlink::Socket s;
      netlink::delete_link(s, e.host_veth);
    } catch (const std::exception&) {
    }
    n.ipam.release(container_id);
    throw;
  }
  n.endpoints[container_id] = e;
  m.refresh_names(n);
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

std::vector<PortBinding> NetworkManager::publish(const std::string& container_id,
                                                 const std::string& container_ip,
                                                 const std::vector<PortBinding>& bindings) {
  Impl& m = *impl_;
  std::lock_guard lock(m.mutex);
  if (!m.settings.manage_host)
    throw api::HttpError(500, "container networking is disabled on this host");
  std::string bridge;
  for (auto& [id, n] : m.nets) {
    auto it = n->endpoints.find(container_id);
    if (it != n->endpoints.end() && n->is_bridge() && format_ipv4(it->second.ip) == container_ip)
      bridge = n->bridge;
  }
  if (bridge.empty())
    throw api::HttpError(500, "container " + container_id + " has no endpoint with address " +
                                  container_ip);
  std::vector<PortBinding> out;
  std::list<PortRec> added;
  auto allocated = [&](const std::string& proto, const std::string& ip, int port) {
    for (const std::list<PortRec>* l : {&m.ports, &added})
      for (const PortRec& p : *l)
        if (p.proto == proto && p.host_port == port && ip_overlaps(p.host_ip, ip)) return true;
    return false;
  };
  try {
    for (const PortBinding& b : bindings) {
      std::string spec = b.container_port;
      std::string proto = "tcp";
      if (auto slash = spec.find('/'); slash != std::string::npos) {
        proto = lower(spec.substr(slash + 1));
        spec = spec.substr(0, slash);
      }
      auto cport = parse_port(spec);
      if (!cport || (proto != "tcp" && proto != "udp"))
        throw api::HttpError(400, "invalid port specification: \"" + b.container_port + "\"");
      std::string host_ip = b.host_ip.empty() ? "0.0.0.0" : b.host_ip;
      if (host_ip.find(':') != std::string::npos) continue;  // no IPv6 here
      if (!parse_ipv4(host_ip))
        throw api::HttpError(400, "invalid IP address: " + host_ip);
      PortRec rec;
      rec.container_id = container_id;
      rec.proto = proto;
      rec.host_ip = host_ip;
      rec.container_ip = container_ip;
      rec.container_port = *cport;
      rec.bridge = bridge;
      if (b.host_port.empty()) {
        int first = m.settings.port_range_first, last = m.settings.port_range_last;
        int start = m.next_port.count(proto) ? m.next_port[proto] : first;
        for (int i = 0; i <= last - first && !rec.host_port; ++i) {
          int port = first + (start - first + i) % (last - first + 1);
          if (allocated(proto, host_ip, port)) continue;
          Fd fd = reserve_port(proto, host_ip, port);
          if (fd.fd < 0) continue;
          rec.host_port = port;
          rec.reservation = std::move(fd);
          m.next_port[proto] = port + 1 > last ? first : port + 1;
        }
        if (!rec.host_port)
          throw api::HttpError(500, "Bind for " + host_ip + ":0 failed: no free host port");
      } else {
        int lo = 0, hi = 0;
        auto dash = b.host_port.find('-');
        auto a = parse_port(b.host_port.substr(0, dash));
        auto z = dash == std::string::npos ? a : parse_port(b.host_port.substr(dash + 1));
        if (!a || !z || *z < *a)
          throw api::HttpError(400, "invalid port specification: \"" + b.host_port + "\"");
        lo = *a;
        hi = *z;
        std::string last_error;
        for (int port = lo; port <= hi && !rec.host_port; ++port) {
          if (allocated(proto, host_ip, port)) {
            last_error = "Bind for " + host_ip + ":" + std::to_string(port) +
                         " failed: port is already allocated";
            continue;
          }
          Fd fd = reserve_port(proto, host_ip, port);
          if (fd.fd < 0) {
            last_error = "Error starting userland proxy: listen " + proto + "4 " + host_ip + ":" +
                         std::to_string(port) + ": bind: address already in use";
            continue;
          }
          rec.host_port = port;
          rec.reservation = std::move(fd);
        }
        if (!rec.host_port) throw api::HttpError(500, last_error);
      }
      m.ipt.ensure_all(port_rules(rec.spec()));
      out.push_back({b.container_port.find('/') == std::string::npos
                         ? b.container_port + "/tcp"
                         : b.container_port,
                     host_ip, std::to_string(rec.host_port)});
      added.push_back(std::move(rec));
    }
  } catch (...) {
    for (const PortRec& p : added) {
      try {
        m.ipt.remove_all(port_rules(p.spec()));
      } catch (const std::exception&) {
      }
    }
    throw;
  }
  m.ports.splice(m.ports.end(), added);
  m.save_ports();
  return out;
}

void NetworkManager::unpublish(const std::string& container_id) {
  std::lock_guard lock(impl_->mutex);
  impl_->unpublish_ip(container_id, "");
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
  return impl_->net_json(impl_->require(name_or_id), with_containers);
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
  std::string driver = req.driver.empty() ? "bridge" : req.driver;
  if (driver == "host" || driver == "null")
    throw api::HttpError(403, "only one instance of \"" + driver + "\" network is allowed");
  if (driver != "bridge")
    throw api::HttpError(404, "could not find plugin " + driver +
                                  " in v1 plugin registry: plugin not found");
  for (auto& [id, n] : m.nets)
    if (n->name == req.name)
      throw api::HttpError(409, "network with name " + req.name + " already exists");
  std::vector<Ipv4Net> used;
  for (auto& [id, n] : m.nets)
    if (n->is_bridge()) used.push_back(n->ipam.subnet());
  Ipv4Net subnet;
  if (!req.subnet.empty()) {
    auto parsed = Ipv4Net::parse(req.subnet);
    if (!parsed) throw api::HttpError(400, "invalid CIDR address: " + req.subnet);
    if (parsed->prefix > 30)
      throw api::HttpError(400, "invalid subnet " + req.subnet + ": too small for containers");
    for (const Ipv4Net& u : used)
      if (u.overlaps(*parsed))
        throw api::HttpError(403, "invalid pool request: Pool overlaps with other one on this address space");
    subnet = *parsed;
  } else {
    if (!req.gateway.empty())
      throw api::HttpError(400, "a subnet is needed with a gateway");
    subnet = pick_subnet(used);
  }
  std::uint32_t gateway = subnet.addr + 1;
  if (!req.gateway.empty()) {
    auto gw = parse_ipv4(req.gateway);
    if (!gw) throw api::HttpError(400, "invalid gateway address: " + req.gateway);
    if (!subnet.contains(*gw) || *gw == subnet.addr || *gw == subnet.broadcast())
      throw api::HttpError(400, "no matching subnet for gateway " + req.gateway);
    gateway = *gw;
  }
  auto n = std::make_unique<Net>();
  n->id = random_hex(32);
  n->name = req.name;
  n->names->network_name = lower(req.name);
  n->driver = "bridge";
  n->created = rfc3339_nanos_now();
  n->internal = req.internal;
  n->attachable = req.attachable;
  n->labels = req.labels;
  n->options = req.options;
  n->ipam = Ipam(subnet, gateway);
  auto bn = req.options.find(kBridgeNameOption);
  n->bridge = bn != req.options.end() ? bn->second : "br-" + n->id.substr(0, 12);
  if (n->bridge.empty() || n->bridge.size() > 15)
    throw api::HttpError(400, "invalid bridge name: " + n->bridge);
  for (auto& [id, other] : m.nets)
    if (other->bridge == n->bridge)
      throw api::HttpError(409, "bridge " + n->bridge + " is used by network " + other->name);
  m.check_bridge_name(n->bridge);
  try {
    m.setup_bridge(*n);
  } catch (...) {
    try {
      m.teardown_bridge(*n);
    } catch (const std::exception&) {
    }
    throw;
  }
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
  m.teardown_bridge(n);
  std::error_code ec;
  fs::remove(m.net_file(n), ec);
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

}  // namespace berth::agent::network
