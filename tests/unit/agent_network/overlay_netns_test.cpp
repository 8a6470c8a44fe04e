// Overlay networks against the real kernel and a real etcd. Each test runs in
// a forked child with its own network and mount namespaces: "machine a" is
// that namespace, "machine b" a namespace joined to it by a veth pair (the
// cluster segment, 192.168.200.0/24), each with its own NetworkManager, and
// the containers are further namespaces. etcd runs on machine a's
// 192.168.200.11, so b reaches it over the segment, as in a cluster.
#include <gtest/gtest.h>
#include <sys/mount.h>

#include <fstream>
#include <functional>
#include <thread>

#include "agent/api/http.h"
#include "agent/network/dns.h"
#include "agent/network/ipam.h"
#include "agent/network/netlink.h"
#include "agent/network/network_manager.h"
#include "agent/network/network_manager_impl.h"
#include "agent/network/overlay_dataplane.h"
#include "agent/network/util.h"
#include "agent/process.h"
#include "etcd_harness.h"
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

std::string cid(const std::string& tag) {
  std::string id = tag;
  while (id.size() < 64) id += "0";
  return id;
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

bool wait_until(const std::function<bool()>& done, int timeout_ms = 10000) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (std::chrono::steady_clock::now() < deadline) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return done();
}

std::optional<dns::Reply> ask(const fs::path& from, const std::string& server, const std::string& name) {
  static std::uint16_t id = 300;
  return dns::parse_reply(udp_exchange(from.string(), server, 53, dns::build_query(++id, name, dns::kTypeA), 1500));
}

std::string resolved(const fs::path& from, const std::string& server, const std::string& name) {
  auto r = ask(from, server, name);
  return r && r->a.size() == 1 ? format_ipv4(r->a[0]) : "";
}

NetworkCreate overlay(std::string name, std::string subnet = "") {
  NetworkCreate c;
  c.name = std::move(name);
  c.driver = "overlay";
  c.subnet = std::move(subnet);
  return c;
}

// One member of the test cluster.
struct Machine {
  std::string name, advertise;
  fs::path host_netns;  // empty: the scenario's own namespace
  fs::path dir;
  NetworkSettings settings;
  std::unique_ptr<NetworkManager> nm;

  void on(const std::function<void()>& fn) const {
    if (host_netns.empty())
      fn();
    else
      netlink::run_in_netns(host_netns, fn);
  }
  // The agent starts (again): a new manager on the same state.
  void start() {
    on([&] {
      nm = std::make_unique<NetworkManager>(dir / "state", settings);
      nm->init();
    });
  }
  void stop() { nm.reset(); }  // the agent stops: kernel state stays

  fs::path sandbox(const std::string& container) const {
    fs::path p;
    on([&] { p = nm->create_sandbox(cid(container)); });
    return p;
  }
  Endpoint connect(const std::string& net, const std::string& container, EndpointRequest req = {}) const {
    Endpoint ep;
    fs::path box = settings.netns_dir / cid(container);
    on([&] { ep = nm->connect(net, cid(container), container, box, req); });
    return ep;
  }
  std::string create(const NetworkCreate& c) const {
    std::string id;
    on([&] { id = nm->create_network(c); });
    return id;
  }
  bool knows(const std::string& net) const {
    try {
      nm->network_id(net);
      return true;
    } catch (const api::HttpError&) {
      return false;
    }
  }
  Forwarding forwarding(const std::string& net_id) const {
    Forwarding f;
    on([&] { f = read_forwarding(overlay_vxlan_name(net_id)); });
    return f;
  }
  std::string run(std::vector<std::string> argv) const {
    std::string out;
    on([&] { out = run_checked(argv); });
    return out;
  }
};

class TestCluster {
 public:
  explicit TestCluster(const fs::path& dir) : dir_(dir) {
    // The cluster segment: a bridge on a, b's eth0 on it.
    {
      netlink::Socket s;
      netlink::ensure_bridge(s, "seg0");
      netlink::ensure_address(s, "seg0", *parse_ipv4("192.168.200.11"), 24);
      netlink::set_link_up(s, "seg0");
    }
    fs::create_directories(dir / "hosts");
    fs::path b_host = dir / "hosts" / "b";
    netlink::create_netns(b_host);
    {
      agent::testing::OwnedFd ns(::open(b_host.c_str(), O_RDONLY | O_CLOEXEC));
      netlink::Socket s;
      netlink::create_veth(s, "segb", "seg0", "eth0", ns.fd, "02:00:00:00:00:12");
      netlink::set_link_up(s, "segb");
    }
    netlink::run_in_netns(b_host, [] {
      netlink::Socket s;
      netlink::ensure_address(s, "eth0", *parse_ipv4("192.168.200.12"), 24);
      netlink::set_link_up(s, "eth0");
    });
    etcd = std::make_unique<agent::testing::TestEtcd>(dir / "etcd", 1, std::vector<std::string>{"192.168.200.11"});
    a = machine("a", "192.168.200.11", "");
    b = machine("b", "192.168.200.12", b_host);
    a.start();
    b.start();
  }
  ~TestCluster() {
    a.stop();
    b.stop();
  }

  Machine a, b;
  std::unique_ptr<agent::testing::TestEtcd> etcd;

  EtcdClient client() const { return EtcdClient(etcd->options()); }

 private:
  Machine machine(const std::string& name, const std::string& advertise, const fs::path& host) {
    Machine m;
    m.name = name;
    m.advertise = advertise;
    m.host_netns = host;
    m.dir = dir_ / name;
    fs::create_directories(m.dir / "run");
    if (::mount("tmpfs", (m.dir / "run").c_str(), "tmpfs", 0, "size=1m") != 0)
      throw std::runtime_error("mount tmpfs failed");
    m.settings.netns_dir = m.dir / "run" / "netns";
    m.settings.host_resolv_conf = m.dir / "resolv.conf";
    std::ofstream(m.settings.host_resolv_conf) << "nameserver 192.0.2.53\n";
    ClusterSettings c;
    c.name = "lab";
    c.machine = name;
    c.advertise = advertise;
    c.etcd = agent::testing::etcd_options({"https://192.168.200.11:2379"}, etcd->pki());
    c.etcd.request_timeout = std::chrono::milliseconds(2000);
    c.resync_interval = std::chrono::milliseconds(3000);
    m.settings.cluster = c;
    return m;
  }
  fs::path dir_;
};

// --- the forwarding reconciler, no etcd ---

TEST(OverlayForwarding, DesiredEntriesAreTheOtherMachinesEndpoints) {
  std::map<std::string, ClusterEndpoint> peers;
  auto ep = [](std::string machine, std::string advertise, std::string ip) {
    ClusterEndpoint e;
    e.machine = std::move(machine);
    e.advertise = std::move(advertise);
    e.ip = *parse_ipv4(ip);
    e.mac = mac_for(e.ip);
    return e;
  };
  peers["c1"] = ep("a", "192.168.200.11", "10.10.0.2");
  peers["c2"] = ep("b", "192.168.200.12", "10.10.0.3");
  peers["c3"] = ep("c", "192.168.200.13", "10.10.0.4");
  peers["c4"] = ep("c", "not-an-ip", "10.10.0.5");
  Forwarding f = desired_forwarding(peers, "a");
  EXPECT_EQ(f.fdb, (std::set<netlink::FdbEntry>{{"02:42:0a:0a:00:03", *parse_ipv4("192.168.200.12")},
                                                {"02:42:0a:0a:00:04", *parse_ipv4("192.168.200.13")}}));
  EXPECT_EQ(f.neigh, (std::set<netlink::NeighEntry>{{*parse_ipv4("10.10.0.3"), "02:42:0a:0a:00:03"},
                                                    {*parse_ipv4("10.10.0.4"), "02:42:0a:0a:00:04"}}));
  // A moved endpoint is replaced, a gone one removed, a new one added.
  Forwarding now = f;
  peers.erase("c3");
  peers["c2"].advertise = "192.168.200.14";
  peers["c5"] = ep("b", "192.168.200.12", "10.10.0.6");
  ForwardingChanges c = diff_forwarding(now, desired_forwarding(peers, "a"));
  EXPECT_EQ(c.fdb_add.size(), 2u);
  ASSERT_EQ(c.fdb_remove.size(), 1u);
  EXPECT_EQ(c.fdb_remove[0].mac, "02:42:0a:0a:00:04");
  EXPECT_EQ(c.neigh_add.size(), 1u);
  EXPECT_EQ(c.neigh_remove.size(), 1u);
  EXPECT_TRUE(diff_forwarding(f, f).empty());
}

TEST(OverlayForwarding, ReconcilerProgramsTheVxlanDevice) {
  run_scenario([] {
    const std::uint32_t local = *parse_ipv4("192.168.200.11");
    {
      netlink::Socket s;
      netlink::ensure_bridge(s, "seg0");
      netlink::ensure_address(s, "seg0", local, 24);
      netlink::set_link_up(s, "seg0");
      netlink::ensure_bridge(s, "ov-test", "berth");
      netlink::set_link_up(s, "ov-test");
      netlink::VxlanSpec spec;
      spec.name = "vx-test";
      spec.vni = 4242;
      spec.local = local;
      spec.master = "ov-test";
      netlink::ensure_vxlan(s, spec);
      auto info = netlink::vxlan_info(s, "vx-test");
      NET_CHECK(info && info->vni == 4242 && info->local == local && info->port == 4789);
      NET_CHECK(!info->learning && info->proxy);
      NET_CHECK(netlink::link_mtu(s, "vx-test") == 1450);
      int index = netlink::link_index(s, "vx-test");
      netlink::ensure_vxlan(s, spec);  // idempotent: the same device
      NET_CHECK(netlink::link_index(s, "vx-test") == index);
    }
    std::string details = run_checked({"ip", "-d", "link", "show", "vx-test"});
    NET_CHECK(details.find("master ov-test") != std::string::npos);
    NET_CHECK(details.find("vxlan id 4242 local 192.168.200.11") != std::string::npos);
    NET_CHECK(details.find("dstport 4789") != std::string::npos);
    NET_CHECK(details.find("nolearning") != std::string::npos);
    NET_CHECK(details.find("proxy") != std::string::npos);
    NET_CHECK(details.find(",UP") != std::string::npos || details.find("<UP") != std::string::npos ||
              details.find(",UP,") != std::string::npos);

    std::map<std::string, ClusterEndpoint> peers;
    for (auto [cid, machine, advertise, ip] :
         {std::tuple{"c1", "b", "192.168.200.12", "10.10.0.3"}, {"c2", "c", "192.168.200.13", "10.10.0.4"},
          {"c3", "a", "192.168.200.11", "10.10.0.2"}}) {
      ClusterEndpoint e;
      e.machine = machine;
      e.advertise = advertise;
      e.ip = *parse_ipv4(ip);
      e.mac = mac_for(e.ip);
      peers[cid] = e;
    }
    Forwarding want = desired_forwarding(peers, "a");
    ForwardingChanges changes = reconcile_forwarding("vx-test", want);
    NET_CHECK(changes.fdb_add.size() == 2 && changes.neigh_add.size() == 2);
    NET_CHECK(read_forwarding("vx-test") == want);
    // What iproute2 sees.
    std::string fdb = run_checked({"bridge", "fdb", "show", "dev", "vx-test"});
    NET_CHECK(fdb.find("02:42:0a:0a:00:03 dst 192.168.200.12 self permanent") != std::string::npos);
    NET_CHECK(fdb.find("02:42:0a:0a:00:04 dst 192.168.200.13 self permanent") != std::string::npos);
    NET_CHECK(fdb.find("00:00:00:00:00:00") == std::string::npos);  // no flooding anywhere
    std::string neigh = run_checked({"ip", "neigh", "show", "dev", "vx-test"});
    NET_CHECK(neigh.find("10.10.0.3 lladdr 02:42:0a:0a:00:03 PERMANENT") != std::string::npos);
    NET_CHECK(neigh.find("10.10.0.2") == std::string::npos);  // this machine's own container
    NET_CHECK(reconcile_forwarding("vx-test", want).empty());

    // Drift (an entry lost, a stranger added) is undone.
    run_checked({"bridge", "fdb", "del", "02:42:0a:0a:00:03", "dev", "vx-test", "dst", "192.168.200.12", "self"});
    run_checked({"bridge", "fdb", "append", "02:42:0a:0a:00:63", "dev", "vx-test", "dst", "192.168.200.99",
                 "self", "permanent"});
    run_checked({"ip", "neigh", "replace", "10.10.0.99", "lladdr", "02:42:0a:0a:00:63", "dev", "vx-test", "nud",
                 "permanent"});
    changes = reconcile_forwarding("vx-test", want);
    NET_CHECK(changes.fdb_add.size() == 1 && changes.fdb_remove.size() == 1 && changes.neigh_remove.size() == 1);
    NET_CHECK(read_forwarding("vx-test") == want);
    // An endpoint that moved to another machine: its entry is replaced.
    peers["c1"].advertise = "192.168.200.14";
    peers["c1"].machine = "d";
    want = desired_forwarding(peers, "a");
    reconcile_forwarding("vx-test", want);
    NET_CHECK(read_forwarding("vx-test") == want);
    NET_CHECK(run_checked({"bridge", "fdb", "show", "dev", "vx-test"}).find("192.168.200.12") == std::string::npos);
    // Every endpoint gone: nothing left.
    reconcile_forwarding("vx-test", {});
    NET_CHECK(read_forwarding("vx-test") == Forwarding{});
    // Another VNI makes the device again.
    netlink::Socket s;
    netlink::VxlanSpec other;
    other.name = "vx-test";
    other.vni = 4243;
    other.local = local;
    other.master = "ov-test";
    netlink::ensure_vxlan(s, other);
    NET_CHECK(netlink::vxlan_info(s, "vx-test")->vni == 4243);
  });
}

// --- two machines and etcd ---

TEST(OverlayNetns, ContainersOnTwoMachinesTalkAndResolveNames) {
  if (!agent::testing::have_etcd()) GTEST_SKIP() << "etcd is not installed (apt-get install etcd-server)";
  TempDir dir;
  run_scenario([&] {
    TestCluster c(dir.path);
    NET_CHECK(c.a.knows("bridge") && c.b.knows("bridge"));
    NetworkCreate req = overlay("appnet", "10.10.0.0/24");
    req.labels = {{"team", "x"}};
    req.attachable = true;
    const std::string id = c.a.create(req);
    // b learns it from its watch.
    NET_CHECK(wait_until([&] { return c.b.knows("appnet"); }));
    for (const Machine* m : {&c.a, &c.b}) {
      auto j = m->nm->inspect("appnet");
      NET_CHECK(j["Id"] == id);
      NET_CHECK(j["Driver"] == "overlay");
      NET_CHECK(j["Scope"] == "global");
      NET_CHECK(j["Attachable"] == true);
      NET_CHECK(j["Labels"]["team"] == "x");
      NET_CHECK(j["IPAM"]["Config"][0]["Subnet"] == "10.10.0.0/24");
      NET_CHECK(j["IPAM"]["Config"][0]["Gateway"] == "10.10.0.1");
      NET_CHECK(j["Options"]["com.docker.network.driver.overlay.vxlanid_list"] == "4096");
    }
    // The name is taken in the whole cluster.
    std::string message;
    NET_CHECK(http_status_of([&] { c.b.create(overlay("appnet")); }, &message) == 409u);
    NET_CHECK(message == "network with name appnet already exists");

    fs::path a1 = c.a.sandbox("a1"), b1 = c.b.sandbox("b1");
    Endpoint ea = c.a.connect("appnet", "a1");
    Endpoint eb = c.b.connect("appnet", "b1", {{"db"}, "", "", "", {}});
    NET_CHECK(ea.ip == "10.10.0.2" && eb.ip == "10.10.0.3");
    NET_CHECK(ea.gateway == "10.10.0.1" && eb.gateway == "10.10.0.1");
    NET_CHECK(eb.mac == "02:42:0a:0a:00:03");
    // The endpoints are in etcd, with their machine's tunnel endpoint.
    EtcdClient etcd = c.client();
    auto rec = etcd.get("/berth/endpoints/" + id + "/" + cid("b1"));
    NET_CHECK(rec && rec->value.find("\"Advertise\":\"192.168.200.12\"") != std::string::npos);
    NET_CHECK(etcd.get("/berth/ipam/" + id + "/10.10.0.3"));

    // Each machine's vxlan device forwards to the other's container only.
    const std::uint32_t a_ip = *parse_ipv4("192.168.200.11"), b_ip = *parse_ipv4("192.168.200.12");
    Forwarding on_a{{{eb.mac, b_ip}}, {{*parse_ipv4(eb.ip), eb.mac}}};
    Forwarding on_b{{{ea.mac, a_ip}}, {{*parse_ipv4(ea.ip), ea.mac}}};
    NET_CHECK(wait_until([&] { return c.a.forwarding(id) == on_a; }));
    NET_CHECK(wait_until([&] { return c.b.forwarding(id) == on_b; }));
    std::string details = c.a.run({"ip", "-d", "link", "show", overlay_vxlan_name(id)});
    NET_CHECK(details.find("vxlan id 4096 local 192.168.200.11") != std::string::npos);
    NET_CHECK(details.find("mtu 1450") != std::string::npos);
    NET_CHECK(details.find("nolearning") != std::string::npos);
    NET_CHECK(c.a.run({"ip", "link", "show", overlay_bridge_name(id)}).find("mtu 1450") != std::string::npos);
    std::string eth0;
    netlink::run_in_netns(a1, [&] { eth0 = run_checked({"ip", "link", "show", "eth0"}); });
    NET_CHECK(eth0.find("mtu 1450") != std::string::npos);
    NET_CHECK(c.b.run({"bridge", "fdb", "show", "dev", overlay_vxlan_name(id)}).find("00:00:00:00:00:00") ==
              std::string::npos);

    // TCP across the machines, both ways.
    auto on_b1 = listen_in(b1.string(), "0.0.0.0", 80);
    auto on_a1 = listen_in(a1.string(), "0.0.0.0", 80);
    NET_CHECK(tcp_exchange(a1.string(), "10.10.0.3", 80, on_b1.fd) == "hello 10.10.0.2");
    NET_CHECK(tcp_exchange(b1.string(), "10.10.0.2", 80, on_a1.fd) == "hello 10.10.0.3");
    // Names and aliases wherever the container runs, from each machine's own DNS server.
    NET_CHECK(resolved(a1, "10.10.0.1", "b1") == "10.10.0.3");
    NET_CHECK(resolved(a1, "10.10.0.1", "DB") == "10.10.0.3");
    NET_CHECK(resolved(a1, "10.10.0.1", "b1.appnet") == "10.10.0.3");
    NET_CHECK(resolved(a1, "10.10.0.1", cid("b1").substr(0, 12)) == "10.10.0.3");
    NET_CHECK(resolved(b1, "10.10.0.1", "a1") == "10.10.0.2");
    NET_CHECK(c.a.nm->resolv_conf("appnet").starts_with("nameserver 10.10.0.1\n"));

    // Outbound through the machine's own NAT: b's segment address sees a's.
    fs::path b_host = c.b.host_netns;
    auto on_b_host = listen_in(b_host.string(), "192.168.200.12", 9000);
    NET_CHECK(tcp_exchange(a1.string(), "192.168.200.12", 9000, on_b_host.fd) == "hello 192.168.200.11");

    // inspect: local containers, and the machines with endpoints.
    auto j = c.a.nm->inspect("appnet");
    NET_CHECK(j["Containers"].size() == 1 && j["Containers"].contains(cid("a1")));
    NET_CHECK(j["Peers"].size() == 2);
    NET_CHECK(j["Peers"][1]["Name"] == "b" && j["Peers"][1]["IP"] == "192.168.200.12");

    // b1 leaves: its entries go from a, its name too, its records from etcd.
    c.b.on([&] { c.b.nm->disconnect("appnet", cid("b1")); });
    NET_CHECK(wait_until([&] { return c.a.forwarding(id) == Forwarding{}; }));
    NET_CHECK(wait_until([&] { return resolved(a1, "10.10.0.1", "b1").empty(); }));
    NET_CHECK(!etcd.get("/berth/endpoints/" + id + "/" + cid("b1")));
    NET_CHECK(!etcd.get("/berth/ipam/" + id + "/10.10.0.3"));
    // b has no container on it now: no bridge, no vxlan device there.
    NET_CHECK(c.b.run({"ip", "-o", "link", "show"}).find(overlay_vxlan_name(id)) == std::string::npos);
    // A container removed (its sandbox destroyed) leaves the same way.
    c.a.on([&] { c.a.nm->destroy_sandbox(cid("a1")); });
    NET_CHECK(etcd.get_prefix("/berth/endpoints/").kvs.empty());
    NET_CHECK(etcd.get_prefix("/berth/ipam/").kvs.empty());
  });
}

TEST(OverlayNetns, OverlayNetworksAreIsolatedAndInternalOnesHaveNoWayOut) {
  if (!agent::testing::have_etcd()) GTEST_SKIP() << "etcd is not installed (apt-get install etcd-server)";
  TempDir dir;
  run_scenario([&] {
    TestCluster c(dir.path);
    const std::string front = c.a.create(overlay("front"));
    const std::string back = c.b.create(overlay("back"));
    NetworkCreate internal = overlay("private", "10.99.0.0/24");
    internal.internal = true;
    c.a.create(internal);
    NET_CHECK(wait_until([&] { return c.a.knows("back") && c.b.knows("front") && c.b.knows("private"); }));
    NET_CHECK(c.a.nm->inspect("front")["IPAM"]["Config"][0]["Subnet"] == "10.0.0.0/24");
    NET_CHECK(c.a.nm->inspect("back")["IPAM"]["Config"][0]["Subnet"] == "10.0.1.0/24");
    NET_CHECK(c.a.nm->inspect("front")["Options"]["com.docker.network.driver.overlay.vxlanid_list"] !=
              c.a.nm->inspect("back")["Options"]["com.docker.network.driver.overlay.vxlanid_list"]);

    fs::path af = c.a.sandbox("af"), ab = c.a.sandbox("ab"), bf = c.b.sandbox("bf"), bb = c.b.sandbox("bb");
    fs::path ap = c.a.sandbox("ap"), bp = c.b.sandbox("bp");
    Endpoint e_af = c.a.connect("front", "af"), e_ab = c.a.connect("back", "ab");
    Endpoint e_bf = c.b.connect("front", "bf"), e_bb = c.b.connect("back", "bb");
    Endpoint e_ap = c.a.connect("private", "ap"), e_bp = c.b.connect("private", "bp");
    NET_CHECK(e_ap.gateway.empty());
    auto l_bf = listen_in(bf.string(), "0.0.0.0", 7000);
    auto l_bb = listen_in(bb.string(), "0.0.0.0", 7000);
    auto l_ab = listen_in(ab.string(), "0.0.0.0", 7000);
    auto l_bp = listen_in(bp.string(), "0.0.0.0", 7000);
    NET_CHECK(wait_until([&] { return !tcp_exchange(af.string(), e_bf.ip, 7000, l_bf.fd, 500).empty(); }));
    NET_CHECK(wait_until([&] { return !tcp_exchange(ab.string(), e_bb.ip, 7000, l_bb.fd, 500).empty(); }));
    // Across networks, on one machine or two: nothing.
    NET_CHECK(tcp_exchange(af.string(), e_bb.ip, 7000, l_bb.fd, 800).empty());
    NET_CHECK(tcp_exchange(af.string(), e_ab.ip, 7000, l_ab.fd, 800).empty());
    NET_CHECK(tcp_exchange(bb.string(), e_bf.ip, 7000, l_bf.fd, 800).empty());
    NET_CHECK(tcp_exchange(af.string(), e_bp.ip, 7000, l_bp.fd, 800).empty());
    // Names too stay on their network.
    NET_CHECK(resolved(af, e_af.gateway, "bf") == e_bf.ip);
    NET_CHECK(resolved(af, e_af.gateway, "bb").empty());
    // The internal network: across machines yes, out of the cluster no.
    NET_CHECK(wait_until([&] { return !tcp_exchange(ap.string(), e_bp.ip, 7000, l_bp.fd, 500).empty(); }));
    auto on_b_host = listen_in(c.b.host_netns.string(), "192.168.200.12", 9000);
    NET_CHECK(tcp_exchange(ap.string(), "192.168.200.12", 9000, on_b_host.fd, 800).empty());
    NET_CHECK(tcp_exchange(af.string(), "192.168.200.12", 9000, on_b_host.fd) == "hello 192.168.200.11");
  });
}

TEST(OverlayNetns, NetworksAreRemovedClusterWideOnlyWithoutEndpoints) {
  if (!agent::testing::have_etcd()) GTEST_SKIP() << "etcd is not installed (apt-get install etcd-server)";
  TempDir dir;
  run_scenario([&] {
    TestCluster c(dir.path);
    const std::string id = c.a.create(overlay("shared", "10.20.0.0/24"));
    NET_CHECK(wait_until([&] { return c.b.knows("shared"); }));
    bool listed = false;
    for (const auto& n : c.b.nm->list()) listed = listed || (n["Name"] == "shared" && n["Scope"] == "global");
    NET_CHECK(listed);
    fs::path b1 = c.b.sandbox("b1");
    c.b.connect("shared", "b1");
    NET_CHECK(wait_until([&] { return c.a.nm->has_endpoints("shared"); }));
    std::string message;
    NET_CHECK(http_status_of([&] { c.a.on([&] { c.a.nm->remove_network("shared"); }); }, &message) == 403u);
    NET_CHECK(message == "error while removing network: network shared id " + id + " has active endpoints");
    c.b.on([&] { c.b.nm->destroy_sandbox(cid("b1")); });
    c.a.on([&] { c.a.nm->remove_network("shared"); });
    NET_CHECK(!c.a.knows("shared"));
    NET_CHECK(wait_until([&] { return !c.b.knows("shared"); }));
    EtcdClient etcd = c.client();
    NET_CHECK(etcd.get_prefix("/berth/networks/").kvs.empty());
    NET_CHECK(etcd.get_prefix("/berth/names/").kvs.empty());
    NET_CHECK(etcd.get_prefix("/berth/vni/").kvs.empty());
    // The name is free again, on either machine; its subnet too.
    c.b.create(overlay("shared", "10.20.0.0/24"));
    // Not with a subnet a local bridge network holds, nor encrypted.
    c.a.on([&] {
      NetworkCreate bridge;
      bridge.name = "local";
      bridge.subnet = "10.30.0.0/16";
      c.a.nm->create_network(bridge);
    });
    NET_CHECK(http_status_of([&] { c.a.create(overlay("clash", "10.30.1.0/24")); }) == 403u);
    NetworkCreate enc = overlay("secret");
    enc.options["encrypted"] = "";
    NET_CHECK(http_status_of([&] { c.a.create(enc); }, &message) == 400u);
    NET_CHECK(message.starts_with("encrypted overlay networks are not supported by berth yet"));
  });
}

TEST(OverlayNetns, KernelStateIsReconciledAfterARestartAndOutlivesTheStore) {
  if (!agent::testing::have_etcd()) GTEST_SKIP() << "etcd is not installed (apt-get install etcd-server)";
  TempDir dir;
  run_scenario([&] {
    TestCluster c(dir.path);
    const std::string id = c.a.create(overlay("appnet", "10.10.0.0/24"));
    NET_CHECK(wait_until([&] { return c.b.knows("appnet"); }));
    fs::path a1 = c.a.sandbox("a1"), b1 = c.b.sandbox("b1"), b2 = c.b.sandbox("b2");
    Endpoint ea = c.a.connect("appnet", "a1");
    Endpoint eb1 = c.b.connect("appnet", "b1");
    auto on_b1 = listen_in(b1.string(), "0.0.0.0", 80);
    NET_CHECK(wait_until([&] { return !tcp_exchange(a1.string(), eb1.ip, 80, on_b1.fd, 500).empty(); }));

    // a's agent stops. Meanwhile b2 joins, and a's kernel state drifts.
    c.a.stop();
    NET_CHECK(tcp_exchange(a1.string(), eb1.ip, 80, on_b1.fd) == "hello 10.10.0.2");  // the kernel forwards
    Endpoint eb2 = c.b.connect("appnet", "b2");
    const std::string vx = overlay_vxlan_name(id);
    c.a.run({"bridge", "fdb", "append", "02:42:0a:0a:00:63", "dev", vx, "dst", "192.168.200.99", "self", "permanent"});
    c.a.run({"ip", "neigh", "replace", "10.10.0.99", "lladdr", "02:42:0a:0a:00:63", "dev", vx, "nud", "permanent"});
    c.a.run({"ip", "neigh", "del", eb1.ip, "dev", vx});
    // It starts again: everything as the store says.
    c.a.start();
    const std::uint32_t b_ip = *parse_ipv4("192.168.200.12");
    Forwarding want{{{eb1.mac, b_ip}, {eb2.mac, b_ip}},
                    {{*parse_ipv4(eb1.ip), eb1.mac}, {*parse_ipv4(eb2.ip), eb2.mac}}};
    NET_CHECK(wait_until([&] { return c.a.forwarding(id) == want; }));
    auto on_b2 = listen_in(b2.string(), "0.0.0.0", 80);
    NET_CHECK(tcp_exchange(a1.string(), eb2.ip, 80, on_b2.fd) == "hello 10.10.0.2");
    NET_CHECK(resolved(a1, "10.10.0.1", "b2") == eb2.ip);

    // etcd goes away (quorum lost): one clear error for what needs it ...
    c.etcd->member(0).stop();
    std::string message;
    NET_CHECK(http_status_of([&] { c.a.create(overlay("later")); }, &message) == 503u);
    NET_CHECK(message.starts_with("the cluster store (etcd) is unavailable: cannot reach https://192.168.200.11:2379"));
    fs::path a3 = c.a.sandbox("a3");
    NET_CHECK(http_status_of([&] { c.a.connect("appnet", "a3"); }, &message) == 503u);
    NET_CHECK(message.starts_with("the cluster store (etcd) is unavailable"));
    NET_CHECK(!c.a.nm->endpoint("appnet", cid("a3")));  // and no veth, no address
    // ... while the running containers keep talking, and their names resolve.
    NET_CHECK(tcp_exchange(a1.string(), eb1.ip, 80, on_b1.fd) == "hello 10.10.0.2");
    NET_CHECK(resolved(a1, "10.10.0.1", "b1") == eb1.ip);
    // An agent restart without etcd keeps that too.
    c.a.stop();
    c.a.start();
    NET_CHECK(tcp_exchange(a1.string(), eb2.ip, 80, on_b2.fd) == "hello 10.10.0.2");
    NET_CHECK(resolved(a1, "10.10.0.1", "b2") == eb2.ip);
    // A container removed meanwhile is withdrawn once etcd is back.
    c.b.on([&] { c.b.nm->destroy_sandbox(cid("b2")); });
    c.etcd->member(0).start();
    EtcdClient etcd = c.client();
    NET_CHECK(wait_until(
        [&] {
          try {
            return !etcd.get("/berth/endpoints/" + id + "/" + cid("b2")) &&
                   !etcd.get("/berth/ipam/" + id + "/" + eb2.ip);
          } catch (const std::exception&) {
            return false;
          }
        },
        20000));
    Forwarding after{{{eb1.mac, b_ip}}, {{*parse_ipv4(eb1.ip), eb1.mac}}};
    NET_CHECK(wait_until([&] { return c.a.forwarding(id) == after; }, 20000));
    NET_CHECK(c.a.connect("appnet", "a3").ip == eb2.ip);  // its address is free again
  });
}

}  // namespace
}  // namespace berth::agent::network
