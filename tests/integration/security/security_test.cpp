// berth-agent against hostile images, containers and peers, on the shared
// berth-os VM (tests/integration/containers/shared_vm.h) with the real docker
// CLI: images built here as docker-archive tarballs (make_image.py), a static
// probe (probe.c) that tries confined system calls and raw frames from inside
// a container or holds idle connections, and peers made inside the VM (a
// network namespace).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <regex>

#include "tests/integration/containers/harness.h"
#include "tests/integration/containers/shared_vm.h"

namespace berth::it::containers {
namespace {

const std::string kMachine = kSharedVmName;

// Python that writes hostile layer tarballs (tarfile, so entry order and kinds are exact).
const char* kHostileLayers = R"py(
import io, sys, tarfile
kind, out, outside = sys.argv[1], sys.argv[2], sys.argv[3]
with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as t:
    def add(name, type=tarfile.REGTYPE, data=b"", link=""):
        i = tarfile.TarInfo(name); i.type = type; i.linkname = link; i.size = len(data); i.mode = 0o644
        t.addfile(i, io.BytesIO(data) if data else None)
    if kind == "breakout":
        add("a", tarfile.SYMTYPE, link=outside)
        add("a/x/.wh.f")
        add("a/y/.wh..wh..opq")
        add("a/file", data=b"escaped\n")
    elif kind == "passwd-zero":
        add("etc/passwd", tarfile.SYMTYPE, link="/dev/zero")
        add("etc/group", tarfile.SYMTYPE, link="/dev/zero")
    elif kind == "passwd-fifo":
        add("etc/passwd", tarfile.FIFOTYPE)
        add("etc/group", tarfile.FIFOTYPE)
)py";

class Security : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    try {
      lease_ = std::make_unique<SharedVmLease>();
      const fs::path dir = vm().scratch() / "security-images";
      fs::create_directories(dir / "probe-root");
      fs::copy_file(BERTH_PROBE_BINARY, dir / "probe-root" / "probe", fs::copy_options::overwrite_existing);
      outside_ = "/tmp/berth-breakout-" + std::to_string(::getpid());
      for (const char* kind : {"breakout", "passwd-zero", "passwd-fifo"}) {
        auto r = run({"python3", "-c", kHostileLayers, kind, (dir / (std::string(kind) + ".layer")).string(),
                      outside_});
        if (!r.ok()) throw std::runtime_error("writing the hostile layer failed: " + r.describe());
      }
      const std::string base = lease_->vm().image.tarball.string();
      make(dir, "probe", {"--from", base, "--layer", (dir / "probe-root").string()});
      make(dir, "hostile-volumes", {"--from", base, "--config", R"({"Volumes":{"/:/host":{}}})"});
      make(dir, "breakout", {"--from", base, "--layer", (dir / "breakout.layer").string()});
      make(dir, "passwd-zero", {"--from", base, "--layer", (dir / "passwd-zero.layer").string()});
      make(dir, "passwd-fifo", {"--from", base, "--layer", (dir / "passwd-fifo.layer").string()});
      for (const char* image : {"probe", "hostile-volumes", "passwd-zero", "passwd-fifo"}) {
        auto load = vm().docker({"load", "-i", (dir / (std::string(image) + ".tar")).string()}, 120s);
        if (!load.ok()) throw std::runtime_error(std::string("docker load ") + image + ": " + load.describe());
      }
      images_ = dir;
    } catch (const std::exception& e) {
      setup_error_ = std::string("suite setup failed: ") + e.what();
    }
  }
  static void TearDownTestSuite() {
    if (lease_)
      for (const char* image : {"probe", "hostile-volumes", "passwd-zero", "passwd-fifo"})
        vm().docker({"rmi", "-f", std::string(image) + ":latest"});
    lease_.reset();
  }
  void SetUp() override { ASSERT_TRUE(setup_error_.empty()) << setup_error_; }

  static Machine& vm() { return *lease_->vm().machine; }

  static void make(const fs::path& dir, const std::string& name, std::vector<std::string> args) {
    std::vector<std::string> argv = {"python3", (source_dir() / "tests/integration/support/make_image.py").string(),
                                     (dir / (name + ".tar")).string(), name + ":latest"};
    argv.insert(argv.end(), args.begin(), args.end());
    auto r = run(argv, {}, 60s);
    if (!r.ok()) throw std::runtime_error("make_image.py " + name + ": " + r.describe());
  }

  // `docker run --rm [opts] probe:latest /probe WHAT...`: {exit code, trimmed stdout}.
  static std::pair<int, std::string> probe(std::vector<std::string> opts, std::vector<std::string> what) {
    std::vector<std::string> args = {"run", "--rm"};
    args.insert(args.end(), opts.begin(), opts.end());
    args.push_back("probe:latest");
    args.push_back("/probe");
    args.insert(args.end(), what.begin(), what.end());
    auto r = vm().docker(args, 120s);
    return {r.exit_code, trim(r.out) + (r.exit_code == 125 ? r.err : "")};
  }

  static RunResult ssh(const std::string& script, std::chrono::milliseconds timeout = 60s) {
    return vm().ssh(script, timeout);
  }

  static inline std::unique_ptr<SharedVmLease> lease_;
  static inline std::string setup_error_;
  static inline fs::path images_;
  static inline std::string outside_;
};

// An image's config said "Volumes":{"/:/host":{}} and got the VM's / read-write.
TEST_F(Security, AnImagesVolumesAreAnonymousVolumesNeverTheMachinesFiles) {
  auto made = vm().docker({"create", "--name", "hv", "hostile-volumes:latest", "ls", "-A", "/:/host"});
  ASSERT_TRUE(made.ok()) << made.describe();
  auto mounts = nlohmann::json::parse(vm().docker({"inspect", "-f", "{{json .Mounts}}", "hv"}).out);
  ASSERT_EQ(mounts.size(), 1u) << mounts.dump();
  EXPECT_EQ(mounts[0]["Type"], "volume");
  EXPECT_EQ(mounts[0]["Destination"], "/:/host");
  EXPECT_TRUE(mounts[0]["Source"].get<std::string>().starts_with("/var/lib/berth/volumes/")) << mounts.dump();
  auto listed = vm().docker({"start", "-a", "hv"}, 60s);
  EXPECT_TRUE(listed.ok()) << listed.describe();
  EXPECT_EQ(trim(listed.out), "") << "the anonymous volume starts empty, not with the machine's /";
  vm().docker({"rm", "-f", "-v", "hv"});
}

TEST_F(Security, ALayerThatWritesThroughItsOwnSymlinkIsRefused) {
  auto load = vm().docker({"load", "-i", (images_ / "breakout.tar").string()}, 120s);
  EXPECT_FALSE(load.ok()) << "a layer writing through its own symlink loaded: " << load.describe();
  auto outside = ssh("ls -la " + outside_ + " 2>&1; test -e " + outside_);
  EXPECT_FALSE(outside.ok()) << "the layer created " << outside_ << " on the machine: " << outside.out;
  EXPECT_TRUE(vm().docker({"version"}).ok());
}

TEST_F(Security, AUsersLookupNeverReadsADeviceOrWaitsOnAFifo) {
  for (const char* image : {"passwd-zero:latest", "passwd-fifo:latest"}) {
    auto t0 = std::chrono::steady_clock::now();
    auto r = vm().docker({"run", "--rm", "-u", "app", image, "true"}, 60s);
    EXPECT_FALSE(r.ok()) << image;
    EXPECT_NE(r.err.find("unable to find user app"), std::string::npos) << image << ": " << r.describe();
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 20s) << image;
    auto root = vm().docker({"run", "--rm", "-u", "0:0", image, "true"}, 60s);
    EXPECT_TRUE(root.ok()) << image << ": a numeric user needs no lookup: " << root.describe();
  }
  auto rss = ssh("grep VmRSS /proc/$(cat /run/berth-agent.pid)/status");
  std::smatch m;
  ASSERT_TRUE(std::regex_search(rss.out, m, std::regex(R"(VmRSS:\s+(\d+) kB)"))) << rss.describe();
  EXPECT_LT(std::stol(m[1]), 200 * 1024) << "the agent grew reading /dev/zero";
}

TEST_F(Security, TheDefaultSeccompProfileBlocksWhatDockerdsBlocks) {
  for (const char* call : {"unshare-user", "keyctl", "mount"})
    EXPECT_EQ(probe({}, {call}), std::make_pair(1, std::string("EPERM"))) << call << " in a default container";
  for (const char* call : {"unshare-user", "keyctl"})
    EXPECT_EQ(probe({"--security-opt", "seccomp=unconfined"}, {call}), std::make_pair(0, std::string("ok")))
        << call << " unconfined";
  for (const char* call : {"unshare-user", "keyctl", "mount"})
    EXPECT_EQ(probe({"--privileged"}, {call}), std::make_pair(0, std::string("ok"))) << call << " privileged";
  // The per-capability exceptions: CAP_SYS_ADMIN opens mount.
  EXPECT_EQ(probe({"--cap-add", "SYS_ADMIN"}, {"mount"}), std::make_pair(0, std::string("ok")));
  EXPECT_EQ(probe({"--cap-add", "SYS_ADMIN"}, {"keyctl"}), std::make_pair(1, std::string("EPERM")));
}

TEST_F(Security, ACustomProfileAndUnknownOptions) {
  const fs::path profile = vm().scratch() / "deny-mkdir.json";
  write_text(profile, R"({"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
    {"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO","errnoRet":13}]})");
  EXPECT_EQ(probe({"--security-opt", "seccomp=" + profile.string()}, {"mkdir", "/x"}),
            std::make_pair(1, std::string("EACCES")));
  EXPECT_EQ(probe({}, {"mkdir", "/x"}), std::make_pair(0, std::string("ok")));
  auto bad = vm().docker({"run", "--rm", "--security-opt", "bogus=1", "busybox:latest", "true"});
  EXPECT_EQ(bad.exit_code, 125);
  EXPECT_NE(bad.err.find("invalid --security-opt 2: \"bogus=1\""), std::string::npos) << bad.describe();
  auto info = vm().docker({"info", "--format", "{{json .SecurityOptions}}"});
  EXPECT_NE(info.out.find("name=seccomp,profile=builtin"), std::string::npos) << info.describe();
}

// A peer on the machine's network uses the machine as its router: only
// published ports may be reached (FORWARD policy DROP), and a port published
// on 127.0.0.1 not even then.
TEST_F(Security, ContainerPortsAreNotRoutableFromAPeer) {
  const std::string web = "mkdir -p /www && echo hi > /www/index.html && exec httpd -f -p 80 -h /www";
  ASSERT_TRUE(vm().docker({"run", "-d", "--name", "unpublished", "busybox:latest", "sh", "-c", web}).ok());
  ASSERT_TRUE(vm().docker({"run", "-d", "--name", "published", "-p", "18081:80", "busybox:latest", "sh", "-c", web}).ok());
  ASSERT_TRUE(vm().docker({"run", "-d", "--name", "loopback", "-p", "127.0.0.1:18082:80", "busybox:latest", "sh", "-c",
                           web}).ok());
  const std::string ip = trim(vm().docker({"inspect", "-f", "{{.NetworkSettings.IPAddress}}", "unpublished"}).out);
  ASSERT_FALSE(ip.empty());
  // The peer: a network namespace in the VM joined to it by a veth pair.
  auto r = ssh(
      "set -e; (unshare -n sleep 300 >/dev/null 2>&1 </dev/null & echo $! > /tmp/peer.pid); sleep 0.5; "
      "pid=$(cat /tmp/peer.pid); "
      // busybox's ip names the peer end itself (vethN): read it back.
      "ip link add bpeer0 type veth peer name bpeer1; "
      "peer=$(ip -o link show bpeer0 | sed -n 's/^[0-9]*: bpeer0@\\([^:]*\\):.*/\\1/p'); "
      "ip link set $peer netns $pid; "
      "ip addr add 10.99.0.1/30 dev bpeer0; ip link set bpeer0 up; "
      "nsenter -t $pid -n ip addr add 10.99.0.2/30 dev $peer; nsenter -t $pid -n ip link set $peer up; "
      "nsenter -t $pid -n ip link set lo up; nsenter -t $pid -n ip route add default via 10.99.0.1; "
      "for i in 1 2 3 4 5 6 7 8 9 10; do nsenter -t $pid -n ping -c1 -W1 10.99.0.1 >/dev/null && break; done");
  ASSERT_TRUE(r.ok()) << r.describe();
  // Dropped packets wait out the timeout: 3 s is plenty once a published port has answered.
  auto from_peer = [&](const std::string& url, int seconds = 3) {
    return ssh("nsenter -t $(cat /tmp/peer.pid) -n timeout " + std::to_string(seconds) + " wget -q -O - " + url, 30s);
  };
  EXPECT_TRUE(eventually([&] { return from_peer("http://10.99.0.1:18081/", 8).ok(); }, 20s, 500ms))
      << "a published port must answer a peer";
  auto unpublished = from_peer("http://" + ip + ":80/");
  EXPECT_FALSE(unpublished.ok()) << "an unpublished container port answered a routed packet: " << unpublished.out;
  auto loopback = from_peer("http://10.99.0.1:18082/");
  EXPECT_FALSE(loopback.ok()) << "a port published on 127.0.0.1 answered a peer: " << loopback.out;
  EXPECT_TRUE(ssh("timeout 8 wget -q -O - http://127.0.0.1:18082/").ok()) << "127.0.0.1 on the machine itself";
  EXPECT_TRUE(ssh("timeout 8 wget -q -O - http://" + ip + ":80/").ok()) << "the machine itself reaches containers";
  ssh("kill $(cat /tmp/peer.pid); ip link del bpeer0 2>/dev/null; true");
  vm().docker({"rm", "-f", "unpublished", "published", "loopback"});
}

// CVE-2020-8558: with route_localnet on the bridge, a frame for 127.0.0.1 sent
// to the gateway's MAC reached the machine's loopback-only services.
TEST_F(Security, RawFramesFromAContainerNeverReachTheMachinesLoopback) {
  // busybox nc has no UDP: the probe listens on the machine's 127.0.0.1.
  auto copied = vm().berth({"scp", BERTH_PROBE_BINARY, kMachine + ":/tmp/berth-probe"});
  ASSERT_TRUE(copied.ok()) << copied.describe();
  auto listen = ssh("rm -f /tmp/udp-got; (setsid /tmp/berth-probe udp-listen 127.0.0.1 5599 >/tmp/udp-got 2>&1 "
                    "</dev/null &); sleep 0.3; echo up");
  ASSERT_TRUE(listen.ok()) << listen.describe();
  auto sent = probe({}, {"udp-to-localhost", "5599"});
  EXPECT_EQ(sent, std::make_pair(0, std::string("sent")));
  std::this_thread::sleep_for(1s);
  auto got = ssh("cat /tmp/udp-got");
  EXPECT_EQ(got.out.find("berth-probe"), std::string::npos) << "the container reached 127.0.0.1:5599 on the machine";
  // The listener itself works.
  ssh("/tmp/berth-probe udp-send 127.0.0.1 5599 sanity");
  EXPECT_TRUE(eventually([&] { return ssh("cat /tmp/udp-got").out.find("sanity") != std::string::npos; }, 5s, 200ms));
  ssh("pkill -f 'berth-probe udp-listen'; true");
}

// 600 sockets that never start TLS used to hold all 512 connection slots.
// They are opened inside the machine, all at once: through QEMU's user-mode
// port forward (a listen backlog of 1) each connect took about 0.5 s.
TEST_F(Security, IdleSocketsDoNotLockOutTheDockerCli) {
  auto copied = vm().berth({"scp", BERTH_PROBE_BINARY, kMachine + ":/tmp/berth-probe"});
  ASSERT_TRUE(copied.ok()) << copied.describe();
  auto held = ssh("rm -f /tmp/held; (setsid /tmp/berth-probe hold-tcp 127.0.0.1 2376 600 30 >/tmp/held 2>&1 "
                  "</dev/null &); for i in $(seq 100); do grep -q connected /tmp/held && break; sleep 0.1; done; "
                  "cat /tmp/held");
  ASSERT_TRUE(held.ok()) << held.describe();
  const int connected = std::atoi(held.out.c_str());
  EXPECT_GE(connected, 590) << held.out;
  std::this_thread::sleep_for(1s);  // the agent has accepted them
  auto t0 = std::chrono::steady_clock::now();
  auto version = vm().docker({"version", "--format", "{{.Server.Version}}"}, 30s);
  auto took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_TRUE(version.ok()) << version.describe();
  // Well before the agent's 5 s handshake timeout would free slots anyway.
  EXPECT_LT(took, 3.0);
  std::printf("[ figures  ] docker version with %d idle sockets open: %.2f s\n", connected, took);
  ssh("pkill -f 'berth-probe hold-tcp'; true");
}

}  // namespace
}  // namespace berth::it::containers
