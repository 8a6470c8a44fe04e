// The etcd client and the etcd supervisor against a real etcd (Debian's
// etcd-server), started by each test on free ports of 127.0.0.1 with
// test-made TLS certificates.
#include <gtest/gtest.h>
#include <signal.h>

#include <set>
#include <thread>

#include "agent/cluster/etcd_supervisor.h"
#include "agent/config.h"
#include "agent/network/etcd_client.h"
#include "etcd_harness.h"
#include "test_util.h"

namespace berth::agent::network {
namespace {

using agent::testing::have_etcd;
using agent::testing::TempDir;
using agent::testing::TestEtcd;

#define REQUIRE_ETCD() \
  if (!have_etcd()) GTEST_SKIP() << "etcd is not installed (apt-get install etcd-server)"

TEST(EtcdClient, PutRangeAndDeleteKeepBytesAsTheyAre) {
  REQUIRE_ETCD();
  TempDir dir;
  TestEtcd etcd(dir.path);
  EtcdClient c(etcd.options());
  const std::string binary("v\0\xff\n\"x", 6);
  std::int64_t rev = c.put("/t/a", binary);
  EXPECT_GT(rev, 0);
  c.put("/t/b", "2");
  c.put("/t/c/d", "3");
  c.put("/u", "outside");
  auto a = c.get("/t/a");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->value, binary);
  EXPECT_EQ(a->version, 1);
  EXPECT_EQ(a->mod_revision, rev);
  EXPECT_FALSE(c.get("/t/none"));
  RangeResult r = c.get_prefix("/t/");
  ASSERT_EQ(r.kvs.size(), 3u);
  EXPECT_EQ(r.kvs[0].key, "/t/a");
  EXPECT_EQ(r.kvs[2].key, "/t/c/d");
  EXPECT_GE(r.revision, rev);
  RangeOptions count;
  count.range_end = prefix_end("/t/");
  count.count_only = true;
  EXPECT_EQ(c.range("/t/", count).count, 3);
  // An older revision still has the first value.
  c.put("/t/b", "changed");
  RangeOptions old;
  old.revision = rev;
  EXPECT_FALSE(c.range("/t/b", old).kvs.size());
  EXPECT_EQ(c.del("/t/", prefix_end("/t/")), 3);
  EXPECT_TRUE(c.get_prefix("/t/").kvs.empty());
  EXPECT_EQ(c.get("/u")->value, "outside");
}

TEST(EtcdClient, TransactionsCompareAndSwap) {
  REQUIRE_ETCD();
  TempDir dir;
  TestEtcd etcd(dir.path);
  EtcdClient c(etcd.options());
  // Create only when absent: the second one loses and reads the winner.
  TxnResult first = c.txn({Compare::absent("/lock")}, {TxnOp::put("/lock", "one")});
  EXPECT_TRUE(first.succeeded);
  TxnResult second = c.txn({Compare::absent("/lock")}, {TxnOp::put("/lock", "two")}, {TxnOp::get("/lock")});
  EXPECT_FALSE(second.succeeded);
  ASSERT_EQ(second.ranges.size(), 1u);
  ASSERT_EQ(second.ranges[0].kvs.size(), 1u);
  EXPECT_EQ(second.ranges[0].kvs[0].value, "one");
  // Value and mod_revision conditions.
  EXPECT_FALSE(c.txn({Compare::value_is("/lock", "two")}, {TxnOp::del("/lock")}).succeeded);
  auto kv = c.get("/lock");
  EXPECT_FALSE(c.txn({Compare::mod_revision_is("/lock", kv->mod_revision + 1)}, {TxnOp::del("/lock")}).succeeded);
  EXPECT_TRUE(c.txn({Compare::mod_revision_is("/lock", kv->mod_revision)}, {TxnOp::put("/lock", "three")}).succeeded);
  EXPECT_TRUE(c.txn({Compare::exists("/lock")}, {}).succeeded);
  EXPECT_FALSE(c.txn({Compare::exists("/nothing")}, {}).succeeded);
  // A whole range: empty, and unchanged since a revision.
  EXPECT_TRUE(c.txn({Compare::prefix_empty("/dir/")}, {TxnOp::put("/dir/x", "1")}).succeeded);
  EXPECT_FALSE(c.txn({Compare::prefix_empty("/dir/")}, {}).succeeded);
  std::int64_t seen = c.get_prefix("/dir/").revision;
  EXPECT_TRUE(c.txn({Compare::prefix_unchanged_since("/dir/", seen)}, {}).succeeded);
  c.put("/dir/y", "2");
  EXPECT_FALSE(c.txn({Compare::prefix_unchanged_since("/dir/", seen)}, {}).succeeded);
  // Many ops at once, ranges come back in order.
  TxnResult multi = c.txn({}, {TxnOp::del_prefix("/dir/"), TxnOp::get_prefix("/dir/"), TxnOp::get("/lock")});
  EXPECT_TRUE(multi.succeeded);
  ASSERT_EQ(multi.ranges.size(), 2u);
  EXPECT_TRUE(multi.ranges[0].kvs.empty());
  EXPECT_EQ(multi.ranges[1].kvs.at(0).value, "three");
}

TEST(EtcdClient, ConcurrentCompareAndSwapHasOneWinnerPerKey) {
  REQUIRE_ETCD();
  TempDir dir;
  TestEtcd etcd(dir.path);
  EtcdClient c(etcd.options());
  std::atomic<int> wins{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 6; ++t)
    threads.emplace_back([&, t] {
      for (int k = 0; k < 10; ++k)
        if (c.txn({Compare::absent("/slot/" + std::to_string(k))},
                  {TxnOp::put("/slot/" + std::to_string(k), std::to_string(t))})
                .succeeded)
          ++wins;
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(wins, 10);
}

TEST(EtcdClient, WatchSeesPutsAndDeletesFromARevision) {
  REQUIRE_ETCD();
  TempDir dir;
  TestEtcd etcd(dir.path);
  EtcdClient c(etcd.options());
  std::int64_t before = c.put("/w/early", "1");
  c.put("/other", "x");
  auto w = c.watch("/w/", prefix_end("/w/"), before);  // from the past: sees /w/early
  std::vector<WatchEvent> events;
  auto collect = [&](std::size_t n) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (events.size() < n && std::chrono::steady_clock::now() < deadline)
      if (auto b = w->next(std::chrono::milliseconds(200)))
        for (auto& e : b->events) events.push_back(e);
  };
  collect(1);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kv.key, "/w/early");
  EXPECT_EQ(events[0].type, EventType::Put);
  // Quiet: next() comes back empty in time.
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_FALSE(w->next(std::chrono::milliseconds(300)));
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(1500));
  c.put("/w/a", "va");
  c.put("/outside", "nope");
  c.del("/w/early");
  c.txn({}, {TxnOp::put("/w/b", "vb"), TxnOp::put("/w/c", "vc")});
  collect(5);
  ASSERT_EQ(events.size(), 5u);
  EXPECT_EQ(events[1].kv.key, "/w/a");
  EXPECT_EQ(events[1].kv.value, "va");
  EXPECT_EQ(events[2].type, EventType::Delete);
  EXPECT_EQ(events[2].kv.key, "/w/early");
  EXPECT_EQ(events[3].kv.key, "/w/b");
  EXPECT_EQ(events[4].kv.key, "/w/c");
  EXPECT_EQ(events[3].kv.mod_revision, events[4].kv.mod_revision);  // one transaction
  // Closed from another thread: next() ends at once.
  std::thread closer([&] { w->close(); });
  closer.join();
  EXPECT_THROW(w->next(std::chrono::milliseconds(100)), StoreUnavailable);
}

TEST(EtcdClient, WatchBreaksWhenEtcdStops) {
  REQUIRE_ETCD();
  TempDir dir;
  TestEtcd etcd(dir.path);
  EtcdClient c(etcd.options());
  auto w = c.watch("/w/", prefix_end("/w/"), 0);
  EXPECT_FALSE(w->next(std::chrono::milliseconds(100)));
  etcd.member(0).stop();
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  bool broke = false;
  while (!broke && std::chrono::steady_clock::now() < deadline) {
    try {
      w->next(std::chrono::milliseconds(200));
    } catch (const StoreUnavailable& e) {
      broke = true;
      EXPECT_NE(std::string(e.what()).find("the cluster store (etcd) is unavailable: the watch on"),
                std::string::npos)
          << e.what();
    }
  }
  EXPECT_TRUE(broke);
}

TEST(EtcdClient, LeasesExpireTheirKeys) {
  REQUIRE_ETCD();
  TempDir dir;
  TestEtcd etcd(dir.path);
  EtcdClient c(etcd.options());
  std::int64_t lease = c.lease_grant(5);
  ASSERT_NE(lease, 0);
  c.put("/leased", "v", lease);
  EXPECT_EQ(c.get("/leased")->lease, lease);
  EXPECT_GT(c.lease_keepalive(lease), 0);
  c.lease_revoke(lease);
  EXPECT_FALSE(c.get("/leased"));
}

TEST(EtcdClient, MembersAreListedAddedAndRemoved) {
  REQUIRE_ETCD();
  TempDir dir;
  TestEtcd etcd(dir.path);
  EtcdClient c(etcd.options());
  auto members = c.member_list();
  ASSERT_EQ(members.size(), 1u);
  EXPECT_EQ(members[0].name, "a");
  EXPECT_EQ(members[0].client_urls, std::vector<std::string>{etcd.member(0).client_url()});
  EXPECT_EQ(members[0].peer_urls, std::vector<std::string>{etcd.member(0).peer_url()});
  // A member added before it runs (as berth cluster join does), removed
  // again: a learner, so the one voter keeps its quorum meanwhile.
  EtcdMember added = c.member_add({"https://127.0.0.1:1"}, true);
  EXPECT_NE(added.id, 0u);
  EXPECT_TRUE(added.name.empty());
  EXPECT_TRUE(added.learner);
  EXPECT_EQ(c.member_list().size(), 2u);
  c.member_remove(added.id);
  EXPECT_EQ(c.member_list().size(), 1u);
}

TEST(EtcdClient, AStoppedEtcdIsOneClearError) {
  REQUIRE_ETCD();
  TempDir dir;
  TestEtcd etcd(dir.path);
  EtcdClient c(etcd.options());
  c.put("/k", "v");
  const std::string url = etcd.member(0).client_url();
  etcd.member(0).stop();
  try {
    c.get("/k");
    FAIL() << "no error";
  } catch (const StoreUnavailable& e) {
    EXPECT_EQ(std::string(e.what()),
              "the cluster store (etcd) is unavailable: cannot reach " + url + " (dial: connection refused)");
  }
  EXPECT_THROW(c.watch("/", "", 0), StoreUnavailable);
  // It comes back: the same client works again.
  etcd.member(0).start();
  agent::testing::wait_for_etcd(etcd.options());
  EXPECT_EQ(c.get("/k")->value, "v");
}

TEST(EtcdClient, TheNextEndpointAnswersWhenOneIsDown) {
  REQUIRE_ETCD();
  TempDir dir;
  TestEtcd etcd(dir.path);
  EtcdOptions o = etcd.options();
  o.endpoints.insert(o.endpoints.begin(), "https://127.0.0.1:" + std::to_string(agent::testing::free_port()));
  EtcdClient c(o);
  c.put("/k", "v");
  EXPECT_EQ(c.get("/k")->value, "v");
}

TEST(EtcdClient, LostQuorumIsOneClearError) {
  REQUIRE_ETCD();
  TempDir dir;
  TestEtcd etcd(dir.path, 2);
  EtcdOptions o = etcd.options_for(0);
  o.request_timeout = std::chrono::milliseconds(1500);
  EtcdClient c(o);
  c.put("/k", "v");
  etcd.member(1).stop();  // one of two: no quorum
  auto t0 = std::chrono::steady_clock::now();
  try {
    c.put("/k", "w");
    FAIL() << "no error";
  } catch (const StoreUnavailable& e) {
    // Usually "<url> has no leader"; on a loaded machine the member may still
    // think it has a leader when the request times out.
    const std::string what = e.what();
    const std::string url = etcd.member(0).client_url();
    EXPECT_TRUE(what == "the cluster store (etcd) is unavailable: no quorum: " + url + " has no leader" ||
                what.rfind("the cluster store (etcd) is unavailable: no quorum: " + url + " says \"", 0) == 0 ||
                what == "the cluster store (etcd) is unavailable: no answer within 1500 ms from " + url)
        << what;
  }
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(10));
}

TEST(EtcdClient, ACertificateFromAnotherCaIsRefused) {
  REQUIRE_ETCD();
  TempDir dir;
  TestEtcd etcd(dir.path);
  agent::testing::ClusterPki other(dir.path / "other", {"127.0.0.1"});
  EtcdOptions o = etcd.options();
  o.tls = other.etcd_tls();
  EtcdClient c(o);
  try {
    c.get("/k");
    FAIL() << "no error";
  } catch (const StoreUnavailable& e) {
    EXPECT_NE(std::string(e.what()).find("tls handshake"), std::string::npos) << e.what();
  }
  o.tls.cert = (dir.path / "missing.pem").string();
  EXPECT_THROW(EtcdClient{o}, std::runtime_error);
}

// --- the supervisor ---

TEST(EtcdSupervisor, CommandLineHasEveryTlsFlag) {
  ClusterConfig c;
  c.name = "lab";
  c.machine = "a";
  c.advertise = "192.168.200.11";
  c.tls = {"/etc/berth/cluster/ca.pem", "/etc/berth/cluster/member.pem", "/etc/berth/cluster/member-key.pem"};
  c.etcd = EtcdMemberConfig{};
  c.etcd->initial_cluster = "a=https://192.168.200.11:2380,b=https://192.168.200.12:2380";
  auto p = cluster::etcd_process(c, "/var/lib/berth");
  EXPECT_EQ(p.log_file, "/var/lib/berth/etcd.log");
  std::vector<std::string> want = {
      "/usr/local/lib/berth/etcd",
      "--name", "a",
      "--data-dir", "/var/lib/berth/etcd",
      "--listen-client-urls", "https://192.168.200.11:2379,https://127.0.0.1:2379",
      "--advertise-client-urls", "https://192.168.200.11:2379",
      "--listen-peer-urls", "https://192.168.200.11:2380",
      "--initial-advertise-peer-urls", "https://192.168.200.11:2380",
      "--initial-cluster", "a=https://192.168.200.11:2380,b=https://192.168.200.12:2380",
      "--initial-cluster-state", "new",
      "--initial-cluster-token", "lab",
      "--client-cert-auth",
      "--trusted-ca-file", "/etc/berth/cluster/ca.pem",
      "--cert-file", "/etc/berth/cluster/member.pem",
      "--key-file", "/etc/berth/cluster/member-key.pem",
      "--peer-client-cert-auth",
      "--peer-trusted-ca-file", "/etc/berth/cluster/ca.pem",
      "--peer-cert-file", "/etc/berth/cluster/member.pem",
      "--peer-key-file", "/etc/berth/cluster/member-key.pem"};
  EXPECT_EQ(cluster::etcd_argv(p), want);
}

TEST(EtcdSupervisor, RestartsADeadEtcdAndStopsItWithTheAgent) {
  REQUIRE_ETCD();
  TempDir dir;
  TestEtcd etcd(dir.path);
  auto& member = etcd.member(0);
  pid_t first = member.supervisor->pid();
  ASSERT_GT(first, 0);
  EtcdClient c(etcd.options());
  c.put("/survives", "yes");
  ::kill(first, SIGKILL);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
  while (member.supervisor->restarts() < 1 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(member.supervisor->restarts(), 1);
  pid_t second = member.supervisor->pid();
  EXPECT_NE(second, first);
  agent::testing::wait_for_etcd(etcd.options());
  EXPECT_EQ(c.get("/survives")->value, "yes");  // the same data dir
  member.stop();
  EXPECT_NE(::kill(second, 0), 0);  // gone, and reaped
  EXPECT_GT(std::filesystem::file_size(dir.path / "etcd-a.log"), 0u);
}

TEST(EtcdSupervisor, AMissingBinaryIsAClearStartError) {
  TempDir dir;
  cluster::EtcdProcess p;
  p.binary = (dir.path / "no-etcd").string();
  p.data_dir = (dir.path / "data").string();
  p.log_file = (dir.path / "etcd.log").string();
  Logger log;
  cluster::EtcdSupervisor s(p, log);
  try {
    s.start();
    FAIL() << "started";
  } catch (const std::runtime_error& e) {
    EXPECT_EQ(std::string(e.what()), "cannot run etcd " + p.binary + ": No such file or directory");
  }
  EXPECT_EQ(s.pid(), 0);
}

}  // namespace
}  // namespace berth::agent::network
