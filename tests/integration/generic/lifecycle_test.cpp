// Generic machines whose life ends in the test: interrupted creates, rm,
// host key changes, broken records. Each case gets its own hosts and store.
#include <gtest/gtest.h>
#include <signal.h>

#include "tests/integration/generic/berth_cli.h"

namespace berth::it {
namespace {

class GenericLifecycle : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string why = testhost_unavailable_reason();
    ASSERT_TRUE(why.empty()) << why;
    ASSERT_TRUE(fs::exists(berth_binary())) << "no berth binary at " << berth_binary() << "; build 'berth'";
  }

  BerthCli cli;
};

// What berth leaves on a host once the agent is removed: nothing.
std::vector<std::string> agent_leftovers(const TestHost& host) {
  std::vector<std::string> found;
  for (const auto& line : lines(host.processes()))
    if (line.find("berth-agent") != std::string::npos) found.push_back("process: " + line);
  const fs::path root = host.root();
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(root / "usr/local/bin", ec))
    if (entry.path().filename().string().find("berth-agent") != std::string::npos)
      found.push_back("file: /usr/local/bin/" + entry.path().filename().string());
  for (const char* path : {"etc/berth", "run/berth-agent.pid"})
    if (fs::exists(root / path, ec)) found.push_back(std::string("file: /") + path);
  if (fs::exists(root / "etc/rc.local", ec) && read_text(root / "etc/rc.local").find("berth") != std::string::npos)
    found.push_back("line in /etc/rc.local");
  return found;
}

std::string joined(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& i : items) out += "\n  " + i;
  return out;
}

// True once provisioning has written anything of the agent's to the host.
bool provisioning_started(const fs::path& root) {
  std::error_code ec;
  if (fs::exists(root / "etc/berth", ec) || fs::exists(root / "var/lib/berth", ec)) return true;
  for (const char* dir : {"usr/local/bin", "tmp"})
    for (const auto& entry : fs::directory_iterator(root / dir, ec))
      if (entry.path().filename().string().find("berth") != std::string::npos) return true;
  return false;
}

// Starts a create on `host` and returns it once provisioning is under way.
// Fails the test (returning nullopt) if create ends before that.
std::optional<Process> create_until_provisioning(const BerthCli& cli, const TestHost& host,
                                                 const std::string& name) {
  const fs::path root = host.root();
  Process create = cli.start(cli.create_args(host, name));
  bool started = eventually([&] { return provisioning_started(root) || !create.running(); }, 120s, 2ms);
  if (!started || !create.running()) {
    auto r = create.wait(1s);
    ADD_FAILURE() << "create finished before provisioning could be interrupted:\n" << r.describe();
    return std::nullopt;
  }
  return create;
}

// e) a changed host key is refused
TEST_F(GenericLifecycle, ChangedHostKeyIsRefused) {
  TestHost host("lc-hostkey");
  auto created = cli.create(host, "hk");
  ASSERT_EQ(created.exit_code, 0) << created.describe();
  auto before = cli({"ssh", "hk", "true"});
  ASSERT_EQ(before.exit_code, 0) << before.describe();

  host.restart();  // same IP, fresh host keys
  ASSERT_EQ(host.ssh("true").exit_code, 0) << "the restarted host does not accept SSH";
  auto after = cli({"ssh", "hk", "true"});
  EXPECT_NE(after.exit_code, 0) << after.describe();
  EXPECT_TRUE(contains_icase(after.err, "host key")) << after.err;
  auto scp = cli({"scp", "hk:/etc/hostname", (cli.scratch() / "h").string()});
  EXPECT_NE(scp.exit_code, 0) << "scp ignored the changed host key:\n" << scp.describe();
  EXPECT_TRUE(contains_icase(scp.err, "host key")) << scp.err;
}

// h) create killed mid-provision: rm -f cleans host and store
TEST_F(GenericLifecycle, SigkillDuringProvisionThenRmForceCleansUp) {
  TestHost host("lc-kill");
  auto create = create_until_provisioning(cli, host, "killed");
  ASSERT_TRUE(create);
  create->signal(SIGKILL);
  auto killed = create->wait(10s);
  ASSERT_EQ(killed.term_signal, SIGKILL) << killed.describe();
  ASSERT_TRUE(fs::exists(cli.machine_dir("killed"))) << "nothing recorded before the kill: nothing to clean up";

  auto rm = cli({"rm", "-f", "killed"}, 120s);
  EXPECT_EQ(rm.exit_code, 0) << rm.describe();
  EXPECT_FALSE(fs::exists(cli.machine_dir("killed")));
  auto left = agent_leftovers(host);
  EXPECT_TRUE(left.empty()) << "left on the host:" << joined(left);
  auto quiet = cli({"ls", "-q"}, 60s);
  EXPECT_EQ(trim(quiet.out), "") << quiet.describe();
}

// h) Ctrl-C during provision: berth undoes the create itself
TEST_F(GenericLifecycle, SigintDuringProvisionCleansUpByItself) {
  TestHost host("lc-int");
  auto create = create_until_provisioning(cli, host, "interrupted");
  ASSERT_TRUE(create);
  create->signal(SIGINT);  // to the process group, like a terminal
  auto r = create->wait(120s);
  EXPECT_FALSE(r.timed_out) << "berth did not stop after SIGINT";
  EXPECT_EQ(r.exit_code, 130) << r.describe();

  EXPECT_FALSE(fs::exists(cli.machine_dir("interrupted")));
  auto quiet = cli({"ls", "-q"}, 60s);
  EXPECT_EQ(quiet.exit_code, 0) << quiet.describe();
  EXPECT_EQ(quiet.out.find("interrupted"), std::string::npos) << quiet.out;
  auto left = agent_leftovers(host);
  EXPECT_TRUE(left.empty()) << "left on the host:" << joined(left);
}

// i) rm -y removes the agent from the host and the machine from the store
TEST_F(GenericLifecycle, RmRemovesAgentFromHostAndStore) {
  TestHost host("lc-rm");
  auto created = cli.create(host, "gone");
  ASSERT_EQ(created.exit_code, 0) << created.describe();
  ASSERT_FALSE(agent_leftovers(host).empty()) << "create installed no agent";
  auto use = cli({"use", "gone"});
  ASSERT_EQ(use.exit_code, 0) << use.describe();

  auto rm = cli({"rm", "-y", "gone"}, 120s);
  EXPECT_EQ(rm.exit_code, 0) << rm.describe();
  EXPECT_FALSE(fs::exists(cli.machine_dir("gone")));
  auto left = agent_leftovers(host);
  EXPECT_TRUE(left.empty()) << "left on the host:" << joined(left);
  auto contexts = cli.bash("docker context ls --format '{{.Name}}'; docker context show");
  EXPECT_EQ(contexts.out.find("berth-gone"), std::string::npos) << "docker context left behind:\n" << contexts.out;

  auto again = cli({"rm", "-y", "gone"});
  EXPECT_EQ(again.exit_code, 4) << again.describe();
}

// j) an invalid name is refused before anything is written
TEST_F(GenericLifecycle, InvalidNameWritesNothing) {
  TestHost host("lc-name");
  for (const std::string bad : {"bad/name", "has space", "..", "x$(id)", "a:b"}) {
    auto r = cli.create(host, bad);
    EXPECT_EQ(r.exit_code, 2) << "name '" << bad << "':\n" << r.describe();  // a usage error
    EXPECT_NE(r.err.find("name"), std::string::npos) << r.err;
  }
  auto files = regular_files(cli.store());
  EXPECT_TRUE(files.empty()) << "written to the store:" << joined(files);
  EXPECT_TRUE(agent_leftovers(host).empty());
}

// j) one corrupt record does not hide the others, and rm -f removes it
TEST_F(GenericLifecycle, CorruptRecordIsListedWithAnErrorAndRemovable) {
  TestHost good_host("lc-good");
  TestHost bad_host("lc-bad");
  auto good = cli.create(good_host, "good");
  ASSERT_EQ(good.exit_code, 0) << good.describe();
  auto bad = cli.create(bad_host, "bad");
  ASSERT_EQ(bad.exit_code, 0) << bad.describe();
  write_text(cli.machine_dir("bad") / "config.json", "{\"schema_version\": 1, \"name\": \"bad\", trunc");

  auto ls = cli({"ls"}, 60s);
  EXPECT_EQ(ls.exit_code, 0) << ls.describe();
  EXPECT_NE(ls.out.find("good"), std::string::npos) << ls.out;
  EXPECT_NE(ls.out.find("bad"), std::string::npos) << ls.out;
  auto machines = cli.ls_json();
  ASSERT_EQ(machines.count("good"), 1u);
  ASSERT_EQ(machines.count("bad"), 1u);
  EXPECT_EQ(machines.at("good").at("State"), "Running") << machines.at("good").dump();
  EXPECT_EQ(machines.at("good").at("Error"), "") << machines.at("good").dump();
  const std::string error = machines.at("bad").at("Error");
  EXPECT_FALSE(error.empty()) << machines.at("bad").dump();
  EXPECT_NE(error.find("config.json"), std::string::npos) << "the error should name the file: " << error;

  auto rm = cli({"rm", "-f", "bad"}, 120s);
  EXPECT_EQ(rm.exit_code, 0) << rm.describe();
  EXPECT_FALSE(fs::exists(cli.machine_dir("bad")));
  auto quiet = cli({"ls", "-q"}, 60s);
  EXPECT_EQ(lines(quiet.out), std::vector<std::string>{"good"}) << quiet.describe();
  auto ssh = cli({"ssh", "good", "echo", "still-here"});
  EXPECT_EQ(trim(ssh.out), "still-here") << ssh.describe();
  cli({"rm", "-f", "good"}, 120s);
}

}  // namespace
}  // namespace berth::it
