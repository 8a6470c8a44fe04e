#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <thread>

#include "core/error.h"
#include "core/fs.h"
#include "core/store.h"

namespace berth {
namespace {

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/berth-store-test-XXXXXX";
    path_ = ::mkdtemp(tmpl);
  }
  ~TempDir() { fs::remove_all(path_); }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

int mode_of(const fs::path& p) {
  struct stat st{};
  EXPECT_EQ(::stat(p.c_str(), &st), 0) << p;
  return st.st_mode & 0777;
}

MachineRecord sample(const std::string& name) {
  MachineRecord r;
  r.name = name;
  r.driver = "generic";
  r.driver_state = {{"ip_address", "10.0.0.5"}};
  r.engine.labels = {"env=test"};
  r.ssh.host_key_fingerprint = "SHA256:abc";
  r.phase = "ready";
  return r;
}

TEST(MachineName, AcceptsAndRejects) {
  EXPECT_TRUE(is_valid_machine_name("dev"));
  EXPECT_TRUE(is_valid_machine_name("a.b-c9"));
  EXPECT_TRUE(is_valid_machine_name("9lives"));
  EXPECT_FALSE(is_valid_machine_name(""));
  EXPECT_FALSE(is_valid_machine_name("-dev"));
  EXPECT_FALSE(is_valid_machine_name(".dev"));
  EXPECT_FALSE(is_valid_machine_name("de v"));
  EXPECT_FALSE(is_valid_machine_name("dev/../x"));
  EXPECT_FALSE(is_valid_machine_name("dev_1"));
  EXPECT_THROW(validate_machine_name("../etc"), UserError);
}

TEST(Store, SaveLoadRoundTripWithPrivateModes) {
  TempDir tmp;
  Store store(tmp.path() / "root");
  auto lock = store.create_machine_dir("dev");
  store.save(sample("dev"));
  EXPECT_EQ(mode_of(store.machine_dir("dev")), 0700);
  EXPECT_EQ(mode_of(store.machines_dir()), 0700);
  EXPECT_EQ(mode_of(store.config_path("dev")), 0600);
  MachineRecord back = store.load("dev");
  EXPECT_EQ(back.driver, "generic");
  EXPECT_EQ(back.driver_state["ip_address"], "10.0.0.5");
  EXPECT_EQ(back.engine.labels, std::vector<std::string>{"env=test"});
  EXPECT_EQ(back.ssh.host_key_fingerprint, "SHA256:abc");
  auto j = nlohmann::json::parse(read_file(store.config_path("dev")));
  EXPECT_EQ(j["schema_version"], kMachineSchemaVersion);
}

TEST(Store, MissingMachineIsNotFoundWithExitCode4) {
  TempDir tmp;
  Store store(tmp.path());
  try {
    store.load("ghost");
    FAIL() << "expected NotFound";
  } catch (const NotFound& e) {
    EXPECT_EQ(e.exit_code(), 4);
    EXPECT_NE(std::string(e.what()).find("ghost"), std::string::npos);
  }
}

TEST(Store, CorruptConfigAffectsOnlyItsMachine) {
  TempDir tmp;
  Store store(tmp.path());
  { auto l = store.create_machine_dir("good"); store.save(sample("good")); }
  { auto l = store.create_machine_dir("bad"); store.save(sample("bad")); }
  std::ofstream(store.config_path("bad")) << "{ not json";
  auto list = store.list();
  ASSERT_EQ(list.size(), 2u);
  EXPECT_EQ(list[0].name, "bad");
  EXPECT_FALSE(list[0].record.has_value());
  EXPECT_NE(list[0].error.find("corrupt"), std::string::npos);
  EXPECT_NE(list[0].error.find("berth rm -f bad"), std::string::npos);
  EXPECT_TRUE(list[1].record.has_value());
  EXPECT_THROW(store.load("bad"), Error);
}

TEST(Store, NewerSchemaIsRefusedClearly) {
  TempDir tmp;
  Store store(tmp.path());
  { auto l = store.create_machine_dir("future"); store.save(sample("future")); }
  auto j = nlohmann::json::parse(read_file(store.config_path("future")));
  j["schema_version"] = 99;
  std::ofstream(store.config_path("future")) << j.dump();
  try {
    store.load("future");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("newer"), std::string::npos) << e.what();
  }
}

TEST(Store, OldSchemaWithoutVersionLoadsWithDefaults) {
  TempDir tmp;
  Store store(tmp.path());
  fs::create_directories(store.machine_dir("old"));
  std::ofstream(store.config_path("old")) << R"({"name":"old","driver":"none","driver_state":{"url":"tcp://1.2.3.4:2376"}})";
  MachineRecord r = store.load("old");
  EXPECT_EQ(r.schema_version, kMachineSchemaVersion);
  EXPECT_EQ(r.engine.port, 2376);
  EXPECT_EQ(r.ssh.port, 22);
}

TEST(Store, CreateTwiceFailsWithoutTouchingTheFirst) {
  TempDir tmp;
  Store store(tmp.path());
  { auto l = store.create_machine_dir("dev"); store.save(sample("dev")); }
  const std::string before = read_file(store.config_path("dev"));
  try {
    auto l = store.create_machine_dir("dev");
    FAIL();
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("already exists"), std::string::npos);
  }
  EXPECT_EQ(read_file(store.config_path("dev")), before);
}

TEST(Store, ConcurrentCreatesExactlyOneWins) {
  TempDir tmp;
  Store store(tmp.path());
  std::atomic<int> wins{0}, losses{0};
  std::vector<std::thread> threads;
  // flock is per open file, so threads contend just like processes.
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&] {
      try {
        auto l = store.create_machine_dir("race");
        ++wins;
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        store.save(sample("race"));
      } catch (const UserError&) {
        ++losses;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(wins.load(), 1);
  EXPECT_EQ(losses.load(), 7);
}

TEST(Store, InvalidNameWritesNothing) {
  TempDir tmp;
  Store store(tmp.path() / "root");
  EXPECT_THROW(store.create_machine_dir("bad name"), UserError);
  EXPECT_FALSE(fs::exists(tmp.path() / "root"));
}

TEST(AtomicWrite, ReplacesContentAndLeavesNoTempFiles) {
  TempDir tmp;
  const fs::path file = tmp.path() / "f.json";
  write_file_atomic(file, "one", 0600);
  write_file_atomic(file, "two", 0640);
  EXPECT_EQ(read_file(file), "two");
  EXPECT_EQ(mode_of(file), 0640);
  int entries = 0;
  for (auto& e : fs::directory_iterator(tmp.path())) { (void)e; ++entries; }
  EXPECT_EQ(entries, 1);
}

TEST(AtomicWrite, FullDiskKeepsOldContentAndNoTempFile) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to mount a small tmpfs";
  TempDir tmp;
  const fs::path dir = tmp.path() / "small";
  fs::create_directory(dir);
  ASSERT_EQ(std::system(("mount -t tmpfs -o size=64k tmpfs " + dir.string()).c_str()), 0);
  write_file_atomic(dir / "config.json", "old", 0600);
  EXPECT_THROW(write_file_atomic(dir / "config.json", std::string(1 << 20, 'x'), 0600), Error);
  EXPECT_EQ(read_file(dir / "config.json"), "old");
  int entries = 0;
  for (auto& e : fs::directory_iterator(dir)) { (void)e; ++entries; }
  EXPECT_EQ(entries, 1);
  std::system(("umount " + dir.string()).c_str());
}

TEST(StoreRoot, EnvironmentOverridesHome) {
  ::setenv("BERTH_STORAGE_PATH", "/tmp/somewhere", 1);
  EXPECT_EQ(Store::default_root(), fs::path("/tmp/somewhere"));
  ::unsetenv("BERTH_STORAGE_PATH");
  ::setenv("HOME", "/home/tester", 1);
  EXPECT_EQ(Store::default_root(), fs::path("/home/tester/.berth"));
}

}  // namespace
}  // namespace berth
