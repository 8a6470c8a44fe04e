#pragma once
// Thin RAII layer over libnl-route-3 for what container networking needs:
// bridges, veth pairs, addresses, routes, link state, and running code inside
// another network namespace. Every call throws std::runtime_error with the
// libnl error text on failure.
#include <array>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

struct nl_sock;

namespace berth::agent::network::netlink {

// A connected NETLINK_ROUTE socket in the calling thread's network namespace.
class Socket {
 public:
  Socket();
  ~Socket();
  Socket(const Socket&) = delete;
  Socket& operator=(const Socket&) = delete;
  nl_sock* get() const { return sock_; }

 private:
  nl_sock* sock_ = nullptr;
};

int link_index(Socket& s, const std::string& name);  // 0 when absent
std::vector<std::string> link_names(Socket& s);

struct LinkInfo {
  std::string kind;   // "bridge", "veth", ...; "" for lo and physical NICs
  std::string alias;  // IFLA_IFALIAS
};
std::optional<LinkInfo> link_info(Socket& s, const std::string& name);  // nullopt: absent

// A bridge named `name`; an existing bridge is kept as it is. A new one gets
// `alias` (when not empty), so its creator can recognise it later. Throws
// when `name` exists and is not a bridge.
void ensure_bridge(Socket& s, const std::string& name, const std::string& alias = "");
void set_link_up(Socket& s, const std::string& name);
void delete_link(Socket& s, const std::string& name);  // absent is fine
// ip/prefix on the link; already present is fine.
void ensure_address(Socket& s, const std::string& link, std::uint32_t ip, int prefix);
// An IPv6 address (network order), without duplicate address detection.
void ensure_address6(Socket& s, const std::string& link, const std::array<std::uint8_t, 16>& ip,
                     int prefix);
// A veth pair: `host_name` stays here, enslaved to `master`; its peer is
// created directly in the namespace open at `peer_netns_fd` as `peer_name`
// with MAC `peer_mac`.
void create_veth(Socket& s, const std::string& host_name, const std::string& master,
                 const std::string& peer_name, int peer_netns_fd, const std::string& peer_mac);
// The same, with both ends at `mtu` (0: the kernel's default).
void create_veth(Socket& s, const std::string& host_name, const std::string& master,
                 const std::string& peer_name, int peer_netns_fd, const std::string& peer_mac,
                 int mtu);
void set_link_mtu(Socket& s, const std::string& name, int mtu);
int link_mtu(Socket& s, const std::string& name);  // 0 when absent

// A VXLAN device for an overlay network: learning off, ARP answered from its
// neighbour table (proxy), no default destination (no flooding: only MACs
// with an FDB entry are sent, each to its own remote), enslaved to `master`.
struct VxlanSpec {
  std::string name;
  std::uint32_t vni = 0;
  std::uint32_t local = 0;  // the underlay address (host byte order)
  std::uint16_t port = 4789;
  int mtu = 1450;
  std::string master;
};
// An existing device of that name is kept when it is a vxlan with this id
// and local address, else deleted and made again. The device is left up.
void ensure_vxlan(Socket& s, const VxlanSpec& spec);
struct VxlanInfo {
  std::uint32_t vni = 0, local = 0;
  std::uint16_t port = 0;
  bool learning = true, proxy = false;
};
std::optional<VxlanInfo> vxlan_info(Socket& s, const std::string& name);

// Static forwarding entries of a vxlan device: frames for `mac` go to the
// VTEP at `remote` (`bridge fdb ... dev D dst R self permanent`).
struct FdbEntry {
  std::string mac;  // "02:42:0a:0a:00:02"
  std::uint32_t remote = 0;
  bool operator==(const FdbEntry&) const = default;
  auto operator<=>(const FdbEntry&) const = default;
};
std::vector<FdbEntry> fdb_entries(Socket& s, const std::string& dev);  // permanent ones with a remote
void replace_fdb(Socket& s, const std::string& dev, const FdbEntry& e);
void delete_fdb(Socket& s, const std::string& dev, const FdbEntry& e);  // absent is fine

// Permanent IPv4 neighbour entries (`ip neigh replace IP lladdr MAC dev D nud permanent`).
struct NeighEntry {
  std::uint32_t ip = 0;
  std::string mac;
  bool operator==(const NeighEntry&) const = default;
  auto operator<=>(const NeighEntry&) const = default;
};
std::vector<NeighEntry> neigh_entries(Socket& s, const std::string& dev);  // permanent ones
void replace_neigh(Socket& s, const std::string& dev, const NeighEntry& e);
void delete_neigh(Socket& s, const std::string& dev, const NeighEntry& e);  // absent is fine

// A default route via `gateway` out of `link`; already present is fine.
void add_default_route(Socket& s, const std::string& link, std::uint32_t gateway);
void add_default_route6(Socket& s, const std::string& link,
                        const std::array<std::uint8_t, 16>& gateway);
bool has_default_route(Socket& s, int family = 2 /* AF_INET */);

// Runs fn on a fresh thread that has joined the network namespace at
// `netns_path` (other threads are untouched). Rethrows fn's exception.
void run_in_netns(const std::filesystem::path& netns_path, const std::function<void()>& fn);

// A new network namespace with lo up, bind-mounted at `path` (the mount
// survives without any process in it). Made on a thread that unshares, so the
// agent's own namespace is untouched.
void create_netns(const std::filesystem::path& path);
// Detaches the bind mount and removes the file; absent is fine.
void remove_netns(const std::filesystem::path& path);
// True when `path` is a mounted network namespace (nsfs).
bool is_netns(const std::filesystem::path& path);

// Writes a sysctl under /proc/sys (e.g. "net/ipv4/ip_forward", "1") in the
// calling thread's network namespace. Returns false when it cannot.
bool write_sysctl(const std::string& key, const std::string& value);

}  // namespace berth::agent::network::netlink
