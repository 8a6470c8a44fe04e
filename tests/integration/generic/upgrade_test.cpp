// `berth upgrade` on a generic machine whose agent runs real containers: the
// new agent binary replaces the old one while container shims still execute
// it, the agent restarts, and the containers, images and volumes are all kept.
//
// The test host runs containers with Debian's crun (the .deb image/build.sh
// keeps in image/out/.cache/debs, else `apt-get download crun`), on cgroup2
// mounted inside the host and a tmpfs data root (overlayfs cannot use the
// host's overlay root as its upper layer). files/crun-wrapper.sh says what it
// takes out of a bundle for this sandbox.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <iterator>

#include "tests/integration/generic/berth_cli.h"

namespace berth::it {
namespace {

std::optional<fs::path> newest_deb(const fs::path& dir, const std::string& package) {
  std::optional<fs::path> best;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string f = e.path().filename().string();
    if (f.rfind(package + "_", 0) == 0 && f.size() > 10 && f.substr(f.size() - 10) == "_amd64.deb")
      if (!best || f > best->filename().string()) best = e.path();
  }
  return best;
}

fs::path cache_dir() {
  if (const char* c = std::getenv("BERTH_CACHE_DIR"); c && *c) return fs::path(c) / "debs";
  const char* home = std::getenv("HOME");
  return fs::path(home && *home ? home : "/root") / ".cache/berth/debs";
}

// Debian's crun .deb, as scripts/make-test-image.sh finds busybox-static.
fs::path crun_deb() {
  for (const fs::path& dir : {source_dir() / "image/out/.cache/debs", cache_dir()})
    if (auto deb = newest_deb(dir, "crun")) return *deb;
  fs::create_directories(cache_dir());
  auto r = run_bash("cd '" + cache_dir().string() + "' && apt-get download crun:amd64", {}, 120s);
  if (auto deb = newest_deb(cache_dir(), "crun")) return *deb;
  throw std::runtime_error("no crun .deb and apt-get download crun failed: " + r.describe());
}

std::string sha256_of(const fs::path& file) {
  auto r = run({"sha256sum", file.string()}, {}, 60s);
  if (!r.ok()) throw std::runtime_error("sha256sum " + file.string() + ": " + r.describe());
  return r.out.substr(0, 64);
}

// A throwaway SSH host that can run containers (see the top of this file).
void make_container_host(const TestHost& host, const fs::path& scratch) {
  const fs::path unpacked = scratch / "crun-deb";
  auto x = run({"dpkg-deb", "-x", crun_deb().string(), unpacked.string()}, {}, 60s);
  if (!x.ok()) throw std::runtime_error("dpkg-deb -x crun: " + x.describe());
  const fs::path root = host.root();
  fs::create_directories(root / "usr/local/lib/berth-test");
  fs::copy_file(unpacked / "usr/bin/crun", root / "usr/local/lib/berth-test/crun", fs::copy_options::overwrite_existing);
  fs::copy_file(source_dir() / "tests/integration/generic/files/crun-wrapper.sh", root / "usr/local/bin/crun",
                fs::copy_options::overwrite_existing);
  auto m = host.exec({"sh", "-c",
                      "set -e; mount -t cgroup2 none /sys/fs/cgroup; mkdir -p /var/lib/berth; "
                      "mount -t tmpfs -o mode=0700 berth-data /var/lib/berth; "
                      "chmod 0755 /usr/local/lib/berth-test/crun /usr/local/bin/crun; crun --version"});
  if (!m.ok()) throw std::runtime_error("preparing the host for containers: " + m.describe());
}

// "PID ARGS" lines of `host` whose command line contains `what`.
std::vector<std::string> processes_with(const TestHost& host, const std::string& what) {
  std::vector<std::string> found;
  for (const auto& line : lines(host.processes()))
    if (line.find(what) != std::string::npos) found.push_back(line);
  return found;
}

// The command line of a process (container processes have namespaces of their
// own, so the host's process list does not show them); "" once it is gone.
std::string cmdline_of(const std::string& pid) {
  std::ifstream in(fs::path("/proc") / pid / "cmdline", std::ios::binary);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::replace(text.begin(), text.end(), '\0', ' ');
  return trim(text);
}

// The berth-agent daemon's pid (not a shim's).
std::string agent_daemon_pid(const TestHost& host) {
  for (const auto& line : processes_with(host, "berth-agent --config")) return line.substr(0, line.find(' '));
  return "";
}

// Containers have their own namespaces, so taking the host down would not end
// them: this deletes every container crun knows there first (declare it after
// the TestHost, so it runs before the host goes down).
class ContainerReaper {
 public:
  explicit ContainerReaper(const TestHost& host) : host_(host) {}
  ContainerReaper(const ContainerReaper&) = delete;
  ContainerReaper& operator=(const ContainerReaper&) = delete;
  ~ContainerReaper() {
    try {
      host_.exec({"sh", "-c", "for id in $(crun list -q 2>/dev/null); do crun delete -f \"$id\"; done; "
                             "rmdir /sys/fs/cgroup/berth 2>/dev/null || true"}, 30s);
    } catch (const std::exception&) {
    }
  }

 private:
  const TestHost& host_;
};

class GenericUpgrade : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string why = testhost_unavailable_reason();
    ASSERT_TRUE(why.empty()) << why;
    ASSERT_TRUE(fs::exists(berth_binary())) << "no berth binary at " << berth_binary() << "; build 'berth'";
    ASSERT_TRUE(fs::exists(agent_binary())) << "no agent at " << agent_binary() << "; build 'berth-agent'";
  }

  // docker, pointed at `name` through `berth env`.
  RunResult docker(const std::string& name, const std::string& args, std::chrono::milliseconds timeout = 120s) {
    return cli.bash("set -e; eval \"$(berth env " + name + ")\"; docker " + args, timeout);
  }

  BerthCli cli;
};

TEST_F(GenericUpgrade, UpgradeKeepsRunningContainersImagesAndVolumes) {
  TestHost host("gen-up");
  ContainerReaper reaper(host);
  ASSERT_NO_THROW(make_container_host(host, cli.scratch()));
  const std::string name = "gen-up";
  auto created = cli.create(host, name);
  ASSERT_EQ(created.exit_code, 0) << created.describe();

  // An image, a volume with a file, and a running container using both.
  const fs::path image = cli.scratch() / "busybox.tar";
  auto made = run({(source_dir() / "scripts/make-test-image.sh").string(), image.string(), "busybox:latest"}, {}, 180s);
  ASSERT_TRUE(made.ok()) << made.describe();
  auto load = docker(name, "load -i '" + image.string() + "'");
  ASSERT_EQ(load.exit_code, 0) << load.describe();
  auto vol = docker(name, "volume create vol");
  ASSERT_EQ(vol.exit_code, 0) << vol.describe();
  auto fill = docker(name, "run --rm -v vol:/data busybox sh -c 'echo kept across upgrade > /data/file'");
  ASSERT_EQ(fill.exit_code, 0) << fill.describe();
  auto started = docker(name, "run -d --name keep -v vol:/data busybox sleep 1000");
  ASSERT_EQ(started.exit_code, 0) << started.describe();
  const std::string id = trim(started.out);
  ASSERT_EQ(id.size(), 64u) << started.describe();
  auto pid_before = docker(name, "inspect -f '{{.State.Pid}}' keep");
  ASSERT_EQ(pid_before.exit_code, 0) << pid_before.describe();
  const std::string container_pid = trim(pid_before.out);
  ASSERT_NE(container_pid, "0");
  const auto shims_before = processes_with(host, "berth-agent shim");
  ASSERT_FALSE(shims_before.empty()) << host.processes();
  ASSERT_EQ(cmdline_of(container_pid), "sleep 1000");
  const std::string agent_before = agent_daemon_pid(host);
  ASSERT_FALSE(agent_before.empty()) << host.processes();

  // A new agent: the same program with bytes appended, so the upload really
  // replaces the file the shims are executing (ETXTBSY if it were rewritten).
  const fs::path next = cli.scratch() / "berth-agent-next";
  fs::copy_file(agent_binary(), next);
  {
    std::ofstream out(next, std::ios::binary | std::ios::app);
    out << "\nberth upgrade test build\n";
  }
  fs::permissions(next, fs::perms::owner_all);
  const std::string next_sha = sha256_of(next);
  ASSERT_NE(next_sha, sha256_of(host.root() / "usr/local/bin/berth-agent"));

  auto up = cli.bash("BERTH_AGENT_BINARY='" + next.string() + "' berth upgrade " + name, 180s);
  ASSERT_EQ(up.exit_code, 0) << up.describe();
  EXPECT_NE(up.out.find(name + ": berth-agent "), std::string::npos) << up.describe();
  for (const char* step : {"upload berth-agent (", "update supervisor service (", "restart berth-agent ("})
    EXPECT_NE(up.err.find(step), std::string::npos) << up.describe();

  // The new binary is in place, and a new agent process runs it.
  EXPECT_EQ(sha256_of(host.root() / "usr/local/bin/berth-agent"), next_sha);
  const std::string agent_after = agent_daemon_pid(host);
  EXPECT_FALSE(agent_after.empty()) << host.processes();
  EXPECT_NE(agent_after, agent_before) << "the agent was not restarted";
  // The shims kept running from the old file, which was renamed over, not rewritten.
  for (const auto& shim : shims_before) {
    const std::string pid = shim.substr(0, shim.find(' '));
    std::error_code ec;
    const auto exe = fs::read_symlink(fs::path("/proc") / pid / "exe", ec);
    EXPECT_FALSE(ec) << "shim " << shim << " is gone after the upgrade";
    EXPECT_NE(exe.string().find("(deleted)"), std::string::npos) << shim << " runs " << exe;
  }

  // The same container, still running, with the same process.
  auto ps = docker(name, "ps --no-trunc --format '{{.ID}} {{.Names}} {{.State}}'");
  ASSERT_EQ(ps.exit_code, 0) << ps.describe();
  EXPECT_NE(ps.out.find(id + " keep running"), std::string::npos) << ps.describe();
  auto pid_after = docker(name, "inspect -f '{{.State.Pid}} {{.State.Running}}' keep");
  EXPECT_EQ(trim(pid_after.out), container_pid + " true") << pid_after.describe();
  EXPECT_EQ(cmdline_of(container_pid), "sleep 1000");
  auto top = docker(name, "top keep");
  EXPECT_EQ(top.exit_code, 0) << top.describe();
  EXPECT_NE(top.out.find(container_pid), std::string::npos) << top.describe();
  EXPECT_NE(top.out.find("sleep 1000"), std::string::npos) << top.describe();
  // The running container still sees its volume. (Read through its own root:
  // `docker exec` cannot work on this host, whose sshd is chrooted, so setns
  // into the container lands in the namespace's real root.)
  EXPECT_EQ(read_text(fs::path("/proc") / container_pid / "root/data/file"), "kept across upgrade\n");

  // The image and the volume.
  auto images = docker(name, "images --format '{{.Repository}}:{{.Tag}}'");
  EXPECT_NE(images.out.find("busybox:latest"), std::string::npos) << images.describe();
  auto vols = docker(name, "volume ls -q");
  EXPECT_NE(vols.out.find("vol"), std::string::npos) << vols.describe();
  auto read_back = docker(name, "run --rm -v vol:/data busybox cat /data/file");
  EXPECT_EQ(read_back.out, "kept across upgrade\n") << read_back.describe();

  // Both sides' versions.
  auto version = cli({"version", name});
  ASSERT_EQ(version.exit_code, 0) << version.describe();
  auto shown = lines(version.out);
  ASSERT_EQ(shown.size(), 2u) << version.describe();
  EXPECT_EQ(shown[0].rfind("berth version ", 0), 0u) << version.describe();
  EXPECT_EQ(shown[1].rfind(name + ": berth-agent ", 0), 0u) << version.describe();

  auto stop = docker(name, "rm -f keep");
  EXPECT_EQ(stop.exit_code, 0) << stop.describe();
  auto rm = cli({"rm", "-f", name});
  EXPECT_EQ(rm.exit_code, 0) << rm.describe();
}

}  // namespace
}  // namespace berth::it
