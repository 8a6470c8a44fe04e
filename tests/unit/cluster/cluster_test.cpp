#include "core/cluster.h"

#include <gtest/gtest.h>
#include <string>
#include <fstream>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <set>

#include "core/error.h"

namespace berth {
namespace {

namespace fs = std::filesystem;

struct TempDir {
  fs::path path;
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "berth-cluster-XXXXXX").string();
    if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp");
    path = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

TEST(Cluster, MembersGetTheLowestFreeAddressAndTheFirstThreeRunEtcd) {
  Cluster c;
  c.name = "lab";
  std::set<std::string> macs;
  for (const char* m : {"a", "b", "c", "d"}) {
    ClusterMember next = next_member(c, m);
    EXPECT_EQ(next.machine, m);
    macs.insert(next.mac);
    c.members.push_back(next);
  }
  EXPECT_EQ(c.members[0].address, "192.168.200.11");
  EXPECT_EQ(c.members[3].address, "192.168.200.14");
  EXPECT_TRUE(c.members[2].etcd);
  EXPECT_FALSE(c.members[3].etcd) << "three etcd voters at most";
  EXPECT_EQ(c.voters(), 3u);
  EXPECT_EQ(macs.size(), 4u);
  EXPECT_EQ(c.members[0].mac.substr(0, 9), "52:54:00:") << "locally administered, QEMU's prefix";
  // A member that left frees its address for the next.
  c.members.erase(c.members.begin() + 1);
  ClusterMember again = next_member(c, "e");
  EXPECT_EQ(again.address, "192.168.200.12");
  EXPECT_TRUE(again.etcd) << "it takes the voter's place";
}

TEST(Cluster, NamesAreCheckedAndRecordsRoundTrip) {
  EXPECT_THROW(validate_cluster_name("Lab"), UserError);
  EXPECT_THROW(validate_cluster_name("-x"), UserError);
  EXPECT_THROW(validate_cluster_name(std::string(40, 'a')), UserError);
  EXPECT_NO_THROW(validate_cluster_name("lab-2"));
  TempDir dir;
  ClusterStore cs(dir.path);
  EXPECT_FALSE(cs.exists("lab"));
  EXPECT_THROW(cs.load("lab"), NotFound);
  Cluster c;
  c.name = "lab";
  c.members.push_back(next_member(c, "a"));
  cs.save(c);
  EXPECT_EQ(fs::status(cs.dir("lab") / "cluster.json").permissions() & fs::perms::all, fs::perms::owner_read | fs::perms::owner_write);
  Cluster back = cs.load("lab");
  ASSERT_EQ(back.members.size(), 1u);
  EXPECT_EQ(back.members[0].address, "192.168.200.11");
  EXPECT_TRUE(back.members[0].etcd);
  EXPECT_EQ(cs.names(), std::vector<std::string>{"lab"});
  // The CA is made once and kept private.
  auto ca = cs.ca("lab");
  EXPECT_EQ(cs.ca("lab").cert_pem, ca.cert_pem);
  EXPECT_EQ(fs::status(cs.dir("lab") / "ca-key.pem").permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write);
  cs.remove("lab");
  EXPECT_FALSE(cs.exists("lab"));
}

TEST(Cluster, TheVdeSwitchStartsOnceAndStops) {
  if (::system("command -v vde_switch >/dev/null 2>&1") != 0) GTEST_SKIP() << "no vde_switch (apt-get install vde2)";
  TempDir dir;
  EXPECT_FALSE(vde_switch_running(dir.path));
  // As berth does for its signal thread: the switch must not inherit the mask.
  sigset_t blocked, old;
  ::sigemptyset(&blocked);
  for (int sig : {SIGTERM, SIGINT, SIGHUP}) ::sigaddset(&blocked, sig);
  ::pthread_sigmask(SIG_BLOCK, &blocked, &old);
  ensure_vde_switch(dir.path);
  ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
  EXPECT_TRUE(vde_switch_running(dir.path));
  EXPECT_TRUE(fs::exists(vde_socket(dir.path) / "ctl")) << "its control socket";
  ensure_vde_switch(dir.path);  // a second call keeps the one running
  std::ifstream pidfile(dir.path / "vde.pid");
  int pid = 0;
  pidfile >> pid;
  ASSERT_GT(pid, 0);
  const auto alive = [pid] {  // a zombie's cmdline is empty
    std::ifstream cmdline("/proc/" + std::to_string(pid) + "/cmdline");
    std::string text((std::istreambuf_iterator<char>(cmdline)), {});
    return text.find("vde_switch") != std::string::npos;
  };
  EXPECT_TRUE(alive());
  stop_vde_switch(dir.path);
  for (int i = 0; i < 50 && alive(); ++i) ::usleep(100000);
  EXPECT_FALSE(alive()) << "vde_switch " << pid << " outlived SIGTERM";
  EXPECT_FALSE(vde_switch_running(dir.path));
}

}  // namespace
}  // namespace berth
