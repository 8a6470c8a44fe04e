#include "agent/network/bridge_driver.h"

#include "agent/api/http.h"
#include "agent/network/local_bridge.h"

namespace berth::agent::network {

namespace {
constexpr const char* kBridgeNameOption = "com.docker.network.bridge.name";
}

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
  e.ip = n.ipam.allocate(e.container_id, req.ipv4);
  e.mac = req.mac.empty() ? mac_for(e.ip) : req.mac;
  try {
    attach_veth(n, e, sandbox);
  } catch (...) {
    n.ipam.release(e.container_id);
    throw;
  }
}

void BridgeDriver::leave(Net& n, const EndpointRec& e) {
  detach_veth(e);
  n.ipam.release(e.container_id);
}

void BridgeDriver::forget(Net& n, const EndpointRec& e) { n.ipam.release(e.container_id); }

}  // namespace berth::agent::network
