// docker run flags and exec on the shared berth-os VM
// (tests/integration/containers/shared_vm.h), through the real docker CLI.
#include <gtest/gtest.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <thread>

#include "tests/integration/containers/harness.h"
#include "tests/integration/containers/shared_vm.h"

namespace berth::it::containers {
namespace {

const std::string kImage = "busybox:latest";

class RunFlags : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    try {
      lease_ = std::make_unique<SharedVmLease>();
      if (!vm().docker({"image", "inspect", kImage}).ok()) {
        auto base = vm().docker({"load", "-i", lease_->vm().image.tarball.string()}, 120s);
        if (!base.ok()) throw std::runtime_error("docker load busybox: " + base.describe());
      }
    } catch (const std::exception& e) {
      setup_error_ = std::string("suite setup failed: ") + e.what();
    }
  }
  static void TearDownTestSuite() { lease_.reset(); }
  void SetUp() override { ASSERT_TRUE(setup_error_.empty()) << setup_error_; }

  static Machine& vm() { return *lease_->vm().machine; }
  static RunResult docker(const std::vector<std::string>& args, std::chrono::milliseconds timeout = 60s) {
    return vm().docker(args, timeout);
  }
  static std::string must(const std::vector<std::string>& args, std::chrono::milliseconds timeout = 60s) {
    auto r = docker(args, timeout);
    if (!r.ok()) throw std::runtime_error("required step failed: " + describe_call(args, r));
    return trim(r.out);
  }
  static std::string inspect(const std::string& format, const std::string& object) {
    return trim(docker({"inspect", "-f", format, object}).out);
  }
  struct Remove {
    std::vector<std::string> names;
    ~Remove() {
      for (const auto& n : names) docker({"rm", "-f", n});
    }
  };

  static inline std::unique_ptr<SharedVmLease> lease_;
  static inline std::string setup_error_;
};

TEST_F(RunFlags, ExecOfAMissingCommandExits127AndOfAFileThatCannotRun126) {
  Remove cleanup{{"rf-exec"}};
  must({"run", "-d", "--name", "rf-exec", kImage, "sleep", "1000"});
  auto missing = docker({"exec", "rf-exec", "nosuchcommand"});
  EXPECT_EQ(missing.exit_code, 127) << missing.describe();
  EXPECT_NE((missing.out + missing.err).find("executable file not found in $PATH"), std::string::npos)
      << missing.describe();
  auto denied = docker({"exec", "rf-exec", "/etc/passwd"});
  EXPECT_EQ(denied.exit_code, 126) << denied.describe();
  EXPECT_NE((denied.out + denied.err).find("permission denied"), std::string::npos) << denied.describe();
  auto detached = docker({"exec", "-d", "rf-exec", "nosuchcommand"});
  EXPECT_NE(detached.exit_code, 0) << detached.describe();
  // WorkingDir and User by name, from the container's /etc/passwd and /etc/group.
  EXPECT_EQ(must({"exec", "-w", "/tmp", "rf-exec", "pwd"}), "/tmp");
  EXPECT_EQ(must({"exec", "-u", "nobody", "rf-exec", "id", "-un"}), "nobody");
  EXPECT_EQ(must({"exec", "-u", "nobody:nogroup", "rf-exec", "id", "-gn"}), "nogroup");
  auto no_user = docker({"exec", "-u", "daemon", "rf-exec", "true"});
  EXPECT_EQ(no_user.exit_code, 126) << no_user.describe();
  EXPECT_NE((no_user.out + no_user.err).find("unable to find user daemon"), std::string::npos) << no_user.describe();
}

TEST_F(RunFlags, DeviceAndGroupAddReachTheContainer) {
  auto out = must({"run", "--rm", "--device", "/dev/null:/dev/mynull:r", "--group-add", "4242", kImage, "sh",
                   "-c", "ls -l /dev/mynull; id -G; cat /dev/mynull && echo read-ok"});
  EXPECT_NE(out.find("1,   3"), std::string::npos) << out;
  EXPECT_NE(out.find("4242"), std::string::npos) << out;
  EXPECT_NE(out.find("read-ok"), std::string::npos) << out;
  // /dev/null is open to every container; /dev/kmsg only through --device, and
  // then as its permissions say: "r" lets the cgroup refuse a write, "rw" not.
  auto w = docker({"run", "--rm", "--device", "/dev/kmsg:/dev/mykmsg:r", kImage, "sh", "-c",
                   "echo berth-device-test > /dev/mykmsg"});
  EXPECT_NE(w.exit_code, 0) << w.describe();
  EXPECT_NE(w.err.find("Operation not permitted"), std::string::npos) << w.describe();
  auto rw = docker({"run", "--rm", "--device", "/dev/kmsg:/dev/mykmsg:rw", kImage, "sh", "-c",
                    "echo berth-device-test > /dev/mykmsg"});
  EXPECT_EQ(rw.exit_code, 0) << rw.describe();
  auto missing = docker({"run", "--rm", "--device", "/dev/berth-none", kImage, "true"});
  EXPECT_NE(missing.exit_code, 0);
  EXPECT_NE(missing.err.find("error gathering device information"), std::string::npos) << missing.describe();
  auto bad_group = docker({"run", "--rm", "--group-add", "nosuchgroup", kImage, "true"});
  EXPECT_NE(bad_group.exit_code, 0);
  EXPECT_NE(bad_group.err.find("Unable to find group nosuchgroup"), std::string::npos) << bad_group.describe();
}

TEST_F(RunFlags, LogOptMaxSizeRotatesTheJsonLogAndLogsReadsTheRotatedFiles) {
  Remove cleanup{{"rf-logs"}};
  must({"run", "--name", "rf-logs", "--log-opt", "max-size=1k", "--log-opt", "max-file=3", kImage, "sh", "-c",
        "i=0; while [ $i -lt 60 ]; do echo line-$i; i=$((i+1)); done"});
  EXPECT_EQ(inspect("{{.HostConfig.LogConfig.Type}} {{index .HostConfig.LogConfig.Config \"max-size\"}}",
                    "rf-logs"),
            "json-file 1k");
  const std::string path = inspect("{{.LogPath}}", "rf-logs");
  auto files = vm().ssh("ls " + path + "*");
  EXPECT_NE(files.out.find(path + ".1"), std::string::npos) << files.describe();
  EXPECT_NE(files.out.find(path + ".2"), std::string::npos) << files.describe();
  EXPECT_EQ(files.out.find(path + ".3"), std::string::npos) << files.describe();
  auto size = vm().ssh("stat -c %s " + path + ".1");
  EXPECT_LE(std::stoi(trim(size.out)), 1100) << size.describe();
  auto logs = must({"logs", "rf-logs"});
  EXPECT_NE(logs.find("line-59"), std::string::npos) << logs;
  auto bad = docker({"run", "--rm", "--log-opt", "max-size=huge", kImage, "true"});
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.err.find("invalid size: 'huge'"), std::string::npos) << bad.describe();
}

TEST_F(RunFlags, InspectFillsLogConfigAndRuntimeAsDockerd) {
  Remove cleanup{{"rf-inspect"}};
  must({"create", "--name", "rf-inspect", kImage, "true"});
  EXPECT_EQ(inspect("{{.HostConfig.LogConfig.Type}}|{{.HostConfig.Runtime}}", "rf-inspect"), "json-file|runc");
}

TEST_F(RunFlags, LinkOnTheDefaultBridgeGivesHostsAndLegacyVariables) {
  Remove cleanup{{"rf-db"}};
  must({"run", "-d", "--name", "rf-db", "--expose", "6379", "-e", "SECRET=s3", kImage, "sleep", "1000"});
  const std::string ip = inspect("{{.NetworkSettings.IPAddress}}", "rf-db");
  auto out = must({"run", "--rm", "--name", "rf-web", "--link", "rf-db:db", kImage, "sh", "-c",
                   "env | sort; cat /etc/hosts; ping -c1 -W2 db >/dev/null && echo ping-ok"});
  EXPECT_NE(out.find("DB_PORT=tcp://" + ip + ":6379"), std::string::npos) << out;
  EXPECT_NE(out.find("DB_PORT_6379_TCP_ADDR=" + ip), std::string::npos) << out;
  EXPECT_NE(out.find("DB_NAME=/rf-web/db"), std::string::npos) << out;
  EXPECT_NE(out.find("DB_ENV_SECRET=s3"), std::string::npos) << out;
  EXPECT_NE(out.find(ip + "\tdb "), std::string::npos) << out;
  EXPECT_NE(out.find("ping-ok"), std::string::npos) << out;
}

TEST_F(RunFlags, MacAddressIsTheInterfacesAndInspectShowsIt) {
  Remove cleanup{{"rf-mac"}};
  must({"run", "-d", "--name", "rf-mac", "--mac-address", "92:d0:c6:0a:29:33", kImage, "sleep", "1000"});
  EXPECT_EQ(must({"exec", "rf-mac", "cat", "/sys/class/net/eth0/address"}), "92:d0:c6:0a:29:33");
  EXPECT_EQ(inspect("{{.NetworkSettings.MacAddress}}", "rf-mac"), "92:d0:c6:0a:29:33");
}

TEST_F(RunFlags, AddHostWithHostGatewayIsTheBridgesGateway) {
  const std::string gw = trim(docker({"network", "inspect", "-f", "{{(index .IPAM.Config 0).Gateway}}", "bridge"}).out);
  ASSERT_FALSE(gw.empty());
  auto out = must({"run", "--rm", "--add-host", "gw:host-gateway", "--add-host", "other:10.1.2.3", kImage, "cat",
                   "/etc/hosts"});
  EXPECT_NE(out.find(gw + "\tgw"), std::string::npos) << out;
  EXPECT_NE(out.find("10.1.2.3\tother"), std::string::npos) << out;
}

TEST_F(RunFlags, InitRunsDockerInitAsPid1) {
  if (!vm().ssh("test -x /usr/bin/docker-init").ok()) GTEST_SKIP() << "this berth-os has no docker-init (tini)";
  auto out = must({"run", "--rm", "--init", kImage, "sh", "-c", "cat /proc/1/cmdline | tr '\\0' ' '"});
  EXPECT_EQ(out.rfind("/sbin/docker-init -- sh", 0), 0u) << out;
}

}  // namespace
}  // namespace berth::it::containers
