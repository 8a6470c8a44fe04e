#pragma once
// Container networking: the default "bridge" network on berth0, "host",
// "none", user-defined bridge networks, overlay networks across a berth
// cluster (VXLAN, with etcd as the store), IPAM, NAT, published ports and the
// DNS server that resolves container names on user-defined networks. The
// drivers (bridge_driver, overlay_driver) make what each kind needs; this
// class keeps the records.
// Thread-safe. Network setup goes through netlink (libnl-route-3) and
// iptables (nft backend) run with argv, never through a shell.
//
// How the runtime uses it (state lives in <data_root>/network):
//   agent start:   NetworkManager nm(data_root/"network"); nm.init();
//                  nm.set_container_hooks({resolve, attached, detached});
//   container start, NetworkMode bridge / a user network / none:
//                  sandbox = nm.create_sandbox(id)            (none: stop here,
//                  but call nm.connect("none", ...) to show it in inspect)
//                  for each configured network, in order:
//                    ep = nm.connect(net, id, name, sandbox, {aliases, ipv4})
//                    -> NetworkSettings.Networks[ep.network_name] = ep.to_json()
//                  nm.publish(id, first_bridge_endpoint.ip, bindings)
//                    -> NetworkSettings.Ports; errors are dockerd's words
//                  /etc/resolv.conf = nm.resolv_conf(first network)
//                  crun: linux.namespaces network path = sandbox
//   NetworkMode host: nm.connect("host", id, name, "", {}) (record only),
//                  resolv.conf = nm.resolv_conf("host") (the host's file)
//   container:<id>: share the other container's sandbox path; no connect.
//   container stop/exit: nm.destroy_sandbox(id) (ports, endpoints, netns).
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "agent/network/etcd_client.h"

namespace berth::agent::events {
class EventBus;
}

namespace berth::agent::network {

// Docker's EndpointSettings, as it appears in a container's
// NetworkSettings.Networks[name] (to_json() gives the API shape).
struct Endpoint {
  std::string network_name;
  std::string network_id;
  std::string endpoint_id;
  std::string ip;  // "172.17.0.2"
  int prefix_len = 0;
  std::string gateway;
  std::string ipv6;  // "fd12:3456:789a:1::2" on a network with IPv6
  int ipv6_prefix_len = 0;
  std::string ipv6_gateway;
  std::string mac;
  std::vector<std::string> aliases;
  std::vector<std::string> links;  // "target:alias"
  std::vector<std::string> dns_names;
  nlohmann::json to_json() const;
};

// What a container asks for on one network: the EndpointsConfig entry of
// POST /containers/create (Aliases, IPAMConfig.IPv4Address/IPv6Address,
// Links, MacAddress).
struct EndpointRequest {
  std::vector<std::string> aliases;
  std::string ipv4;  // empty: allocate
  std::string mac;   // --mac-address; empty: derived from the IP, as dockerd
  std::string ipv6;  // on a network with IPv6; empty: allocate
  // --link TARGET[:ALIAS] on a user-defined network: ALIAS resolves to
  // TARGET for this container only (stored as "target:alias").
  std::vector<std::string> links;

  // From an EndpointSettings object (anything else gives an empty request);
  // links come out as "target:alias". Throws api::HttpError(400) for a bad link.
  static EndpointRequest from_json(const nlohmann::json& settings);
  nlohmann::json to_json() const;  // the EndpointSettings fields it came from
};
// "db" -> "db:db", "/db:/web/alias" (as dockerd stores it) -> "db:alias".
std::string normalize_link(const std::string& link);

struct PortBinding {
  std::string container_port;  // "80/tcp"
  std::string host_ip;         // "" or "0.0.0.0"
  std::string host_port;       // "" to pick a free one
};

// This machine as a member of a berth cluster: overlay networks, kept in
// etcd (agent.json "cluster").
struct ClusterSettings {
  std::string name;       // the cluster
  std::string machine;    // this member
  std::string advertise;  // its underlay address: the VXLAN tunnel endpoint
  EtcdOptions etcd;
  std::string key_prefix = "/berth/";
  std::uint16_t vxlan_port = 4789;
  // A full read of the store this often, even while the watch is quiet (a
  // partitioned etcd member's watch says nothing).
  std::chrono::milliseconds resync_interval{30000};
  std::function<void(const std::string&)> log;  // warnings about the store
};

// Where the manager keeps and finds things; the defaults are the agent's.
struct NetworkSettings {
  std::filesystem::path netns_dir = "/run/berth/netns";
  std::filesystem::path host_resolv_conf = "/etc/resolv.conf";
  std::string iptables = "iptables";
  std::string ip6tables = "ip6tables";  // for networks with IPv6
  std::string default_bridge = "berth0";
  std::string default_subnet = "172.17.0.0/16";
  std::uint16_t dns_port = 53;
  int port_range_first = 32768;  // for -P and "-p 80" (no host port)
  int port_range_last = 60999;
  // False: no bridges, iptables rules, sysctls or DNS servers are made (the
  // API and state still work; connect/publish fail). For agents run on a
  // machine whose network must not change, e.g. tests on the build host.
  bool manage_host = true;
  // Set: `docker network create -d overlay` works, across the cluster.
  std::optional<ClusterSettings> cluster;
};

// POST /networks/create, already validated for shape.
struct NetworkCreate {
  std::string name;
  std::string driver = "bridge";  // or "overlay" (on a cluster member)
  bool internal = false;
  bool attachable = false;
  std::map<std::string, std::string> labels;
  std::map<std::string, std::string> options;
  std::string subnet;   // "" to pick one like dockerd
  std::string gateway;  // "" for the first address
  std::string ip_range;  // overlay: where addresses come from ("" for the whole subnet)
  bool enable_ipv6 = false;  // bridge: a v6 subnet as well (--ipv6)
  std::string subnet6;   // "" to pick a /64 of this machine's unique local prefix
  std::string gateway6;  // "" for the first address
};

// A container as the network API needs it (resolved by the runtime).
struct ContainerInfo {
  std::string id;    // full id
  std::string name;  // without the leading "/"
  std::filesystem::path sandbox;  // its netns path while running
  bool running = false;
  std::string network_mode;  // HostConfig.NetworkMode: "bridge", "host", "none", "container:ID", a network
};

// Set by the runtime so POST /networks/{id}/connect|disconnect can work.
struct ContainerHooks {
  // A container by name, full id or id prefix; nullopt when there is none.
  std::function<std::optional<ContainerInfo>(const std::string& name_or_id)> resolve;
  // After connect: record the network in the container's config (and the
  // live endpoint, when it was running) so inspect shows
  // NetworkSettings.Networks[network_name]. May throw api::HttpError.
  std::function<void(const std::string& container_id, const std::string& network_name,
                     const EndpointRequest& request, const std::optional<Endpoint>& endpoint)>
      attached;
  // After disconnect: drop the network from the container's config. Throws
  // api::HttpError(403) when the container is not on that network.
  std::function<void(const std::string& container_id, const std::string& network_name)> detached;
};

class NetworkManager {
 public:
  // <data_root>/network for state (networks, IPAM leases). This one manages
  // the host network only in a berth-os VM (/etc/berth-os exists) or when
  // BERTH_MANAGE_HOST_NETWORK=1 (=0 forces it off), so an agent started on a
  // build machine never adds bridges or iptables rules there.
  explicit NetworkManager(std::filesystem::path root);
  NetworkManager(std::filesystem::path root, NetworkSettings settings);
  ~NetworkManager();
  NetworkManager(const NetworkManager&) = delete;
  NetworkManager& operator=(const NetworkManager&) = delete;

  // Creates berth0 and the base NAT rules; re-creates user networks after a
  // reboot. Called once at agent start, before any container starts.
  void init();

  // "bridge", "host", "none", a user network's name, full id or id prefix.
  // Throws api::HttpError(404) "network NAME not found".
  std::string network_id(const std::string& name_or_id) const;
  bool is_bridge_like(const std::string& name_or_id) const;  // bridge or user-defined

  // A new network namespace with "lo" up, bind-mounted at the returned path
  // (/run/berth/netns/<container id>). Idempotent.
  std::filesystem::path create_sandbox(const std::string& container_id);
  // Releases everything the container holds (published ports, endpoints and
  // their addresses on every network), then unmounts the namespace.
  void destroy_sandbox(const std::string& container_id);

  // A veth into the sandbox as eth0, eth1, ... with an address from the
  // network's IPAM, default route via the first network's gateway, and DNS
  // names (container name, aliases, short id) on user-defined networks.
  Endpoint connect(const std::string& network, const std::string& container_id,
                   const std::string& container_name, const std::filesystem::path& sandbox,
                   const EndpointRequest& request);
  void disconnect(const std::string& network, const std::string& container_id);

  // DNAT from host ports to container_ip (which must be one of the
  // container's endpoints); 127.0.0.1 works through route_localnet on the
  // bridge and a masquerade, so no userland proxy runs (its DNAT is in nat
  // OUTPUT only: the machine's own processes reach it, nobody else). The host
  // port is held bound (not listening) while published, so nothing else takes it.
  // Returns the bindings with host ports filled in. Throws HttpError(500/400)
  // for "port is already allocated" or a malformed spec, like dockerd.
  std::vector<PortBinding> publish(const std::string& container_id, const std::string& container_ip,
                                   const std::vector<PortBinding>& bindings);
  void unpublish(const std::string& container_id);

  // The nameserver lines a container on `network` should use: the network's
  // gateway (the embedded DNS) on user-defined networks, the host's
  // resolv.conf servers on "bridge".
  std::string resolv_conf(const std::string& network) const;

  // --- The /networks API (agent/api/networks.cpp) ---
  // dockerd's network object (GET /networks/{id}); Containers filled from the
  // live endpoints when with_containers.
  nlohmann::json inspect(const std::string& name_or_id, bool with_containers = true) const;
  std::vector<nlohmann::json> list() const;  // every network, Containers empty
  // Returns the new id. 409 "network with name X already exists", 400 for
  // bad input, 403 "Pool overlaps with other one on this address space".
  // com.docker.network.bridge.name may not name an existing interface: 400
  // "existing interface X is not a bridge", 409 for a bridge berth did not make.
  std::string create_network(const NetworkCreate& request);
  // 403 for predefined networks, 403 "error while removing network: network
  // NAME id ID has active endpoints" while containers use it, 404 when missing.
  void remove_network(const std::string& name_or_id);
  bool is_predefined(const std::string& name_or_id) const;
  bool has_endpoints(const std::string& name_or_id) const;
  // The live endpoint of a container on a network (nullopt when none).
  std::optional<Endpoint> endpoint(const std::string& network, const std::string& container_id) const;

  void set_container_hooks(ContainerHooks hooks);
  ContainerHooks container_hooks() const;

  // GET /events: network create, connect, disconnect and destroy go here
  // (none while unset).
  void set_events(std::shared_ptr<events::EventBus> bus);

  // The overlay driver on a cluster member (berth's /berth/cluster routes), else nullptr.
  class OverlayDriver* overlay();

  struct Impl;
  Impl& impl() { return *impl_; }

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace berth::agent::network
