// Containers end to end: the shared berth-os VM (libvirt, TCG, user networking;
// shared_vm.h) made with the real `berth create`, then the real docker CLI
// through `berth env` against berth-agent. The VM, the test image and a
// docker-registry on the host's 127.0.0.1 (the guest's 10.0.2.2) are made once
// per ctest run; cases run in file order and each removes what it made.
// Needs root, libvirt, skopeo, docker-registry and a built berth-os.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <regex>

#include "tests/integration/containers/harness.h"
#include "tests/integration/containers/shared_vm.h"

namespace berth::it::containers {
namespace {

const std::string kMachine = kSharedVmName;
const std::string kImage = "busybox:latest";

// Shell command for a container that serves TEXT over HTTP on PORT with busybox httpd.
std::string serve(const std::string& text, int port = 80) {
  return "mkdir -p /www && echo " + text + " > /www/index.html && exec httpd -f -p " + std::to_string(port) +
         " -h /www";
}

// The "message" of a dockerd error body ("" when the body is not one).
std::string message_of(const std::string& body) {
  auto j = nlohmann::json::parse(body, nullptr, false);
  if (!j.is_object() || !j.contains("message") || !j["message"].is_string()) return "";
  return j["message"];
}

// Note: Debian's busybox 1.35 wget segfaults with -T; the tests use `timeout N wget`.

// Shell loop: retries `cmd` for ~`tries` half-seconds (a server in another container may still be starting).
std::string retry(const std::string& cmd, int tries = 20) {
  return "i=0; while [ $i -lt " + std::to_string(tries) + " ]; do " + cmd +
         " && exit 0; i=$((i+1)); sleep 0.5; done; exit 1";
}

class Containers : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    try {
      lease_ = std::make_unique<SharedVmLease>();
      image_ = lease_->vm().image;
      registry_ = std::make_unique<RegistryAddress>(lease_->vm().registry_port);
    } catch (const std::exception& e) {
      setup_error_ = std::string("suite setup failed: ") + e.what();
    }
  }

  static void TearDownTestSuite() {
    registry_.reset();
    lease_.reset();
  }

  void SetUp() override { ASSERT_TRUE(setup_error_.empty()) << setup_error_; }

  static Machine& vm() { return *lease_->vm().machine; }

  // docker ARGS..., asserted to succeed; returns trimmed stdout.
  std::string ok(const std::vector<std::string>& args, std::chrono::milliseconds timeout = 60s,
                 const std::string& input = "") {
    auto r = vm().docker(args, timeout, input);
    EXPECT_EQ(r.exit_code, 0) << describe_call(args, r);
    return trim(r.out);
  }
  // Like ok(), for a step the rest of the case depends on: a failure ends the case
  // (gtest reports the exception) instead of cascading.
  std::string must(const std::vector<std::string>& args, std::chrono::milliseconds timeout = 60s) {
    auto r = vm().docker(args, timeout);
    if (r.exit_code != 0) throw std::runtime_error("required step failed: " + describe_call(args, r));
    return trim(r.out);
  }
  RunResult docker(const std::vector<std::string>& args, std::chrono::milliseconds timeout = 60s,
                   const std::string& input = "") {
    return vm().docker(args, timeout, input);
  }
  std::string inspect(const std::string& format, const std::string& object) {
    return trim(docker({"inspect", "-f", format, object}).out);
  }

  // The test image is loaded (the first case loads it; a case run alone loads it
  // here). Throws, ending the case, when it cannot be.
  void require_image() {
    if (docker({"image", "inspect", kImage}).ok()) return;
    must({"load", "-i", image_.tarball.string()}, 120s);
  }

  // Removes a case's containers, networks and volumes at its end, whatever happened.
  struct Cleanup {
    Cleanup(Containers* test, std::vector<std::string> c = {}, std::vector<std::string> n = {},
            std::vector<std::string> v = {})
        : t(test), containers(std::move(c)), networks(std::move(n)), volumes(std::move(v)) {}
    Containers* t;
    std::vector<std::string> containers, networks, volumes;
    ~Cleanup() {
      for (const auto& c : containers) t->docker({"rm", "-f", c});
      for (const auto& n : networks) t->docker({"network", "rm", n});
      for (const auto& v : volumes) t->docker({"volume", "rm", "-f", v});
    }
  };

  // The shared VM's registry, as the host and the guest name it.
  struct RegistryAddress {
    int port;
    std::string host_address() const { return "127.0.0.1:" + std::to_string(port); }
    std::string guest_address() const { return "10.0.2.2:" + std::to_string(port); }
  };

  static inline std::string setup_error_;
  static inline std::unique_ptr<SharedVmLease> lease_;
  static inline std::unique_ptr<RegistryAddress> registry_;
  static inline TestImage image_;
};

// --- images ---

TEST_F(Containers, LoadSaveRoundTrip) {
  auto load = docker({"load", "-i", image_.tarball.string()}, 120s);
  ASSERT_EQ(load.exit_code, 0) << load.describe();
  EXPECT_NE(load.out.find("Loaded image: " + kImage), std::string::npos) << load.out;

  EXPECT_EQ(inspect("{{.Id}}", kImage), image_.id);
  EXPECT_EQ(inspect("{{.Os}}/{{.Architecture}}", kImage), "linux/amd64");
  EXPECT_EQ(inspect("{{json .Config.Cmd}}", kImage), "[\"sh\"]");
  EXPECT_EQ(inspect("{{json .RootFS.Layers}}", kImage), "[\"" + image_.diff_id + "\"]");
  const std::string listed = ok({"images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"});
  EXPECT_NE(listed.find("busybox:latest " + image_.id.substr(7, 12)), std::string::npos) << listed;

  // save -> a docker-archive that skopeo reads, with the same config and layer.
  const fs::path saved = vm().scratch() / "saved.tar";
  auto save = docker({"save", "-o", saved.string(), kImage}, 120s);
  ASSERT_EQ(save.exit_code, 0) << save.describe();
  auto manifest = run({"tar", "-xOf", saved.string(), "manifest.json"});
  ASSERT_EQ(manifest.exit_code, 0) << manifest.describe();
  auto m = nlohmann::json::parse(manifest.out).at(0);
  EXPECT_EQ(m.at("RepoTags"), nlohmann::json::array({kImage}));
  EXPECT_NE(m.at("Config").get<std::string>().find(image_.id.substr(7)), std::string::npos) << manifest.out;
  auto skopeo = run({"skopeo", "inspect", "docker-archive:" + saved.string()}, {}, 60s);
  ASSERT_EQ(skopeo.exit_code, 0) << skopeo.describe();
  EXPECT_EQ(nlohmann::json::parse(skopeo.out).at("Layers"), nlohmann::json::array({image_.diff_id}));

  // save to stdout | load: same image, under a new tag too.
  ok({"tag", kImage, "e2e/copy:v1"});
  EXPECT_EQ(inspect("{{.Id}}", "e2e/copy:v1"), image_.id);
  auto piped = vm().sh("docker save e2e/copy:v1 | docker load", 120s);
  ASSERT_EQ(piped.exit_code, 0) << piped.describe();
  EXPECT_NE(piped.out.find("e2e/copy:v1"), std::string::npos) << piped.out;
  auto rmi = docker({"rmi", "e2e/copy:v1"});
  EXPECT_EQ(rmi.exit_code, 0) << rmi.describe();
  EXPECT_NE(rmi.out.find("Untagged: e2e/copy:v1"), std::string::npos) << rmi.out;
  auto gone = docker({"image", "inspect", "e2e/copy:v1"});
  EXPECT_NE(gone.exit_code, 0);
  EXPECT_NE(gone.err.find("No such image: e2e/copy:v1"), std::string::npos) << gone.err;
  EXPECT_EQ(inspect("{{.Id}}", kImage), image_.id) << "untagging one name keeps the image";

  // history shows the config's two entries.
  const std::string history = ok({"history", "--no-trunc", "--format", "{{.CreatedBy}}", kImage});
  EXPECT_NE(history.find("CMD [\"sh\"]"), std::string::npos) << history;
  EXPECT_NE(history.find("make-test-image.sh"), std::string::npos) << history;
}

// --- containers ---

TEST_F(Containers, RunPrintsOutputAndRmRemoves) {
  require_image();
  auto hello = docker({"run", "--rm", kImage, "echo", "hello from berth"});
  ASSERT_EQ(hello.exit_code, 0) << hello.describe();
  EXPECT_EQ(hello.out, "hello from berth\n");

  auto streams = docker({"run", "--rm", kImage, "sh", "-c", "echo to-out; echo to-err >&2; exit 3"});
  EXPECT_EQ(streams.exit_code, 3) << streams.describe();
  EXPECT_EQ(streams.out, "to-out\n");
  EXPECT_NE(streams.err.find("to-err"), std::string::npos) << streams.err;

  auto stdin_ = docker({"run", "--rm", "-i", kImage, "cat"}, 60s, "piped-in\n");
  EXPECT_EQ(stdin_.exit_code, 0) << stdin_.describe();
  EXPECT_EQ(stdin_.out, "piped-in\n");

  auto tty = docker({"run", "--rm", "-t", kImage, "tty"});
  EXPECT_EQ(tty.exit_code, 0) << tty.describe();
  EXPECT_NE(tty.out.find("/dev/pts/"), std::string::npos) << tty.out;

  // --rm left nothing behind.
  EXPECT_EQ(ok({"ps", "-a", "-q", "--filter", "ancestor=" + kImage}), "");
}

TEST_F(Containers, RunOptions) {
  require_image();
  Cleanup cleanup{this, {"opts"}};
  auto r = docker({"run", "--name", "opts", "-e", "GREETING=bonjour", "-w", "/tmp", "-u", "nobody", "--hostname",
                   "box1", kImage, "sh", "-c", "echo $GREETING; pwd; id -u; hostname"});
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_EQ(r.out, "bonjour\n/tmp\n65534\nbox1\n");
  EXPECT_EQ(inspect("{{.Name}} {{.State.Status}} {{.State.ExitCode}}", "opts"), "/opts exited 0");
  EXPECT_EQ(inspect("{{.Config.Hostname}} {{.Config.User}} {{.Config.WorkingDir}}", "opts"), "box1 nobody /tmp");
  EXPECT_NE(inspect("{{json .Config.Env}}", "opts").find("GREETING=bonjour"), std::string::npos);
  EXPECT_EQ(inspect("{{.Image}}", "opts"), image_.id);

  auto entry = docker({"run", "--rm", "--entrypoint", "echo", kImage, "from", "entrypoint"});
  EXPECT_EQ(entry.exit_code, 0) << entry.describe();
  EXPECT_EQ(entry.out, "from entrypoint\n");
  auto uid = docker({"run", "--rm", "-u", "1234:5678", kImage, "id"});
  EXPECT_EQ(uid.exit_code, 0) << uid.describe();
  EXPECT_NE(uid.out.find("uid=1234 gid=5678"), std::string::npos) << uid.out;
}

TEST_F(Containers, LogsAndPs) {
  require_image();
  Cleanup cleanup{this, {"logger"}};
  must({"run", "-d", "--name", "logger", kImage, "sh", "-c", "echo one; sleep 0.3; echo two >&2; sleep 0.3; echo three"});
  EXPECT_EQ(ok({"wait", "logger"}), "0");
  auto logs = docker({"logs", "logger"});
  EXPECT_EQ(logs.exit_code, 0) << logs.describe();
  EXPECT_EQ(logs.out, "one\nthree\n");
  EXPECT_EQ(logs.err, "two\n");
  auto tail = docker({"logs", "--tail", "1", "logger"});
  EXPECT_EQ(tail.out + tail.err, "three\n") << tail.describe();
  auto stamped = docker({"logs", "-t", "logger"});
  EXPECT_TRUE(std::regex_search(stamped.out, std::regex(R"(^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z one\n)")))
      << stamped.out;

  EXPECT_EQ(ok({"ps", "-a", "--filter", "name=logger", "--format", "{{.Names}} {{.Image}}"}), "logger " + kImage);
  EXPECT_EQ(ok({"ps", "--filter", "name=logger", "-q"}), "") << "exited containers are not in plain ps";
  const std::string status = ok({"ps", "-a", "--filter", "name=logger", "--format", "{{.Status}}"});
  EXPECT_EQ(status.rfind("Exited (0)", 0), 0u) << status;
  const std::string id = ok({"ps", "-a", "-q", "--no-trunc", "--filter", "name=logger"});
  EXPECT_TRUE(std::regex_match(id, std::regex("[0-9a-f]{64}"))) << id;
  EXPECT_EQ(ok({"ps", "-a", "-q", "--filter", "status=exited", "--filter", "id=" + id.substr(0, 12)}),
            id.substr(0, 12));

  // wait returns the exit code.
  const std::string code = ok({"run", "-d", kImage, "sh", "-c", "sleep 1; exit 7"});
  cleanup.containers.push_back(code);
  EXPECT_EQ(ok({"wait", code}), "7");
}

TEST_F(Containers, DetachedLifecycle) {
  require_image();
  Cleanup cleanup{this, {"life"}};
  // Answers SIGTERM (docker stop) by exiting 0 with a message.
  const std::string script = "echo started; trap 'echo got-term; exit 0' TERM; while :; do sleep 0.2; done";
  const std::string id = must({"run", "-d", "--name", "life", kImage, "sh", "-c", script});
  ASSERT_TRUE(std::regex_match(id, std::regex("[0-9a-f]{64}"))) << id;
  EXPECT_EQ(inspect("{{.State.Status}}", "life"), "running");
  EXPECT_EQ(ok({"ps", "--filter", "name=life", "--format", "{{.ID}}"}), id.substr(0, 12));
  EXPECT_TRUE(eventually([&] { return docker({"logs", "life"}).out == "started\n"; }, 20s, 200ms));

  // exec: output, exit code, environment, stdin, and the same file system.
  auto exec = docker({"exec", "life", "sh", "-c", "echo inside; touch /from-exec"});
  EXPECT_EQ(exec.exit_code, 0) << exec.describe();
  EXPECT_EQ(exec.out, "inside\n");
  EXPECT_EQ(docker({"exec", "life", "sh", "-c", "exit 4"}).exit_code, 4);
  EXPECT_EQ(ok({"exec", "-e", "X=y", "-w", "/etc", "-u", "nobody", "life", "sh", "-c", "echo $X $(pwd) $(id -u)"}),
            "y /etc 65534");
  EXPECT_EQ(ok({"exec", "-i", "life", "cat"}, 60s, "exec-stdin\n"), "exec-stdin");
  EXPECT_EQ(docker({"exec", "life", "test", "-e", "/from-exec"}).exit_code, 0);

  ok({"pause", "life"});
  EXPECT_EQ(inspect("{{.State.Status}} {{.State.Paused}}", "life"), "paused true");
  EXPECT_NE(ok({"ps", "--filter", "name=life", "--format", "{{.Status}}"}).find("(Paused)"), std::string::npos);
  ok({"unpause", "life"});
  EXPECT_EQ(inspect("{{.State.Status}} {{.State.Paused}}", "life"), "running false");

  // stop sends SIGTERM first: the trap runs and the exit code is 0, well before the timeout.
  const auto t0 = std::chrono::steady_clock::now();
  ok({"stop", "-t", "20", "life"});
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 15s) << "stop waited for the timeout: SIGTERM not delivered?";
  EXPECT_EQ(inspect("{{.State.Status}} {{.State.ExitCode}}", "life"), "exited 0");
  EXPECT_NE(docker({"logs", "life"}).out.find("got-term"), std::string::npos);

  ok({"start", "life"});
  EXPECT_EQ(inspect("{{.State.Status}}", "life"), "running");
  EXPECT_EQ(docker({"exec", "life", "test", "-e", "/from-exec"}).exit_code, 0) << "the container's rootfs is kept";
  const std::string started = inspect("{{.State.StartedAt}}", "life");
  ok({"restart", "-t", "20", "life"});
  EXPECT_EQ(inspect("{{.State.Status}}", "life"), "running");
  EXPECT_NE(inspect("{{.State.StartedAt}}", "life"), started);
  EXPECT_TRUE(eventually(
      [&] {
        auto out = docker({"logs", "life"}).out;
        size_t n = 0;
        for (size_t p = out.find("started"); p != std::string::npos; p = out.find("started", p + 1)) ++n;
        return n == 3;
      },
      20s, 200ms))
      << docker({"logs", "life"}).out;

  // kill: SIGKILL, 137.
  ok({"kill", "life"});
  EXPECT_TRUE(eventually([&] { return inspect("{{.State.Status}}", "life") == "exited"; }, 20s, 200ms));
  EXPECT_EQ(inspect("{{.State.ExitCode}}", "life"), "137");

  // rm of a running container needs -f.
  ok({"start", "life"});
  auto rm = docker({"rm", "life"});
  EXPECT_NE(rm.exit_code, 0);
  // dockerd 25+: cannot remove container "/life": container is running: stop the container before removing or force remove
  EXPECT_TRUE(contains_icase(rm.err, "container is running: stop the container before removing or force remove"))
      << rm.err;
  ok({"rm", "-f", "life"});
  EXPECT_EQ(ok({"ps", "-a", "-q", "--filter", "name=life"}), "");
  auto gone = docker({"inspect", "life"});
  EXPECT_NE(gone.exit_code, 0);
  EXPECT_NE(gone.err.find("No such object: life"), std::string::npos) << gone.err;
}

TEST_F(Containers, LimitsReachTheCgroup) {
  require_image();
  auto r = docker({"run", "--rm", "-m", "64m", "--pids-limit", "50", "--cpus", "0.5", kImage, "cat",
                   "/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/pids.max", "/sys/fs/cgroup/cpu.max"});
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_EQ(r.out, "67108864\n50\n50000 100000\n");
}

// --- networking ---

TEST_F(Containers, PublishedPortReachableFromHost) {
  require_image();
  Cleanup cleanup{this, {"web"}};
  must({"run", "-d", "--name", "web", "-p", "8080:80", kImage, "sh", "-c", serve("hello-from-web")});
  EXPECT_EQ(lines(ok({"port", "web"})).at(0), "80/tcp -> 0.0.0.0:8080");
  EXPECT_NE(inspect("{{json .NetworkSettings.Ports}}", "web").find("\"HostPort\":\"8080\""), std::string::npos);
  EXPECT_NE(ok({"ps", "--filter", "name=web", "--format", "{{.Ports}}"}).find("0.0.0.0:8080->80/tcp"),
            std::string::npos);

  // Forward a host port to the guest's 8080 on the running domain.
  const int host_port = free_port();
  const std::string rule = "tcp:127.0.0.1:" + std::to_string(host_port) + "-:8080";
  auto add = vm().monitor("hostfwd_add n0 " + rule);
  ASSERT_EQ(add.exit_code, 0) << add.describe();
  const std::string url = "http://127.0.0.1:" + std::to_string(host_port) + "/";
  RunResult got;
  EXPECT_TRUE(eventually(
      [&] {
        got = run({"curl", "-s", "--max-time", "5", url}, {}, 10s);
        return got.ok() && got.out == "hello-from-web\n";
      },
      40s, 500ms))
      << got.describe();
  vm().monitor("hostfwd_remove n0 tcp:127.0.0.1:" + std::to_string(host_port));

  // From the guest itself, through the published port on its own address.
  auto local = vm().ssh("wget -q -O - http://10.0.2.15:8080/");
  EXPECT_EQ(local.out, "hello-from-web\n") << local.describe();

  // The port is free again once the container is gone.
  ok({"rm", "-f", "web"});
  auto after = vm().ssh("timeout 5 wget -q -O - http://10.0.2.15:8080/");
  EXPECT_NE(after.exit_code, 0) << after.describe();
  EXPECT_NE(after.err.find("Connection refused"), std::string::npos) << after.describe();
}

TEST_F(Containers, UserNetworksResolveNamesAndAreIsolated) {
  require_image();
  Cleanup cleanup{this, {"srv1"}, {"e2e-n1", "e2e-n2"}};
  ok({"network", "create", "e2e-n1"});
  ok({"network", "create", "e2e-n2"});
  const std::string networks = ok({"network", "ls", "--format", "{{.Name}} {{.Driver}}"});
  EXPECT_NE(networks.find("e2e-n1 bridge"), std::string::npos) << networks;
  EXPECT_NE(networks.find("bridge bridge"), std::string::npos) << networks;
  EXPECT_NE(networks.find("host host"), std::string::npos) << networks;
  EXPECT_NE(networks.find("none null"), std::string::npos) << networks;
  const std::string subnet1 = inspect("{{(index .IPAM.Config 0).Subnet}}", "e2e-n1");
  const std::string subnet2 = inspect("{{(index .IPAM.Config 0).Subnet}}", "e2e-n2");
  EXPECT_FALSE(subnet1.empty());
  EXPECT_NE(subnet1, subnet2);

  must({"run", "-d", "--name", "srv1", "--network", "e2e-n1", kImage, "sh", "-c", serve("hello-by-name")});
  const std::string ip = inspect("{{(index .NetworkSettings.Networks \"e2e-n1\").IPAddress}}", "srv1");
  EXPECT_TRUE(std::regex_match(ip, std::regex(R"(\d+\.\d+\.\d+\.\d+)"))) << ip;
  EXPECT_NE(inspect("{{json .Containers}}", "e2e-n1").find("srv1"), std::string::npos);

  auto by_name = docker({"run", "--rm", "--network", "e2e-n1", kImage, "sh", "-c",
                         retry("timeout 2 wget -q -O - http://srv1/")});
  EXPECT_EQ(by_name.exit_code, 0) << by_name.describe();
  EXPECT_EQ(by_name.out, "hello-by-name\n");

  // Another network neither resolves the name nor reaches the address.
  auto other_name = docker({"run", "--rm", "--network", "e2e-n2", kImage, "nslookup", "srv1"});
  EXPECT_NE(other_name.exit_code, 0) << other_name.describe();
  // (It does reach the outside: the registry on the host answers "{}".)
  const std::string outside_but_not_srv1 = "timeout 10 wget -q -O - http://" + registry_->guest_address() +
                                           "/v2/ && ! timeout 3 wget -q -O - http://" + ip + "/";
  auto other_ip = docker({"run", "--rm", "--network", "e2e-n2", kImage, "sh", "-c", outside_but_not_srv1});
  EXPECT_EQ(other_ip.exit_code, 0) << other_ip.describe();
  EXPECT_EQ(trim(other_ip.out), "{}");
  // The default bridge doesn't reach it either.
  auto bridge_ip = docker({"run", "--rm", kImage, "sh", "-c", outside_but_not_srv1});
  EXPECT_EQ(bridge_ip.exit_code, 0) << bridge_ip.describe();
  EXPECT_EQ(trim(bridge_ip.out), "{}");

  // connect puts a container on a second network, where names resolve too.
  ok({"network", "connect", "e2e-n2", "srv1"});
  auto connected = docker({"run", "--rm", "--network", "e2e-n2", kImage, "sh", "-c",
                           retry("timeout 2 wget -q -O - http://srv1/", 10)});
  EXPECT_EQ(connected.out, "hello-by-name\n") << connected.describe();
  ok({"network", "disconnect", "e2e-n2", "srv1"});

  // A network in use cannot be removed.
  auto busy = docker({"network", "rm", "e2e-n1"});
  EXPECT_NE(busy.exit_code, 0);
  EXPECT_NE(busy.err.find("has active endpoints"), std::string::npos) << busy.err;
}

TEST_F(Containers, Ipv6NetworksAndNetworkScopedLinks) {
  require_image();
  Cleanup cleanup{this, {"v6srv", "v6app"}, {"e2e-v6"}};
  ok({"network", "create", "--ipv6", "--subnet", "fd00:db8:77::/64", "e2e-v6"});
  EXPECT_EQ(inspect("{{.EnableIPv6}} {{(index .IPAM.Config 1).Subnet}} {{(index .IPAM.Config 1).Gateway}}",
                    "e2e-v6"),
            "true fd00:db8:77::/64 fd00:db8:77::1");
  const std::string dns = inspect("{{(index .IPAM.Config 0).Gateway}}", "e2e-v6");
  must({"run", "-d", "--name", "v6srv", "--network", "e2e-v6", "--ip6", "fd00:db8:77::50", kImage, "sh", "-c",
        serve("hello-over-v6")});
  EXPECT_EQ(inspect("{{(index .NetworkSettings.Networks \"e2e-v6\").GlobalIPv6Address}} "
                    "{{(index .NetworkSettings.Networks \"e2e-v6\").IPv6Gateway}}",
                    "v6srv"),
            "fd00:db8:77::50 fd00:db8:77::1");
  // A container on the default bridge joins with a link: "store" is v6srv, for it alone.
  must({"run", "-d", "--name", "v6app", kImage, "sleep", "300"});
  ok({"network", "connect", "--link", "v6srv:store", "e2e-v6", "v6app"});
  EXPECT_EQ(inspect("{{json (index .NetworkSettings.Networks \"e2e-v6\").Links}}", "v6app"), R"(["v6srv:store"])");
  auto linked = docker({"exec", "v6app", "sh", "-c",
                        "nslookup -type=AAAA store " + dns + " | grep -c fd00:db8:77::50 && " +
                            retry("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 fd00:db8:77::50 80 | tail -1", 6)});
  EXPECT_EQ(linked.exit_code, 0) << linked.describe();
  EXPECT_EQ(linked.out, "1\nhello-over-v6\n") << linked.describe();
  auto unlinked = docker({"run", "--rm", "--network", "e2e-v6", kImage, "sh", "-c",
                          "ip -6 route | grep -c 'default via fd00:db8:77::1'; nslookup store"});
  EXPECT_NE(unlinked.exit_code, 0) << unlinked.describe();
  EXPECT_EQ(unlinked.out.substr(0, 2), "1\n") << unlinked.describe();
  // An IPv6 address on a network without IPv6 is refused in one line.
  auto refused = docker({"run", "--rm", "--ip6", "fd00:db8:77::9", "--network", "bridge", kImage, "true"});
  EXPECT_NE(refused.exit_code, 0);
  EXPECT_NE(refused.err.find("has no IPv6"), std::string::npos) << refused.err;
}

TEST_F(Containers, BridgeReachesOutThroughNat) {
  require_image();
  // The default bridge reaches the host's registry through the VM's NAT and QEMU's gateway.
  auto r = docker({"run", "--rm", kImage, "timeout", "10", "wget", "-q", "-O", "-",
                   "http://" + registry_->guest_address() + "/v2/"});
  EXPECT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_EQ(trim(r.out), "{}");
  auto eth0 = docker({"run", "--rm", kImage, "ls", "/sys/class/net"});
  EXPECT_EQ(eth0.out, "eth0\nlo\n") << eth0.describe();
}

TEST_F(Containers, HostNoneAndContainerNetworkModes) {
  require_image();
  Cleanup cleanup{this, {"netowner"}};
  auto host = docker({"run", "--rm", "--network", "host", kImage, "ip", "-4", "-o", "addr", "show", "eth0"});
  EXPECT_EQ(host.exit_code, 0) << host.describe();
  EXPECT_NE(host.out.find("10.0.2.15"), std::string::npos) << host.out;
  EXPECT_EQ(ok({"run", "--rm", "--network", "host", kImage, "hostname"}), kMachine);

  auto none = docker({"run", "--rm", "--network", "none", kImage, "ls", "/sys/class/net"});
  EXPECT_EQ(none.exit_code, 0) << none.describe();
  EXPECT_EQ(none.out, "lo\n");

  must({"run", "-d", "--name", "netowner", kImage, "sh", "-c", serve("hello-shared-ns", 8081)});
  auto shared = docker({"run", "--rm", "--network", "container:netowner", kImage, "sh", "-c",
                        retry("timeout 2 wget -q -O - http://127.0.0.1:8081/")});
  EXPECT_EQ(shared.exit_code, 0) << shared.describe();
  EXPECT_EQ(shared.out, "hello-shared-ns\n");
  // Same namespace: the same eth0 address.
  const std::string owner_ip = ok({"exec", "netowner", "ip", "-4", "-o", "addr", "show", "eth0"});
  const std::string guest_ip = ok({"run", "--rm", "--network", "container:netowner", kImage, "ip", "-4", "-o",
                                   "addr", "show", "eth0"});
  EXPECT_FALSE(owner_ip.empty());
  EXPECT_EQ(owner_ip, guest_ip);
}

// --- volumes ---

TEST_F(Containers, NamedVolumeSurvivesContainerRemoval) {
  require_image();
  Cleanup cleanup{this, {"voluser"}, {}, {"e2e-vol"}};
  ok({"volume", "create", "e2e-vol"});
  EXPECT_NE(ok({"volume", "ls", "--format", "{{.Name}} {{.Driver}}"}).find("e2e-vol local"), std::string::npos);
  const std::string mountpoint = inspect("{{.Mountpoint}}", "e2e-vol");
  EXPECT_EQ(mountpoint, "/var/lib/berth/volumes/e2e-vol/_data");

  must({"run", "--name", "voluser", "-v", "e2e-vol:/data", kImage, "sh", "-c", "echo persisted > /data/f"});
  ok({"rm", "voluser"});
  EXPECT_EQ(ok({"run", "--rm", "-v", "e2e-vol:/data", kImage, "cat", "/data/f"}), "persisted");
  EXPECT_EQ(trim(vm().ssh("cat " + mountpoint + "/f").out), "persisted");

  // Mounted read-only, it refuses writes.
  ok({"run", "--rm", "-v", "e2e-vol:/data:ro", kImage, "sh", "-c", "! touch /data/ro-test"});

  ok({"run", "-d", "--name", "voluser", "-v", "e2e-vol:/data", kImage, "sleep", "300"});
  auto busy = docker({"volume", "rm", "e2e-vol"});
  EXPECT_NE(busy.exit_code, 0);
  EXPECT_NE(busy.err.find("volume is in use"), std::string::npos) << busy.err;
  ok({"rm", "-f", "voluser"});
  ok({"volume", "rm", "e2e-vol"});
  auto gone = docker({"volume", "inspect", "e2e-vol"});
  EXPECT_NE(gone.exit_code, 0);
  EXPECT_TRUE(contains_icase(gone.err, "no such volume")) << gone.err;
}

TEST_F(Containers, EmptyVolumeIsSeededFromTheImage) {
  require_image();
  Cleanup cleanup{this, {}, {}, {"e2e-seed"}};
  // A new volume over the image's /etc starts with the image's files, as with dockerd.
  EXPECT_EQ(ok({"run", "--rm", "-v", "e2e-seed:/etc", kImage, "cat", "/etc/group"}).substr(0, 5), "root:");
  const std::string mountpoint = inspect("{{.Mountpoint}}", "e2e-seed");
  EXPECT_EQ(trim(vm().ssh("head -c 5 " + mountpoint + "/passwd").out), "root:");
  // A volume that has content already is left as it is.
  ok({"run", "--rm", "-v", "e2e-seed:/etc", kImage, "sh", "-c", "rm /etc/group"});
  EXPECT_NE(docker({"run", "--rm", "-v", "e2e-seed:/etc", kImage, "cat", "/etc/group"}).exit_code, 0);
}

TEST_F(Containers, BindMountsPublishAllFollowImportAndAnonymousVolumes) {
  require_image();
  Cleanup cleanup{this, {"puball", "anon"}};
  // A bind mount of a directory in the VM, both ways.
  ASSERT_EQ(vm().ssh("mkdir -p /var/lib/berth/e2e-bind && echo from-vm > /var/lib/berth/e2e-bind/f").exit_code, 0);
  EXPECT_EQ(ok({"run", "--rm", "-v", "/var/lib/berth/e2e-bind:/b", kImage, "sh", "-c", "cat /b/f; echo from-ctr > /b/g"}),
            "from-vm");
  EXPECT_EQ(trim(vm().ssh("cat /var/lib/berth/e2e-bind/g").out), "from-ctr");
  vm().ssh("rm -rf /var/lib/berth/e2e-bind");

  // -P publishes an exposed port on an ephemeral host port.
  must({"run", "-d", "--name", "puball", "--expose", "80", "-P", kImage, "sh", "-c", serve("published-all")});
  const std::string binding = lines(ok({"port", "puball", "80/tcp"})).at(0);
  std::smatch m;
  ASSERT_TRUE(std::regex_match(binding, m, std::regex(R"(0\.0\.0\.0:(\d+))"))) << binding;
  EXPECT_GE(std::stoi(m[1]), 1024);
  auto fetched = vm().ssh(retry("timeout 3 wget -q -O - http://10.0.2.15:" + m[1].str() + "/", 10));
  EXPECT_EQ(fetched.out, "published-all\n") << fetched.describe();

  // logs -f follows until the container exits.
  const std::string follow = must({"run", "-d", kImage, "sh", "-c", "echo first; sleep 2; echo second"});
  cleanup.containers.push_back(follow);
  auto followed = docker({"logs", "-f", follow}, 30s);
  EXPECT_FALSE(followed.timed_out) << "logs -f did not end with the container";
  EXPECT_EQ(followed.out, "first\nsecond\n") << followed.describe();

  // import: the test image's layer as a root file system tarball.
  const fs::path rootfs = vm().scratch() / "rootfs.tar";
  auto layer = run({"bash", "-c", "tar -xOf " + image_.tarball.string() + " \"$(tar -xOf " +
                                      image_.tarball.string() + " manifest.json | jq -r '.[0].Layers[0]')\" > " +
                                      rootfs.string()});
  ASSERT_EQ(layer.exit_code, 0) << layer.describe();
  auto imported = docker({"import", rootfs.string(), "e2e/imported:v1"}, 120s);
  ASSERT_EQ(imported.exit_code, 0) << imported.describe();
  EXPECT_TRUE(std::regex_search(imported.out, std::regex("sha256:[0-9a-f]{64}"))) << imported.out;
  EXPECT_EQ(ok({"images", "--filter", "reference=e2e/imported", "--format", "{{.Repository}}:{{.Tag}}"}),
            "e2e/imported:v1");
  EXPECT_EQ(ok({"run", "--rm", "e2e/imported:v1", "/bin/echo", "imported"}), "imported");
  ok({"rmi", "e2e/imported:v1"});

  // An anonymous volume goes with `rm -v`.
  must({"run", "--name", "anon", "-v", "/data", kImage, "touch", "/data/x"});
  const std::string volume = inspect("{{range .Mounts}}{{.Name}}{{end}}", "anon");
  EXPECT_TRUE(std::regex_match(volume, std::regex("[0-9a-f]{64}"))) << volume;
  EXPECT_EQ(ok({"volume", "inspect", "-f", "{{.Name}}", volume}), volume);
  ok({"rm", "-v", "anon"});
  EXPECT_NE(docker({"volume", "inspect", volume}).exit_code, 0) << "rm -v keeps the anonymous volume";
}

// --- registry ---

TEST_F(Containers, PullFromHostRegistryAndPushBack) {
  require_image();
  const std::string remote = registry_->guest_address() + "/busybox:latest";
  docker({"rmi", remote});
  auto pull = docker({"pull", remote}, 180s);
  ASSERT_EQ(pull.exit_code, 0) << pull.describe();
  EXPECT_NE(pull.out.find("Status: Downloaded newer image for " + remote), std::string::npos) << pull.out;
  EXPECT_NE(pull.out.find("Digest: sha256:"), std::string::npos) << pull.out;
  EXPECT_EQ(inspect("{{.Id}}", remote), image_.id) << "skopeo kept the config, so the image ID is the same";
  auto again = docker({"pull", remote}, 120s);
  EXPECT_NE(again.out.find("Image is up to date for " + remote), std::string::npos) << again.describe();
  EXPECT_EQ(ok({"run", "--rm", remote, "echo", "pulled"}), "pulled");

  // By digest, as the registry names it.
  auto digest = run({"skopeo", "inspect", "--tls-verify=false", "--format", "{{.Digest}}",
                     "docker://" + registry_->host_address() + "/busybox:latest"},
                    {}, 60s);
  ASSERT_EQ(digest.exit_code, 0) << digest.describe();
  const std::string by_digest = registry_->guest_address() + "/busybox@" + trim(digest.out);
  auto pull_digest = docker({"pull", by_digest}, 120s);
  EXPECT_EQ(pull_digest.exit_code, 0) << pull_digest.describe();
  EXPECT_NE(inspect("{{json .RepoDigests}}", remote).find(trim(digest.out)), std::string::npos);

  // push a new name; the registry then serves it with our config.
  const std::string pushed = registry_->guest_address() + "/pushed:v1";
  ok({"tag", kImage, pushed});
  auto push = docker({"push", pushed}, 180s);
  ASSERT_EQ(push.exit_code, 0) << push.describe();
  EXPECT_NE(push.out.find("v1: digest: sha256:"), std::string::npos) << push.out;
  auto raw = run({"skopeo", "inspect", "--tls-verify=false", "--raw",
                  "docker://" + registry_->host_address() + "/pushed:v1"},
                 {}, 60s);
  ASSERT_EQ(raw.exit_code, 0) << raw.describe();
  EXPECT_EQ(nlohmann::json::parse(raw.out).at("config").at("digest"), image_.id) << raw.out;
  auto config = run({"skopeo", "inspect", "--tls-verify=false", "--config",
                     "docker://" + registry_->host_address() + "/pushed:v1"},
                    {}, 60s);
  EXPECT_EQ(nlohmann::json::parse(config.out).at("rootfs").at("diff_ids"), nlohmann::json::array({image_.diff_id}));
  docker({"rmi", pushed, remote});
  docker({"rmi", by_digest});

  // A repository the registry lacks: an error, promptly.
  auto missing = docker({"pull", registry_->guest_address() + "/nothere:latest"}, 60s);
  EXPECT_FALSE(missing.timed_out);
  EXPECT_NE(missing.exit_code, 0);
  EXPECT_TRUE(contains_icase(missing.err, "not found") || contains_icase(missing.err, "manifest unknown"))
      << missing.err;
}

// --- bad input ---

TEST_F(Containers, BadInputGetsDockerdErrors) {
  require_image();
  Cleanup cleanup{this, {"dup"}};
  // Unknown image: 404 with dockerd's text.
  auto unknown = docker({"create", "--pull", "never", "no-such-image:v9"});
  EXPECT_NE(unknown.exit_code, 0) << unknown.describe();
  EXPECT_FALSE(unknown.timed_out);
  EXPECT_NE(unknown.err.find("No such image: no-such-image:v9"), std::string::npos) << unknown.err;
  auto [status404, body404] = vm().api("GET", "/v1.47/images/no-such-image:v9/json");
  EXPECT_EQ(status404, 404);
  EXPECT_EQ(message_of(body404), "No such image: no-such-image:v9") << body404;
  auto rmi = docker({"rmi", "no-such-image:v9"});
  EXPECT_NE(rmi.err.find("No such image: no-such-image:v9"), std::string::npos) << rmi.err;

  // Bad port specs: the CLI refuses its own; the API refuses what reaches it.
  auto cli_port = docker({"run", "--rm", "-p", "80:notaport", kImage, "true"});
  EXPECT_EQ(cli_port.exit_code, 125) << cli_port.describe();
  EXPECT_NE(cli_port.err.find("invalid"), std::string::npos) << cli_port.err;
  auto [status_port, body_port] = vm().api(
      "POST", "/v1.47/containers/create",
      R"({"Image":"busybox:latest","Cmd":["true"],"HostConfig":{"PortBindings":{"80/tcp":[{"HostPort":"notaport"}]}}})");
  EXPECT_EQ(status_port, 400) << body_port;
  EXPECT_EQ(message_of(body_port), "invalid port specification: \"notaport\"") << body_port;

  // Malformed and oversize JSON bodies.
  auto [status_json, body_json] = vm().api("POST", "/v1.47/containers/create", "{\"Image\": \"busybox");
  EXPECT_EQ(status_json, 400) << body_json;
  EXPECT_FALSE(message_of(body_json).empty()) << body_json;
  std::string big = "{\"Image\":\"busybox\",\"Cmd\":[\"" + std::string(2u << 20, 'a') + "\"]}";
  auto [status_big, body_big] = vm().api("POST", "/v1.47/containers/create", big);
  EXPECT_EQ(status_big, 413) << body_big.substr(0, 200);
  EXPECT_NE(message_of(body_big).find("too large"), std::string::npos) << body_big.substr(0, 200);

  // Name conflict: 409 with dockerd's sentence.
  const std::string id = must({"create", "--name", "dup", kImage, "true"});
  auto conflict = docker({"run", "--name", "dup", kImage, "true"});
  EXPECT_EQ(conflict.exit_code, 125) << conflict.describe();
  EXPECT_NE(conflict.err.find("Conflict. The container name \"/dup\" is already in use by container \"" + id +
                              "\". You have to remove (or rename) that container to be able to reuse that name."),
            std::string::npos)
      << conflict.err;

  // An image in use by a container cannot be removed without -f.
  auto in_use = docker({"rmi", kImage});
  EXPECT_NE(in_use.exit_code, 0);
  EXPECT_NE(in_use.err.find("is using its referenced image"), std::string::npos) << in_use.err;

  // Truncated and non-tar archives: errors, not hangs; nothing new is listed.
  const std::string before = ok({"images", "-q"});
  const fs::path truncated = vm().scratch() / "truncated.tar";
  {
    std::string whole = read_text(image_.tarball);
    write_text(truncated, whole.substr(0, whole.size() / 2));
  }
  auto load = docker({"load", "-i", truncated.string()}, 60s);
  EXPECT_FALSE(load.timed_out);
  EXPECT_NE(load.exit_code, 0) << load.describe();
  EXPECT_NE(load.err.find("Error response from daemon"), std::string::npos) << load.err;
  const fs::path junk = vm().scratch() / "junk.tar";
  write_text(junk, std::string(4096, 'x'));
  auto load_junk = docker({"load", "-i", junk.string()}, 60s);
  EXPECT_FALSE(load_junk.timed_out);
  EXPECT_NE(load_junk.exit_code, 0) << load_junk.describe();
  EXPECT_EQ(ok({"images", "-q"}), before);
  // And the agent still answers.
  EXPECT_EQ(ok({"run", "--rm", kImage, "echo", "still-alive"}), "still-alive");
}

// --- persistence ---

TEST_F(Containers, AgentRestartKeepsState) {
  require_image();
  Cleanup cleanup{this, {"keep-run", "keep-exited"}, {"e2e-keep"}};
  ok({"network", "create", "e2e-keep"});
  const std::string running = must({"run", "-d", "--name", "keep-run", "--network", "e2e-keep", kImage, "sleep", "600"});
  const std::string exited = must({"run", "-d", "--name", "keep-exited", kImage, "echo", "kept-log"});
  EXPECT_EQ(ok({"wait", "keep-exited"}), "0");
  const std::string before = ok({"ps", "-a", "--no-trunc", "--format", "{{.ID}} {{.Names}}"});

  auto check = [&](const std::string& how) {
    SCOPED_TRACE(how);
    EXPECT_TRUE(eventually([&] { return docker({"version"}, 20s).ok(); }, 60s, 500ms));
    const std::string after = ok({"ps", "-a", "--no-trunc", "--format", "{{.ID}} {{.Names}}"});
    EXPECT_EQ(after, before);
    EXPECT_EQ(inspect("{{.Id}}", "keep-run"), running);
    EXPECT_EQ(inspect("{{.Id}}", "keep-exited"), exited);
    EXPECT_EQ(ok({"logs", "keep-exited"}), "kept-log");
    EXPECT_EQ(inspect("{{.Id}}", kImage), image_.id);
    EXPECT_NE(ok({"network", "ls", "--format", "{{.Name}}"}).find("e2e-keep"), std::string::npos);
    // The kept containers still work.
    if (inspect("{{.State.Running}}", "keep-run") != "true") ok({"start", "keep-run"});
    EXPECT_EQ(ok({"exec", "keep-run", "echo", "alive"}), "alive");
  };

  // As `berth provision` restarts it: the service script (SIGTERM, then start).
  auto restart = vm().ssh("/etc/berth/berth-agent.sh restart", 90s);
  ASSERT_EQ(restart.exit_code, 0) << restart.describe();
  check("graceful restart");

  // A crash: SIGKILL, then the service script starts it again.
  auto crash = vm().ssh("kill -KILL $(cat /run/berth-agent.pid) && sleep 1 && /etc/berth/berth-agent.sh start", 90s);
  ASSERT_EQ(crash.exit_code, 0) << crash.describe();
  check("after SIGKILL");
}

TEST_F(Containers, RebootBringsBackRestartAlways) {
  require_image();
  Cleanup cleanup{this, {"always", "never"}, {}, {"e2e-boot"}};
  must({"run", "-d", "--name", "always", "--restart", "always", "-v", "e2e-boot:/data", kImage, "sh", "-c",
      "date >> /data/boots; exec sleep 100000"});
  must({"run", "-d", "--name", "never", kImage, "sleep", "100000"});
  EXPECT_EQ(inspect("{{.HostConfig.RestartPolicy.Name}}", "always"), "always");

  auto restart = vm().berth({"restart", kMachine}, 300s);
  ASSERT_EQ(restart.exit_code, 0) << restart.describe();
  vm().refresh_docker_env();
  EXPECT_TRUE(eventually([&] { return inspect("{{.State.Running}}", "always") == "true"; }, 90s, 1s))
      << docker({"ps", "-a"}).out;
  EXPECT_EQ(inspect("{{.State.Running}}", "never"), "false");
  EXPECT_EQ(ok({"exec", "always", "sh", "-c", "wc -l < /data/boots"}), "2") << "it ran once per boot";
  EXPECT_EQ(inspect("{{.Id}}", kImage), image_.id) << "images are on the data disk";
}


// --- events (GET /events, followed by the host-side port forwarder) ---

std::string query_escape(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == ':') {
      out += static_cast<char>(c);
    } else {
      char buf[4];
      std::snprintf(buf, sizeof buf, "%%%02X", c);
      out += buf;
    }
  }
  return out;
}

// "2026-01-02T03:04:05.123456789Z" (UTC, as the agent writes FinishedAt) -> unix nanoseconds.
std::int64_t rfc3339_nanos(const std::string& text) {
  std::tm tm{};
  if (text.size() < 20 || !strptime(text.substr(0, 19).c_str(), "%Y-%m-%dT%H:%M:%S", &tm)) return 0;
  std::int64_t nanos = static_cast<std::int64_t>(timegm(&tm)) * 1000000000LL;
  if (text[19] == '.') {
    std::string frac;
    for (std::size_t i = 20; i < text.size() && std::isdigit(static_cast<unsigned char>(text[i])); ++i)
      frac += text[i];
    frac.resize(9, '0');
    nanos += std::stoll(frac.substr(0, 9));
  }
  return nanos;
}

TEST_F(Containers, EventsReplayALifecycleInOrderWithDockerdsFields) {
  require_image();
  // The agent's clock (dockerd's SystemTime), so since/until bracket its event stamps.
  auto guest_now = [&] { return ok({"info", "--format", "{{.SystemTime}}"}); };
  // GET /events over the wire, one JSON message per line.
  auto raw_events = [&](const std::string& since, const std::string& until, const std::string& filters) {
    auto [status, body] = vm().api("GET", "/v1.47/events?since=" + query_escape(since) + "&until=" +
                                              query_escape(until) + "&filters=" + query_escape(filters));
    EXPECT_EQ(status, 200) << body;
    std::vector<nlohmann::json> out;
    for (const std::string& line : lines(body)) {
      if (line.empty()) continue;
      out.push_back(nlohmann::json::parse(line, nullptr, false));
      std::cout << "event: " << line << "\n";
    }
    return out;
  };
  Cleanup cleanup{this, {"ev-life"}};
  const std::string t0 = guest_now();
  const std::string id = must({"run", "-d", "--name", "ev-life", "-p", "8080:80", kImage, "sh", "-c",
                               "trap 'exit 0' TERM; while :; do sleep 0.2; done"});
  ok({"stop", "-t", "20", "ev-life"});
  ok({"rm", "ev-life"});
  const std::string t1 = guest_now();

  // The real docker CLI, a closed window: it prints and exits.
  auto cli = docker({"events", "--since", t0, "--until", t1, "--filter", "container=ev-life", "--format",
                     "{{.Type}} {{.Action}} {{index .Actor.Attributes \"signal\"}}{{index .Actor.Attributes \"exitCode\"}}"},
                    30s);
  ASSERT_EQ(cli.exit_code, 0) << cli.describe();
  std::vector<std::string> got;
  for (const std::string& l : lines(trim(cli.out))) got.push_back(trim(l));
  EXPECT_EQ(got, (std::vector<std::string>{"container create", "container start", "container kill 15",
                                           "container die 0", "container stop", "container destroy"}))
      << cli.out;

  // The wire format, as dockerd sends it.
  auto evs = raw_events(t0, t1, R"({"container":["ev-life"]})");
  ASSERT_EQ(evs.size(), 6u);
  const auto& start = evs[1];
  EXPECT_EQ(start["status"], "start");
  EXPECT_EQ(start["id"], id);
  EXPECT_EQ(start["from"], kImage);
  EXPECT_EQ(start["Type"], "container");
  EXPECT_EQ(start["Action"], "start");
  EXPECT_EQ(start["Actor"]["ID"], id);
  EXPECT_EQ(start["Actor"]["Attributes"]["name"], "ev-life");
  EXPECT_EQ(start["Actor"]["Attributes"]["image"], kImage);
  EXPECT_EQ(start["scope"], "local");
  ASSERT_TRUE(start["time"].is_number_integer() && start["timeNano"].is_number_integer());
  EXPECT_EQ(start["time"].get<std::int64_t>(), start["timeNano"].get<std::int64_t>() / 1000000000);
  for (std::size_t i = 1; i < evs.size(); ++i)
    EXPECT_GE(evs[i]["timeNano"].get<std::int64_t>(), evs[i - 1]["timeNano"].get<std::int64_t>());
  EXPECT_EQ(evs[3]["Actor"]["Attributes"]["exitCode"], "0");
  EXPECT_TRUE(evs[3]["Actor"]["Attributes"].contains("execDuration"));

  // The bridge connect and disconnect name the container.
  auto nets = raw_events(t0, t1, R"({"type":["network"]})");
  std::vector<std::string> net_actions;
  for (const auto& e : nets)
    if (e["Actor"]["Attributes"].value("container", "") == id) net_actions.push_back(e["Action"]);
  EXPECT_EQ(net_actions, (std::vector<std::string>{"connect", "disconnect"}));
  for (const auto& e : nets) EXPECT_FALSE(e.contains("status")) << e.dump();
}

TEST_F(Containers, EventsFollowExitsOnTheirOwnAndPolicyRestartsPromptly) {
  require_image();
  Cleanup cleanup{this, {"ev-probe", "ev-exit", "ev-again"}};
  SpawnOptions options;
  options.env = vm().docker_env();
  Process follow = Process::start({"docker", "events", "--filter", "type=container", "--format",
                                   "{{.Action}} {{.Actor.Attributes.name}} {{index .Actor.Attributes \"exitCode\"}}|{{.TimeNano}}"},
                                  options);
  // The stream is live once an event made now shows up.
  const auto probe_deadline = std::chrono::steady_clock::now() + 30s;
  bool live = false;
  while (!live && std::chrono::steady_clock::now() < probe_deadline) {
    docker({"rm", "-f", "ev-probe"});
    must({"create", "--name", "ev-probe", kImage, "true"});
    live = eventually([&] { return follow.stdout_so_far().find("create ev-probe") != std::string::npos; }, 3s);
  }
  ASSERT_TRUE(live) << follow.stdout_so_far() << follow.stderr_so_far();

  // Arrival times on this side of the TLS stream.
  auto arrival = [&](const std::string& line, std::chrono::milliseconds timeout) {
    std::optional<std::chrono::steady_clock::time_point> at;
    eventually(
        [&] {
          if (follow.stdout_so_far().find(line) == std::string::npos) return false;
          at = std::chrono::steady_clock::now();
          return true;
        },
        timeout, 5ms);
    return at;
  };
  must({"run", "-d", "--name", "ev-exit", kImage, "sh", "-c", "sleep 1; exit 3"});
  auto started = arrival("start ev-exit", 20s);
  ASSERT_TRUE(started) << follow.stdout_so_far();
  auto died = arrival("die ev-exit 3", 20s);
  ASSERT_TRUE(died) << follow.stdout_so_far();
  const auto gap = std::chrono::duration_cast<std::chrono::milliseconds>(*died - *started);
  std::cout << "start -> die of a 1 s container, as seen by `docker events`: " << gap.count() << " ms\n";
  EXPECT_GE(gap, 500ms);
  EXPECT_LT(gap, 2500ms) << "die must arrive within 1.5 s of the exit";
  // On the agent's clock: from the process's exit (State.FinishedAt) to the die event.
  const std::string out = follow.stdout_so_far();
  const auto die_line = out.find("die ev-exit 3|");
  ASSERT_NE(die_line, std::string::npos);
  const std::int64_t die_nano = std::stoll(out.substr(die_line + 14, out.find('\n', die_line) - die_line - 14));
  // The die event goes out before the network teardown; the record says "exited" once that is done.
  EXPECT_TRUE(eventually([&] { return inspect("{{.State.Status}}", "ev-exit") == "exited"; }, 20s, 100ms));
  const std::int64_t finished_nano = rfc3339_nanos(inspect("{{.State.FinishedAt}}", "ev-exit"));
  std::cout << "exit -> die event on the agent: " << (die_nano - finished_nano) / 1000000 << " ms\n";
  EXPECT_GE(die_nano, finished_nano);
  EXPECT_LT(die_nano - finished_nano, 1'500'000'000LL);

  // A restart policy: die, then start again, then die again (on-failure:1).
  must({"run", "-d", "--name", "ev-again", "--restart", "on-failure:1", kImage, "sh", "-c", "sleep 1; exit 5"});
  std::vector<std::string> seen;
  EXPECT_TRUE(eventually(
      [&] {
        seen.clear();
        for (const std::string& l : lines(follow.stdout_so_far()))
          if (l.find(" ev-again") != std::string::npos) seen.push_back(trim(l.substr(0, l.find('|'))));
        return seen.size() >= 5;
      },
      30s, 50ms));
  EXPECT_EQ(seen, (std::vector<std::string>{"create ev-again", "start ev-again", "die ev-again 5",
                                            "start ev-again", "die ev-again 5"}));
  EXPECT_TRUE(follow.running()) << "the stream stays open";
  follow.signal(SIGINT);
  auto end = follow.wait(10s);
  EXPECT_FALSE(end.timed_out);
}


TEST_F(Containers, EventsForImagesVolumesAndNetworks) {
  require_image();
  Cleanup cleanup{this, {}, {"ev-net"}, {"ev-vol"}};
  const std::string t0 = ok({"info", "--format", "{{.SystemTime}}"});
  ok({"tag", kImage, "ev-tag:1"});
  ok({"rmi", "ev-tag:1"});
  ok({"volume", "create", "ev-vol"});
  ok({"volume", "rm", "ev-vol"});
  const std::string net_id = ok({"network", "create", "ev-net"});
  ok({"network", "rm", "ev-net"});
  const std::string t1 = ok({"info", "--format", "{{.SystemTime}}"});
  auto cli = docker({"events", "--since", t0, "--until", t1, "--format",
                     "{{.Type}} {{.Action}} {{.Actor.ID}} {{index .Actor.Attributes \"name\"}}"},
                    30s);
  ASSERT_EQ(cli.exit_code, 0) << cli.describe();
  std::vector<std::string> got;
  for (const std::string& l : lines(trim(cli.out))) got.push_back(trim(l));
  EXPECT_EQ(got, (std::vector<std::string>{"image tag " + image_.id + " ev-tag:1",
                                           "image untag " + image_.id + " " + image_.id,
                                           "volume create ev-vol",
                                           "volume destroy ev-vol",
                                           "network create " + net_id + " ev-net",
                                           "network destroy " + net_id + " ev-net"}))
      << cli.out;
  // Filters reach the server: only the volume's events.
  auto vol = docker({"events", "--since", t0, "--until", t1, "--filter", "volume=ev-vol", "--format",
                     "{{.Type}} {{.Action}}"},
                    30s);
  EXPECT_EQ(trim(vol.out), "volume create\nvolume destroy") << vol.describe();
}

}  // namespace
}  // namespace berth::it::containers
