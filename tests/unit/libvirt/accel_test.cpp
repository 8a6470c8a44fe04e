#include <gtest/gtest.h>

#include <fstream>

#include "core/error.h"
#include "core/fs.h"
#include "drivers/libvirt/accel.h"
#include "tests/unit/libvirt/test_util.h"

namespace berth::virt {
namespace {

using testing::TempDir;

// A probe that records how often it ran.
struct FakeProbe {
  bool result = false;
  int calls = 0;
  std::function<bool()> fn() {
    return [this] {
      ++calls;
      return result;
    };
  }
};

TEST(Accel, TcgNeverProbes) {
  TempDir t;
  FakeProbe probe;
  auto d = decide_accel("tcg", true, t.path / "accel.json", "host-a", probe.fn(), "m");
  EXPECT_EQ(d.accel, "tcg");
  EXPECT_EQ(probe.calls, 0);
  EXPECT_FALSE(std::filesystem::exists(t.path / "accel.json"));
}

TEST(Accel, AutoWithoutKvmDeviceIsTcgWithoutProbe) {
  TempDir t;
  FakeProbe probe;
  auto d = decide_accel("auto", false, t.path / "accel.json", "host-a", probe.fn(), "m");
  EXPECT_EQ(d.accel, "tcg");
  EXPECT_FALSE(d.kvm_broken);
  EXPECT_EQ(probe.calls, 0);
}

TEST(Accel, BrokenKvmFallsBackToTcgAndIsCachedPerHostKernel) {
  TempDir t;
  const auto cache = t.path / "cache" / "accel.json";
  FakeProbe probe;
  probe.result = false;
  auto first = decide_accel("auto", true, cache, "host-a 6.1.0", probe.fn(), "m");
  EXPECT_EQ(first.accel, "tcg");
  EXPECT_TRUE(first.kvm_broken);
  EXPECT_FALSE(first.from_cache);
  EXPECT_EQ(probe.calls, 1);
  ASSERT_TRUE(std::filesystem::exists(cache));
  EXPECT_EQ(std::filesystem::status(cache).permissions() & std::filesystem::perms::all,
            std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);

  auto second = decide_accel("auto", true, cache, "host-a 6.1.0", probe.fn(), "m");
  EXPECT_EQ(second.accel, "tcg");
  EXPECT_TRUE(second.kvm_broken);
  EXPECT_TRUE(second.from_cache);
  EXPECT_EQ(probe.calls, 1) << "the cached verdict must spare the probe";

  // Another kernel: probe again, and this time KVM works.
  probe.result = true;
  auto other = decide_accel("auto", true, cache, "host-a 6.5.0", probe.fn(), "m");
  EXPECT_EQ(other.accel, "kvm");
  EXPECT_FALSE(other.kvm_broken);
  EXPECT_EQ(probe.calls, 2);
}

TEST(Accel, WorkingKvmIsUsed) {
  TempDir t;
  FakeProbe probe;
  probe.result = true;
  auto d = decide_accel("auto", true, t.path / "accel.json", "h", probe.fn(), "m");
  EXPECT_EQ(d.accel, "kvm");
  auto forced = decide_accel("kvm", true, t.path / "accel.json", "h", probe.fn(), "m");
  EXPECT_EQ(forced.accel, "kvm");
  EXPECT_EQ(probe.calls, 1);
}

TEST(Accel, ForcedKvmThatDoesNotWorkIsAClearError) {
  TempDir t;
  FakeProbe probe;
  try {
    decide_accel("kvm", true, t.path / "accel.json", "h", probe.fn(), "dev");
    FAIL() << "expected PreCreateCheckFailed";
  } catch (const PreCreateCheckFailed& e) {
    EXPECT_NE(std::string(e.what()).find("machine 'dev'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("--libvirt-accel tcg"), std::string::npos) << e.what();
  }
  EXPECT_THROW(decide_accel("kvm", false, t.path / "accel.json", "h", probe.fn(), "dev"), PreCreateCheckFailed);
}

TEST(Accel, UnreadableCacheMeansProbeAgain) {
  TempDir t;
  std::ofstream(t.path / "accel.json") << "{not json";
  FakeProbe probe;
  probe.result = true;
  auto d = decide_accel("auto", true, t.path / "accel.json", "h", probe.fn(), "m");
  EXPECT_EQ(d.accel, "kvm");
  EXPECT_EQ(probe.calls, 1);
  EXPECT_NE(read_file(t.path / "accel.json").find("\"kvm_works\": true"), std::string::npos);
}

TEST(SlowDefine, AKvmNodeClosedToQemusUserIsNamedWithTheFix) {
  const std::string why = slow_define_reason(KvmNode{0600, 0, 108});
  EXPECT_NE(why.find("mode 0600, group 0"), std::string::npos) << why;
  EXPECT_NE(why.find("chgrp kvm /dev/kvm && chmod 0660 /dev/kvm"), std::string::npos) << why;
  // Group rw but the wrong group is closed to libvirt-qemu too.
  EXPECT_NE(slow_define_reason(KvmNode{0660, 0, 108}), "");
}

TEST(SlowDefine, AnOpenKvmNodeOrNoneIsNoKnownCause) {
  EXPECT_EQ(slow_define_reason(KvmNode{0660, 108, 108}), "");
  EXPECT_EQ(slow_define_reason(KvmNode{0666, 0, 108}), "");
  EXPECT_EQ(slow_define_reason(std::nullopt), "");
  EXPECT_NE(slow_define_reason(KvmNode{0660, 0, 0}), "");  // no kvm group at all
}

}  // namespace
}  // namespace berth::virt
