#include "agent/network/local_bridge.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <set>

#include "agent/api/http.h"
#include "agent/network/netlink.h"
#include "agent/network/util.h"

namespace berth::agent::network {

namespace {
struct Fd {
  int fd = -1;
  explicit Fd(int f) : fd(f) {}
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
};
}  // namespace

void check_bridge_name(const DriverContext& ctx, const std::string& name) {
  if (!ctx.settings.manage_host) return;
  netlink::Socket s;
  auto info = netlink::link_info(s, name);
  if (!info) return;
  if (info->kind != "bridge") throw api::HttpError(400, "existing interface " + name + " is not a bridge");
  if (info->alias != kBridgeAlias)
    throw api::HttpError(409, "existing bridge " + name + " was not created by berth");
}

bool names_other_interface(const DriverContext& ctx, const Net& n) {
  if (!ctx.settings.manage_host) return false;
  netlink::Socket s;
  auto info = netlink::link_info(s, n.bridge);
  return info && info->kind != "bridge";
}

// Route_localnet lets the machine's own 127.0.0.1 reach ports published on
// it; the raw PREROUTING guard (base_rules) keeps 127/8 from arriving here.
void bring_up_bridge(DriverContext& ctx, Net& n) {
  if (!ctx.settings.manage_host) return;
  {
    netlink::Socket s;
    netlink::ensure_bridge(s, n.bridge, kBridgeAlias);
    if (n.mtu > 0) netlink::set_link_mtu(s, n.bridge, n.mtu);
    netlink::ensure_address(s, n.bridge, n.ipam.gateway(), n.ipam.subnet().prefix);
    if (n.ipv6) {
      netlink::write_sysctl("net/ipv6/conf/" + n.bridge + "/disable_ipv6", "0");
      netlink::ensure_address6(s, n.bridge, ipv6_bytes(n.ipam6.gateway()), n.ipam6.subnet().prefix);
    }
    netlink::set_link_up(s, n.bridge);
  }
  netlink::write_sysctl("net/ipv4/conf/" + n.bridge + "/route_localnet", "1");
  ctx.ipt.ensure_all(bridge_rules({n.bridge, n.ipam.subnet().str(), n.internal}));
  if (n.ipv6) {
    ctx.ipt6.ensure_chains(base_chains6());
    ctx.ipt6.ensure_all(base_rules6());
    ctx.ipt6.set_policy("filter", "FORWARD", kForwardPolicy);
    netlink::write_sysctl("net/ipv6/conf/all/forwarding", "1");
    ctx.ipt6.ensure_all(bridge_rules({n.bridge, n.ipam6.subnet().str(), n.internal}));
  }
  if (n.user_defined() && !n.dns) {
    DnsServerConfig dns;
    dns.ip = n.ipam.gateway();
    dns.port = ctx.settings.dns_port;
    dns.client_net = n.ipam.subnet().addr;
    dns.client_prefix = n.ipam.subnet().prefix;
    dns.lookup = [names = n.names](const std::string& q, std::uint32_t client) {
      return names->lookup(q, client);
    };
    dns.upstreams = ctx.upstreams;
    try {
      n.dns = std::make_unique<DnsServer>(std::move(dns));
    } catch (const std::exception&) {
      // Containers on it still work, only without name resolution.
    }
  }
}

void tear_down_bridge(DriverContext& ctx, Net& n) {
  n.dns.reset();
  if (!ctx.settings.manage_host) return;
  ctx.ipt.remove_all(bridge_rules({n.bridge, n.ipam.subnet().str(), n.internal}));
  if (n.ipv6) ctx.ipt6.remove_all(bridge_rules({n.bridge, n.ipam6.subnet().str(), n.internal}));
  netlink::Socket s;
  // Only a bridge: state from older agents may name an interface like eth0.
  auto info = netlink::link_info(s, n.bridge);
  if (info && info->kind == "bridge") netlink::delete_link(s, n.bridge);
}

void attach_veth(const Net& n, EndpointRec& e, const std::filesystem::path& sandbox) {
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
      netlink::create_veth(s, e.host_veth, n.bridge, e.ifname, ns.fd, e.mac, n.mtu);
      netlink::set_link_up(s, e.host_veth);
    }
    const std::uint32_t gateway = n.ipam.gateway();
    const int prefix = n.ipam.subnet().prefix;
    const bool route = !n.internal;
    const bool v6 = n.ipv6 && e.ip6;
    netlink::run_in_netns(sandbox, [&] {
      netlink::Socket s;
      netlink::ensure_address(s, e.ifname, e.ip, prefix);
      if (v6) {
        netlink::write_sysctl("net/ipv6/conf/" + e.ifname + "/disable_ipv6", "0");
        netlink::ensure_address6(s, e.ifname, ipv6_bytes(e.ip6), n.ipam6.subnet().prefix);
      }
      netlink::set_link_up(s, e.ifname);
      if (route && !netlink::has_default_route(s)) netlink::add_default_route(s, e.ifname, gateway);
      if (v6 && route && !netlink::has_default_route(s, AF_INET6))
        netlink::add_default_route6(s, e.ifname, ipv6_bytes(n.ipam6.gateway()));
    });
  } catch (...) {
    detach_veth(e);
    throw;
  }
}

void detach_veth(const EndpointRec& e) {
  if (e.host_veth.empty()) return;
  try {
    netlink::Socket s;
    netlink::delete_link(s, e.host_veth);
  } catch (const std::exception&) {
    // Gone with its namespace already.
  }
}

}  // namespace berth::agent::network
