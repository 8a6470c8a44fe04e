#include "agent/network/netlink.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <net/if.h>
#include <netlink/addr.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/link/veth.h>
#include <netlink/route/route.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <exception>
#include <fstream>
#include <stdexcept>
#include <thread>

#ifndef NSFS_MAGIC
#define NSFS_MAGIC 0x6e736673
#endif

namespace berth::agent::network::netlink {
namespace {

struct LinkDeleter {
  void operator()(rtnl_link* l) const { rtnl_link_put(l); }
};
struct AddrDeleter {
  void operator()(rtnl_addr* a) const { rtnl_addr_put(a); }
};
struct NlAddrDeleter {
  void operator()(nl_addr* a) const { nl_addr_put(a); }
};
struct RouteDeleter {
  void operator()(rtnl_route* r) const { rtnl_route_put(r); }
};
struct CacheDeleter {
  void operator()(nl_cache* c) const { nl_cache_free(c); }
};
using LinkPtr = std::unique_ptr<rtnl_link, LinkDeleter>;
using AddrPtr = std::unique_ptr<rtnl_addr, AddrDeleter>;
using NlAddrPtr = std::unique_ptr<nl_addr, NlAddrDeleter>;
using RoutePtr = std::unique_ptr<rtnl_route, RouteDeleter>;
using CachePtr = std::unique_ptr<nl_cache, CacheDeleter>;

struct Fd {
  int fd = -1;
  explicit Fd(int f) : fd(f) {}
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
};

[[noreturn]] void fail(const std::string& what, int err) {
  throw std::runtime_error(what + ": " + nl_geterror(err));
}

LinkPtr get_link(Socket& s, const std::string& name) {
  rtnl_link* link = nullptr;
  int err = rtnl_link_get_kernel(s.get(), 0, name.c_str(), &link);
  if (err < 0) {
    if (err == -NLE_NODEV || err == -NLE_OBJ_NOTFOUND) return nullptr;
    fail("get link " + name, err);
  }
  return LinkPtr(link);
}

LinkPtr require_link(Socket& s, const std::string& name) {
  LinkPtr link = get_link(s, name);
  if (!link) throw std::runtime_error("no such network interface: " + name);
  return link;
}

NlAddrPtr ipv4_addr(std::uint32_t ip, int prefix) {
  std::uint32_t be = htonl(ip);
  NlAddrPtr a(nl_addr_build(AF_INET, &be, sizeof be));
  if (!a) throw std::runtime_error("nl_addr_build failed");
  nl_addr_set_prefixlen(a.get(), prefix);
  return a;
}

}  // namespace

Socket::Socket() {
  sock_ = nl_socket_alloc();
  if (!sock_) throw std::runtime_error("nl_socket_alloc failed");
  int err = nl_connect(sock_, NETLINK_ROUTE);
  if (err < 0) {
    nl_socket_free(sock_);
    sock_ = nullptr;
    fail("netlink connect", err);
  }
}

Socket::~Socket() {
  if (sock_) nl_socket_free(sock_);
}

int link_index(Socket& s, const std::string& name) {
  LinkPtr link = get_link(s, name);
  return link ? rtnl_link_get_ifindex(link.get()) : 0;
}

std::vector<std::string> link_names(Socket& s) {
  nl_cache* raw = nullptr;
  int err = rtnl_link_alloc_cache(s.get(), AF_UNSPEC, &raw);
  if (err < 0) fail("list links", err);
  CachePtr cache(raw);
  std::vector<std::string> names;
  for (nl_object* o = nl_cache_get_first(cache.get()); o; o = nl_cache_get_next(o))
    names.emplace_back(rtnl_link_get_name(reinterpret_cast<rtnl_link*>(o)));
  return names;
}

std::optional<LinkInfo> link_info(Socket& s, const std::string& name) {
  LinkPtr link = get_link(s, name);
  if (!link) return std::nullopt;
  LinkInfo info;
  if (const char* kind = rtnl_link_get_type(link.get())) info.kind = kind;
  if (const char* alias = rtnl_link_get_ifalias(link.get())) info.alias = alias;
  return info;
}

void ensure_bridge(Socket& s, const std::string& name, const std::string& alias) {
  if (auto info = link_info(s, name)) {
    if (info->kind != "bridge")
      throw std::runtime_error("existing interface " + name + " is not a bridge");
    return;
  }
  LinkPtr link(rtnl_link_alloc());
  rtnl_link_set_name(link.get(), name.c_str());
  int err = rtnl_link_set_type(link.get(), "bridge");
  if (err < 0) fail("bridge type", err);
  err = rtnl_link_add(s.get(), link.get(), NLM_F_CREATE | NLM_F_EXCL);
  if (err < 0 && err != -NLE_EXIST) fail("create bridge " + name, err);
  if (alias.empty()) return;
  // The kernel takes an alias on a change, not with the new link.
  LinkPtr created = require_link(s, name);
  LinkPtr change(rtnl_link_alloc());
  rtnl_link_set_ifalias(change.get(), alias.c_str());
  err = rtnl_link_change(s.get(), created.get(), change.get(), 0);
  if (err < 0) fail("set alias of " + name, err);
}

void set_link_up(Socket& s, const std::string& name) {
  LinkPtr link = require_link(s, name);
  LinkPtr change(rtnl_link_alloc());
  rtnl_link_set_flags(change.get(), IFF_UP);
  int err = rtnl_link_change(s.get(), link.get(), change.get(), 0);
  if (err < 0) fail("set " + name + " up", err);
}

void delete_link(Socket& s, const std::string& name) {
  LinkPtr link = get_link(s, name);
  if (!link) return;
  int err = rtnl_link_delete(s.get(), link.get());
  if (err < 0 && err != -NLE_NODEV && err != -NLE_OBJ_NOTFOUND) fail("delete " + name, err);
}

void ensure_address(Socket& s, const std::string& link_name, std::uint32_t ip, int prefix) {
  LinkPtr link = require_link(s, link_name);
  AddrPtr addr(rtnl_addr_alloc());
  rtnl_addr_set_ifindex(addr.get(), rtnl_link_get_ifindex(link.get()));
  rtnl_addr_set_family(addr.get(), AF_INET);
  NlAddrPtr local = ipv4_addr(ip, prefix);
  int err = rtnl_addr_set_local(addr.get(), local.get());
  if (err < 0) fail("address", err);
  rtnl_addr_set_prefixlen(addr.get(), prefix);
  // The broadcast address, as `ip addr add ... brd +` would set it.
  std::uint32_t mask = prefix == 0 ? 0 : ~std::uint32_t{0} << (32 - prefix);
  if (prefix < 31) {
    NlAddrPtr brd = ipv4_addr(ip | ~mask, 32);
    rtnl_addr_set_broadcast(addr.get(), brd.get());
  }
  err = rtnl_addr_add(s.get(), addr.get(), 0);
  if (err < 0 && err != -NLE_EXIST) fail("add address to " + link_name, err);
}

void create_veth(Socket& s, const std::string& host_name, const std::string& master,
                 const std::string& peer_name, int peer_netns_fd, const std::string& peer_mac) {
  LinkPtr bridge = require_link(s, master);
  LinkPtr veth(rtnl_link_veth_alloc());
  if (!veth) throw std::runtime_error("rtnl_link_veth_alloc failed");
  rtnl_link_set_name(veth.get(), host_name.c_str());
  rtnl_link_set_master(veth.get(), rtnl_link_get_ifindex(bridge.get()));
  LinkPtr peer(rtnl_link_veth_get_peer(veth.get()));  // takes a reference
  rtnl_link_set_name(peer.get(), peer_name.c_str());
  rtnl_link_set_ns_fd(peer.get(), peer_netns_fd);
  nl_addr* mac_raw = nullptr;
  int err = nl_addr_parse(peer_mac.c_str(), AF_LLC, &mac_raw);
  if (err < 0) fail("MAC address " + peer_mac, err);
  NlAddrPtr mac(mac_raw);
  rtnl_link_set_addr(peer.get(), mac.get());
  err = rtnl_link_add(s.get(), veth.get(), NLM_F_CREATE | NLM_F_EXCL);
  if (err < 0) fail("create veth " + host_name, err);
}

bool has_default_route(Socket& s) {
  nl_cache* raw = nullptr;
  int err = rtnl_route_alloc_cache(s.get(), AF_INET, 0, &raw);
  if (err < 0) fail("list routes", err);
  CachePtr cache(raw);
  for (nl_object* o = nl_cache_get_first(cache.get()); o; o = nl_cache_get_next(o)) {
    auto* r = reinterpret_cast<rtnl_route*>(o);
    nl_addr* dst = rtnl_route_get_dst(r);
    if (rtnl_route_get_table(r) == RT_TABLE_MAIN && (!dst || nl_addr_get_prefixlen(dst) == 0))
      return true;
  }
  return false;
}

void add_default_route(Socket& s, const std::string& link_name, std::uint32_t gateway) {
  LinkPtr link = require_link(s, link_name);
  RoutePtr route(rtnl_route_alloc());
  rtnl_route_set_family(route.get(), AF_INET);
  rtnl_route_set_table(route.get(), RT_TABLE_MAIN);
  rtnl_route_set_scope(route.get(), RT_SCOPE_UNIVERSE);
  rtnl_route_set_protocol(route.get(), RTPROT_BOOT);
  rtnl_route_set_type(route.get(), RTN_UNICAST);
  NlAddrPtr dst = ipv4_addr(0, 0);
  rtnl_route_set_dst(route.get(), dst.get());
  rtnl_nexthop* nh = rtnl_route_nh_alloc();  // owned by the route once added
  rtnl_route_nh_set_ifindex(nh, rtnl_link_get_ifindex(link.get()));
  NlAddrPtr gw = ipv4_addr(gateway, 32);
  rtnl_route_nh_set_gateway(nh, gw.get());
  rtnl_route_add_nexthop(route.get(), nh);
  int err = rtnl_route_add(s.get(), route.get(), NLM_F_CREATE);
  if (err < 0 && err != -NLE_EXIST) fail("add default route via " + link_name, err);
}

void run_in_netns(const std::filesystem::path& netns_path, const std::function<void()>& fn) {
  std::exception_ptr error;
  std::thread worker([&] {
    try {
      Fd ns(::open(netns_path.c_str(), O_RDONLY | O_CLOEXEC));
      if (ns.fd < 0)
        throw std::runtime_error("open " + netns_path.string() + ": " + std::strerror(errno));
      if (::setns(ns.fd, CLONE_NEWNET) != 0)
        throw std::runtime_error("setns " + netns_path.string() + ": " + std::strerror(errno));
      fn();
    } catch (...) {
      error = std::current_exception();
    }
  });
  worker.join();
  if (error) std::rethrow_exception(error);
}

void create_netns(const std::filesystem::path& path) {
  if (is_netns(path)) return;
  std::error_code ec;
  std::filesystem::create_directories(path.parent_path(), ec);
  {
    Fd file(::open(path.c_str(), O_RDONLY | O_CREAT | O_CLOEXEC, 0444));
    if (file.fd < 0)
      throw std::runtime_error("create " + path.string() + ": " + std::strerror(errno));
  }
  std::exception_ptr error;
  std::thread worker([&] {
    try {
      if (::unshare(CLONE_NEWNET) != 0)
        throw std::runtime_error(std::string("unshare(CLONE_NEWNET): ") + std::strerror(errno));
      {
        Socket s;
        set_link_up(s, "lo");
      }
      std::string self = "/proc/self/task/" + std::to_string(::gettid()) + "/ns/net";
      if (::mount(self.c_str(), path.c_str(), nullptr, MS_BIND, nullptr) != 0)
        throw std::runtime_error("bind-mount netns at " + path.string() + ": " +
                                 std::strerror(errno));
    } catch (...) {
      error = std::current_exception();
    }
  });
  worker.join();
  if (error) {
    ::unlink(path.c_str());
    std::rethrow_exception(error);
  }
}

void remove_netns(const std::filesystem::path& path) {
  ::umount2(path.c_str(), MNT_DETACH);
  ::unlink(path.c_str());
}

bool is_netns(const std::filesystem::path& path) {
  struct statfs st {};
  return ::statfs(path.c_str(), &st) == 0 && st.f_type == static_cast<decltype(st.f_type)>(NSFS_MAGIC);
}

bool write_sysctl(const std::string& key, const std::string& value) {
  std::ofstream out("/proc/sys/" + key);
  if (!out) return false;
  out << value;
  out.flush();
  return static_cast<bool>(out);
}

}  // namespace berth::agent::network::netlink
