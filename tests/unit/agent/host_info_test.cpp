#include "agent/host_info.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "core/error.h"

namespace berth::agent {
namespace {

namespace fs = std::filesystem;

struct TempDir {
  fs::path path;
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "berth-agent-test-XXXXXX").string();
    path = ::mkdtemp(tmpl.data());
  }
  ~TempDir() { fs::remove_all(path); }
};

void write(const fs::path& p, const std::string& text) {
  fs::create_directories(p.parent_path());
  std::ofstream(p) << text;
}

TEST(OsRelease, ReadsPrettyNameAndVersionId) {
  auto [pretty, version] = parse_os_release(
      "NAME=\"Alpine Linux\"\nID=alpine\nVERSION_ID=3.19.1\nPRETTY_NAME=\"Alpine Linux v3.19\"\n# "
      "c\n");
  EXPECT_EQ(pretty, "Alpine Linux v3.19");
  EXPECT_EQ(version, "3.19.1");
  auto [p2, v2] = parse_os_release("PRETTY_NAME='Ubuntu 24.04 LTS'\n");
  EXPECT_EQ(p2, "Ubuntu 24.04 LTS");
  EXPECT_EQ(v2, "");
}

TEST(Meminfo, MemTotalInBytes) {
  EXPECT_EQ(parse_meminfo_total("MemFree:  100 kB\nMemTotal:       16318536 kB\n"),
            16318536LL * 1024);
  EXPECT_EQ(parse_meminfo_total("MemFree: 1 kB\n"), 0);
}

TEST(Goarch, MapsUnameMachine) {
  EXPECT_EQ(goarch("x86_64"), "amd64");
  EXPECT_EQ(goarch("aarch64"), "arm64");
  EXPECT_EQ(goarch("armv7l"), "arm");
  EXPECT_EQ(goarch("i686"), "386");
  EXPECT_EQ(goarch("s390x"), "s390x");
}

TEST(Proxy, CredentialsAreMasked) {
  EXPECT_EQ(mask_proxy_credentials("http://bob:secret@proxy:3128"),
            "http://xxxxx:xxxxx@proxy:3128");
  EXPECT_EQ(mask_proxy_credentials("http://token@proxy:3128/"), "http://xxxxx@proxy:3128/");
  EXPECT_EQ(mask_proxy_credentials("http://proxy:3128/a@b"), "http://proxy:3128/a@b");
  EXPECT_EQ(mask_proxy_credentials("proxy:3128"), "proxy:3128");
}

TEST(EngineId, IsCreatedOnceAndStable) {
  TempDir tmp;
  fs::path root = tmp.path / "var/lib/berth";
  std::string id = load_or_create_engine_id(root);
  EXPECT_EQ(id.size(), 36u);
  EXPECT_EQ(id[14], '4');  // UUID version 4
  EXPECT_EQ(load_or_create_engine_id(root), id);
  EXPECT_EQ(HostSystemInfo(root).facts().engine_id, id);
  struct stat st {};
  ASSERT_EQ(::stat(root.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  std::ifstream in(root / "engine-id");
  std::string stored;
  in >> stored;
  EXPECT_EQ(stored, id);
}

TEST(EngineId, GarbageFileIsReplaced) {
  TempDir tmp;
  write(tmp.path / "engine-id", "not-a-uuid\n");
  std::string id = load_or_create_engine_id(tmp.path);
  EXPECT_NE(id, "not-a-uuid");
  EXPECT_EQ(id.size(), 36u);
}

TEST(HostSystemInfo, ReadsFactsUnderTheGivenRoot) {
  TempDir tmp;
  fs::path root = tmp.path / "root";
  write(root / "etc/os-release", "PRETTY_NAME=\"Test OS 1\"\nVERSION_ID=\"1.2\"\n");
  write(root / "proc/meminfo", "MemTotal: 2048 kB\n");
  write(root / "sys/fs/cgroup/cgroup.controllers", "cpuset cpu io memory pids\n");
  write(root / "proc/sys/net/bridge/bridge-nf-call-iptables", "1\n");
  write(root / "proc/sys/net/ipv4/ip_forward", "0\n");
  HostFacts f = HostSystemInfo(tmp.path / "data", root).facts();
  EXPECT_EQ(f.operating_system, "Test OS 1");
  EXPECT_EQ(f.os_version, "1.2");
  EXPECT_EQ(f.mem_total, 2048 * 1024);
  EXPECT_EQ(f.cgroup_version, "2");
  EXPECT_TRUE(f.cgroups.memory_limit);
  EXPECT_TRUE(f.cgroups.cpu_shares);
  EXPECT_TRUE(f.cgroups.cpuset);
  EXPECT_TRUE(f.cgroups.pids_limit);
  EXPECT_FALSE(f.cgroups.oom_kill_disable);
  EXPECT_TRUE(f.bridge_nf_iptables);
  EXPECT_FALSE(f.bridge_nf_ip6tables);
  EXPECT_FALSE(f.ipv4_forwarding);
  // From the live kernel, not the tree.
  EXPECT_GT(f.ncpu, 0);
  EXPECT_FALSE(f.kernel_version.empty());
  EXPECT_FALSE(f.machine.empty());
  EXPECT_FALSE(f.hostname.empty());
  EXPECT_GT(f.open_fds, 2);
  EXPECT_EQ(f.system_time.size(), std::string("2025-01-02T03:04:05.000000006+00:00").size());
}

TEST(HostSystemInfo, WithoutCgroupControllersFileItIsVersion1) {
  TempDir tmp;
  fs::path root = tmp.path / "root";
  write(root / "sys/fs/cgroup/memory/memory.limit_in_bytes", "9223372036854771712\n");
  write(root / "sys/fs/cgroup/pids/pids.max", "max\n");
  HostFacts f = HostSystemInfo(tmp.path / "data", root).facts();
  EXPECT_EQ(f.cgroup_version, "1");
  EXPECT_TRUE(f.cgroups.memory_limit);
  EXPECT_FALSE(f.cgroups.swap_limit);
  EXPECT_TRUE(f.cgroups.pids_limit);
  EXPECT_FALSE(f.cgroups.cpuset);
  EXPECT_EQ(f.operating_system, "<unknown>");
}

TEST(HostSystemInfo, UnusableDataRootIsAUserErrorNamingIt) {
  TempDir tmp;
  write(tmp.path / "file", "x");  // a file where a directory should be: fails even for root
  try {
    HostSystemInfo info(tmp.path / "file" / "data");
    FAIL() << "no error";
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find((tmp.path / "file" / "data").string()), std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace berth::agent
