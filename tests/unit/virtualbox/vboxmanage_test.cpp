#include "drivers/virtualbox/vboxmanage.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <atomic>
#include <cstdlib>
#include <thread>

#include "core/error.h"
#include "core/lock.h"
#include "fake_vboxmanage.h"

namespace berth::vbox {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

std::string sample(const std::string& name) { return vboxtest::read_text(fs::path(BERTH_VBOX_SAMPLES) / name); }

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/berth-vbox-XXXXXX";
    path_ = ::mkdtemp(tmpl);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

TEST(VBoxProcess, CollectsOutputAndExitCode) {
  auto r = run_process({"/bin/sh", "-c", "echo out; echo err >&2; exit 3"}, 10s);
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_EQ(r.out, "out\n");
  EXPECT_EQ(r.err, "err\n");
  EXPECT_FALSE(r.timed_out);
}

TEST(VBoxProcess, ArgumentsAreNeverInterpretedByAShell) {
  auto r = run_process({"/bin/echo", "a b", "$HOME", "; rm -rf /", "'q'"}, 10s);
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.out, "a b $HOME ; rm -rf / 'q'\n");
}

TEST(VBoxProcess, KillsWhatOverrunsItsTimeout) {
  const auto t0 = std::chrono::steady_clock::now();
  auto r = run_process({"/bin/sleep", "30"}, 300ms);
  EXPECT_TRUE(r.timed_out);
  EXPECT_EQ(r.exit_code, 128 + 9);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s);
  EXPECT_EQ(error_summary(r), "it did not finish in time and was killed");
}

TEST(VBoxProcess, MissingProgramThrowsNamingIt) {
  try {
    run_process({"/nonexistent/VBoxManage", "--version"}, 5s);
    FAIL() << "no exception";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/VBoxManage"), std::string::npos) << e.what();
  }
}

TEST(VBoxErrors, ClassifiesRealVBoxManageErrors) {
  ProcessResult not_ready{1, "", sample("object-not-ready-docker-machine-2494.stderr"), false};
  EXPECT_TRUE(is_transient(not_ready));
  EXPECT_FALSE(is_vm_not_found(not_ready));
  EXPECT_EQ(error_summary(not_ready), "The object is not ready");

  ProcessResult missing{1, "", sample("showvminfo-not-found-cuckoo-1402.stderr"), false};
  EXPECT_TRUE(is_vm_not_found(missing));
  EXPECT_FALSE(is_transient(missing));
  EXPECT_EQ(error_summary(missing), "Could not find a registered machine named 'windows7'");

  ProcessResult off{1, "", sample("controlvm-poweroff-invalid-state-toolbox-213.stderr"), false};
  EXPECT_FALSE(is_transient(off));
  EXPECT_FALSE(is_vm_not_found(off));
  EXPECT_EQ(error_summary(off), "Invalid machine state: PoweredOff (must be Running, Paused or Stuck)");

  ProcessResult ok{0, "", sample("object-not-ready-docker-machine-2494.stderr"), false};
  EXPECT_FALSE(is_transient(ok));  // exit 0 is never retried
  EXPECT_EQ(error_summary(ProcessResult{2, "", "", false}), "exit status 2");
}

TEST(VBoxFind, BerthVBoxManageWinsThenMsiPathThenPath) {
  TempDir tmp;
  vboxtest::FakeVBoxManage fake(tmp.path() / "a");
  ::setenv("BERTH_VBOXMANAGE", fake.program().c_str(), 1);
  EXPECT_EQ(find_vboxmanage(), fake.program());
  ::setenv("BERTH_VBOXMANAGE", (tmp.path() / "missing").c_str(), 1);
  EXPECT_FALSE(find_vboxmanage());
  ::unsetenv("BERTH_VBOXMANAGE");
  ::setenv("VBOX_MSI_INSTALL_PATH", (tmp.path() / "a").c_str(), 1);
  EXPECT_EQ(find_vboxmanage(), fake.program());
  ::unsetenv("VBOX_MSI_INSTALL_PATH");
  const std::string old_path = std::getenv("PATH") ? std::getenv("PATH") : "";
  ::setenv("PATH", ("/nonexistent:" + (tmp.path() / "a").string()).c_str(), 1);
  EXPECT_EQ(find_vboxmanage(), fake.program());
  ::setenv("PATH", "/nonexistent", 1);
  EXPECT_FALSE(find_vboxmanage());
  ::setenv("PATH", old_path.c_str(), 1);
}

class VBoxManageTest : public ::testing::Test {
 protected:
  VBoxManageTest() : fake_(tmp_.path() / "fake") {}
  VBoxManageOptions options() const {
    VBoxManageOptions o;
    o.program = fake_.program();
    o.lock_file = tmp_.path() / "home" / ".berth" / "vbox.lock";
    o.retry_delay = 10ms;
    o.attempts = 5;
    o.machine = "dev";
    return o;
  }
  TempDir tmp_;
  vboxtest::FakeVBoxManage fake_;
};

TEST_F(VBoxManageTest, RetriesWhileTheObjectIsNotReady) {
  fake_.set("transient", "2");
  VBoxManage vbm(options());
  EXPECT_EQ(vbm.check({"--version"}), "7.0.14r161095\n");
  EXPECT_EQ(fake_.calls(), (std::vector<std::string>{"--version", "--version", "--version"}));
}

TEST_F(VBoxManageTest, GivesUpAfterTheLastAttemptWithVirtualBoxsMessage) {
  fake_.set("transient", "100");
  VBoxManage vbm(options());
  try {
    vbm.check({"showvminfo", "dev", "--machinereadable"});
    FAIL() << "no exception";
  } catch (const DriverError& e) {
    EXPECT_STREQ(e.what(), "machine 'dev': VBoxManage showvminfo failed: The object is not ready");
  }
  EXPECT_EQ(fake_.calls().size(), 5u);
}

TEST_F(VBoxManageTest, OtherFailuresAreNotRetried) {
  VBoxManage vbm(options());
  auto r = vbm.run({"showvminfo", "nosuchvm", "--machinereadable"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(is_vm_not_found(r));
  EXPECT_EQ(fake_.calls().size(), 1u);
  try {
    vbm.check({"controlvm", "nosuchvm", "poweroff"});
    FAIL();
  } catch (const DriverError& e) {
    EXPECT_STREQ(e.what(),
                 "machine 'dev': VBoxManage controlvm poweroff failed: Could not find a registered machine named "
                 "'nosuchvm'");
  }
}

TEST_F(VBoxManageTest, WaitsForTheLockAnotherProcessHolds) {
  VBoxManage vbm(options());
  fs::create_directories(options().lock_file.parent_path());
  auto held = FileLock::try_acquire(options().lock_file);
  ASSERT_TRUE(held);
  std::thread release([&] {
    std::this_thread::sleep_for(400ms);
    held.reset();
  });
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(vbm.check({"--version"}), "7.0.14r161095\n");
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 350ms);
  release.join();
}

TEST_F(VBoxManageTest, WaitsForAnotherProcessHoldingTheLock) {
  // flock(1) from util-linux: another process takes the lock for 0.6 s.
  if (::access("/usr/bin/flock", X_OK) != 0) GTEST_SKIP() << "flock(1) is not installed (util-linux)";
  fs::create_directories(options().lock_file.parent_path());
  std::atomic<bool> started{false};
  std::thread holder([&] {
    started = true;
    run_process({"/usr/bin/flock", options().lock_file.string(), "/bin/sleep", "0.6"}, 10s);
  });
  while (!started) std::this_thread::yield();
  std::this_thread::sleep_for(200ms);   // flock(1) has the lock by now
  const auto t0 = std::chrono::steady_clock::now();
  VBoxManage(options()).check({"--version"});
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 250ms);
  holder.join();
}

TEST_F(VBoxManageTest, SaysWhoToBlameWhenTheLockNeverComes) {
  auto o = options();
  o.lock_timeout = 200ms;
  fs::create_directories(o.lock_file.parent_path());
  auto held = FileLock::try_acquire(o.lock_file);
  ASSERT_TRUE(held);
  try {
    VBoxManage(o).run({"--version"});
    FAIL() << "no exception";
  } catch (const DriverError& e) {
    EXPECT_NE(std::string(e.what()).find("another berth kept the VirtualBox lock"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(fake_.calls().empty());
}

TEST_F(VBoxManageTest, CallsFromTwoThreadsNeverOverlap) {
  fake_.set("sleep", "0.3");
  VBoxManage a(options()), b(options());
  std::thread t1([&] { a.run({"--version"}); });
  std::thread t2([&] { b.run({"--version"}); });
  t1.join();
  t2.join();
  std::istringstream in(vboxtest::read_text(fake_.dir() / "times"));
  std::vector<std::pair<std::string, long long>> ev;
  std::string kind;
  long long ns;
  while (in >> kind >> ns) ev.emplace_back(kind, ns);
  ASSERT_EQ(ev.size(), 4u);
  EXPECT_EQ(ev[0].first, "start");
  EXPECT_EQ(ev[1].first, "end");  // the second call started only after the first ended
  EXPECT_EQ(ev[2].first, "start");
  EXPECT_LE(ev[1].second, ev[2].second);
}

}  // namespace
}  // namespace berth::vbox
