// NetworkManager against the real kernel: each test runs in a forked child
// with its own network and mount namespaces (bridges, veths, iptables rules
// and DNS servers exist only there).
#include <gtest/gtest.h>

#include <atomic>
#include <fstream>
#include <thread>

#include "agent/api/http.h"
#include "agent/network/dns.h"
#include "agent/network/ipam.h"
#include "agent/network/netlink.h"
#include "agent/network/network_manager.h"
#include "agent/process.h"
#include "netns_harness.h"
#include "test_util.h"

namespace berth::agent::network {
namespace {

using agent::testing::listen_in;
using agent::testing::Outcome;
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
    NET_CHECK(http_status_of([&] { nm.connect("bridge", cid('c'), "x", sa, {{}, "172.17.0.9"}); }) ==
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
      Endpoint ea = nm.connect("front", cid('a'), "/alpha", sa, {{"web"}, ""});
      Endpoint eb = nm.connect(front_id, cid('b'), "/bravo", sb, {{}, "172.18.0.50"});
      Endpoint ec = nm.connect("back", cid('c'), "/charlie", sc, {});
      NET_CHECK(ea.ip == "172.18.0.2");
      NET_CHECK(eb.ip == "172.18.0.50");
      NET_CHECK(ec.ip == "172.19.0.2");
      NET_CHECK((ea.dns_names == std::vector<std::string>{"alpha", "web", cid('a').substr(0, 12)}));
      NET_CHECK(http_status_of([&] { nm.connect("front", cid('d'), "d", sc, {{}, "172.18.0.50"}); }) ==
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
