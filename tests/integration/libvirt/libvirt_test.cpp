// The libvirt driver end to end under TCG: the real berth, berth-agent, berth-os
// and docker CLI. Two VMs are created in parallel once and shared by the cases
// below (boots are expensive); the last cases remove them and check that
// libvirt and the store are left empty. vm-a shares a host folder at /mnt/host
// (and the home folder by default), vm-b is made with --libvirt-no-share.
// Needs root, libvirt and a built berth-os.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <memory>
#include <regex>

#include "tests/integration/generic/berth_cli.h"

namespace berth::it {
namespace {

constexpr const char* kUri = "qemu:///system";
const std::array<std::string, 2> kNames = {"vm-a", "vm-b"};

struct ConnClose {
  void operator()(virConnectPtr c) const { virConnectClose(c); }
};
using Conn = std::unique_ptr<virConnect, ConnClose>;

Conn open_libvirt() {
  virSetErrorFunc(nullptr, [](void*, virErrorPtr) {});
  return Conn(virConnectOpen(kUri));
}

// Names of all domains (running or not) whose name starts with `prefix`.
std::vector<std::string> domains(const std::string& prefix) {
  std::vector<std::string> out;
  Conn c = open_libvirt();
  if (!c) return {"<cannot connect to libvirt>"};
  virDomainPtr* list = nullptr;
  int n = virConnectListAllDomains(c.get(), &list, 0);
  for (int i = 0; i < n; ++i) {
    std::string name = virDomainGetName(list[i]);
    if (name.rfind(prefix, 0) == 0) out.push_back(name);
    virDomainFree(list[i]);
  }
  free(list);
  return out;
}

// Active state of one domain: 1 running, 0 not, -1 missing.
int domain_active(const std::string& name) {
  Conn c = open_libvirt();
  if (!c) return -1;
  virDomainPtr d = virDomainLookupByName(c.get(), name.c_str());
  if (!d) return -1;
  int a = virDomainIsActive(d);
  virDomainFree(d);
  return a;
}

// Volumes in every pool whose target path is under `store`, as "pool/volume"; and the pools.
struct PoolContents {
  std::vector<std::string> pools;
  std::vector<std::string> volumes;
};
PoolContents pools_under(const fs::path& store) {
  PoolContents out;
  Conn c = open_libvirt();
  if (!c) return {{"<cannot connect to libvirt>"}, {}};
  virStoragePoolPtr* pools = nullptr;
  int n = virConnectListAllStoragePools(c.get(), &pools, 0);
  for (int i = 0; i < n; ++i) {
    char* xml = virStoragePoolGetXMLDesc(pools[i], 0);
    std::string x = xml ? xml : "";
    free(xml);
    if (x.find("<path>" + store.string()) != std::string::npos) {
      out.pools.push_back(virStoragePoolGetName(pools[i]));
      if (virStoragePoolIsActive(pools[i]) == 1) {
        virStoragePoolRefresh(pools[i], 0);
        virStorageVolPtr* vols = nullptr;
        int m = virStoragePoolListAllVolumes(pools[i], &vols, 0);
        for (int k = 0; k < m; ++k) {
          out.volumes.push_back(out.pools.back() + "/" + virStorageVolGetName(vols[k]));
          virStorageVolFree(vols[k]);
        }
        free(vols);
      }
    }
    virStoragePoolFree(pools[i]);
  }
  free(pools);
  return out;
}

// Removes pools under `store` the suite may have left (a failed run), so libvirt stays clean.
void drop_pools_under(const fs::path& store) {
  Conn c = open_libvirt();
  if (!c) return;
  for (const auto& name : pools_under(store).pools) {
    virStoragePoolPtr p = virStoragePoolLookupByName(c.get(), name.c_str());
    if (!p) continue;
    virStoragePoolDestroy(p);
    virStoragePoolUndefine(p);
    virStoragePoolFree(p);
  }
}

bool daemon_running(const std::string& name) { return run_bash("pgrep -x " + name + " >/dev/null", {}, 10s).ok(); }

// Why this suite cannot run here ("" when it can). Starts libvirtd/virtlogd when needed.
std::string unavailable_reason() {
  if (::geteuid() != 0) return "needs root (qemu:///system)";
  if (!run_bash("command -v qemu-system-x86_64 && command -v libvirtd && command -v docker", {}, 10s).ok())
    return "needs qemu-system-x86, libvirt-daemon-system and the docker CLI";
  const fs::path os = source_dir() / "image" / "out";
  if (!fs::exists(os / "vmlinuz") || !fs::exists(os / "initrd"))
    return "no berth-os at " + os.string() + "; build it with image/build.sh";
  if (!daemon_running("virtlogd")) run_bash("virtlogd -d", {}, 30s);
  if (!daemon_running("libvirtd")) run_bash("libvirtd -d", {}, 30s);
  if (!eventually([] { return open_libvirt() != nullptr; }, 20s, 200ms)) return "libvirtd does not answer";
  return "";
}

// A listening socket on 127.0.0.1:port (to occupy a forwarded port).
struct Squatter {
  explicit Squatter(int port) {
    fd = ::socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ok = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 && ::listen(fd, 1) == 0;
  }
  ~Squatter() { ::close(fd); }
  int fd = -1;
  bool ok = false;
};

int port_of(const std::string& url) {
  std::smatch m;
  static const std::regex re(R"(:(\d+)$)");
  return std::regex_search(url, m, re) ? std::stoi(m[1]) : -1;
}

class LibvirtDriver : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    try {
      setup_error_ = unavailable_reason();
      if (!setup_error_.empty()) return;
      if (!fs::exists(berth_binary()) || !fs::exists(agent_binary())) {
        setup_error_ = "build the 'berth' and 'berth-agent' targets first";
        return;
      }
      cli_ = std::make_unique<BerthCli>();
      // A project under the home folder: vm-a sees it at the same path (home is shared by
      // default) and at /mnt/host (--libvirt-share).
      fs::create_directories(project());
      write_text(project() / "host.txt", "written on the host\n");
      // Two creates at once, sharing one store, its CA and its storage pool.
      std::vector<Process> creates;
      creates.push_back(
          cli_->start({"create", "-d", "libvirt", "--libvirt-share", project().string() + ":/mnt/host", kNames[0]}));
      creates.push_back(cli_->start({"create", "-d", "libvirt", "--libvirt-no-share", kNames[1]}));
      for (size_t i = 0; i < kNames.size(); ++i) created_[i] = creates[i].wait(600s);
    } catch (const std::exception& e) {
      setup_error_ = std::string("suite setup failed: ") + e.what();
    }
  }

  static void TearDownTestSuite() {
    if (!cli_) return;
    for (const auto& name : {"vm-a", "vm-b", "vm-int", "vm-kill"}) (*cli_)({"rm", "-f", "-y", name}, 120s);
    drop_pools_under(cli_->store());
    cli_.reset();
  }

  void SetUp() override { ASSERT_TRUE(setup_error_.empty()) << setup_error_; }

  void require_machine(size_t i) {
    ASSERT_EQ(created_[i].exit_code, 0) << "berth create " << kNames[i] << " failed:\n" << created_[i].describe();
  }

  const BerthCli& cli() { return *cli_; }

  RunResult docker_via_env(const std::string& name, const std::string& args) {
    return cli().bash("set -e; eval \"$(berth env " + name + ")\"; docker " + args, 120s);
  }

  RunResult ssh(const std::string& name, const std::string& command) {
    return cli()({"ssh", name, command}, 60s);
  }

  std::string domain_of(const std::string& name) {
    auto r = cli().bash("berth inspect " + name, 30s);
    std::smatch m;
    static const std::regex re("\"domain\"\\s*:\\s*\"([^\"]+)\"");
    return std::regex_search(r.out, m, re) ? m[1].str() : "";
  }

  std::string status(const std::string& name) { return trim(cli()({"status", name}, 60s).out); }

  std::string url(const std::string& name) { return trim(cli()({"url", name}, 30s).out); }

  static fs::path project() { return cli_->home() / "project"; }

  // driver_state.shares from `berth inspect`.
  nlohmann::json shares_of(const std::string& name) {
    auto r = cli()({"inspect", name}, 30s);
    auto j = nlohmann::json::parse(r.out, nullptr, false);
    if (j.is_discarded() || !j.contains("driver_state")) return {{"inspect failed", r.describe()}};
    return j["driver_state"].value("shares", nlohmann::json());
  }

  static inline std::string setup_error_;
  static inline std::unique_ptr<BerthCli> cli_;
  static inline std::array<RunResult, 2> created_;
};

TEST_F(LibvirtDriver, ParallelCreatesBootRunningVms) {
  for (size_t i = 0; i < kNames.size(); ++i) {
    SCOPED_TRACE(kNames[i]);
    require_machine(i);
    EXPECT_FALSE(created_[i].timed_out);
    const fs::path dir = cli().machine_dir(kNames[i]);
    EXPECT_TRUE(fs::exists(dir / "cidata.iso"));
    EXPECT_TRUE(fs::exists(dir / "id_ed25519"));
    EXPECT_NE(read_text(dir / "console.log").find("berth-os"), std::string::npos);
    auto logs = cli()({"logs", kNames[i]}, 30s);
    EXPECT_EQ(logs.exit_code, 0) << logs.describe();
    EXPECT_NE(logs.out.find("berth-os: "), std::string::npos) << logs.out;
    const std::string domain = domain_of(kNames[i]);
    EXPECT_TRUE(std::regex_match(domain, std::regex("berth-" + kNames[i] + "-[0-9a-f]{8}"))) << domain;
    EXPECT_EQ(domain_active(domain), 1);
    // KVM hangs on these machines: auto falls back to TCG and says so in one line.
    const fs::path accel = cli().store() / "cache" / "accel.json";
    if (fs::exists(accel) && read_text(accel).find("\"kvm_works\": false") != std::string::npos) {
      const std::string& err = created_[i].err;
      size_t lines_about_tcg = 0;
      for (const auto& line : lines(err))
        if (line.find("using TCG") != std::string::npos) ++lines_about_tcg;
      EXPECT_EQ(lines_about_tcg, 1u) << err;
    }
  }
  auto machines = cli().ls_json();
  for (const auto& name : kNames) {
    ASSERT_TRUE(machines.count(name)) << name;
    EXPECT_EQ(machines[name].at("DriverName"), "libvirt");
    EXPECT_EQ(machines[name].at("State"), "Running");
    EXPECT_TRUE(std::regex_match(std::string(machines[name].at("URL")), std::regex(R"(tcp://127\.0\.0\.1:\d+)")))
        << machines[name].dump();
  }
  EXPECT_NE(machines["vm-a"].at("URL"), machines["vm-b"].at("URL"));
  auto pools = pools_under(cli().store());
  EXPECT_EQ(pools.pools.size(), 1u);
  EXPECT_EQ(pools.volumes.size(), 2u);  // one data disk each
}

TEST_F(LibvirtDriver, DockerVersionAndInfoThroughEnv) {
  require_machine(0);
  auto version = docker_via_env("vm-a", "version");
  ASSERT_EQ(version.exit_code, 0) << version.describe();
  EXPECT_NE(version.out.find("Server:"), std::string::npos) << version.out;
  auto info = docker_via_env("vm-a", "info");
  ASSERT_EQ(info.exit_code, 0) << info.describe();
  EXPECT_TRUE(contains_icase(info.out, "vm-a")) << info.out;
}

TEST_F(LibvirtDriver, DockerThroughUse) {
  require_machine(1);
  auto use = cli()({"use", "vm-b"}, 60s);
  ASSERT_EQ(use.exit_code, 0) << use.describe();
  auto version = cli().bash("docker version", 120s);
  EXPECT_EQ(version.exit_code, 0) << version.describe();
  EXPECT_NE(version.out.find("Server:"), std::string::npos) << version.out;
  auto info = cli().bash("docker info", 120s);
  EXPECT_EQ(info.exit_code, 0) << info.describe();
  EXPECT_TRUE(contains_icase(info.out, "vm-b")) << info.out;
  auto unset = cli()({"use", "--unset"}, 60s);
  EXPECT_EQ(unset.exit_code, 0) << unset.describe();
}

TEST_F(LibvirtDriver, SshAndScp) {
  require_machine(0);
  auto os = ssh("vm-a", "cat /etc/os-release");
  ASSERT_EQ(os.exit_code, 0) << os.describe();
  EXPECT_NE(os.out.find("ID=berth-os"), std::string::npos) << os.out;
  EXPECT_EQ(trim(ssh("vm-a", "hostname").out), "vm-a");
  auto mounted = ssh("vm-a", "mount");
  EXPECT_NE(mounted.out.find("/dev/vda on /var/lib/berth type ext4"), std::string::npos) << mounted.out;
  EXPECT_EQ(ssh("vm-a", "exit 3").exit_code, 3);

  const fs::path local = cli().scratch() / "payload.bin";
  std::string payload;
  for (int i = 0; i < 200000; ++i) payload += static_cast<char>(i * 7 % 251);
  write_text(local, payload);
  auto up = cli()({"scp", local.string(), "vm-a:/var/lib/berth/payload.bin"}, 120s);
  ASSERT_EQ(up.exit_code, 0) << up.describe();
  const fs::path back = cli().scratch() / "back.bin";
  auto down = cli()({"scp", "vm-a:/var/lib/berth/payload.bin", back.string()}, 120s);
  ASSERT_EQ(down.exit_code, 0) << down.describe();
  EXPECT_EQ(read_text(back), payload);
}

TEST_F(LibvirtDriver, HostFoldersAreMountedOverVirtio9p) {
  require_machine(0);
  const std::string home = cli().home().string(), dir = project().string();
  // Tags follow the guest paths' order (/mnt/host < /tmp/...).
  EXPECT_EQ(shares_of("vm-a"), (nlohmann::json{{{"tag", "berth0"}, {"host", dir}, {"guest", "/mnt/host"}},
                                               {{"tag", "berth1"}, {"host", home}, {"guest", home}}}));
  auto mounts = ssh("vm-a", "cat /proc/mounts");
  EXPECT_NE(mounts.out.find("berth0 /mnt/host 9p "), std::string::npos) << mounts.out;
  EXPECT_NE(mounts.out.find("berth1 " + home + " 9p "), std::string::npos) << mounts.out;
  EXPECT_NE(read_text(cli().machine_dir("vm-a") / "console.log").find("host folder berth0 mounted on /mnt/host"),
            std::string::npos);

  // Host to guest, for a file there before the boot and one written now.
  EXPECT_EQ(ssh("vm-a", "cat /mnt/host/host.txt").out, "written on the host\n");
  EXPECT_EQ(ssh("vm-a", "cat " + dir + "/host.txt").out, "written on the host\n") << "home shared at its path";
  write_text(project() / "late.txt", "late\n");
  EXPECT_EQ(ssh("vm-a", "cat /mnt/host/late.txt").out, "late\n");

  // Guest root to host: the file is the host user's (QEMU's), and root's in the guest.
  auto wrote = ssh("vm-a", "echo written in the guest > /mnt/host/guest.txt && mkdir -p /mnt/host/gdir && "
                           "echo nested > /mnt/host/gdir/f && stat -c %u /mnt/host/guest.txt");
  ASSERT_EQ(wrote.exit_code, 0) << wrote.describe();
  EXPECT_EQ(trim(wrote.out), "0");
  EXPECT_EQ(read_text(project() / "guest.txt"), "written in the guest\n");
  EXPECT_EQ(read_text(project() / "gdir" / "f"), "nested\n");
  struct stat st {};
  ASSERT_EQ(::stat((project() / "guest.txt").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, ::geteuid());

  // docker run -v with the host path, through the agent: the way laptops use it.
  const fs::path tar = cli().scratch() / "busybox.tar";
  auto image = run({(source_dir() / "scripts" / "make-test-image.sh").string(), tar.string(), "busybox:latest"}, {},
                   180s);
  ASSERT_TRUE(image.ok()) << image.describe();
  auto load = docker_via_env("vm-a", "load -i " + tar.string());
  ASSERT_EQ(load.exit_code, 0) << load.describe();
  auto cat = docker_via_env("vm-a", "run --rm -v " + dir + ":/src busybox:latest cat /src/host.txt");
  EXPECT_EQ(cat.exit_code, 0) << cat.describe();
  EXPECT_EQ(cat.out, "written on the host\n") << cat.describe();
  auto put = docker_via_env("vm-a", "run --rm -v " + dir + ":/src busybox:latest sh -c 'echo from a container > "
                                    "/src/container.txt'");
  EXPECT_EQ(put.exit_code, 0) << put.describe();
  EXPECT_EQ(read_text(project() / "container.txt"), "from a container\n");
}

TEST_F(LibvirtDriver, NoShareMountsNothing) {
  require_machine(1);
  EXPECT_EQ(shares_of("vm-b"), nlohmann::json::array());
  auto mounts = ssh("vm-b", "cat /proc/mounts");
  ASSERT_EQ(mounts.exit_code, 0) << mounts.describe();
  EXPECT_EQ(mounts.out.find(" 9p "), std::string::npos) << mounts.out;
}

TEST_F(LibvirtDriver, StopStartRestartKeepTheDataDisk) {
  require_machine(0);
  const std::string token = "token-" + std::to_string(::getpid());
  ASSERT_EQ(ssh("vm-a", "echo " + token + " > /var/lib/berth/persist && sync").exit_code, 0);
  const std::string domain = domain_of("vm-a");

  auto stop = cli()({"stop", "vm-a"}, 120s);
  ASSERT_EQ(stop.exit_code, 0) << stop.describe();
  EXPECT_EQ(status("vm-a"), "Stopped");
  EXPECT_EQ(domain_active(domain), 0);
  // Stopping was an ACPI shutdown that the guest obeyed, not a forced power-off.
  EXPECT_EQ(stop.err.find("forcing it off"), std::string::npos) << stop.err;

  // Someone takes the agent's forwarded port while the VM is down: start picks another.
  const std::string old_url = url("vm-a");
  Squatter squatter(port_of(old_url));
  ASSERT_TRUE(squatter.ok) << old_url;
  auto start = cli()({"start", "vm-a"}, 300s);
  ASSERT_EQ(start.exit_code, 0) << start.describe();
  EXPECT_EQ(status("vm-a"), "Running");
  EXPECT_NE(url("vm-a"), old_url);
  auto version = docker_via_env("vm-a", "version");
  EXPECT_EQ(version.exit_code, 0) << version.describe();
  EXPECT_EQ(trim(ssh("vm-a", "cat /var/lib/berth/persist").out), token);

  auto restart = cli()({"restart", "vm-a"}, 300s);
  ASSERT_EQ(restart.exit_code, 0) << restart.describe();
  EXPECT_EQ(status("vm-a"), "Running");
  version = docker_via_env("vm-a", "version");
  EXPECT_EQ(version.exit_code, 0) << version.describe();
  EXPECT_EQ(trim(ssh("vm-a", "cat /var/lib/berth/persist").out), token);
  EXPECT_EQ(trim(ssh("vm-a", "cat /var/lib/berth/payload.bin | wc -c").out), "200000");
  // The host folders are mounted again at every boot.
  EXPECT_EQ(ssh("vm-a", "cat /mnt/host/host.txt").out, "written on the host\n");
}

TEST_F(LibvirtDriver, KillPowersOffAtOnce) {
  require_machine(1);
  auto kill = cli()({"kill", "vm-b"}, 60s);
  ASSERT_EQ(kill.exit_code, 0) << kill.describe();
  EXPECT_EQ(status("vm-b"), "Stopped");
  EXPECT_EQ(domain_active(domain_of("vm-b")), 0);
}

// Starts `berth create NAME` and returns once the VM boots (its console has started filling).
Process start_create_until_booting(const BerthCli& cli, const std::string& name) {
  auto p = cli.start({"create", "-d", "libvirt", name});
  const fs::path console = cli.machine_dir(name) / "console.log";
  bool booting = eventually(
      [&] {
        std::error_code ec;
        return fs::file_size(console, ec) > 0 && !ec;
      },
      180s, 100ms);
  EXPECT_TRUE(booting) << p.stderr_so_far();
  return p;
}

TEST_F(LibvirtDriver, InterruptedCreateLeavesNothing) {
  const fs::path dir = cli().machine_dir("vm-int");
  auto p = start_create_until_booting(cli(), "vm-int");
  p.signal(SIGINT);
  auto r = p.wait(120s);
  EXPECT_EQ(r.exit_code, 130) << r.describe();
  EXPECT_FALSE(fs::exists(dir)) << "machine dir left behind";
  EXPECT_TRUE(domains("berth-vm-int-").empty());
  for (const auto& v : pools_under(cli().store()).volumes) EXPECT_EQ(v.find("vm-int"), std::string::npos) << v;
}

TEST_F(LibvirtDriver, KilledCreateIsCleanedByRmForce) {
  const fs::path dir = cli().machine_dir("vm-kill");
  auto p = start_create_until_booting(cli(), "vm-kill");
  p.signal(SIGKILL);
  p.wait(30s);
  EXPECT_EQ(domains("berth-vm-kill-").size(), 1u) << "the VM outlives a SIGKILLed berth";
  auto rm = cli()({"rm", "-f", "-y", "vm-kill"}, 120s);
  EXPECT_EQ(rm.exit_code, 0) << rm.describe();
  EXPECT_FALSE(fs::exists(dir));
  EXPECT_TRUE(domains("berth-vm-kill-").empty());
  for (const auto& v : pools_under(cli().store()).volumes) EXPECT_EQ(v.find("vm-kill"), std::string::npos) << v;
}

// A berth-os whose initrd is garbage: the kernel panics, and create says so
// long before SSH's timeout, naming the cause, with nothing left behind.
TEST_F(LibvirtDriver, ABrokenImageFailsFastNamingTheKernelPanic) {
  const fs::path image = cli().home() / "broken-os";
  fs::create_directories(image);
  fs::copy_file(source_dir() / "image" / "out" / "vmlinuz", image / "vmlinuz", fs::copy_options::overwrite_existing);
  write_text(image / "initrd", std::string(4096, 'x'));
  const auto t0 = std::chrono::steady_clock::now();
  auto r = cli()({"create", "-d", "libvirt", "--libvirt-no-share", "--no-forward", "--libvirt-image", image.string(),
                  "vm-broken"},
                 300s);
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(r.exit_code, 1) << r.describe();
  EXPECT_NE(r.err.find("did not boot: the guest's kernel panicked: "), std::string::npos) << r.describe();
  EXPECT_LT(took, 100.0) << "waited for SSH's 120 s timeout instead of reading the console";
  EXPECT_FALSE(fs::exists(cli().machine_dir("vm-broken")));
  EXPECT_TRUE(domains("berth-vm-broken-").empty());
}

// A host disk with no room: create refuses before it makes anything (exit 3);
// and a disk that fills while the guest formats its own is named at once
// (QEMU pauses the guest), not after SSH's 120 s timeout.
TEST_F(LibvirtDriver, AFullHostDiskIsNamedBeforeAndDuringBoot) {
  const fs::path mnt = cli().scratch() / "small-disk";
  const fs::path store = mnt / "store";
  fs::create_directories(mnt);
  struct Unmount {
    fs::path dir;
    ~Unmount() { run({"umount", "-l", dir.string()}, {}, 30s); }
  } unmount{mnt};
  auto mount = [&](const char* size) {
    run({"umount", "-l", mnt.string()}, {}, 30s);
    return run({"mount", "-t", "tmpfs", "-o", std::string("size=") + size, "tmpfs", mnt.string()}, {}, 30s).ok();
  };
  const std::vector<std::string> create = {"-s", store.string(), "create", "-d", "libvirt", "--libvirt-no-share",
                                           "--no-forward", "vm-full"};
  ASSERT_TRUE(mount("3m"));
  auto r = cli()(create, 120s);
  EXPECT_EQ(r.exit_code, 3) << r.describe();
  ASSERT_FALSE(lines(r.err).empty()) << r.describe();
  EXPECT_NE(lines(r.err).back().find("has 3 MB free, and a machine needs 256 MB there to boot"), std::string::npos)
      << r.describe();
  EXPECT_FALSE(fs::exists(store / "machines" / "vm-full"));

  ASSERT_TRUE(mount("300m"));
  const auto t0 = std::chrono::steady_clock::now();
  auto p = cli().start(create);
  const fs::path console = store / "machines" / "vm-full" / "console.log";
  ASSERT_TRUE(eventually(
      [&] {
        std::error_code ec;
        return fs::file_size(console, ec) > 0 && !ec;
      },
      180s, 100ms))
      << p.stderr_so_far();
  // The kernel runs; berth-os formats its data disk seconds later, and finds no room.
  const auto left = fs::space(mnt).available;
  ASSERT_TRUE(run({"fallocate", "-l", std::to_string(left - 4096), (mnt / "filler").string()}, {}, 30s).ok());
  r = p.wait(200s);
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(r.exit_code, 1) << r.describe();
  EXPECT_NE(r.err.find("stopped at boot: QEMU paused it on a disk write error"), std::string::npos) << r.describe();
  EXPECT_NE(r.err.find("the host's disk is full"), std::string::npos) << r.describe();
  EXPECT_LT(took, 100.0) << "waited for SSH's 120 s timeout instead of asking libvirt";
  EXPECT_TRUE(domains("berth-vm-full-").empty());
}

TEST_F(LibvirtDriver, RmLeavesNothingBehind) {
  for (const auto& name : kNames) {
    auto rm = cli()({"rm", "-y", name}, 120s);
    EXPECT_EQ(rm.exit_code, 0) << rm.describe();
    EXPECT_FALSE(fs::exists(cli().machine_dir(name)));
    EXPECT_TRUE(domains("berth-" + name + "-").empty()) << name;
  }
  auto pools = pools_under(cli().store());
  EXPECT_TRUE(pools.volumes.empty()) << pools.volumes.front();
  EXPECT_TRUE(pools.pools.empty()) << "the last machine out takes the store's pool down";
  EXPECT_TRUE(regular_files(cli().store() / "pool").empty());
  EXPECT_TRUE(cli().ls_json().empty());
}

}  // namespace
}  // namespace berth::it
