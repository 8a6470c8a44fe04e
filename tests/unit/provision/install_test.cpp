#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "provision/common.h"
#include "provision/provision.h"
#include "tests/unit/provision/test_hosts.h"

namespace berth::provision {
namespace {

namespace fs = std::filesystem;
using testing::FakeRemote;

class InstallTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("berth-provision-test-" + std::to_string(::getpid()) + "-" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
    set_agent("#!agent v1\n" + std::string(100000, 'x'));
    spec_.hostname = "dev";
    spec_.agent_binary = dir_ / "berth-agent";
    spec_.tls = {"CA PEM\n", "SERVER CERT PEM\n", "SERVER KEY PEM\n"};
    spec_.engine.labels = {"env=test"};
    spec_.engine.env = {"HTTP_PROXY=http://proxy:3128", "MSG=it's 100% \"ok\""};
    spec_.engine.opts = {"log-level=debug"};
    spec_.engine.insecure_registries = {"10.0.0.5:5000"};
    spec_.engine.registry_mirrors = {"https://mirror.example"};
    spec_.engine.port = 2377;
  }
  void TearDown() override { fs::remove_all(dir_); }

  void set_agent(const std::string& content) {
    agent_content_ = content;
    std::ofstream(dir_ / "berth-agent", std::ios::binary) << content;
  }

  void install(FakeRemote& r, std::vector<std::string>* steps = nullptr) {
    auto p = detect(r);
    p->install(spec_, [&](std::string_view s) {
      if (steps) steps->emplace_back(s);
    });
  }

  static int count(const std::vector<std::string>& v, const std::string& s) {
    return static_cast<int>(std::count(v.begin(), v.end(), s));
  }
  static bool contains(const std::string& hay, const std::string& needle) { return hay.find(needle) != std::string::npos; }
  static std::vector<std::string> staging_leftovers(const FakeRemote& r) {
    std::vector<std::string> out;
    for (const auto& [path, f] : r.files)
      if (contains(path, ".berth-new") || path.rfind("/tmp/", 0) == 0) out.push_back(path);
    return out;
  }

  fs::path dir_;
  std::string agent_content_;
  AgentInstall spec_;
};

TEST_F(InstallTest, SystemdInstallWritesEveryFileWithItsMode) {
  FakeRemote r;
  testing::make_debian_systemd(r);
  std::vector<std::string> steps;
  install(r, &steps);

  EXPECT_EQ(steps, (std::vector<std::string>{"set hostname", "create directories", "upload berth-agent",
                                             "write agent config", "install TLS certificates",
                                             "install systemd service", "start berth-agent"}));
  ASSERT_TRUE(r.has_file(kAgentBinary));
  EXPECT_EQ(r.files[kAgentBinary].content, agent_content_);
  EXPECT_EQ(r.files[kAgentBinary].mode, 0755);

  ASSERT_TRUE(r.has_file(kAgentConfig));
  EXPECT_EQ(r.files[kAgentConfig].mode, 0600);
  auto config = nlohmann::json::parse(r.files[kAgentConfig].content);
  EXPECT_EQ(config, make_agent_config(spec_.engine));
  EXPECT_EQ(config["port"], 2377);
  EXPECT_EQ(config["tls"]["key"], "/etc/berth/server-key.pem");
  EXPECT_EQ(config["env"][1], "MSG=it's 100% \"ok\"");

  EXPECT_EQ(r.files[kCaCert].content, "CA PEM\n");
  EXPECT_EQ(r.files[kCaCert].mode, 0644);
  EXPECT_EQ(r.files[kServerCert].content, "SERVER CERT PEM\n");
  EXPECT_EQ(r.files[kServerCert].mode, 0644);
  EXPECT_EQ(r.files[kServerKey].content, "SERVER KEY PEM\n");
  EXPECT_EQ(r.files[kServerKey].mode, 0600);
  EXPECT_EQ(r.dirs[kConfigDir], 0700);
  EXPECT_TRUE(r.has_dir(kDataRoot));

  const std::string& unit = r.files[detail::kSystemdUnit].content;
  EXPECT_EQ(r.files[detail::kSystemdUnit].mode, 0644);
  EXPECT_TRUE(contains(unit, "\nType=simple\n")) << unit;
  EXPECT_TRUE(contains(unit, "\nExecStart=/usr/local/bin/berth-agent --config /etc/berth/agent.json\n")) << unit;
  EXPECT_TRUE(contains(unit, "\nExecReload=/bin/kill -HUP $MAINPID\n")) << unit;
  // Restarting the agent must not kill the container shims in its cgroup.
  EXPECT_TRUE(contains(unit, "\nKillMode=process\n")) << unit;
  EXPECT_TRUE(contains(unit, "\nRestart=on-failure\n")) << unit;
  EXPECT_TRUE(contains(unit, "\nEnvironment=\"HTTP_PROXY=http://proxy:3128\"\n")) << unit;
  EXPECT_TRUE(contains(unit, "\nEnvironment=\"MSG=it's 100%% \\\"ok\\\"\"\n")) << unit;
  EXPECT_TRUE(contains(unit, "\nWantedBy=multi-user.target\n")) << unit;

  EXPECT_EQ(r.hostname, "dev");
  EXPECT_EQ(r.files["/etc/hostname"].content, "dev\n");
  const std::string& hosts = r.files["/etc/hosts"].content;
  EXPECT_TRUE(contains(hosts, "127.0.1.1\tdev\n")) << hosts;
  EXPECT_FALSE(contains(hosts, "\tdebian")) << hosts;
  EXPECT_TRUE(contains(hosts, "127.0.0.1\tlocalhost\n")) << hosts;
  EXPECT_TRUE(staging_leftovers(r).empty());
}

TEST_F(InstallTest, SystemdServiceIsReloadedEnabledAndRestartedAfterFilesAreInPlace) {
  FakeRemote r;
  testing::make_debian_systemd(r);
  install(r);
  int unit_written = r.index_of("run: mv -f /etc/systemd/system/berth-agent.service.berth-new "
                                "/etc/systemd/system/berth-agent.service");
  int key_written = r.index_of("run: mv -f /etc/berth/server-key.pem.berth-new /etc/berth/server-key.pem");
  int config_written = r.index_of("run: mv -f /etc/berth/agent.json.berth-new /etc/berth/agent.json");
  int reload = r.index_of("run: systemctl daemon-reload");
  int enable = r.index_of("run: systemctl enable berth-agent.service");
  int restart = r.index_of("run: systemctl restart berth-agent.service");
  ASSERT_GE(unit_written, 0);
  ASSERT_GE(key_written, 0);
  ASSERT_GE(config_written, 0);
  EXPECT_LT(unit_written, reload);
  EXPECT_LT(reload, enable);
  EXPECT_LT(enable, restart);
  EXPECT_LT(key_written, restart);
  EXPECT_LT(config_written, restart);
  // The binary goes through a temp name next to the target, never written in place.
  EXPECT_GE(r.index_of("put_file: /usr/local/bin/berth-agent.berth-new 0755"), 0);
  EXPECT_EQ(r.index_of("put_file: /usr/local/bin/berth-agent 0755"), -1);
}

TEST_F(InstallTest, SecondInstallSkipsTheUnchangedAgentAndReachesTheSameState) {
  FakeRemote r;
  testing::make_debian_systemd(r);
  install(r);
  auto files_after_first = r.files;
  auto dirs_after_first = r.dirs;
  r.events.clear();

  install(r);
  for (const auto& e : r.events) EXPECT_EQ(e.rfind("put_file:", 0), std::string::npos) << "re-uploaded: " << e;
  EXPECT_EQ(count(r.commands(), "sha256sum /usr/local/bin/berth-agent"), 1);
  EXPECT_EQ(count(r.commands(), "systemctl restart berth-agent.service"), 1);
  EXPECT_EQ(count(r.commands(), "hostname dev"), 0);  // already set
  ASSERT_EQ(r.files.size(), files_after_first.size());
  for (const auto& [path, f] : files_after_first) {
    ASSERT_TRUE(r.has_file(path)) << path;
    EXPECT_EQ(r.files[path].content, f.content) << path;
    EXPECT_EQ(r.files[path].mode, f.mode) << path;
  }
  EXPECT_EQ(r.dirs, dirs_after_first);
}

TEST_F(InstallTest, ChangedAgentBinaryIsUploadedAgain) {
  FakeRemote r;
  testing::make_debian_systemd(r);
  install(r);
  set_agent("#!agent v2\n");
  r.events.clear();
  install(r);
  EXPECT_GE(r.index_of("put_file: /usr/local/bin/berth-agent.berth-new 0755"), 0);
  EXPECT_EQ(r.files[kAgentBinary].content, "#!agent v2\n");
}

TEST_F(InstallTest, MissingLocalAgentFailsBeforeTouchingTheHost) {
  FakeRemote r;
  testing::make_debian_systemd(r);
  auto p = detect(r);
  r.events.clear();
  spec_.agent_binary = dir_ / "nope";
  EXPECT_THROW(p->install(spec_, {}), UserError);
  EXPECT_TRUE(r.events.empty());
}

TEST_F(InstallTest, InvalidEngineEnvIsAUserError) {
  FakeRemote r;
  testing::make_debian_systemd(r);
  spec_.engine.env = {"NOEQUALS"};
  EXPECT_THROW(install(r), UserError);
  EXPECT_FALSE(r.has_file(kAgentBinary));
}

TEST_F(InstallTest, NonRootUserGoesThroughSudoAndStagesInAPrivateTempDir) {
  FakeRemote r;
  testing::make_debian_systemd(r);
  r.root = false;
  install(r);  // the fake refuses any privileged change made without sudo

  EXPECT_EQ(r.files[kAgentBinary].content, agent_content_);
  EXPECT_EQ(r.files[kAgentBinary].mode, 0755);
  EXPECT_EQ(r.files[kServerKey].mode, 0600);
  for (const char* f : {kAgentBinary, kAgentConfig, kCaCert, kServerCert, kServerKey, detail::kSystemdUnit})
    EXPECT_EQ(r.files[f].owner, "root") << f;
  for (const auto& e : r.events) {
    if (e.rfind("put", 0) == 0) {
      EXPECT_EQ(e.find(" /tmp/tmp.fake1/"), e.find(' ')) << e;  // uploads only to staging
    }
  }
  auto cmds = r.commands();
  EXPECT_EQ(count(cmds, "sudo -n systemctl daemon-reload"), 1);
  EXPECT_EQ(count(cmds, "sudo -n systemctl restart berth-agent.service"), 1);
  EXPECT_EQ(count(cmds, "sudo -n hostname dev"), 1);
  EXPECT_EQ(count(cmds, "sudo -n install -o root -g root -m 0600 /tmp/tmp.fake1/server-key.pem "
                        "/etc/berth/server-key.pem.berth-new"),
            1);
  EXPECT_EQ(count(cmds, "systemctl restart berth-agent.service"), 0);
  // The staging dir is removed when the provisioner goes away.
  EXPECT_FALSE(r.has_dir("/tmp/tmp.fake1"));
  EXPECT_TRUE(staging_leftovers(r).empty());
}

TEST_F(InstallTest, InstallCertsReplacesFilesAndReloadsTheAgent) {
  FakeRemote r;
  testing::make_debian_systemd(r);
  install(r);
  r.events.clear();
  detect(r)->install_certs({"CA2\n", "CERT2\n", "KEY2\n"});
  EXPECT_EQ(r.files[kCaCert].content, "CA2\n");
  EXPECT_EQ(r.files[kServerCert].content, "CERT2\n");
  EXPECT_EQ(r.files[kServerKey].content, "KEY2\n");
  EXPECT_EQ(r.files[kServerKey].mode, 0600);
  auto cmds = r.commands();
  ASSERT_FALSE(cmds.empty());
  EXPECT_EQ(cmds.back(), "systemctl try-reload-or-restart berth-agent.service");
  EXPECT_EQ(count(cmds, "systemctl restart berth-agent.service"), 0);
  EXPECT_LT(r.index_of("run: mv -f /etc/berth/server-key.pem.berth-new /etc/berth/server-key.pem"),
            r.index_of("run: systemctl try-reload-or-restart berth-agent.service"));
}

TEST_F(InstallTest, ReplaceAgentUploadsAndRestarts) {
  FakeRemote r;
  testing::make_debian_systemd(r);
  install(r);
  set_agent("#!agent v3\n");
  r.events.clear();
  detect(r)->replace_agent(spec_.agent_binary);
  EXPECT_EQ(r.files[kAgentBinary].content, "#!agent v3\n");
  EXPECT_EQ(r.commands().back(), "systemctl restart berth-agent.service");
}

TEST_F(InstallTest, UpgradeAgentRewritesTheUnitThenRestartsOnlyTheAgent) {
  FakeRemote r;
  testing::make_debian_systemd(r);
  install(r);
  set_agent("#!agent v4\n");
  r.events.clear();
  detect(r)->upgrade_agent(spec_, nullptr);
  EXPECT_EQ(r.files[kAgentBinary].content, "#!agent v4\n");
  EXPECT_TRUE(contains(r.files[detail::kSystemdUnit].content, "\nKillMode=process\n"));
  EXPECT_EQ(r.commands().back(), "systemctl restart berth-agent.service");
  EXPECT_EQ(count(r.commands(), "systemctl daemon-reload"), 1);
  EXPECT_EQ(count(r.commands(), "hostname dev"), 0);  // upgrade leaves the hostname alone
}

TEST_F(InstallTest, StartAndStopUseSystemctl) {
  FakeRemote r;
  testing::make_debian_systemd(r);
  auto p = detect(r);
  p->stop_agent();  // not installed: nothing to stop
  EXPECT_EQ(count(r.commands(), "systemctl stop berth-agent.service"), 0);
  install(r);
  p->stop_agent();
  p->start_agent();
  auto cmds = r.commands();
  EXPECT_EQ(cmds[cmds.size() - 1], "systemctl start berth-agent.service");
  EXPECT_EQ(count(cmds, "systemctl stop berth-agent.service"), 1);
}

TEST_F(InstallTest, UninstallRemovesEverything) {
  FakeRemote r;
  testing::make_debian_systemd(r);
  install(r);
  r.add_file(kDataRoot + std::string("/images/layer.tar"), "data");
  r.add_file(kPidFile, "123\n");
  r.add_file(kLogFile, "log\n");
  r.events.clear();

  detect(r)->uninstall();
  for (const char* f : {kAgentBinary, kAgentConfig, kCaCert, kServerCert, kServerKey, kPidFile, kLogFile,
                        detail::kSystemdUnit})
    EXPECT_FALSE(r.has_file(f)) << f;
  for (const auto& [path, f] : r.files) EXPECT_EQ(path.find("berth"), std::string::npos) << path;
  EXPECT_FALSE(r.has_dir(kConfigDir));
  EXPECT_FALSE(r.has_dir(kDataRoot));
  auto cmds = r.commands();
  int stop = r.index_of("run: systemctl stop berth-agent.service");
  int disable = r.index_of("run: systemctl disable berth-agent.service");
  int reload = r.index_of("run: systemctl daemon-reload");
  EXPECT_GE(stop, 0);
  EXPECT_LT(stop, disable);
  EXPECT_LT(disable, reload);
  // The hostname and /etc/hosts entry stay: the host keeps its name.
  EXPECT_EQ(r.hostname, "dev");
}

TEST_F(InstallTest, UninstallOnACleanHostSucceeds) {
  FakeRemote r;
  testing::make_debian_systemd(r);
  auto before = r.files;
  detect(r)->uninstall();
  EXPECT_EQ(count(r.commands(), "systemctl stop berth-agent.service"), 0);
  EXPECT_EQ(r.files.size(), before.size());
}

TEST_F(InstallTest, UninstallUnmountsContainerFilesystemsDeepestFirst) {
  FakeRemote r;
  testing::make_debian_systemd(r);
  install(r);
  r.add_file("/proc/self/mounts",
             "/dev/sda1 / ext4 rw 0 0\n"
             "tmpfs /var/lib/berth tmpfs rw 0 0\n"
             "overlay /var/lib/berth/containers/abc/rootfs overlay rw 0 0\n"
             "overlay /var/lib/berth-other overlay rw 0 0\n"
             "tmpfs /var/lib/berth/with\\040space tmpfs rw 0 0\n");
  r.on("(sudo -n )?umount -l .*", 0);
  r.events.clear();
  detect(r)->uninstall();
  int deep = r.index_of("run: umount -l /var/lib/berth/containers/abc/rootfs");
  int spaced = r.index_of("run: umount -l '/var/lib/berth/with space'");
  int top = r.index_of("run: umount -l /var/lib/berth");
  int rm = r.index_of("run: rm -rf /etc/berth /var/lib/berth");
  ASSERT_GE(deep, 0);
  ASSERT_GE(spaced, 0);
  EXPECT_LT(deep, top);
  EXPECT_LT(spaced, top);
  EXPECT_LT(top, rm);
  EXPECT_EQ(r.index_of("run: umount -l /var/lib/berth-other"), -1);
}

// ---- OpenRC ----

TEST_F(InstallTest, OpenRcInstallWritesInitScriptAndAddsItToDefaultRunlevel) {
  FakeRemote r;
  testing::OpenRcState state;
  testing::make_alpine_openrc(r, state);
  std::vector<std::string> steps;
  install(r, &steps);
  EXPECT_EQ(steps[5], "install openrc service");
  const auto& script = r.files[detail::kOpenRcScript];
  EXPECT_EQ(script.mode, 0755);
  EXPECT_EQ(script.content.rfind("#!/sbin/openrc-run\n", 0), 0u);
  EXPECT_TRUE(contains(script.content, "\ncommand=\"/usr/local/bin/berth-agent\"\n"));
  EXPECT_TRUE(contains(script.content, "\ncommand_args=\"--config /etc/berth/agent.json\"\n"));
  EXPECT_TRUE(contains(script.content, "\npidfile=\"/run/berth-agent.pid\"\n"));
  EXPECT_TRUE(contains(script.content, "\ncommand_background=\"yes\"\n"));
  EXPECT_TRUE(contains(script.content, "\nextra_started_commands=\"reload\"\n"));
  EXPECT_TRUE(contains(script.content, "\nexport MSG='it'\\''s 100% \"ok\"'\n")) << script.content;
  EXPECT_TRUE(r.has_file(detail::kOpenRcRunlevelLink));
  EXPECT_TRUE(state.started);
  EXPECT_EQ(r.commands().back(), "rc-service berth-agent restart");

  r.events.clear();
  install(r);
  EXPECT_EQ(count(r.commands(), "rc-update add berth-agent default"), 0);  // already in the runlevel
}

TEST_F(InstallTest, OpenRcReloadsOnlyARunningAgent) {
  FakeRemote r;
  testing::OpenRcState state;
  testing::make_alpine_openrc(r, state);
  install(r);
  r.events.clear();
  detect(r)->install_certs({"a", "b", "c"});
  EXPECT_EQ(r.commands().back(), "rc-service berth-agent reload");

  detect(r)->stop_agent();
  EXPECT_FALSE(state.started);
  r.events.clear();
  detect(r)->install_certs({"a", "b", "c"});
  EXPECT_EQ(count(r.commands(), "rc-service berth-agent reload"), 0);
  EXPECT_EQ(r.files[kServerKey].content, "c");
}

TEST_F(InstallTest, OpenRcUninstall) {
  FakeRemote r;
  testing::OpenRcState state;
  testing::make_alpine_openrc(r, state);
  install(r);
  detect(r)->uninstall();
  EXPECT_FALSE(state.started);
  EXPECT_FALSE(r.has_file(detail::kOpenRcScript));
  EXPECT_FALSE(r.has_file(detail::kOpenRcRunlevelLink));
  EXPECT_FALSE(r.has_file(kAgentBinary));
  EXPECT_FALSE(r.has_dir(kConfigDir));
  detect(r)->uninstall();  // again, on a clean host
}

// ---- Supervisor ----

TEST_F(InstallTest, SupervisorInstallWritesScriptAndRegistersItInRcLocal) {
  FakeRemote r;
  testing::make_debian_sysvinit(r);
  r.add_file(detail::kRcLocal, "#!/bin/sh -e\n# rc.local\n\nexit 0\n", 0755);
  std::vector<std::string> steps;
  install(r, &steps);
  EXPECT_EQ(steps[5], "install supervisor service");
  const auto& script = r.files[detail::kSupervisorScript];
  EXPECT_EQ(script.mode, 0700);
  EXPECT_TRUE(contains(script.content, "\"$AGENT\" --config \"$CONFIG\" --daemon --pidfile \"$PIDFILE\""));
  EXPECT_TRUE(contains(script.content, "\nPIDFILE=/run/berth-agent.pid\n"));
  EXPECT_TRUE(contains(script.content, "\nexport HTTP_PROXY=http://proxy:3128\n"));
  EXPECT_EQ(r.files[detail::kRcLocal].content, "#!/bin/sh -e\n# rc.local\n\n/etc/berth/berth-agent.sh start\nexit 0\n");
  EXPECT_EQ(r.commands().back(), "/etc/berth/berth-agent.sh restart");

  install(r);  // the rc.local line is not added twice
  EXPECT_EQ(r.files[detail::kRcLocal].content, "#!/bin/sh -e\n# rc.local\n\n/etc/berth/berth-agent.sh start\nexit 0\n");

  r.events.clear();
  detect(r)->install_certs({"a", "b", "c"});
  EXPECT_EQ(r.commands().back(), "/etc/berth/berth-agent.sh reload");

  detect(r)->uninstall();
  EXPECT_GE(r.index_of("run: /etc/berth/berth-agent.sh stop"), 0);
  EXPECT_EQ(r.files[detail::kRcLocal].content, "#!/bin/sh -e\n# rc.local\n\nexit 0\n");
  EXPECT_FALSE(r.has_file(detail::kSupervisorScript));
  EXPECT_FALSE(r.has_dir(kConfigDir));
}

TEST_F(InstallTest, SupervisorUsesLocalDWhenPresent) {
  FakeRemote r;
  testing::make_debian_sysvinit(r);
  r.add_dir(detail::kLocalDDir);
  install(r);
  EXPECT_EQ(r.files[detail::kLocalDStart].content, "#!/bin/sh\n/etc/berth/berth-agent.sh start\n");
  EXPECT_EQ(r.files[detail::kLocalDStart].mode, 0755);
  EXPECT_FALSE(r.has_file(detail::kRcLocal));
  detect(r)->uninstall();
  EXPECT_FALSE(r.has_file(detail::kLocalDStart));
}

TEST_F(InstallTest, SupervisorWithoutRcLocalCreatesOne) {
  FakeRemote r;
  testing::make_debian_sysvinit(r);
  install(r);
  EXPECT_EQ(r.files[detail::kRcLocal].content, "#!/bin/sh\n/etc/berth/berth-agent.sh start\nexit 0\n");
  EXPECT_EQ(r.files[detail::kRcLocal].mode, 0755);
}

}  // namespace
}  // namespace berth::provision
