// NetworkManager against the real kernel: each test runs in a forked child
// with its own network and mount namespaces (bridges, veths, iptables rules
// and DNS servers exist only there).
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "agent/api/http.h"
#include "agent/network/dns.h"
#include "agent/network/ipam.h"
#include "agent/network/netlink.h"
#include "agent/network/network_manager.h"
#include "agent/network/util.h"
#include "agent/process.h"
#include "netns_harness.h"
#include "test_util.h"

namespace berth::agent::network {
namespace {

using agent::testing::listen_in;
using agent::testing::Outcome;
using agent::testing::OwnedFd;
using agent::testing::socket_in;
using agent::testing::tcp_exchange;
using agent::testing::TempDir;
using agent::testing::udp_exchange;
namespace fs = std::filesystem;

std::string cid(char c) { return std::string(64, c); }

NetworkCreate named(std::string name, std::string subnet = "") {
  NetworkCreate c;
  c.name = std::move(name);
  c.subnet = std::move(subnet);
  return c;
}

// The settings for a manager whose state and namespaces live under `dir`
// (a tmpfs is mounted on dir/run inside the child).
NetworkSettings settings_in(const fs::path& dir) {
  fs::create_directories(dir / "run");
  if (::mount("tmpfs", (dir / "run").c_str(), "tmpfs", 0, "size=1m") != 0)
    throw std::runtime_error("mount tmpfs failed");
  NetworkSettings s;
  s.netns_dir = dir / "run" / "netns";
  s.host_resolv_conf = dir / "resolv.conf";
  return s;
}

void run_scenario(const std::function<void()>& scenario) {
  std::string message;
  Outcome outcome = agent::testing::run_in_private_netns(scenario, message);
  if (outcome == Outcome::Unsupported) GTEST_SKIP() << "no namespaces here: " << message;
  EXPECT_EQ(outcome, Outcome::Passed) << message;
}

unsigned http_status_of(const std::function<void()>& fn, std::string* message = nullptr) {
  try {
    fn();
  } catch (const api::HttpError& e) {
    if (message) *message = e.what();
    return e.status();
  }
  return 0;
}

// Answers every query with NXDOMAIN: stands in for the host's nameserver.
struct FakeUpstream {
  agent::testing::OwnedFd sock = agent::testing::socket_in("", SOCK_DGRAM);
  std::atomic<bool> stop{false};
  std::atomic<int> queries{0};
  std::thread thread;
  FakeUpstream() {
    sockaddr_in a = agent::testing::addr_of("127.0.0.1", 53);
    if (::bind(sock.fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
      throw std::runtime_error("bind fake upstream");
    thread = std::thread([this] {
      while (!stop) {
        pollfd p{sock.fd, POLLIN, 0};
        if (::poll(&p, 1, 100) != 1) continue;
        char buf[1500];
        sockaddr_in from{};
        socklen_t len = sizeof from;
        ssize_t n = ::recvfrom(sock.fd, buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&from), &len);
        if (n <= 0) continue;
        std::string_view msg(buf, static_cast<std::size_t>(n));
        auto q = dns::parse_query(msg);
        if (!q) continue;
        ++queries;
        std::string r = dns::build_response(msg, *q, dns::kNxDomain, {});
        ::sendto(sock.fd, r.data(), r.size(), 0, reinterpret_cast<sockaddr*>(&from), len);
      }
    });
  }
  ~FakeUpstream() {
    stop = true;
    thread.join();
  }
};

std::optional<dns::Reply> ask(const std::string& netns, const std::string& server,
                              const std::string& name) {
  static std::uint16_t id = 100;
  std::string reply = udp_exchange(netns, server, 53, dns::build_query(++id, name, dns::kTypeA));
  return dns::parse_reply(reply);
}

std::optional<dns::Reply> ask_within(const std::string& netns, const std::string& server,
                                     const std::string& name, int timeout_ms) {
  static std::uint16_t id = 5000;
  std::string reply =
      udp_exchange(netns, server, 53, dns::build_query(++id, name, dns::kTypeA), timeout_ms);
  return dns::parse_reply(reply);
}

// Runs a command (`ip ...`) inside the namespace at `netns`.
void run_in(const fs::path& netns, std::vector<std::string> argv) {
  argv.insert(argv.begin(), "--net=" + netns.string());
  argv.insert(argv.begin(), "nsenter");
  run_checked(argv);
}

OwnedFd udp_listen_in(const std::string& netns, const std::string& ip, int port) {
  OwnedFd s = socket_in(netns, SOCK_DGRAM);
  sockaddr_in a = agent::testing::addr_of(ip, port);
  if (::bind(s.fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
    throw std::runtime_error("bind udp " + ip + ":" + std::to_string(port));
  return s;
}

// Sends a datagram from `netns` to ip:port; true when it shows up on `listener`.
bool udp_reaches(const std::string& netns, const std::string& ip, int port, int listener,
                 int timeout_ms = 500) {
  OwnedFd s = socket_in(netns, SOCK_DGRAM);
  sockaddr_in a = agent::testing::addr_of(ip, port);
  std::string probe = "probe";
  if (::sendto(s.fd, probe.data(), probe.size(), 0, reinterpret_cast<sockaddr*>(&a), sizeof a) < 0)
    return false;
  pollfd p{listener, POLLIN, 0};
  if (::poll(&p, 1, timeout_ms) != 1) return false;
  char buf[64];
  return ::recv(listener, buf, sizeof buf, MSG_DONTWAIT) > 0;
}

OwnedFd tcp_connect_in(const std::string& netns, const std::string& ip, int port) {
  OwnedFd s = socket_in(netns, SOCK_STREAM);
  sockaddr_in a = agent::testing::addr_of(ip, port);
  if (::connect(s.fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
    throw std::runtime_error("connect " + ip + ":" + std::to_string(port));
  return s;
}

// A neighbour on the machine's network: a namespace at 192.0.2.2 behind the
// uplink bridge (the machine is 192.0.2.1), whose default route is the machine.
fs::path make_neighbour(const fs::path& dir) {
  netlink::Socket s;
  netlink::ensure_bridge(s, "uplink0");
  netlink::ensure_address(s, "uplink0", *parse_ipv4("192.0.2.1"), 24);
  netlink::set_link_up(s, "uplink0");
  fs::path peer = dir / "run" / "peer";
  netlink::create_netns(peer);
  OwnedFd ns(::open(peer.c_str(), O_RDONLY | O_CLOEXEC));
  netlink::create_veth(s, "vpeer", "uplink0", "eth0", ns.fd, "02:00:00:00:00:02");
  netlink::set_link_up(s, "vpeer");
  netlink::run_in_netns(peer, [] {
    netlink::Socket c;
    netlink::ensure_address(c, "eth0", *parse_ipv4("192.0.2.2"), 24);
    netlink::set_link_up(c, "eth0");
    netlink::add_default_route(c, "eth0", *parse_ipv4("192.0.2.1"));
  });
  return peer;
}

// What a hostile host does to send 127.0.0.1 out of eth0 to `via`: no local
// 127/8 routes, route_localnet on eth0, a route for 127.0.0.1 via the machine.
void route_loopback_via(const fs::path& netns, const std::string& via, const std::string& src) {
  run_in(netns, {"ip", "route", "del", "table", "local", "127.0.0.0/8", "dev", "lo"});
  run_in(netns, {"ip", "route", "del", "table", "local", "127.0.0.1", "dev", "lo"});
  netlink::run_in_netns(netns, [] {
    if (!netlink::write_sysctl("net/ipv4/conf/eth0/route_localnet", "1"))
      throw std::runtime_error("route_localnet on eth0");
  });
  run_in(netns, {"ip", "route", "add", "127.0.0.1/32", "via", via, "dev", "eth0", "src", src});
}

// Packets the raw PREROUTING guard for 127.0.0.0/8 has dropped (0 without it).
long guard_drops() {
  std::istringstream lines(
      run_checked({"iptables", "-t", "raw", "-L", "PREROUTING", "-v", "-x", "-n"}));
  std::string line;
  while (std::getline(lines, line)) {
    if (line.find("DROP") == std::string::npos || line.find("127.0.0.0/8") == std::string::npos)
      continue;
    return std::stol(line);
  }
  return 0;
}

long long millis_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                               start)
      .count();
}

TEST(NetworkNetns, DefaultBridgeConnectivityAndPublishedPorts) {
  TempDir dir;
  run_scenario([&] {
    NetworkSettings settings = settings_in(dir.path);
    std::ofstream(settings.host_resolv_conf) << "nameserver 127.0.0.53\nsearch lan\n";
    NetworkManager nm(dir.path / "state", settings);
    nm.init();
    {
      netlink::Socket s;
      NET_CHECK(netlink::link_index(s, "berth0") > 0);
    }
    NET_CHECK(run_process({"iptables", "-t", "nat", "-S", "BERTH"}).ok());
    NET_CHECK(nm.resolv_conf("bridge") == "nameserver 8.8.8.8\nnameserver 8.8.4.4\nsearch lan\n");

    fs::path sa = nm.create_sandbox(cid('a'));
    fs::path sb = nm.create_sandbox(cid('b'));
    NET_CHECK(netlink::is_netns(sa));
    Endpoint ea = nm.connect("bridge", cid('a'), "/web", sa, {});
    Endpoint eb = nm.connect("bridge", cid('b'), "db", sb, {});
    NET_CHECK(ea.ip == "172.17.0.2");
    NET_CHECK(eb.ip == "172.17.0.3");
    NET_CHECK(ea.mac == "02:42:ac:11:00:02");
    NET_CHECK(ea.gateway == "172.17.0.1");
    NET_CHECK(ea.prefix_len == 16);
    NET_CHECK(ea.dns_names.empty());  // no name DNS on the default bridge
    // Connecting again is idempotent.
    NET_CHECK(nm.connect("bridge", cid('a'), "/web", sa, {}).endpoint_id == ea.endpoint_id);
    NET_CHECK(http_status_of([&] { nm.connect("bridge", cid('c'), "x", sa, {{}, "172.17.0.9", "", "", {}}); }) ==
              400u);

    auto json = nm.inspect("bridge");
    NET_CHECK(json["Containers"][cid('a')]["IPv4Address"] == "172.17.0.2/16");
    NET_CHECK(json["Containers"][cid('a')]["Name"] == "web");

    // Container to container on the bridge.
    auto server = listen_in(sb.string(), "0.0.0.0", 80);
    NET_CHECK(tcp_exchange(sa.string(), "172.17.0.3", 80, server.fd) == "hello 172.17.0.2");

    // Published: from the host's own address, from 127.0.0.1, and from outside.
    auto bound = nm.publish(cid('b'), "172.17.0.3", {{"80/tcp", "", "8080"}});
    NET_CHECK(bound.size() == 1 && bound[0].host_port == "8080" && bound[0].host_ip == "0.0.0.0");
    NET_CHECK(tcp_exchange("", "172.17.0.1", 8080, server.fd).starts_with("hello "));
    NET_CHECK(tcp_exchange("", "127.0.0.1", 8080, server.fd).starts_with("hello "));
    {
      // An outside client behind an uplink bridge, like the VM's NIC.
      netlink::Socket s;
      netlink::ensure_bridge(s, "uplink0");
      netlink::ensure_address(s, "uplink0", *parse_ipv4("192.0.2.1"), 24);
      netlink::set_link_up(s, "uplink0");
      fs::path client = dir.path / "run" / "client";
      netlink::create_netns(client);
      agent::testing::OwnedFd ns(::open(client.c_str(), O_RDONLY | O_CLOEXEC));
      netlink::create_veth(s, "vclient", "uplink0", "eth0", ns.fd, "02:00:00:00:00:02");
      netlink::set_link_up(s, "vclient");
      netlink::run_in_netns(client, [] {
        netlink::Socket c;
        netlink::ensure_address(c, "eth0", *parse_ipv4("192.0.2.2"), 24);
        netlink::set_link_up(c, "eth0");
        netlink::add_default_route(c, "eth0", *parse_ipv4("192.0.2.1"));
      });
      NET_CHECK(tcp_exchange(client.string(), "192.0.2.1", 8080, server.fd) ==
                "hello 192.0.2.2");
    }

    std::string message;
    NET_CHECK(http_status_of([&] { nm.publish(cid('a'), "172.17.0.2", {{"81/tcp", "", "8080"}}); },
                             &message) == 500u);
    NET_CHECK(message == "Bind for 0.0.0.0:8080 failed: port is already allocated");
    NET_CHECK(http_status_of([&] { nm.publish(cid('a'), "172.17.0.2", {{"bad", "", ""}}); }) == 400u);
    // A port some other program holds.
    auto squatter = listen_in("", "0.0.0.0", 9090);
    NET_CHECK(http_status_of([&] { nm.publish(cid('a'), "172.17.0.2", {{"80", "", "9090"}}); },
                             &message) == 500u);
    NET_CHECK(message.find("address already in use") != std::string::npos);
    // -P: the first free port from 32768; UDP too.
    auto picked = nm.publish(cid('a'), "172.17.0.2", {{"80/tcp", "", ""}, {"53/udp", "", ""}});
    NET_CHECK(picked.size() == 2);
    NET_CHECK(picked[0].host_port == "32768");
    NET_CHECK(picked[1].host_port == "32768");  // another protocol
    NET_CHECK(picked[1].container_port == "53/udp");
    auto again = nm.publish(cid('a'), "172.17.0.2", {{"81/tcp", "", ""}});
    NET_CHECK(again[0].host_port == "32769");

    nm.unpublish(cid('b'));
    NET_CHECK(tcp_exchange("", "127.0.0.1", 8080, server.fd, 500).empty());
    NET_CHECK(!run_process({"iptables", "-t", "nat", "-C", "BERTH", "-p", "tcp", "-m", "tcp",
                            "--dport", "8080", "-j", "DNAT", "--to-destination", "172.17.0.3:80"})
                   .ok());

    // Stopping a container releases its address and its veth.
    nm.destroy_sandbox(cid('a'));
    NET_CHECK(!netlink::is_netns(sa));
    NET_CHECK(nm.inspect("bridge")["Containers"].size() == 1);
    fs::path sc = nm.create_sandbox(cid('c'));
    NET_CHECK(nm.connect("bridge", cid('c'), "c", sc, {}).ip == "172.17.0.2");
  });
}

TEST(NetworkNetns, UserNetworksAreIsolatedAndResolveNames) {
  TempDir dir;
  run_scenario([&] {
    NetworkSettings settings = settings_in(dir.path);
    std::ofstream(settings.host_resolv_conf) << "nameserver 127.0.0.1\nsearch example.internal\n";
    FakeUpstream upstream;
    std::string front_id, back_id;
    fs::path sa, sb, sc;
    {
      NetworkManager nm(dir.path / "state", settings);
      nm.init();
      front_id = nm.create_network(named("front"));
      back_id = nm.create_network(named("back"));
      NET_CHECK(http_status_of([&] { nm.create_network(named("front")); }) == 409u);
      NET_CHECK(http_status_of([&] { nm.create_network(named("x", "172.18.1.0/24")); }) ==
                403u);
      auto front = nm.inspect("front");
      NET_CHECK(front["Id"] == front_id);
      NET_CHECK(front["IPAM"]["Config"][0]["Subnet"] == "172.18.0.0/16");
      NET_CHECK(front["IPAM"]["Config"][0]["Gateway"] == "172.18.0.1");
      NET_CHECK(nm.inspect(back_id.substr(0, 6))["IPAM"]["Config"][0]["Subnet"] == "172.19.0.0/16");
      {
        netlink::Socket s;
        NET_CHECK(netlink::link_index(s, "br-" + front_id.substr(0, 12)) > 0);
      }
      NET_CHECK(nm.resolv_conf("front") ==
                "nameserver 172.18.0.1\nsearch example.internal\noptions ndots:0\n");

      sa = nm.create_sandbox(cid('a'));
      sb = nm.create_sandbox(cid('b'));
      sc = nm.create_sandbox(cid('c'));
      Endpoint ea = nm.connect("front", cid('a'), "/alpha", sa, {{"web"}, "", "", "", {}});
      Endpoint eb = nm.connect(front_id, cid('b'), "/bravo", sb, {{}, "172.18.0.50", "", "", {}});
      Endpoint ec = nm.connect("back", cid('c'), "/charlie", sc, {});
      NET_CHECK(ea.ip == "172.18.0.2");
      NET_CHECK(eb.ip == "172.18.0.50");
      NET_CHECK(ec.ip == "172.19.0.2");
      NET_CHECK((ea.dns_names == std::vector<std::string>{"alpha", "web", cid('a').substr(0, 12)}));
      NET_CHECK(http_status_of([&] { nm.connect("front", cid('d'), "d", sc, {{}, "172.18.0.50", "", "", {}}); }) ==
                403u);

      // Same network: reachable. Across networks: dropped.
      auto on_b = listen_in(sb.string(), "0.0.0.0", 7000);
      auto on_c = listen_in(sc.string(), "0.0.0.0", 7000);
      NET_CHECK(tcp_exchange(sa.string(), "172.18.0.50", 7000, on_b.fd) == "hello 172.18.0.2");
      NET_CHECK(tcp_exchange(sa.string(), "172.19.0.2", 7000, on_c.fd, 800).empty());
      NET_CHECK(tcp_exchange(sc.string(), "172.18.0.50", 7000, on_b.fd, 800).empty());

      // Names on this network only; other names go to the upstream.
      auto r = ask(sa.string(), "172.18.0.1", "bravo");
      NET_CHECK(r && r->rcode == dns::kNoError && r->a.size() == 1);
      NET_CHECK(format_ipv4(r->a[0]) == "172.18.0.50");
      r = ask(sb.string(), "172.18.0.1", "WEB");  // an alias, any case
      NET_CHECK(r && r->a.size() == 1 && format_ipv4(r->a[0]) == "172.18.0.2");
      r = ask(sb.string(), "172.18.0.1", cid('a').substr(0, 12) + ".front");
      NET_CHECK(r && r->a.size() == 1 && format_ipv4(r->a[0]) == "172.18.0.2");
      int before = upstream.queries;
      r = ask(sa.string(), "172.18.0.1", "charlie");
      NET_CHECK(r && r->rcode == dns::kNxDomain && r->a.empty());
      NET_CHECK(upstream.queries == before + 1);
      r = ask(sc.string(), "172.19.0.1", "bravo");
      NET_CHECK(r && r->rcode == dns::kNxDomain && r->a.empty());
      r = ask(sc.string(), "172.19.0.1", "charlie");
      NET_CHECK(r && r->a.size() == 1 && format_ipv4(r->a[0]) == "172.19.0.2");

      // A second network on a running container: eth1, default route unchanged.
      Endpoint c_front = nm.connect("front", cid('c'), "/charlie", sc, {});
      bool has_eth1 = false;
      netlink::run_in_netns(sc, [&] {
        netlink::Socket s;
        has_eth1 = netlink::link_index(s, "eth1") > 0;
      });
      NET_CHECK(has_eth1);
      NET_CHECK(tcp_exchange(sc.string(), "172.18.0.50", 7000, on_b.fd) ==
                "hello " + c_front.ip);
      nm.disconnect("front", cid('c'));
      NET_CHECK(!ask(sa.string(), "172.18.0.1", "charlie")->a.size());

      std::string message;
      NET_CHECK(http_status_of([&] { nm.remove_network("front"); }, &message) == 403u);
      NET_CHECK(message == "error while removing network: network front id " + front_id +
                               " has active endpoints");
      NET_CHECK(http_status_of([&] { nm.remove_network("bridge"); }) == 403u);
      NET_CHECK(http_status_of([&] { nm.remove_network("nope"); }) == 404u);
    }
    // The agent restarts: state and DNS come back, the live endpoints stay.
    NetworkManager nm(dir.path / "state", settings);
    nm.init();
    NET_CHECK(nm.network_id("front") == front_id);
    NET_CHECK(nm.inspect("front")["Containers"].size() == 2);
    auto r = ask(sa.string(), "172.18.0.1", "bravo");
    NET_CHECK(r && r->a.size() == 1 && format_ipv4(r->a[0]) == "172.18.0.50");
    nm.destroy_sandbox(cid('a'));
    nm.destroy_sandbox(cid('b'));
    nm.remove_network("front");
    netlink::Socket s;
    NET_CHECK(netlink::link_index(s, "br-" + front_id.substr(0, 12)) == 0);
    NET_CHECK(http_status_of([&] { nm.network_id("front"); }) == 404u);
  });
}

// Connects over IPv6 from `netns` to [ip]:port, where `listener` (an IPv6
// socket in another namespace) accepts; the address the listener saw, or "".
std::string tcp6_peer(const std::string& netns, const std::string& ip, int port, int listener) {
  OwnedFd s;
  netlink::run_in_netns(netns, [&] { s.fd = ::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0); });
  sockaddr_in6 a{};
  a.sin6_family = AF_INET6;
  a.sin6_port = htons(static_cast<std::uint16_t>(port));
  ::inet_pton(AF_INET6, ip.c_str(), &a.sin6_addr);
  timeval tv{2, 0};
  ::setsockopt(s.fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  if (::connect(s.fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return "";
  pollfd p{listener, POLLIN, 0};
  if (::poll(&p, 1, 2000) != 1) return "";
  sockaddr_in6 peer{};
  socklen_t len = sizeof peer;
  OwnedFd conn(::accept4(listener, reinterpret_cast<sockaddr*>(&peer), &len, SOCK_CLOEXEC));
  char text[INET6_ADDRSTRLEN] = "";
  ::inet_ntop(AF_INET6, &peer.sin6_addr, text, sizeof text);
  return text;
}

OwnedFd listen6_in(const std::string& netns, int port) {
  OwnedFd s;
  netlink::run_in_netns(netns, [&] { s.fd = ::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0); });
  sockaddr_in6 a{};
  a.sin6_family = AF_INET6;
  a.sin6_port = htons(static_cast<std::uint16_t>(port));
  a.sin6_addr = in6addr_any;
  if (::bind(s.fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(s.fd, 4) != 0)
    throw std::runtime_error(std::string("listen on [::]: ") + std::strerror(errno));
  return s;
}

std::optional<dns::Reply> ask6(const std::string& netns, const std::string& server,
                               const std::string& name) {
  static std::uint16_t id = 7000;
  return dns::parse_reply(udp_exchange(netns, server, 53, dns::build_query(++id, name, dns::kTypeAAAA)));
}

std::string text6(const dns::Ipv6Bytes& b) {
  char text[INET6_ADDRSTRLEN];
  ::inet_ntop(AF_INET6, b.data(), text, sizeof text);
  return text;
}

TEST(NetworkNetns, Ipv6UserNetworksAndNetworkScopedLinks) {
  TempDir dir;
  run_scenario([&] {
    NetworkSettings settings = settings_in(dir.path);
    std::ofstream(settings.host_resolv_conf) << "nameserver 127.0.0.1\n";
    FakeUpstream upstream;
    fs::path sa, sb, sc;
    {
      NetworkManager nm(dir.path / "state", settings);
      nm.init();
      NetworkCreate v6 = named("six", "172.18.0.0/16");
      v6.enable_ipv6 = true;
      v6.subnet6 = "fd00:db8:1::/64";
      std::string six = nm.create_network(v6);
      NetworkCreate overlapping = named("six-again");
      overlapping.enable_ipv6 = true;
      overlapping.subnet6 = "fd00:db8:1:0:1::/80";
      NET_CHECK(http_status_of([&] { nm.create_network(overlapping); }) == 403u);
      NetworkCreate picked = named("auto6");
      picked.enable_ipv6 = true;
      nm.create_network(picked);
      auto auto6 = nm.inspect("auto6");
      NET_CHECK(auto6["EnableIPv6"] == true);
      const std::string auto_subnet = auto6["IPAM"]["Config"][1]["Subnet"];
      NET_CHECK(auto_subnet.starts_with("fd") && auto_subnet.ends_with("::/64"));
      nm.create_network(named("plain"));

      auto info = nm.inspect("six");
      NET_CHECK(info["EnableIPv6"] == true);
      NET_CHECK(info["IPAM"]["Config"].size() == 2u);
      NET_CHECK(info["IPAM"]["Config"][1]["Subnet"] == "fd00:db8:1::/64");
      NET_CHECK(info["IPAM"]["Config"][1]["Gateway"] == "fd00:db8:1::1");
      NET_CHECK(nm.inspect("plain")["EnableIPv6"] == false);

      sa = nm.create_sandbox(cid('a'));
      sb = nm.create_sandbox(cid('b'));
      sc = nm.create_sandbox(cid('c'));
      Endpoint ea = nm.connect("six", cid('a'), "/alpha", sa, {});
      EndpointRequest fixed;
      fixed.ipv6 = "fd00:db8:1::50";
      Endpoint eb = nm.connect(six, cid('b'), "/bravo", sb, fixed);
      NET_CHECK(ea.ip == "172.18.0.2" && ea.ipv6 == "fd00:db8:1::2");
      NET_CHECK(ea.ipv6_prefix_len == 64 && ea.ipv6_gateway == "fd00:db8:1::1");
      NET_CHECK(eb.ipv6 == "fd00:db8:1::50");
      NET_CHECK(ea.to_json()["GlobalIPv6Address"] == "fd00:db8:1::2");
      NET_CHECK(http_status_of([&] { nm.connect("six", cid('c'), "/charlie", sc, fixed); }) == 403u);
      NET_CHECK(http_status_of([&] { nm.connect("plain", cid('c'), "/charlie", sc, fixed); }) == 400u);
      bool v6_route = false;
      netlink::run_in_netns(sa, [&] {
        netlink::Socket s;
        v6_route = netlink::has_default_route(s, AF_INET6);
      });
      NET_CHECK(v6_route);

      // Container to container over IPv6, with no wait for address detection.
      auto on_b = listen6_in(sb.string(), 7000);
      NET_CHECK(tcp6_peer(sa.string(), "fd00:db8:1::50", 7000, on_b.fd) == "fd00:db8:1::2");
      NET_CHECK(nm.inspect("six", true)["Containers"][cid('b')]["IPv6Address"] == "fd00:db8:1::50/64");

      // AAAA and A answers for the same name; v4-only names get an empty AAAA.
      auto r = ask6(sa.string(), "172.18.0.1", "bravo");
      NET_CHECK(r && r->rcode == dns::kNoError && r->aaaa.size() == 1u);
      NET_CHECK(text6(r->aaaa[0]) == "fd00:db8:1::50");
      r = ask(sa.string(), "172.18.0.1", "bravo.six");
      NET_CHECK(r && r->a.size() == 1u && format_ipv4(r->a[0]) == "172.18.0.3");

      // Outbound IPv6 is masqueraded like IPv4, and forwarding is on.
      std::string nat6 = run_checked({"ip6tables", "-t", "nat", "-S", "BERTH-POSTROUTING"});
      NET_CHECK(nat6.find("-s fd00:db8:1::/64 ! -o br-" + six.substr(0, 12) + " -j MASQUERADE") !=
                std::string::npos);
      NET_CHECK(read_file("/proc/sys/net/ipv6/conf/all/forwarding").starts_with("1"));

      // A network-scoped link: "db" means bravo for charlie only. The
      // bridge keeps its MAC as ports join (alpha's ARP entry stays good).
      auto bridge_mac = [&] {
        std::string line = run_checked({"ip", "-o", "link", "show", "br-" + six.substr(0, 12)});
        return line.substr(line.find("link/ether "), 28);
      };
      const std::string mac_before = bridge_mac();
      EndpointRequest linked;
      linked.links = {normalize_link("bravo:db")};
      Endpoint ec = nm.connect("six", cid('c'), "/charlie", sc, linked);
      NET_CHECK(bridge_mac() == mac_before);
      NET_CHECK((ec.links == std::vector<std::string>{"bravo:db"}));
      NET_CHECK(ec.to_json()["Links"] == nlohmann::json::array({"bravo:db"}));
      r = ask(sc.string(), "172.18.0.1", "db");
      NET_CHECK(r && r->a.size() == 1u && format_ipv4(r->a[0]) == "172.18.0.3");
      r = ask6(sc.string(), "172.18.0.1", "DB.six");
      NET_CHECK(r && r->aaaa.size() == 1u && text6(r->aaaa[0]) == "fd00:db8:1::50");
      int before = upstream.queries;
      r = ask(sa.string(), "172.18.0.1", "db");
      NET_CHECK(r);
      NET_CHECK(r->rcode == dns::kNxDomain);
      NET_CHECK(upstream.queries == before + 1);
      EndpointRequest on_bridge;
      on_bridge.links = {"bravo:db"};
      NET_CHECK(http_status_of([&] { nm.connect("bridge", cid('c'), "/charlie", sc, on_bridge); }) ==
                400u);
    }
    // Restarted: the v6 subnet, leases and links are kept.
    NetworkManager nm(dir.path / "state", settings);
    nm.init();
    auto info = nm.inspect("six", true);
    NET_CHECK(info["EnableIPv6"] == true);
    NET_CHECK(info["Containers"][cid('a')]["IPv6Address"] == "fd00:db8:1::2/64");
    auto r = ask(sc.string(), "172.18.0.1", "db");
    NET_CHECK(r && r->a.size() == 1u && format_ipv4(r->a[0]) == "172.18.0.3");
    for (char c : {'a', 'b', 'c'}) nm.destroy_sandbox(cid(c));
    nm.remove_network("six");
    std::string nat6 = run_checked({"ip6tables", "-t", "nat", "-S", "BERTH-POSTROUTING"});
    NET_CHECK(nat6.find("fd00:db8:1::/64") == std::string::npos);
  });
}

TEST(NetworkNetns, OnlyPublishedPortsAreReachableThroughTheMachine) {
  TempDir dir;
  run_scenario([&] {
    NetworkSettings settings = settings_in(dir.path);
    NetworkManager nm(dir.path / "state", settings);
    nm.init();
    NET_CHECK(run_checked({"iptables", "-S", "FORWARD"}).find("-P FORWARD DROP") !=
              std::string::npos);
    fs::path sa = nm.create_sandbox(cid('a'));
    Endpoint ea = nm.connect("bridge", cid('a'), "web", sa, {});
    NET_CHECK(ea.ip == "172.17.0.2");
    auto published = listen_in(sa.string(), "0.0.0.0", 80);
    auto loopback_only = listen_in(sa.string(), "0.0.0.0", 81);
    auto loopback_udp = udp_listen_in(sa.string(), "0.0.0.0", 81);
    auto unpublished = listen_in(sa.string(), "0.0.0.0", 82);
    nm.publish(cid('a'), ea.ip,
               {{"80/tcp", "", "8080"}, {"81/tcp", "127.0.0.1", "8081"},
                {"81/udp", "127.0.0.1", "8081"}});
    fs::path peer = make_neighbour(dir.path);

    // Published on 0.0.0.0: reachable through the machine's address.
    NET_CHECK(tcp_exchange(peer.string(), "192.0.2.1", 8080, published.fd) == "hello 192.0.2.2");
    // Routing straight to the container (the machine as the router) gets
    // nowhere: not an unpublished port, nor a published one past its DNAT.
    NET_CHECK(tcp_exchange(peer.string(), "172.17.0.2", 82, unpublished.fd, 800).empty());
    NET_CHECK(tcp_exchange(peer.string(), "172.17.0.2", 80, published.fd, 800).empty());

    // Published on 127.0.0.1: the machine's own loopback only.
    NET_CHECK(tcp_exchange("", "127.0.0.1", 8081, loopback_only.fd).starts_with("hello "));
    NET_CHECK(udp_reaches("", "127.0.0.1", 8081, loopback_udp.fd));
    NET_CHECK(tcp_exchange(peer.string(), "192.0.2.1", 8081, loopback_only.fd, 800).empty());
    route_loopback_via(peer, "192.0.2.1", "192.0.2.2");
    long before = guard_drops();
    NET_CHECK(!udp_reaches(peer.string(), "127.0.0.1", 8081, loopback_udp.fd));
    NET_CHECK(tcp_exchange(peer.string(), "127.0.0.1", 8081, loopback_only.fd, 800).empty());
    NET_CHECK(guard_drops() > before);  // the packets did arrive, and were dropped

    // Egress and its replies still pass (masqueraded to the machine's address).
    auto on_peer = listen_in(peer.string(), "0.0.0.0", 9000);
    NET_CHECK(tcp_exchange(sa.string(), "192.0.2.2", 9000, on_peer.fd) == "hello 192.0.2.1");
    // Unpublished, the 127.0.0.1 port is gone from the machine's loopback too.
    nm.unpublish(cid('a'));
    NET_CHECK(tcp_exchange("", "127.0.0.1", 8081, loopback_only.fd, 500).empty());
  });
}

TEST(NetworkNetns, ContainersCannotReachTheMachinesLoopback) {
  TempDir dir;
  run_scenario([&] {
    NetworkSettings settings = settings_in(dir.path);
    NetworkManager nm(dir.path / "state", settings);
    nm.init();
    nm.create_network(named("front"));
    fs::path sa = nm.create_sandbox(cid('a'));
    fs::path sb = nm.create_sandbox(cid('b'));
    fs::path sc = nm.create_sandbox(cid('c'));
    Endpoint ea = nm.connect("bridge", cid('a'), "a", sa, {});
    Endpoint eb = nm.connect("front", cid('b'), "b", sb, {});
    Endpoint ec = nm.connect("bridge", cid('c'), "c", sc, {});
    // A loopback-only service on the machine, and a port of c published on 127.0.0.1.
    auto service = udp_listen_in("", "127.0.0.1", 9999);
    auto on_c = udp_listen_in(sc.string(), "0.0.0.0", 53);
    nm.publish(cid('c'), ec.ip, {{"53/udp", "127.0.0.1", "5353"}});
    NET_CHECK(udp_reaches("", "127.0.0.1", 9999, service.fd));
    NET_CHECK(udp_reaches("", "127.0.0.1", 5353, on_c.fd));

    long before = guard_drops();
    route_loopback_via(sa, ea.gateway, ea.ip);
    route_loopback_via(sb, eb.gateway, eb.ip);
    NET_CHECK(!udp_reaches(sa.string(), "127.0.0.1", 9999, service.fd));
    NET_CHECK(!udp_reaches(sb.string(), "127.0.0.1", 9999, service.fd));
    NET_CHECK(!udp_reaches(sa.string(), "127.0.0.1", 5353, on_c.fd));
    NET_CHECK(guard_drops() >= before + 3);
    // The machine's own loopback is unaffected.
    NET_CHECK(udp_reaches("", "127.0.0.1", 9999, service.fd));
    NET_CHECK(udp_reaches("", "127.0.0.1", 5353, on_c.fd));
  });
}

TEST(NetworkNetns, BridgeNameOptionCannotTakeOverInterfaces) {
  TempDir dir;
  run_scenario([&] {
    NetworkSettings settings = settings_in(dir.path);
    run_checked({"ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth0peer"});
    run_checked({"ip", "link", "add", "userbr", "type", "bridge"});
    auto with_bridge = [](std::string name, std::string bridge) {
      NetworkCreate c = named(std::move(name));
      c.options["com.docker.network.bridge.name"] = std::move(bridge);
      return c;
    };
    auto has_ipv4 = [](const std::string& link) {
      return run_checked({"ip", "-4", "addr", "show", "dev", link}).find("inet") !=
             std::string::npos;
    };
    std::string own_id;
    {
      NetworkManager nm(dir.path / "state", settings);
      nm.init();
      std::string message;
      NET_CHECK(http_status_of([&] { nm.create_network(with_bridge("on-eth0", "eth0")); },
                               &message) == 400u);
      NET_CHECK(message == "existing interface eth0 is not a bridge");
      NET_CHECK(http_status_of([&] { nm.create_network(with_bridge("on-lo", "lo")); }, &message) ==
                400u);
      NET_CHECK(message == "existing interface lo is not a bridge");
      NET_CHECK(http_status_of([&] { nm.create_network(with_bridge("on-userbr", "userbr")); },
                               &message) == 409u);
      NET_CHECK(message == "existing bridge userbr was not created by berth");
      NET_CHECK(http_status_of([&] { nm.network_id("on-eth0"); }) == 404u);
      NET_CHECK(!has_ipv4("eth0") && !has_ipv4("userbr"));

      // A bridge this manager made (left behind by a crash) may be named again.
      netlink::Socket s;
      netlink::ensure_bridge(s, "brleft", "berth");
      nm.remove_network(nm.create_network(with_bridge("left", "brleft")));
      NET_CHECK(netlink::link_index(s, "brleft") == 0);
      own_id = nm.create_network(with_bridge("own", "brown"));
      NET_CHECK(netlink::link_info(s, "brown")->alias == "berth");
    }
    // State from an older agent whose network took eth0 over: restored
    // without touching eth0, and `network rm` leaves it in place.
    fs::path file = dir.path / "state" / "networks" / (own_id + ".json");
    auto state = nlohmann::json::parse(read_file(file));
    state["Bridge"] = "eth0";
    write_file_atomic(file, state.dump());
    NetworkManager nm(dir.path / "state", settings);
    nm.init();
    NET_CHECK(!has_ipv4("eth0"));
    nm.remove_network("own");
    netlink::Socket s;
    NET_CHECK(netlink::link_index(s, "eth0") > 0);
    NET_CHECK(netlink::link_index(s, "userbr") > 0);
  });
}

TEST(NetworkNetns, DnsAnswersOnlyItsContainersAndNeverStalls) {
  TempDir dir;
  run_scenario([&] {
    NetworkSettings settings = settings_in(dir.path);
    std::ofstream(settings.host_resolv_conf) << "nameserver 127.0.0.1\n";
    // The machine's nameserver takes queries and never answers.
    auto silent = udp_listen_in("", "127.0.0.1", 53);
    NetworkManager nm(dir.path / "state", settings);
    nm.init();
    nm.create_network(named("front"));
    nm.create_network(named("back"));
    fs::path sa = nm.create_sandbox(cid('a'));
    fs::path sb = nm.create_sandbox(cid('b'));
    fs::path sc = nm.create_sandbox(cid('c'));
    nm.connect("front", cid('a'), "alpha", sa, {});
    nm.connect("front", cid('b'), "bravo", sb, {});
    nm.connect("back", cid('c'), "charlie", sc, {});
    // Answered, and within 100 ms.
    auto quick = [&](const fs::path& from, const std::string& server, const std::string& name) {
      auto start = std::chrono::steady_clock::now();
      auto r = ask_within(from.string(), server, name, 1000);
      return r && r->a.size() == 1 && millis_since(start) < 100;
    };
    NET_CHECK(quick(sb, "172.18.0.1", "alpha"));
    // Another network's container is no client of this server; its own works.
    NET_CHECK(!ask_within(sc.string(), "172.18.0.1", "alpha", 500));
    NET_CHECK(!ask_within(sc.string(), "172.18.0.1", "example.org", 500));
    NET_CHECK(quick(sc, "172.19.0.1", "charlie"));

    // A query for the silent upstream waits; local names do not.
    OwnedFd pending = socket_in(sa.string(), SOCK_DGRAM);
    std::string fwd = dns::build_query(4242, "example.org", dns::kTypeA);
    sockaddr_in gw = agent::testing::addr_of("172.18.0.1", 53);
    ::sendto(pending.fd, fwd.data(), fwd.size(), 0, reinterpret_cast<sockaddr*>(&gw), sizeof gw);
    NET_CHECK(quick(sb, "172.18.0.1", "alpha"));

    // TCP clients that send nothing, or one byte every 500 ms, hold nobody up.
    OwnedFd idle = tcp_connect_in(sa.string(), "172.18.0.1", 53);
    OwnedFd trickler = tcp_connect_in(sa.string(), "172.18.0.1", 53);
    std::string framed = dns::frame(dns::build_query(7, "bravo", dns::kTypeA));
    for (int i = 0; i < 4; ++i) {
      NET_CHECK(::send(trickler.fd, framed.data() + i, 1, MSG_NOSIGNAL) == 1);
      NET_CHECK(quick(sb, "172.18.0.1", "alpha"));
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
    }
    std::vector<OwnedFd> many;
    for (int i = 0; i < 60; ++i) many.push_back(tcp_connect_in(sb.string(), "172.18.0.1", 53));
    NET_CHECK(quick(sb, "172.18.0.1", "alpha"));
    NET_CHECK(quick(sa, "172.18.0.1", "bravo"));

    // The waiting query ends in SERVFAIL when the upstream's time is up.
    pollfd p{pending.fd, POLLIN, 0};
    NET_CHECK(::poll(&p, 1, 3000) == 1);
    char buf[512];
    ssize_t n = ::recv(pending.fd, buf, sizeof buf, 0);
    auto late = dns::parse_reply(std::string_view(buf, n > 0 ? static_cast<std::size_t>(n) : 0));
    NET_CHECK(late && late->id == 4242 && late->rcode == dns::kServFail);
  });
}

TEST(NetworkNetns, WithoutHostManagementNothingChanges) {
  TempDir dir;
  run_scenario([&] {
    NetworkSettings settings = settings_in(dir.path);
    settings.manage_host = false;
    NetworkManager nm(dir.path / "state", settings);
    nm.init();
    std::string id = nm.create_network(named("quiet"));
    NET_CHECK(nm.network_id("quiet") == id);
    netlink::Socket s;
    NET_CHECK(netlink::link_index(s, "berth0") == 0);
    NET_CHECK(netlink::link_index(s, "br-" + id.substr(0, 12)) == 0);
    NET_CHECK(!run_process({"iptables", "-t", "nat", "-S", "BERTH"}).ok());
    fs::path sandbox = nm.create_sandbox(cid('a'));
    NET_CHECK(http_status_of([&] { nm.connect("bridge", cid('a'), "a", sandbox, {}); }) == 500u);
    nm.connect("none", cid('a'), "a", sandbox, {});  // recorded only
    NET_CHECK(nm.inspect("none")["Containers"].size() == 1);
    nm.destroy_sandbox(cid('a'));
    nm.remove_network("quiet");
  });
}

}  // namespace
}  // namespace berth::agent::network
