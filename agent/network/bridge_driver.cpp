#include "agent/network/bridge_driver.h"

#include "agent/api/http.h"
#include "agent/network/local_bridge.h"

namespace berth::agent::network {

namespace {
constexpr const char* kBridgeNameOption = "com.docker.network.bridge.name";

void set_up_ipv6(Net& n, const NetworkCreate& req, const TakenResources& taken) {
  Ipv6Net subnet;
  if (!req.subnet6.empty()) {
    auto parsed = Ipv6Net::parse(req.subnet6);
    if (!parsed) throw api::HttpError(400, "invalid CIDR address: " + req.subnet6);
    if (parsed->prefix > 124)
      throw api::HttpError(400, "invalid subnet " + req.subnet6 + ": too small for containers");
    for (const Ipv6Net& u : taken.subnets6)
      if (u.overlaps(*parsed))
        throw api::HttpError(403, "invalid pool request: Pool overlaps with other one on this address space");
    subnet = *parsed;
  } else {
    if (!req.gateway6.empty()) throw api::HttpError(400, "a subnet is needed with a gateway");
    subnet = pick_subnet6(taken.ula48, taken.subnets6);
  }
  Ipv6Addr gateway = subnet.addr + 1;
  if (!req.gateway6.empty()) {
    auto gw = parse_ipv6(req.gateway6);
    if (!gw) throw api::HttpError(400, "invalid gateway address: " + req.gateway6);
    if (!subnet.contains(*gw) || *gw == subnet.addr)
      throw api::HttpError(400, "no matching subnet for gateway " + req.gateway6);
    gateway = *gw;
  }
  n.ipv6 = true;
  n.ipam6 = Ipam6(subnet, gateway);
}
}  // namespace

void BridgeDriver::create_network(Net& n, const NetworkCreate& req, const TakenResources& taken) {
  Ipv4Net subnet;
  if (!req.subnet.empty()) {
    auto parsed = Ipv4Net::parse(req.subnet);
    if (!parsed) throw api::HttpError(400, "invalid CIDR address: " + req.subnet);
    if (parsed->prefix > 30)
      throw api::HttpError(400, "invalid subnet " + req.subnet + ": too small for containers");
    for (const Ipv4Net& u : taken.subnets)
      if (u.overlaps(*parsed))
        throw api::HttpError(403, "invalid pool request: Pool overlaps with other one on this address space");
    subnet = *parsed;
  } else {
    if (!req.gateway.empty()) throw api::HttpError(400, "a subnet is needed with a gateway");
    subnet = pick_subnet(taken.subnets);
  }
  std::uint32_t gateway = subnet.addr + 1;
  if (!req.gateway.empty()) {
    auto gw = parse_ipv4(req.gateway);
    if (!gw) throw api::HttpError(400, "invalid gateway address: " + req.gateway);
    if (!subnet.contains(*gw) || *gw == subnet.addr || *gw == subnet.broadcast())
      throw api::HttpError(400, "no matching subnet for gateway " + req.gateway);
    gateway = *gw;
  }
  n.ipam = Ipam(subnet, gateway);
  if (req.enable_ipv6) set_up_ipv6(n, req, taken);
  auto bn = req.options.find(kBridgeNameOption);
  n.bridge = bn != req.options.end() ? bn->second : "br-" + n.id.substr(0, 12);
  if (n.bridge.empty() || n.bridge.size() > 15) throw api::HttpError(400, "invalid bridge name: " + n.bridge);
  if (auto used = taken.bridges.find(n.bridge); used != taken.bridges.end())
    throw api::HttpError(409, "bridge " + n.bridge + " is used by network " + used->second);
  check_bridge_name(ctx_, n.bridge);
  try {
    bring_up_bridge(ctx_, n);
  } catch (...) {
    try {
      tear_down_bridge(ctx_, n);
    } catch (const std::exception&) {
    }
    throw;
  }
}

void BridgeDriver::delete_network(Net& n) { tear_down_bridge(ctx_, n); }

void BridgeDriver::restore(Net& n) {
  // State from older agents may give a user network an interface that is
  // not a bridge (eth0): it stays listed, and that interface alone.
  if (n.predefined || !names_other_interface(ctx_, n)) bring_up_bridge(ctx_, n);
}

void BridgeDriver::join(Net& n, EndpointRec& e, const EndpointRequest& req,
                        const std::filesystem::path& sandbox) {
  if (!ctx_.settings.manage_host) throw api::HttpError(500, "container networking is disabled on this host");
  if (n.predefined && !req.ipv4.empty())
    throw api::HttpError(400, "user specified IP address is supported on user defined networks only");
  if (n.predefined && !req.aliases.empty())
    throw api::HttpError(400, "network-scoped alias is supported only for containers in user defined networks");
  if (n.predefined && !req.links.empty())
    throw api::HttpError(400, "network-scoped links are supported only for containers in user "
                              "defined networks (docker run --link works on the default bridge)");
  if (!n.ipv6 && !req.ipv6.empty())
    throw api::HttpError(400, "IPv6 address " + req.ipv6 + " given, but network " + n.name +
                                  " has no IPv6: create it with --ipv6");
  e.ip = n.ipam.allocate(e.container_id, req.ipv4);
  try {
    if (n.ipv6) e.ip6 = n.ipam6.allocate(e.container_id, req.ipv6);
    e.mac = req.mac.empty() ? mac_for(e.ip) : req.mac;
    attach_veth(n, e, sandbox);
  } catch (...) {
    forget(n, e);
    throw;
  }
}

void BridgeDriver::leave(Net& n, const EndpointRec& e) {
  detach_veth(e);
  forget(n, e);
}

void BridgeDriver::forget(Net& n, const EndpointRec& e) {
  n.ipam.release(e.container_id);
  if (n.ipv6) n.ipam6.release(e.container_id);
}

}  // namespace berth::agent::network
