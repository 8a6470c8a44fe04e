#include "agent/network/netlink.h"

#include <fcntl.h>
#include <linux/if_addr.h>
#include <linux/magic.h>
#include <linux/neighbour.h>
#include <net/if.h>
#include <netlink/addr.h>
#include <netlink/attr.h>
#include <netlink/msg.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/link/veth.h>
#include <netlink/route/link/vxlan.h>
#include <netlink/route/route.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <exception>
#include <random>
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

NlAddrPtr ipv6_addr(const std::array<std::uint8_t, 16>& ip, int prefix) {
  NlAddrPtr a(nl_addr_build(AF_INET6, ip.data(), ip.size()));
  if (!a) throw std::runtime_error("nl_addr_build failed");
  nl_addr_set_prefixlen(a.get(), prefix);
  return a;
}

void add_route_via(Socket& s, const std::string& link_name, int family, NlAddrPtr dst,
                   NlAddrPtr gw) {
  LinkPtr link = require_link(s, link_name);
  RoutePtr route(rtnl_route_alloc());
  rtnl_route_set_family(route.get(), static_cast<std::uint8_t>(family));
  rtnl_route_set_table(route.get(), RT_TABLE_MAIN);
  rtnl_route_set_scope(route.get(), RT_SCOPE_UNIVERSE);
  rtnl_route_set_protocol(route.get(), RTPROT_BOOT);
  rtnl_route_set_type(route.get(), RTN_UNICAST);
  rtnl_route_set_dst(route.get(), dst.get());
  rtnl_nexthop* nh = rtnl_route_nh_alloc();  // owned by the route once added
  rtnl_route_nh_set_ifindex(nh, rtnl_link_get_ifindex(link.get()));
  rtnl_route_nh_set_gateway(nh, gw.get());
  rtnl_route_add_nexthop(route.get(), nh);
  int err = rtnl_route_add(s.get(), route.get(), NLM_F_CREATE);
  if (err < 0 && err != -NLE_EXIST) fail("add default route via " + link_name, err);
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
  // A MAC of its own: otherwise the kernel gives the bridge its lowest port's
  // and changes it as ports come, and containers' ARP entries for the
  // gateway go stale each time one joins.
  std::random_device random;
  std::array<unsigned char, 6> mac = {0x02, 0x42};
  for (std::size_t i = 2; i < mac.size(); ++i) mac[i] = static_cast<unsigned char>(random());
  NlAddrPtr lladdr(nl_addr_build(AF_LLC, mac.data(), mac.size()));
  if (!lladdr) throw std::runtime_error("nl_addr_build failed");
  rtnl_link_set_addr(link.get(), lladdr.get());
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

void ensure_address6(Socket& s, const std::string& link_name, const std::array<std::uint8_t, 16>& ip,
                     int prefix) {
  LinkPtr link = require_link(s, link_name);
  AddrPtr addr(rtnl_addr_alloc());
  rtnl_addr_set_ifindex(addr.get(), rtnl_link_get_ifindex(link.get()));
  rtnl_addr_set_family(addr.get(), AF_INET6);
  NlAddrPtr local = ipv6_addr(ip, prefix);
  int err = rtnl_addr_set_local(addr.get(), local.get());
  if (err < 0) fail("address", err);
  rtnl_addr_set_prefixlen(addr.get(), prefix);
  rtnl_addr_set_flags(addr.get(), IFA_F_NODAD);  // usable at once, as dockerd sets it
  err = rtnl_addr_add(s.get(), addr.get(), 0);
  if (err < 0 && err != -NLE_EXIST) fail("add address to " + link_name, err);
}

void create_veth(Socket& s, const std::string& host_name, const std::string& master,
                 const std::string& peer_name, int peer_netns_fd, const std::string& peer_mac) {
  create_veth(s, host_name, master, peer_name, peer_netns_fd, peer_mac, 0);
}

void create_veth(Socket& s, const std::string& host_name, const std::string& master,
                 const std::string& peer_name, int peer_netns_fd, const std::string& peer_mac,
                 int mtu) {
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
  if (mtu > 0) {
    rtnl_link_set_mtu(veth.get(), static_cast<unsigned>(mtu));
    rtnl_link_set_mtu(peer.get(), static_cast<unsigned>(mtu));
  }
  err = rtnl_link_add(s.get(), veth.get(), NLM_F_CREATE | NLM_F_EXCL);
  if (err < 0) fail("create veth " + host_name, err);
}

void set_link_mtu(Socket& s, const std::string& name, int mtu) {
  LinkPtr link = require_link(s, name);
  if (rtnl_link_get_mtu(link.get()) == static_cast<unsigned>(mtu)) return;
  LinkPtr change(rtnl_link_alloc());
  rtnl_link_set_mtu(change.get(), static_cast<unsigned>(mtu));
  int err = rtnl_link_change(s.get(), link.get(), change.get(), 0);
  if (err < 0) fail("set MTU of " + name, err);
}

int link_mtu(Socket& s, const std::string& name) {
  LinkPtr link = get_link(s, name);
  return link ? static_cast<int>(rtnl_link_get_mtu(link.get())) : 0;
}

std::optional<VxlanInfo> vxlan_info(Socket& s, const std::string& name) {
  LinkPtr link = get_link(s, name);
  if (!link) return std::nullopt;
  const char* kind = rtnl_link_get_type(link.get());
  if (!kind || std::string(kind) != "vxlan") return std::nullopt;
  VxlanInfo info;
  std::uint32_t id = 0;
  if (rtnl_link_vxlan_get_id(link.get(), &id) == 0) info.vni = id;
  nl_addr* local = nullptr;
  if (rtnl_link_vxlan_get_local(link.get(), &local) == 0 && local) {
    NlAddrPtr owned(local);
    if (nl_addr_get_family(local) == AF_INET && nl_addr_get_len(local) == 4) {
      std::uint32_t be = 0;
      std::memcpy(&be, nl_addr_get_binary_addr(local), 4);
      info.local = ntohl(be);
    }
  }
  std::uint32_t port = 0;
  if (rtnl_link_vxlan_get_port(link.get(), &port) == 0) info.port = static_cast<std::uint16_t>(port);
  info.learning = rtnl_link_vxlan_get_learning(link.get()) == 1;
  info.proxy = rtnl_link_vxlan_get_proxy(link.get()) == 1;
  return info;
}

void ensure_vxlan(Socket& s, const VxlanSpec& spec) {
  if (auto info = link_info(s, spec.name)) {
    auto vx = vxlan_info(s, spec.name);
    if (!vx) throw std::runtime_error("existing interface " + spec.name + " is not a vxlan device");
    if (vx->vni != spec.vni || vx->local != spec.local || vx->port != spec.port || vx->learning ||
        !vx->proxy) {
      delete_link(s, spec.name);
    }
  }
  if (!get_link(s, spec.name)) {
    LinkPtr link(rtnl_link_vxlan_alloc());
    if (!link) throw std::runtime_error("rtnl_link_vxlan_alloc failed");
    rtnl_link_set_name(link.get(), spec.name.c_str());
    int err = rtnl_link_vxlan_set_id(link.get(), spec.vni);
    if (err < 0) fail("vxlan id", err);
    NlAddrPtr local = ipv4_addr(spec.local, 32);
    if ((err = rtnl_link_vxlan_set_local(link.get(), local.get())) < 0) fail("vxlan local", err);
    if ((err = rtnl_link_vxlan_set_port(link.get(), spec.port)) < 0) fail("vxlan port", err);
    if ((err = rtnl_link_vxlan_set_learning(link.get(), 0)) < 0) fail("vxlan learning", err);
    if ((err = rtnl_link_vxlan_set_proxy(link.get(), 1)) < 0) fail("vxlan proxy", err);
    if (spec.mtu > 0) rtnl_link_set_mtu(link.get(), static_cast<unsigned>(spec.mtu));
    err = rtnl_link_add(s.get(), link.get(), NLM_F_CREATE | NLM_F_EXCL);
    if (err < 0) fail("create vxlan " + spec.name + " (id " + std::to_string(spec.vni) + ")", err);
  }
  LinkPtr link = require_link(s, spec.name);
  LinkPtr change(rtnl_link_alloc());
  bool changed = false;
  if (!spec.master.empty()) {
    int master = link_index(s, spec.master);
    if (!master) throw std::runtime_error("no such network interface: " + spec.master);
    if (rtnl_link_get_master(link.get()) != master) {
      rtnl_link_set_master(change.get(), master);
      changed = true;
    }
  }
  if (spec.mtu > 0 && rtnl_link_get_mtu(link.get()) != static_cast<unsigned>(spec.mtu)) {
    rtnl_link_set_mtu(change.get(), static_cast<unsigned>(spec.mtu));
    changed = true;
  }
  if (!(rtnl_link_get_flags(link.get()) & IFF_UP)) {
    rtnl_link_set_flags(change.get(), IFF_UP);
    changed = true;
  }
  if (changed) {
    int err = rtnl_link_change(s.get(), link.get(), change.get(), 0);
    if (err < 0) fail("set up vxlan " + spec.name, err);
  }
}

namespace {

struct MsgDeleter {
  void operator()(nl_msg* m) const { nlmsg_free(m); }
};
struct CbDeleter {
  void operator()(nl_cb* c) const { nl_cb_put(c); }
};

std::string format_mac(const unsigned char* b) {
  char buf[18];
  std::snprintf(buf, sizeof buf, "%02x:%02x:%02x:%02x:%02x:%02x", b[0], b[1], b[2], b[3], b[4], b[5]);
  return buf;
}

std::array<unsigned char, 6> parse_mac(const std::string& mac) {
  std::array<unsigned char, 6> out{};
  unsigned v[6];
  if (std::sscanf(mac.c_str(), "%x:%x:%x:%x:%x:%x", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5]) != 6)
    throw std::runtime_error("bad MAC address " + mac);
  for (int i = 0; i < 6; ++i) out[static_cast<std::size_t>(i)] = static_cast<unsigned char>(v[i]);
  return out;
}

struct RawNeigh {
  int family = 0, ifindex = 0;
  std::uint16_t state = 0;
  std::uint8_t flags = 0;
  std::string lladdr, dst;  // raw bytes
};

int collect_neigh(nl_msg* msg, void* arg) {
  nlmsghdr* h = nlmsg_hdr(msg);
  if (h->nlmsg_type != RTM_NEWNEIGH) return NL_OK;
  auto* ndm = static_cast<ndmsg*>(nlmsg_data(h));
  nlattr* tb[NDA_MAX + 1] = {};
  if (nlmsg_parse(h, sizeof(ndmsg), tb, NDA_MAX, nullptr) < 0) return NL_SKIP;
  RawNeigh n;
  n.family = ndm->ndm_family;
  n.ifindex = ndm->ndm_ifindex;
  n.state = ndm->ndm_state;
  n.flags = ndm->ndm_flags;
  if (tb[NDA_LLADDR])
    n.lladdr.assign(static_cast<const char*>(nla_data(tb[NDA_LLADDR])),
                    static_cast<std::size_t>(nla_len(tb[NDA_LLADDR])));
  if (tb[NDA_DST])
    n.dst.assign(static_cast<const char*>(nla_data(tb[NDA_DST])),
                 static_cast<std::size_t>(nla_len(tb[NDA_DST])));
  static_cast<std::vector<RawNeigh>*>(arg)->push_back(std::move(n));
  return NL_OK;
}

std::vector<RawNeigh> dump_neigh(Socket& s, int family, int ifindex) {
  ndmsg req{};
  req.ndm_family = static_cast<unsigned char>(family);
  int err = nl_send_simple(s.get(), RTM_GETNEIGH, NLM_F_DUMP, &req, sizeof req);
  if (err < 0) fail("dump neighbours", err);
  nl_cb* orig = nl_socket_get_cb(s.get());
  std::unique_ptr<nl_cb, CbDeleter> cb(nl_cb_clone(orig));
  nl_cb_put(orig);
  if (!cb) throw std::runtime_error("nl_cb_clone failed");
  std::vector<RawNeigh> all;
  nl_cb_set(cb.get(), NL_CB_VALID, NL_CB_CUSTOM, collect_neigh, &all);
  err = nl_recvmsgs(s.get(), cb.get());
  if (err < 0) fail("dump neighbours", err);
  std::vector<RawNeigh> out;
  for (RawNeigh& n : all)
    if (n.ifindex == ifindex && n.family == family) out.push_back(std::move(n));
  return out;
}

void send_neigh(Socket& s, int type, int flags, int family, int ifindex, std::uint16_t state,
                std::uint8_t ndm_flags, const std::string* mac, std::uint32_t ip,
                const std::string& what) {
  std::unique_ptr<nl_msg, MsgDeleter> msg(nlmsg_alloc_simple(type, flags));
  if (!msg) throw std::runtime_error("nlmsg_alloc failed");
  ndmsg ndm{};
  ndm.ndm_family = static_cast<unsigned char>(family);
  ndm.ndm_ifindex = ifindex;
  ndm.ndm_state = state;
  ndm.ndm_flags = ndm_flags;
  if (nlmsg_append(msg.get(), &ndm, sizeof ndm, NLMSG_ALIGNTO) < 0)
    throw std::runtime_error("nlmsg_append failed");
  if (mac) {
    auto bytes = parse_mac(*mac);
    if (nla_put(msg.get(), NDA_LLADDR, 6, bytes.data()) < 0) throw std::runtime_error("nla_put failed");
  }
  std::uint32_t be = htonl(ip);
  if (nla_put(msg.get(), NDA_DST, 4, &be) < 0) throw std::runtime_error("nla_put failed");
  int err = nl_send_sync(s.get(), msg.release());  // frees the message
  if (err < 0) {
    if (type == RTM_DELNEIGH && (err == -NLE_OBJ_NOTFOUND || err == -NLE_NOADDR || err == -NLE_NODEV))
      return;
    fail(what, err);
  }
}

std::string ipv4_text(std::uint32_t ip) {
  return std::to_string(ip >> 24) + "." + std::to_string((ip >> 16) & 255) + "." +
         std::to_string((ip >> 8) & 255) + "." + std::to_string(ip & 255);
}

std::uint32_t ipv4_of(const std::string& raw) {
  std::uint32_t be = 0;
  std::memcpy(&be, raw.data(), 4);
  return ntohl(be);
}

}  // namespace

std::vector<FdbEntry> fdb_entries(Socket& s, const std::string& dev) {
  int index = link_index(s, dev);
  if (!index) return {};
  std::vector<FdbEntry> out;
  for (const RawNeigh& n : dump_neigh(s, AF_BRIDGE, index)) {
    if (!(n.flags & NTF_SELF) || !(n.state & NUD_PERMANENT) || n.lladdr.size() != 6 ||
        n.dst.size() != 4)
      continue;
    out.push_back({format_mac(reinterpret_cast<const unsigned char*>(n.lladdr.data())), ipv4_of(n.dst)});
  }
  return out;
}

void replace_fdb(Socket& s, const std::string& dev, const FdbEntry& e) {
  int index = link_index(s, dev);
  if (!index) throw std::runtime_error("no such network interface: " + dev);
  send_neigh(s, RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_REPLACE, AF_BRIDGE, index, NUD_PERMANENT, NTF_SELF,
             &e.mac, e.remote, "fdb " + e.mac + " dst " + ipv4_text(e.remote) + " on " + dev);
}

void delete_fdb(Socket& s, const std::string& dev, const FdbEntry& e) {
  int index = link_index(s, dev);
  if (!index) return;
  send_neigh(s, RTM_DELNEIGH, 0, AF_BRIDGE, index, NUD_PERMANENT, NTF_SELF, &e.mac, e.remote,
             "delete fdb " + e.mac + " on " + dev);
}

std::vector<NeighEntry> neigh_entries(Socket& s, const std::string& dev) {
  int index = link_index(s, dev);
  if (!index) return {};
  std::vector<NeighEntry> out;
  for (const RawNeigh& n : dump_neigh(s, AF_INET, index)) {
    if (!(n.state & NUD_PERMANENT) || n.lladdr.size() != 6 || n.dst.size() != 4) continue;
    out.push_back({ipv4_of(n.dst), format_mac(reinterpret_cast<const unsigned char*>(n.lladdr.data()))});
  }
  return out;
}

void replace_neigh(Socket& s, const std::string& dev, const NeighEntry& e) {
  int index = link_index(s, dev);
  if (!index) throw std::runtime_error("no such network interface: " + dev);
  send_neigh(s, RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_REPLACE, AF_INET, index, NUD_PERMANENT, 0, &e.mac,
             e.ip, "neighbour " + ipv4_text(e.ip) + " on " + dev);
}

void delete_neigh(Socket& s, const std::string& dev, const NeighEntry& e) {
  int index = link_index(s, dev);
  if (!index) return;
  send_neigh(s, RTM_DELNEIGH, 0, AF_INET, index, 0, 0, nullptr, e.ip,
             "delete neighbour " + ipv4_text(e.ip) + " on " + dev);
}

bool has_default_route(Socket& s, int family) {
  nl_cache* raw = nullptr;
  int err = rtnl_route_alloc_cache(s.get(), family, 0, &raw);
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
  add_route_via(s, link_name, AF_INET, ipv4_addr(0, 0), ipv4_addr(gateway, 32));
}

void add_default_route6(Socket& s, const std::string& link_name,
                        const std::array<std::uint8_t, 16>& gateway) {
  add_route_via(s, link_name, AF_INET6, ipv6_addr({}, 0), ipv6_addr(gateway, 128));
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
