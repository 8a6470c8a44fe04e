#pragma once
// Thin RAII layer over libnl-route-3 for what container networking needs:
// bridges, veth pairs, addresses, routes, link state, and running code inside
// another network namespace. Every call throws std::runtime_error with the
// libnl error text on failure.
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
// A veth pair: `host_name` stays here, enslaved to `master`; its peer is
// created directly in the namespace open at `peer_netns_fd` as `peer_name`
// with MAC `peer_mac`.
void create_veth(Socket& s, const std::string& host_name, const std::string& master,
                 const std::string& peer_name, int peer_netns_fd, const std::string& peer_mac);
// A default route via `gateway` out of `link`; already present is fine.
void add_default_route(Socket& s, const std::string& link, std::uint32_t gateway);
bool has_default_route(Socket& s);

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
