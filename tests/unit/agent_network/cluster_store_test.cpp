// The overlay networks' records in etcd: the VNI allocator, the address
// leases (compare-and-swap, with concurrent allocators standing in for the
// machines of a cluster), network create/remove and the snapshot. Against a
// real etcd on 127.0.0.1.
#include <gtest/gtest.h>

#include <mutex>
#include <set>
#include <thread>

#include "agent/api/http.h"
#include "agent/network/cluster_store.h"
#include "etcd_harness.h"
#include "test_util.h"

namespace berth::agent::network {
namespace {

using agent::testing::have_etcd;
using agent::testing::TempDir;
using agent::testing::TestEtcd;

#define REQUIRE_ETCD() \
  if (!have_etcd()) GTEST_SKIP() << "etcd is not installed (apt-get install etcd-server)"

unsigned status_of(const std::function<void()>& fn, std::string* message = nullptr) {
  try {
    fn();
  } catch (const api::HttpError& e) {
    if (message) *message = e.what();
    return e.status();
  }
  return 0;
}

OverlayNetworkRecord record(std::string id, std::string name, std::string subnet = "") {
  OverlayNetworkRecord r;
  r.id = std::move(id);
  r.name = std::move(name);
  if (!subnet.empty()) {
    r.subnet = *Ipv4Net::parse(subnet);
    r.gateway = r.subnet.addr + 1;
  }
  return r;
}

class ClusterStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!have_etcd()) GTEST_SKIP() << "etcd is not installed (apt-get install etcd-server)";
    etcd_ = std::make_unique<TestEtcd>(dir_.path);
    client_ = std::make_unique<EtcdClient>(etcd_->options());
    store_ = std::make_unique<ClusterStore>(*client_, ClusterKeys{"/berth/"});
  }
  TempDir dir_;
  std::unique_ptr<TestEtcd> etcd_;
  std::unique_ptr<EtcdClient> client_;
  std::unique_ptr<ClusterStore> store_;
};

TEST_F(ClusterStoreTest, VniAllocatorStartsAt4096AndNeverHandsOutOneTwice) {
  VniAllocator& vnis = store_->vnis();
  EXPECT_EQ(vnis.allocate("net-a"), 4096u);
  EXPECT_EQ(vnis.allocate("net-a"), 4096u);  // the same owner gets it back
  EXPECT_EQ(vnis.allocate("net-b"), 4097u);
  // Eight machines at once, five networks each, each with its own client.
  std::mutex mutex;
  std::vector<std::uint32_t> got;
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t)
    threads.emplace_back([&, t] {
      EtcdClient c(etcd_->options());
      VniAllocator mine(c, ClusterKeys{"/berth/"});
      for (int i = 0; i < 5; ++i) {
        std::uint32_t v = mine.allocate("m" + std::to_string(t) + "-" + std::to_string(i));
        std::lock_guard lock(mutex);
        got.push_back(v);
      }
    });
  for (auto& th : threads) th.join();
  std::set<std::uint32_t> unique(got.begin(), got.end());
  EXPECT_EQ(unique.size(), 40u);
  EXPECT_EQ(*unique.begin(), 4098u);
  EXPECT_EQ(*unique.rbegin(), 4098u + 39u);
  // Released: the lowest is handed out again; only by its owner.
  vnis.release(4096, "someone-else");
  EXPECT_EQ(vnis.allocate("net-c"), 4138u);
  vnis.release(4096, "net-a");
  EXPECT_EQ(vnis.allocate("net-d"), 4096u);
  EXPECT_EQ(client_->get("/berth/vni/4096")->value, "net-d");
}

TEST_F(ClusterStoreTest, ConcurrentAllocatorsNeverShareAnAddress) {
  OverlayNetworkRecord net = record("n1", "appnet", "10.10.0.0/24");
  store_->create_network(net, {});
  constexpr int kMachines = 4, kEach = 15;
  std::mutex mutex;
  std::map<std::uint32_t, std::string> owners;
  std::vector<std::string> errors;
  std::vector<std::thread> threads;
  for (int m = 0; m < kMachines; ++m)
    threads.emplace_back([&, m] {
      EtcdClient c(etcd_->options());
      ClusterIpam ipam(c, ClusterKeys{"/berth/"});
      for (int i = 0; i < kEach; ++i) {
        std::string owner = "c" + std::to_string(m) + "-" + std::to_string(i);
        try {
          std::uint32_t ip = ipam.allocate(net, owner, "machine" + std::to_string(m));
          std::lock_guard lock(mutex);
          if (!owners.emplace(ip, owner).second)
            errors.push_back(format_ipv4(ip) + " given to " + owner + " and " + owners[ip]);
        } catch (const std::exception& e) {
          std::lock_guard lock(mutex);
          errors.push_back(e.what());
        }
      }
    });
  for (auto& th : threads) th.join();
  EXPECT_TRUE(errors.empty()) << errors.front();
  ASSERT_EQ(owners.size(), static_cast<std::size_t>(kMachines * kEach));
  // The lowest addresses, never the network, the gateway or the broadcast.
  EXPECT_EQ(owners.begin()->first, *parse_ipv4("10.10.0.2"));
  EXPECT_EQ(owners.rbegin()->first, *parse_ipv4("10.10.0.61"));
  // etcd agrees, lease by lease.
  auto leases = store_->ipam().leases("n1");
  ASSERT_EQ(leases.size(), owners.size());
  for (const auto& [ip, owner] : owners) EXPECT_EQ(leases.at(ip).container, owner);
}

TEST_F(ClusterStoreTest, AddressesAreIdempotentRequestableAndRunOut) {
  OverlayNetworkRecord net = record("n2", "small", "10.20.0.0/29");  // .1 gateway, .2-.6 free
  store_->create_network(net, {});
  ClusterIpam& ipam = store_->ipam();
  EXPECT_EQ(format_ipv4(ipam.allocate(net, "c1", "a")), "10.20.0.2");
  EXPECT_EQ(format_ipv4(ipam.allocate(net, "c1", "a")), "10.20.0.2");  // its own lease again
  EXPECT_EQ(format_ipv4(ipam.allocate(net, "c2", "b", "10.20.0.5")), "10.20.0.5");
  std::string message;
  EXPECT_EQ(status_of([&] { ipam.allocate(net, "c3", "a", "10.20.0.5"); }, &message), 403u);
  EXPECT_EQ(message, "Address already in use");
  EXPECT_EQ(status_of([&] { ipam.allocate(net, "c3", "a", "10.20.0.1"); }), 403u);  // the gateway
  EXPECT_EQ(status_of([&] { ipam.allocate(net, "c3", "a", "10.99.0.1"); }), 400u);
  EXPECT_EQ(status_of([&] { ipam.allocate(net, "c3", "a", "bad"); }), 400u);
  EXPECT_EQ(format_ipv4(ipam.allocate(net, "c3", "a")), "10.20.0.3");
  EXPECT_EQ(format_ipv4(ipam.allocate(net, "c4", "a")), "10.20.0.4");
  EXPECT_EQ(format_ipv4(ipam.allocate(net, "c5", "a")), "10.20.0.6");
  EXPECT_EQ(status_of([&] { ipam.allocate(net, "c6", "a"); }, &message), 503u);
  EXPECT_EQ(message, "no available IPv4 addresses on this network's address pools");
  // Released by its owner only, then handed out again.
  ipam.release("n2", *parse_ipv4("10.20.0.3"), "not-c3");
  EXPECT_EQ(status_of([&] { ipam.allocate(net, "c6", "a"); }), 503u);
  ipam.release("n2", *parse_ipv4("10.20.0.3"), "c3");
  EXPECT_EQ(format_ipv4(ipam.allocate(net, "c6", "a")), "10.20.0.3");
  EXPECT_EQ(ipam.leases("n2").at(*parse_ipv4("10.20.0.3")).machine, "a");
}

TEST_F(ClusterStoreTest, AnIpRangeBoundsTheAddresses) {
  OverlayNetworkRecord net = record("n3", "ranged", "10.30.0.0/24");
  net.ip_range = Ipv4Net::parse("10.30.0.128/30");
  store_->create_network(net, {});
  ClusterIpam& ipam = store_->ipam();
  std::set<std::string> got;
  for (int i = 0; i < 4; ++i) got.insert(format_ipv4(ipam.allocate(net, "c" + std::to_string(i), "a")));
  EXPECT_EQ(got, (std::set<std::string>{"10.30.0.128", "10.30.0.129", "10.30.0.130", "10.30.0.131"}));
  EXPECT_EQ(status_of([&] { ipam.allocate(net, "c9", "a"); }), 503u);
  // Outside the range but in the subnet: asked for by address, it is fine.
  EXPECT_EQ(format_ipv4(ipam.allocate(net, "c9", "a", "10.30.0.9")), "10.30.0.9");
}

TEST_F(ClusterStoreTest, NetworksHaveUniqueNamesSubnetsAndVnis) {
  OverlayNetworkRecord a = record("id-a", "appnet");
  store_->create_network(a, {*Ipv4Net::parse("10.0.0.0/24")});  // a local bridge holds 10.0.0.0/24
  EXPECT_EQ(a.vni, 4096u);
  EXPECT_EQ(a.subnet.str(), "10.0.1.0/24");
  EXPECT_EQ(format_ipv4(a.gateway), "10.0.1.1");
  OverlayNetworkRecord b = record("id-b", "other");
  store_->create_network(b, {});
  EXPECT_EQ(b.vni, 4097u);
  EXPECT_EQ(b.subnet.str(), "10.0.0.0/24");
  std::string message;
  OverlayNetworkRecord dup = record("id-c", "appnet");
  EXPECT_EQ(status_of([&] { store_->create_network(dup, {}); }, &message), 409u);
  EXPECT_EQ(message, "network with name appnet already exists");
  OverlayNetworkRecord overlap = record("id-d", "overlap", "10.0.1.128/25");
  EXPECT_EQ(status_of([&] { store_->create_network(overlap, {}); }, &message), 403u);
  EXPECT_EQ(message, "invalid pool request: Pool overlaps with other one on this address space");
  // The losers gave their VNIs back.
  EXPECT_EQ(client_->get_prefix("/berth/vni/").kvs.size(), 2u);

  // Many machines create one name at once: exactly one wins.
  std::atomic<int> created{0}, conflicts{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 6; ++t)
    threads.emplace_back([&, t] {
      EtcdClient c(etcd_->options());
      ClusterStore s(c, ClusterKeys{"/berth/"});
      OverlayNetworkRecord r = record("race-" + std::to_string(t), "racy");
      unsigned status = status_of([&] { s.create_network(r, {}); });
      if (status == 0) ++created;
      if (status == 409) ++conflicts;
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(created, 1);
  EXPECT_EQ(conflicts, 5);
  // And different names at once never share a subnet or a VNI.
  threads.clear();
  std::mutex mutex;
  std::set<std::string> subnets;
  std::set<std::uint32_t> vnis;
  for (int t = 0; t < 6; ++t)
    threads.emplace_back([&, t] {
      EtcdClient c(etcd_->options());
      ClusterStore s(c, ClusterKeys{"/berth/"});
      OverlayNetworkRecord r = record("many-" + std::to_string(t), "many" + std::to_string(t));
      s.create_network(r, {});
      std::lock_guard lock(mutex);
      subnets.insert(r.subnet.str());
      vnis.insert(r.vni);
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(subnets.size(), 6u);
  EXPECT_EQ(vnis.size(), 6u);
}

TEST_F(ClusterStoreTest, ANetworkWithEndpointsAnywhereCannotBeRemoved) {
  OverlayNetworkRecord net = record("rm1", "busy", "10.40.0.0/24");
  store_->create_network(net, {});
  ClusterEndpoint ep;
  ep.network_id = "rm1";
  ep.container_id = "c1";
  ep.container_name = "web";
  ep.ip = store_->ipam().allocate(net, "c1", "b");
  ep.mac = mac_for(ep.ip);
  ep.machine = "b";
  ep.advertise = "192.168.200.12";
  store_->put_endpoint(ep);
  std::string message;
  EXPECT_EQ(status_of([&] { store_->remove_network(net); }, &message), 403u);
  EXPECT_EQ(message, "error while removing network: network busy id rm1 has active endpoints");
  store_->remove_endpoint("rm1", "c1", ep.ip);
  EXPECT_TRUE(store_->ipam().leases("rm1").empty());
  store_->remove_network(net);
  EXPECT_FALSE(client_->get("/berth/networks/rm1"));
  EXPECT_FALSE(client_->get("/berth/names/busy"));
  EXPECT_FALSE(client_->get("/berth/vni/" + std::to_string(net.vni)));
  store_->remove_network(net);  // gone already: fine
  // No endpoint and no address on a network that is gone.
  EXPECT_EQ(status_of([&] { store_->put_endpoint(ep); }), 404u);
  EXPECT_EQ(status_of([&] { store_->ipam().allocate(net, "c2", "b"); }), 404u);
}

TEST_F(ClusterStoreTest, SnapshotAndWatchEventsGiveTheSameView) {
  OverlayNetworkRecord net = record("s1", "snap", "10.50.0.0/24");
  store_->create_network(net, {});
  ClusterSnapshot snap = store_->snapshot();
  ASSERT_EQ(snap.networks.size(), 1u);
  EXPECT_EQ(snap.networks.at("s1").name, "snap");
  EXPECT_TRUE(snap.endpoints.empty());
  auto watch = client_->watch("/berth/", prefix_end("/berth/"), snap.revision + 1);
  ClusterEndpoint ep;
  ep.network_id = "s1";
  ep.container_id = "c1";
  ep.container_name = "db";
  ep.aliases = {"database"};
  ep.ip = store_->ipam().allocate(net, "c1", "a");
  ep.mac = mac_for(ep.ip);
  ep.machine = "a";
  ep.advertise = "192.168.200.11";
  store_->put_endpoint(ep);
  ClusterSnapshot followed = snap;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (followed.endpoints.empty() && std::chrono::steady_clock::now() < deadline)
    if (auto b = watch->next(std::chrono::milliseconds(200)))
      for (const auto& e : b->events) store_->apply(followed, e);
  ClusterSnapshot fresh = store_->snapshot();
  ASSERT_EQ(fresh.endpoints.at("s1").size(), 1u);
  EXPECT_EQ(fresh.endpoints.at("s1").at("c1"), ep);
  EXPECT_EQ(followed.endpoints, fresh.endpoints);
  EXPECT_EQ(followed.leases_by_key.size(), 1u);
  EXPECT_EQ(fresh.leases_by_key.begin()->second.container, "c1");
}

TEST_F(ClusterStoreTest, AStoppedStoreIsUnavailableNotAUserError) {
  etcd_->member(0).stop();
  OverlayNetworkRecord net = record("x", "down");
  EXPECT_THROW(store_->create_network(net, {}), StoreUnavailable);
  EXPECT_THROW(store_->snapshot(), StoreUnavailable);
}

}  // namespace
}  // namespace berth::agent::network
