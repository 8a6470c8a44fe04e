// The port forwarder's decisions: which published ports it forwards (from
// dockerd-format /containers/json) and how `ls` reads its status file.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "cli/context.h"
#include "cli/forwarder.h"
#include "core/error.h"
#include "core/lock.h"

namespace berth::cli {
namespace {

namespace fs = std::filesystem;

// The shape dockerd answers (Engine API ContainerSummary), trimmed.
const char* kContainers = R"([
  {"Id":"aaaaaaaaaaaaaaaa","Names":["/web"],"State":"running",
   "Ports":[{"IP":"0.0.0.0","PrivatePort":80,"PublicPort":8080,"Type":"tcp"},
            {"IP":"::","PrivatePort":80,"PublicPort":8080,"Type":"tcp"},
            {"PrivatePort":443,"Type":"tcp"},
            {"IP":"0.0.0.0","PrivatePort":53,"PublicPort":5353,"Type":"udp"}]},
  {"Id":"bbbbbbbbbbbbbbbbbbbb","Names":[],"State":"running",
   "Ports":[{"IP":"127.0.0.1","PrivatePort":6379,"PublicPort":6379,"Type":"tcp"}]},
  {"Id":"cccc","Names":["/paused"],"State":"paused",
   "Ports":[{"IP":"0.0.0.0","PrivatePort":80,"PublicPort":9000,"Type":"tcp"}]},
  {"Id":"dddd","Names":["/dup"],"State":"running",
   "Ports":[{"IP":"0.0.0.0","PrivatePort":81,"PublicPort":8080,"Type":"tcp"}]}
])";

TEST(ForwardsFromContainers, PublishedTcpPortsOfRunningContainersOncePerPort) {
  const auto f = forwards_from_containers(kContainers);
  ASSERT_EQ(f.size(), 2u);
  EXPECT_EQ(f[0], (PortForward{6379, "127.0.0.1", 6379, "bbbbbbbbbbbb"}));  // no name: the short id
  EXPECT_EQ(f[1], (PortForward{8080, "127.0.0.1", 8080, "web", true}));  // 0.0.0.0 -> the machine's loopback
}

TEST(ForwardsFromContainers, ContainersKnownToHaveDiedAreLeftOut) {
  const auto f = forwards_from_containers(kContainers, {"aaaaaaaaaaaaaaaa"});
  ASSERT_EQ(f.size(), 2u);  // web died: the later container publishing 8080 gets the port
  EXPECT_EQ(f[1], (PortForward{8080, "127.0.0.1", 8080, "dup", true}));
}

TEST(ForwardsFromContainers, ASpecificAddressIsKept) {
  const auto f = forwards_from_containers(
      R"([{"Id":"x","Names":["/db"],"Ports":[{"IP":"10.0.2.15","PrivatePort":5432,"PublicPort":15432,"Type":"tcp"}]}])");
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0].remote_host, "10.0.2.15");
  EXPECT_EQ(f[0].local_port, 15432);
  EXPECT_FALSE(f[0].any_address);
}

TEST(ForwardsFromContainers, NothingPublishedIsNothingForwarded) {
  EXPECT_TRUE(forwards_from_containers("[]").empty());
  EXPECT_TRUE(forwards_from_containers(R"([{"Id":"x","Ports":[]},{"Id":"y"},7])").empty());
}

TEST(ForwardsFromContainers, ANonArrayIsAnError) {
  EXPECT_THROW(forwards_from_containers(R"({"message":"page not found"})"), Error);
  EXPECT_THROW(forwards_from_containers("not json"), Error);
}

class ForwarderFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() / ("berth-fwd-unit-" + std::to_string(::getpid()));
    fs::create_directories(root_ / "machines" / "m1");
    ctx_.storage_path = root_.string();
  }
  void TearDown() override { fs::remove_all(root_); }
  fs::path dir() const { return root_ / "machines" / "m1"; }

  fs::path root_;
  Context ctx_;
};

TEST_F(ForwarderFiles, NotRunningWithoutItsLockHeldWhateverTheStatusFileSays) {
  std::ofstream(dir() / "forward.json") << R"({"ssh":"connected","forwards":[{"port":80,"listening":true}]})";
  const auto v = read_forwarder(ctx_, "m1");
  EXPECT_FALSE(v.running);
  EXPECT_TRUE(v.ports.empty());
}

TEST_F(ForwarderFiles, RunningShowsPortsAndWarnings) {
  auto lock = FileLock::try_acquire(dir() / "forward.lock");
  ASSERT_TRUE(lock);
  std::ofstream(dir() / "forward.json") << R"({"ssh":"connected","agent":"",
    "forwards":[{"port":8080,"listening":true},
                {"port":80,"listening":false,"error":"127.0.0.1:80 is already in use on this computer"}]})";
  // read_forwarder probes the lock from this process: flock locks are per open file, so it sees it held.
  const auto v = read_forwarder(ctx_, "m1");
  EXPECT_TRUE(v.running);
  EXPECT_EQ(v.ports, std::vector<int>{8080});
  ASSERT_EQ(v.warnings.size(), 1u);
  EXPECT_EQ(v.warnings[0], "port 80 not forwarded: 127.0.0.1:80 is already in use on this computer");
}

TEST_F(ForwarderFiles, SshTroubleIsAWarning) {
  auto lock = FileLock::try_acquire(dir() / "forward.lock");
  std::ofstream(dir() / "forward.json") << R"({"ssh":"cannot connect to 127.0.0.1:2222","agent":"","forwards":[]})";
  const auto v = read_forwarder(ctx_, "m1");
  ASSERT_EQ(v.warnings.size(), 1u);
  EXPECT_EQ(v.warnings[0], "forwarder: cannot connect to 127.0.0.1:2222");
}

TEST_F(ForwarderFiles, OffIsRememberedUntilTurnedOn) {
  EXPECT_FALSE(forwarder_disabled(ctx_, "m1"));
  set_forwarder_disabled(ctx_, "m1", true);
  EXPECT_TRUE(forwarder_disabled(ctx_, "m1"));
  start_forwarder(ctx_, "m1", true);  // disabled: starts nothing
  EXPECT_FALSE(read_forwarder(ctx_, "m1").running);
  set_forwarder_disabled(ctx_, "m1", false);
  EXPECT_FALSE(forwarder_disabled(ctx_, "m1"));
}

TEST_F(ForwarderFiles, StoppingWhenNothingRunsIsANoOp) {
  stop_forwarder(ctx_, "m1");
  EXPECT_FALSE(read_forwarder(ctx_, "m1").running);
}

}  // namespace
}  // namespace berth::cli
