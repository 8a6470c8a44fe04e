// Published ports on the laptop's 127.0.0.1: ONE berth-os VM made with the real
// `berth create` (its forwarder starts with it), containers run with the real
// docker CLI, and curl on this host as the client. Cases run in file order.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "tests/integration/containers/harness.h"
#include "tests/integration/containers/shared_vm.h"

namespace berth::it::containers {
namespace {

const std::string kMachine = kSharedVmName;

std::string serve(const std::string& text) {
  return "mkdir -p /www && echo " + text + " > /www/index.html && exec httpd -f -p 80 -h /www";
}

// Holds 127.0.0.1:port like another program on the laptop would.
class PortSquatter {
 public:
  explicit PortSquatter(int port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(fd_, 1) != 0)
      throw std::runtime_error("cannot hold port " + std::to_string(port));
  }
  ~PortSquatter() { ::close(fd_); }

 private:
  int fd_ = -1;
};

class Forward : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    try {
      lease_ = std::make_unique<SharedVmLease>();
    } catch (const std::exception& e) {
      setup_error_ = std::string("suite setup failed: ") + e.what();
    }
  }

  static void TearDownTestSuite() { lease_.reset(); }

  void SetUp() override { ASSERT_TRUE(setup_error_.empty()) << setup_error_; }

  static Machine& vm() { return *lease_->vm().machine; }

  static std::string docker_ok(const std::vector<std::string>& args) {
    auto r = vm().docker(args, 120s);
    EXPECT_TRUE(r.ok()) << describe_call(args, r);
    std::string out = r.out;
    while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
    return out;
  }

  static RunResult curl(int port, const std::string& path = "/", std::chrono::milliseconds timeout = 10s) {
    return run({"curl", "-sS", "--max-time", "5", "http://127.0.0.1:" + std::to_string(port) + path}, {}, timeout);
  }

  // The machine's `berth ls --format json` object.
  static nlohmann::json ls_row() {
    auto r = vm().berth({"ls", "--format", "json"});
    EXPECT_TRUE(r.ok()) << r.describe();
    for (const auto& line : split_lines(r.out)) {
      auto j = nlohmann::json::parse(line, nullptr, false);
      if (j.is_object() && j.value("Name", "") == kMachine) return j;
    }
    return {};
  }

  static std::vector<std::string> split_lines(const std::string& s) {
    std::vector<std::string> out;
    size_t start = 0;
    for (size_t nl; (nl = s.find('\n', start)) != std::string::npos; start = nl + 1) out.push_back(s.substr(start, nl - start));
    if (start < s.size()) out.push_back(s.substr(start));
    return out;
  }

  // Serves 32 MiB of random bytes from container `name` on a published port,
  // checks `berth forward --status` says it goes `via`, downloads it with curl
  // on this host, compares checksums, prints the speed, removes the container.
  // Returns the port.
  static int download_through_forward(const std::string& name, const std::string& via, const char* what) {
    const int port = free_port();
    docker_ok({"run", "-d", "--name", name, "-p", std::to_string(port) + ":80", "busybox:latest", "sh", "-c",
               "mkdir -p /www && head -c 33554432 /dev/urandom > /www/blob && md5sum /www/blob | cut -d' ' -f1 > "
               "/www/sum && exec httpd -f -p 80 -h /www"});
    RunResult sum;
    for (int i = 0; i < 200 && !(sum = curl(port, "/sum")).ok(); ++i) std::this_thread::sleep_for(100ms);
    EXPECT_TRUE(sum.ok()) << sum.describe();
    auto status = vm().berth({"forward", "--status", kMachine});
    EXPECT_NE(status.out.find(" " + via + " "), std::string::npos) << "expected a forward via " << via << ": " << status.out;
    const fs::path out = vm().scratch() / ("blob-" + name);
    auto dl = run({"curl", "-sS", "--max-time", "120", "-o", out.string(), "-w", "%{speed_download} %{size_download}",
                   "http://127.0.0.1:" + std::to_string(port) + "/blob"},
                  {}, 130s);
    EXPECT_TRUE(dl.ok()) << dl.describe();
    auto local = run({"md5sum", out.string()}, {}, 30s);
    EXPECT_EQ(local.out.substr(0, 32), sum.out.substr(0, 32));
    std::istringstream figures(dl.out);
    double speed = 0, size = 0;
    figures >> speed >> size;
    EXPECT_EQ(size, 33554432.0);
    std::printf("[ figures  ] 32 MiB through %s: %.1f MiB/s\n", what, speed / (1024 * 1024));
    docker_ok({"rm", "-f", name});
    return port;
  }

  static bool forwarder_running() {
    auto r = run({"flock", "-n", (vm().cli().store() / "machines" / kMachine / "forward.lock").string(), "true"}, {}, 5s);
    return !r.ok();  // the forwarder holds the lock
  }

  static inline std::unique_ptr<SharedVmLease> lease_;
  static inline std::string setup_error_;
};

TEST_F(Forward, StartsWithTheMachineAndLsSaysSo) {
  EXPECT_TRUE(forwarder_running());
  EXPECT_EQ(ls_row().value("Forwards", ""), "on");
}

TEST_F(Forward, APublishedPortAnswersOnLoopbackWithinASecondAndClosesWhenTheContainerStops) {
  const int port = free_port();
  docker_ok({"run", "-d", "--name", "web", "-p", std::to_string(port) + ":80", "busybox:latest", "sh", "-c",
             serve("hello-from-forward")});
  const auto started = std::chrono::steady_clock::now();
  RunResult r;
  while (std::chrono::steady_clock::now() - started < 5s) {
    r = curl(port);
    if (r.ok()) break;
    std::this_thread::sleep_for(50ms);
  }
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started).count();
  ASSERT_TRUE(r.ok()) << r.describe();
  EXPECT_EQ(r.out, "hello-from-forward\n");
  // httpd inside the container may itself take a moment under TCG; the forward is allowed 1 s.
  EXPECT_LT(ms, 1500) << "the forward took " << ms << " ms to answer";
  std::printf("[ figures  ] docker run returned -> first answer on 127.0.0.1:%d in %lld ms\n", port,
              static_cast<long long>(ms));

  // forward.json, which ls reads, follows within a fraction of a second.
  std::string forwards;
  for (int i = 0; i < 20 && (forwards = ls_row().value("Forwards", "")) != std::to_string(port); ++i)
    std::this_thread::sleep_for(100ms);
  EXPECT_EQ(forwards, std::to_string(port));
  auto status = vm().berth({"forward", "--status", kMachine});
  EXPECT_TRUE(status.ok()) << status.describe();
  EXPECT_NE(status.out.find(std::to_string(port)), std::string::npos) << status.out;
  EXPECT_NE(status.out.find("web"), std::string::npos) << status.out;

  docker_ok({"stop", "-t", "1", "web"});
  const auto stopped = std::chrono::steady_clock::now();
  bool closed = false;
  while (!closed && std::chrono::steady_clock::now() - stopped < 3s) {
    closed = !curl(port).ok();
    if (!closed) std::this_thread::sleep_for(50ms);
  }
  EXPECT_TRUE(closed) << "127.0.0.1:" << port << " still answers after the container stopped";
  for (int i = 0; i < 20 && (forwards = ls_row().value("Forwards", "")) != "on"; ++i)
    std::this_thread::sleep_for(100ms);
  EXPECT_EQ(forwards, "on");
  docker_ok({"rm", "web"});
}

TEST_F(Forward, AContainerThatExitsByItselfClosesItsPort) {
  const int port = free_port();
  docker_ok({"run", "-d", "--name", "brief", "-p", std::to_string(port) + ":80", "busybox:latest", "sh", "-c",
             "mkdir -p /www && echo brief > /www/index.html && httpd -p 80 -h /www && sleep 6"});
  RunResult r;
  for (int i = 0; i < 100 && !(r = curl(port)).ok(); ++i) std::this_thread::sleep_for(50ms);
  ASSERT_TRUE(r.ok()) << r.describe();
  auto waited = vm().docker({"wait", "brief"}, 60s);
  ASSERT_TRUE(waited.ok()) << waited.describe();
  const auto exited = std::chrono::steady_clock::now();
  bool closed = false;
  while (!closed && std::chrono::steady_clock::now() - exited < 3s) {
    closed = !curl(port).ok();
    if (!closed) std::this_thread::sleep_for(50ms);
  }
  EXPECT_TRUE(closed) << "127.0.0.1:" << port << " still answers after the container exited";
  // A native forward to a guest port nobody serves also fails curl: check the forward itself is gone.
  std::string forwards;
  while (std::chrono::steady_clock::now() - exited < 3s && (forwards = ls_row().value("Forwards", "")) != "on")
    std::this_thread::sleep_for(100ms);
  EXPECT_EQ(forwards, "on") << "the forward for " << port << " outlived its container";
  docker_ok({"rm", "brief"});
}

TEST_F(Forward, APortTakenOnTheLaptopIsAWarningAndOtherPortsStillWork) {
  const int taken = free_port(), other = free_port();
  PortSquatter squatter(taken);
  docker_ok({"run", "-d", "--name", "blocked", "-p", std::to_string(taken) + ":80", "busybox:latest", "sh", "-c",
             serve("blocked")});
  docker_ok({"run", "-d", "--name", "fine", "-p", std::to_string(other) + ":80", "busybox:latest", "sh", "-c",
             serve("fine")});
  RunResult r;
  for (int i = 0; i < 100 && !(r = curl(other)).ok(); ++i) std::this_thread::sleep_for(50ms);
  EXPECT_EQ(r.out, "fine\n") << r.describe();
  nlohmann::json row;
  for (int i = 0; i < 40; ++i) {
    row = ls_row();
    if (row.value("Error", "").find("already in use") != std::string::npos) break;
    std::this_thread::sleep_for(100ms);
  }
  const std::string error = row.value("Error", "");
  EXPECT_NE(error.find("port " + std::to_string(taken) + " not forwarded: 127.0.0.1:" + std::to_string(taken) +
                       " is already in use"),
            std::string::npos)
      << error;
  EXPECT_EQ(row.value("State", ""), "Running");
  EXPECT_TRUE(forwarder_running());
  auto logs = vm().berth({"logs", "--forwarder", kMachine});
  ASSERT_TRUE(logs.ok()) << logs.describe();
  const std::string& log = logs.out;
  EXPECT_NE(log.find("127.0.0.1:" + std::to_string(taken) + " is already in use"), std::string::npos) << log;
  docker_ok({"rm", "-f", "blocked", "fine"});
}

TEST_F(Forward, ALargeDownloadArrivesIntact) {
  download_through_forward("big", "qemu", "the native (QEMU hostfwd) forward");
}

TEST_F(Forward, OffAndOnAgainWithoutTheNativeForward) {
  auto off = vm().berth({"forward", "--off", kMachine});
  ASSERT_TRUE(off.ok()) << off.describe();
  EXPECT_FALSE(forwarder_running());
  EXPECT_EQ(ls_row().value("Forwards", ""), "off");
  vm().berth({"start", kMachine}, 120s);  // a running machine: start is a no-op or an error,
  EXPECT_FALSE(forwarder_running()) << "off must stay off across start";  // never a forwarder
  // From here on every port goes over SSH (the forwarder inherits this variable).
  auto on = vm().sh("BERTH_FORWARD_NATIVE=0 berth forward " + kMachine);
  ASSERT_TRUE(on.ok()) << on.describe();
  EXPECT_TRUE(forwarder_running());
  EXPECT_EQ(ls_row().value("Forwards", ""), "on");
}

TEST_F(Forward, OverSshAPublishedPortAnswersAndALargeDownloadArrivesIntact) {
  const int port = download_through_forward("big-ssh", "ssh", "the SSH forward");
  bool closed = false;
  for (int i = 0; i < 30 && !closed; ++i) {
    closed = !curl(port).ok();
    if (!closed) std::this_thread::sleep_for(100ms);
  }
  EXPECT_TRUE(closed) << "127.0.0.1:" << port << " still answers after the container was removed";
}

TEST_F(Forward, StopsWithTheMachine) {
  const int port = free_port();
  docker_ok({"run", "-d", "--name", "web2", "-p", std::to_string(port) + ":80", "busybox:latest", "sh", "-c",
             serve("x")});
  RunResult r;
  for (int i = 0; i < 100 && !(r = curl(port)).ok(); ++i) std::this_thread::sleep_for(50ms);
  ASSERT_TRUE(r.ok()) << r.describe();
  auto stop = vm().berth({"stop", kMachine}, 180s);
  ASSERT_TRUE(stop.ok()) << stop.describe();
  EXPECT_FALSE(forwarder_running());
  EXPECT_FALSE(curl(port).ok()) << "the port still answers after berth stop";
  EXPECT_FALSE(fs::exists(vm().cli().store() / "machines" / kMachine / "forward.json"));
  // The VM is shared with the other agent suites: bring it back.
  auto start = vm().berth({"start", kMachine}, 300s);
  EXPECT_TRUE(start.ok()) << start.describe();
  vm().refresh_docker_env();
  docker_ok({"rm", "-f", "web2"});
}

}  // namespace
}  // namespace berth::it::containers
