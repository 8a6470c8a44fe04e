// The fixture itself: run() and Process, and throwaway SSH hosts that change
// nothing on the real machine and leave nothing behind.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <memory>
#include <set>
#include <thread>

#include "tests/integration/support/run.h"
#include "tests/integration/support/testhost.h"

namespace berth::it {
namespace {

TEST(Run, CapturesExitCodeStdoutStderrAndEnvironment) {
  auto r = run_bash("echo out; echo err >&2; echo \"$BERTH_IT_X\"; exit 3", {{"BERTH_IT_X", "value"}});
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_EQ(r.out, "out\nvalue\n");
  EXPECT_EQ(r.err, "err\n");
  EXPECT_FALSE(r.timed_out);
}

TEST(Run, UnsetsVariablesAndFeedsStdin) {
  ::setenv("BERTH_IT_GONE", "present", 1);
  auto r = run({"bash", "-c", "echo \"${BERTH_IT_GONE:-unset}\"; cat"}, {{"BERTH_IT_GONE", std::nullopt}}, 10s,
               "from stdin");
  ::unsetenv("BERTH_IT_GONE");
  EXPECT_EQ(r.out, "unset\nfrom stdin");
}

TEST(Run, TimeoutKillsTheWholeProcessGroup) {
  TempDir dir;
  const auto marker = dir / "pid";
  const auto start = std::chrono::steady_clock::now();
  auto r = run_bash("sleep 300 & echo $! > " + marker.string() + "; wait", {}, 500ms);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
  EXPECT_TRUE(r.timed_out);
  EXPECT_EQ(r.term_signal, SIGKILL);
  const pid_t grandchild = std::stoi(read_text(marker));
  EXPECT_TRUE(eventually([&] { return ::kill(grandchild, 0) != 0; }, 2s)) << "sleep survived the timeout";
}

TEST(Run, MissingProgramThrows) {
  EXPECT_THROW(run({"/nonexistent/berth-it-program"}), std::runtime_error);
}

TEST(Process, SignalReachesTheBackgroundProcess) {
  auto p = Process::start({"bash", "-c", "trap 'echo got-int; exit 42' INT; echo ready; while :; do sleep 0.05; done"});
  ASSERT_TRUE(eventually([&] { return p.stdout_so_far() == "ready\n"; }, 5s));
  EXPECT_TRUE(p.running());
  p.signal(SIGINT);
  auto r = p.wait(5s);
  EXPECT_EQ(r.exit_code, 42) << r.describe();
  EXPECT_EQ(r.out, "ready\ngot-int\n");
}

class TestHostFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string why = testhost_unavailable_reason();
    ASSERT_TRUE(why.empty()) << why;
  }
};

TEST_F(TestHostFixture, AcceptsSshWithItsKeyOnly) {
  TestHost host("th-ssh");
  EXPECT_EQ(host.ip(), "10.231." + std::to_string(host.index()) + ".2");
  auto r = host.ssh("cat /etc/os-release; hostname");
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_NE(r.out.find("ID="), std::string::npos);
  EXPECT_NE(r.out.find(host.name()), std::string::npos) << "hostname should be the host's name";

  TempDir other;
  ASSERT_EQ(run({"ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", (other / "k").string()}).exit_code, 0);
  auto refused = run({"ssh", "-i", (other / "k").string(), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
                      "-o", "UserKnownHostsFile=/dev/null", "-o", "IdentitiesOnly=yes", "root@" + host.ip(), "true"},
                     {}, 30s);
  EXPECT_EQ(refused.exit_code, 255) << refused.describe();
}

TEST_F(TestHostFixture, WritesInsideNeverReachTheRealRoot) {
  TestHost host("th-overlay");
  const std::string probe = "berth-it-probe-" + host.name();
  auto r = host.ssh("set -e; mkdir -p /etc/" + probe + "; echo inside > /etc/" + probe + "/f; echo x > /usr/local/bin/" +
                    probe + "; hostname renamed-" + std::to_string(host.index()));
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_TRUE(host.exists_inside("/etc/" + probe + "/f"));
  EXPECT_TRUE(host.exists_inside("/usr/local/bin/" + probe));
  EXPECT_EQ(read_text(host.root() / "etc" / probe / "f"), "inside\n");
  EXPECT_FALSE(fs::exists("/etc/" + probe));
  EXPECT_FALSE(fs::exists("/usr/local/bin/" + probe));
  auto exec = host.exec({"cat", "/etc/" + probe + "/f"});
  EXPECT_EQ(exec.out, "inside\n") << exec.describe();
  char real_hostname[256] = {};
  ::gethostname(real_hostname, sizeof real_hostname - 1);
  EXPECT_EQ(std::string(real_hostname).find("renamed-"), std::string::npos) << "the host name leaked out";
}

TEST_F(TestHostFixture, DownRemovesNamespaceVethProcessesAndState) {
  std::string name, veth;
  pid_t inside = 0;
  {
    TestHost host("th-down");
    name = host.name();
    veth = "bth" + std::to_string(host.index()) + "h";
    auto r = host.ssh("setsid sleep 600 </dev/null >/dev/null 2>&1 & echo $!");
    ASSERT_EQ(r.exit_code, 0) << r.describe();
    inside = std::stoi(r.out);
    EXPECT_NE(host.processes().find("sleep 600"), std::string::npos) << host.processes();
    EXPECT_EQ(run({"ip", "link", "show", veth}).exit_code, 0);
  }
  EXPECT_EQ(run({"ip", "netns", "list"}).out.find("berth-th-" + name), std::string::npos);
  EXPECT_NE(run({"ip", "link", "show", veth}).exit_code, 0) << veth << " left behind";
  EXPECT_FALSE(fs::exists("/run/berth-testhost/" + name));
  // Killed processes linger as zombies until the real init reaps them.
  auto alive = [&] {
    std::error_code ec;
    const fs::path stat = "/proc/" + std::to_string(inside) + "/stat";
    if (!fs::exists(stat, ec)) return false;
    const std::string text = read_text(stat);
    const auto paren = text.rfind(')');
    return paren == std::string::npos || text.substr(paren + 2, 1) != "Z";
  };
  EXPECT_FALSE(alive()) << "a process of the host survived down";
}

TEST_F(TestHostFixture, RestartKeepsIpAndChangesHostKeys) {
  TestHost host("th-restart");
  auto keyscan = [&] { return run({"ssh-keyscan", "-T", "5", "-t", "ed25519", host.ip()}, {}, 30s).out; };
  const std::string before = keyscan();
  const std::string ip = host.ip();
  ASSERT_NE(before.find("ssh-ed25519"), std::string::npos) << before;
  ASSERT_EQ(host.ssh("echo x > /etc/berth-it-restart").exit_code, 0);
  host.restart();
  EXPECT_EQ(host.ip(), ip);
  const std::string after = keyscan();
  ASSERT_NE(after.find("ssh-ed25519"), std::string::npos) << after;
  EXPECT_NE(after, before);
  EXPECT_FALSE(host.exists_inside("/etc/berth-it-restart")) << "restart should start from a clean overlay";
  EXPECT_EQ(host.ssh("true").exit_code, 0);
}

TEST_F(TestHostFixture, HostsComeUpInParallelOnDistinctAddresses) {
  std::vector<std::unique_ptr<TestHost>> hosts(3);
  std::vector<std::thread> threads;
  for (int i = 0; i < 3; ++i)
    threads.emplace_back([&, i] { hosts[i] = std::make_unique<TestHost>("th-par" + std::to_string(i)); });
  for (auto& t : threads) t.join();
  std::set<std::string> ips;
  for (const auto& h : hosts) {
    ips.insert(h->ip());
    EXPECT_EQ(h->ssh("true").exit_code, 0) << h->name();
  }
  EXPECT_EQ(ips.size(), 3u);
}

}  // namespace
}  // namespace berth::it
