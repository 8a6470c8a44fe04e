#pragma once
// A network driver, in the shape of libnetwork's driverapi: the manager keeps
// the records (names, ids, endpoints, published ports, events, state files)
// and a driver makes what a network of its kind needs. "bridge" keeps its
// addresses on this machine; "overlay" keeps them in the cluster store and
// joins the machines' bridges with VXLAN.
//
// Every call happens with the manager's lock held. Errors are api::HttpError
// with dockerd's words (or std::runtime_error for the kernel's).
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "agent/network/iptables.h"
#include "agent/network/network_manager.h"
#include "agent/network/network_state.h"

namespace berth::agent::network {

// What the drivers share from the manager.
struct DriverContext {
  const NetworkSettings& settings;
  Iptables& ipt;
  Iptables& ipt6;  // networks with IPv6
  std::function<std::vector<std::string>()> upstreams;  // the host's nameservers
};

// What other networks hold already, for a new one.
struct TakenResources {
  std::vector<Ipv4Net> subnets;  // of every network with addresses
  std::vector<Ipv6Net> subnets6;  // of every network with IPv6
  Ipv6Net ula48;  // this machine's unique local prefix, for --ipv6 without a subnet
  std::map<std::string, std::string> bridges;  // bridge -> network name
};

class NetworkDriver {
 public:
  virtual ~NetworkDriver() = default;
  virtual const char* name() const = 0;

  // Validates the request, fills in `n` (addresses, bridge, ...) and makes
  // what must exist before the first endpoint. Idempotent on failure: what
  // it made is undone.
  virtual void create_network(Net& n, const NetworkCreate& req, const TakenResources& taken) = 0;
  // Undoes create_network; the manager has checked the local endpoints.
  virtual void delete_network(Net& n) = 0;
  // At agent start, for a network loaded from the state files (its live
  // endpoints already checked).
  virtual void restore(Net& n) = 0;
  // An endpoint for a container: an address, a MAC and a veth into the
  // sandbox. Fills in e (ip, mac, host_veth, ifname); on failure nothing is left.
  virtual void join(Net& n, EndpointRec& e, const EndpointRequest& req,
                    const std::filesystem::path& sandbox) = 0;
  // Undoes join (the manager removes `e` from n.endpoints afterwards).
  // Never throws for what is already gone.
  virtual void leave(Net& n, const EndpointRec& e) = 0;
  // An endpoint found stale at start (its namespace is gone): release its
  // address without touching links.
  virtual void forget(Net& n, const EndpointRec& e) = 0;
};

}  // namespace berth::agent::network
