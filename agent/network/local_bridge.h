#pragma once
// The kernel side both drivers share: a network's bridge on this machine
// (gateway address, rules, the DNS server) and a container's veth into its
// sandbox.
#include <filesystem>
#include <string>

#include "agent/network/network_driver.h"

namespace berth::agent::network {

// The alias of the bridges berth creates (`ip link` shows it).
inline constexpr const char* kBridgeAlias = "berth";

// A new network may name a bridge only when no interface has that name yet,
// or when it is a bridge berth made (left by a crash): never an interface
// such as eth0 or lo, which `network rm` would delete. Throws HttpError 400/409.
void check_bridge_name(const DriverContext& ctx, const std::string& name);
// True when the network's bridge name is taken by an interface that is not
// a bridge (state from older agents).
bool names_other_interface(const DriverContext& ctx, const Net& n);

// The bridge with the gateway address, up, at n.mtu when set; route_localnet
// (ports published on 127.0.0.1); forwarding, masquerade and isolation rules;
// the DNS server on user-defined networks. Idempotent.
void bring_up_bridge(DriverContext& ctx, Net& n);
void tear_down_bridge(DriverContext& ctx, Net& n);

// A veth from n.bridge into the sandbox as the first free ethN, with e.ip and
// e.mac at n.mtu, and the default route via the gateway unless the network
// is internal or the sandbox has one. Fills e.host_veth and e.ifname; on
// failure the veth is gone again.
void attach_veth(const Net& n, EndpointRec& e, const std::filesystem::path& sandbox);
void detach_veth(const EndpointRec& e);  // gone already is fine

}  // namespace berth::agent::network
