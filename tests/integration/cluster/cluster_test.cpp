// A berth cluster end to end: three berth-os VMs (libvirt, TCG) made with
// `berth create --cluster lab`, joined by the cluster's VDE switch (unix
// sockets only), etcd on all three, and overlay networks used through the real
// docker CLI on each machine. The VMs are shared by the cases, which run in
// file order (the later ones kill and remove members).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <future>
#include <set>

#include "tests/integration/containers/harness.h"

namespace berth::it::containers {
namespace {

const std::vector<std::string> kMembers = {"ca", "cb", "cc"};

class Cluster : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    try {
      setup_error_ = unavailable_reason();
      if (!setup_error_.empty()) return;
      if (!run_bash("command -v vde_switch && command -v etcd", {}, 10s).ok()) {
        setup_error_ = "needs vde_switch (vde2) and etcd (etcd-server)";
        return;
      }
      root_ = std::make_unique<TempDir>("berth-it-cluster");
      image_ = make_test_image(root_->path() / "busybox.tar", "busybox:latest");
      for (const std::string& name : kMembers) {
        machines_[name] = std::make_unique<Machine>(name, root_->path());
        auto t0 = std::chrono::steady_clock::now();
        auto created = machines_[name]->berth({"create", "-d", "libvirt", "--libvirt-no-share", "--libvirt-memory",
                                               "768", "--no-forward", "--cluster", "lab", name},
                                              900s);
        if (!created.ok()) {
          setup_error_ = "berth create " + name + " failed: " + created.describe();
          return;
        }
        std::printf("[ figures  ] berth create --cluster lab %s: %.1f s\n", name.c_str(),
                    std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
        machines_[name]->refresh_docker_env();
        auto load = machines_[name]->docker({"load", "-i", image_.tarball.string()}, 180s);
        if (!load.ok()) {
          setup_error_ = "docker load on " + name + " failed: " + load.describe();
          return;
        }
      }
    } catch (const std::exception& e) {
      setup_error_ = std::string("suite setup failed: ") + e.what();
    }
  }
  static void TearDownTestSuite() {
    for (auto it = machines_.rbegin(); it != machines_.rend(); ++it)
      if (it->second) it->second->berth({"rm", "-f", "-y", it->first}, 300s);
    if (root_) drop_pools_under(root_->path() / "store");
    machines_.clear();
    root_.reset();
  }
  void SetUp() override { ASSERT_TRUE(setup_error_.empty()) << setup_error_; }

  static Machine& m(const std::string& name) { return *machines_.at(name); }
  static std::string ok(const std::string& machine, const std::vector<std::string>& args,
                        std::chrono::milliseconds timeout = 120s) {
    auto r = m(machine).docker(args, timeout);
    EXPECT_TRUE(r.ok()) << machine << ": " << describe_call(args, r);
    return trim(r.out);
  }
  // busybox wget of http://TARGET/ in a fresh container on `network` on `machine`.
  static RunResult fetch(const std::string& machine, const std::string& network, const std::string& target) {
    return m(machine).docker({"run", "--rm", "--network", network, "busybox:latest", "sh", "-c",
                              "timeout 10 wget -q -O - http://" + target + "/"},
                             60s);
  }
  static std::string web(const std::string& text) {
    return "mkdir -p /www && echo " + text + " > /www/index.html && exec httpd -f -p 80 -h /www";
  }

  static inline std::string setup_error_;
  static inline std::unique_ptr<TempDir> root_;
  static inline TestImage image_;
  static inline std::map<std::string, std::unique_ptr<Machine>> machines_;
};

TEST_F(Cluster, LsAndStatusShowTheMembersAndEtcd) {
  auto ls = m("ca").berth({"cluster", "ls"});
  ASSERT_TRUE(ls.ok()) << ls.describe();
  EXPECT_NE(ls.out.find("lab"), std::string::npos) << ls.out;
  EXPECT_NE(ls.out.find("3/3"), std::string::npos) << ls.out;
  EXPECT_NE(ls.out.find("ca*,cb*,cc*"), std::string::npos) << ls.out;
  auto status = m("ca").berth({"cluster", "status", "lab"}, 60s);
  ASSERT_TRUE(status.ok()) << status.describe();
  EXPECT_NE(status.out.find("healthy"), std::string::npos) << status.out;
  for (const char* ip : {"192.168.200.11", "192.168.200.12", "192.168.200.13"})
    EXPECT_NE(status.out.find(ip), std::string::npos) << status.out;
}

TEST_F(Cluster, ANetworkMadeOnOneMemberIsSeenOnAll) {
  ok("ca", {"network", "create", "-d", "overlay", "--subnet", "10.10.0.0/24", "appnet"});
  for (const std::string& name : kMembers) {
    EXPECT_TRUE(eventually([&] { return ok(name, {"network", "ls", "--format", "{{.Name}} {{.Driver}} {{.Scope}}"})
                                            .find("appnet overlay global") != std::string::npos; },
                           20s, 500ms))
        << name;
  }
  auto twice = m("cb").docker({"network", "create", "-d", "overlay", "appnet"});
  EXPECT_FALSE(twice.ok()) << "a name is unique across the cluster";
}

TEST_F(Cluster, NamesResolveAndHttpCrossesMachines) {
  auto t0 = std::chrono::steady_clock::now();
  ok("ca", {"run", "-d", "--name", "db", "--restart", "always", "--network", "appnet", "busybox:latest", "sh", "-c",
            web("from-ca")});
  bool reached = eventually([&] { return fetch("cc", "appnet", "db").out.find("from-ca") != std::string::npos; },
                            60s, 1s);
  EXPECT_TRUE(reached) << fetch("cc", "appnet", "db").describe();
  std::printf("[ figures  ] docker run on ca -> its name answers over HTTP from cc: %.1f s\n",
              std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  EXPECT_NE(fetch("cb", "appnet", "db").out.find("from-ca"), std::string::npos);
}

TEST_F(Cluster, TwoOverlayNetworksDoNotSeeEachOther) {
  ok("cb", {"network", "create", "-d", "overlay", "--subnet", "10.20.0.0/24", "othernet"});
  const std::string ip = ok("ca", {"inspect", "-f", "{{(index .NetworkSettings.Networks \"appnet\").IPAddress}}", "db"});
  ASSERT_FALSE(ip.empty());
  EXPECT_FALSE(fetch("cb", "othernet", ip).ok()) << "othernet reached appnet's " << ip;
  EXPECT_FALSE(fetch("cb", "othernet", "db").ok()) << "othernet resolved appnet's names";
}

TEST_F(Cluster, ConcurrentRunsOnEveryMemberNeverShareAnAddress) {
  std::vector<Process> runs;
  for (const std::string& name : kMembers)
    for (int i = 0; i < 3; ++i) {
      SpawnOptions spawn;
      spawn.env = m(name).docker_env();
      runs.push_back(Process::start({"docker", "run", "-d", "--name", "par-" + name + std::to_string(i), "--network",
                                     "appnet", "busybox:latest", "sleep", "600"},
                                    spawn));
    }
  for (Process& p : runs) EXPECT_EQ(p.wait(300s).exit_code, 0);
  std::set<std::string> ips;
  for (const std::string& name : kMembers)
    for (int i = 0; i < 3; ++i)
      ips.insert(ok(name, {"inspect", "-f", "{{(index .NetworkSettings.Networks \"appnet\").IPAddress}}",
                           "par-" + name + std::to_string(i)}));
  EXPECT_EQ(ips.size(), 9u) << "two containers got one address";
  for (const std::string& name : kMembers)
    for (int i = 0; i < 3; ++i) m(name).docker({"rm", "-f", "par-" + name + std::to_string(i)});
}

TEST_F(Cluster, AnAgentRestartKeepsItsContainersReachable) {
  auto up = m("ca").berth({"upgrade", "ca"}, 300s);  // restarts the agent alone
  ASSERT_TRUE(up.ok()) << up.describe();
  EXPECT_TRUE(eventually([&] { return fetch("cb", "appnet", "db").out.find("from-ca") != std::string::npos; }, 60s,
                         1s));
}

// One member dies and the others go on; a second dies and etcd has no
// quorum: one clear error. Both come back (booted together) and rejoin.
TEST_F(Cluster, KilledMembersLoseQuorumClearlyAndRejoin) {
  ok("cb", {"run", "-d", "--name", "web-b", "--restart", "always", "--network", "appnet", "busybox:latest", "sh", "-c",
            web("from-cb")});
  EXPECT_TRUE(eventually([&] { return fetch("ca", "appnet", "web-b").ok(); }, 60s, 1s));
  auto kill = m("cb").berth({"kill", "cb"}, 120s);
  ASSERT_TRUE(kill.ok()) << kill.describe();
  EXPECT_NE(fetch("cc", "appnet", "db").out.find("from-ca"), std::string::npos) << "ca and cc go on";

  ASSERT_TRUE(m("cc").berth({"kill", "cc"}, 120s).ok());
  auto made = m("ca").docker({"network", "create", "-d", "overlay", "nope"}, 60s);
  EXPECT_FALSE(made.ok());
  EXPECT_NE(made.err.find("cluster store (etcd) is unavailable"), std::string::npos) << made.describe();
  EXPECT_EQ(std::count(made.err.begin(), made.err.end(), '\n'), 1) << "one line: " << made.err;

  auto start_b = std::async(std::launch::async, [] { return m("cb").berth({"start", "cb"}, 600s); });
  auto start_c = std::async(std::launch::async, [] { return m("cc").berth({"start", "cc"}, 600s); });
  for (auto* started : {&start_b, &start_c}) {
    auto r = started->get();
    EXPECT_TRUE(r.ok()) << r.describe();
  }
  m("cb").refresh_docker_env();
  m("cc").refresh_docker_env();
  EXPECT_TRUE(eventually([&] { return m("ca").docker({"network", "create", "-d", "overlay", "back"}).ok(); }, 120s,
                         2s));
  m("ca").docker({"network", "rm", "back"});
  EXPECT_TRUE(eventually([&] { return fetch("ca", "appnet", "web-b").out.find("from-cb") != std::string::npos; },
                         120s, 2s))
      << "cb's container came back on the overlay";
}

TEST_F(Cluster, RemovingAMemberLeavesTheClusterCleanly) {
  auto rm = m("cc").berth({"rm", "-y", "cc"}, 300s);
  ASSERT_TRUE(rm.ok()) << rm.describe();
  machines_.erase("cc");
  auto ls = m("ca").berth({"cluster", "ls"});
  EXPECT_NE(ls.out.find("ca*,cb*"), std::string::npos) << ls.out;
  EXPECT_EQ(ls.out.find("cc"), std::string::npos) << ls.out;
  auto status = m("ca").berth({"cluster", "status", "lab"}, 60s);
  EXPECT_TRUE(status.ok()) << status.describe();
  EXPECT_NE(fetch("cb", "appnet", "db").out.find("from-ca"), std::string::npos);
}

}  // namespace
}  // namespace berth::it::containers
