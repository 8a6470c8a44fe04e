// Host folders: --libvirt-share / --libvirt-no-share, the plan (tags, order, home by
// default), the driver state, the pre-create check, and berth-os's own mount script
// run against a fake `mount`.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <optional>

#include "core/error.h"
#include "core/fs.h"
#include "drivers/driver.h"
#include "drivers/libvirt/libvirt.h"
#include "drivers/libvirt/shares.h"
#include "tests/unit/libvirt/test_util.h"

namespace berth {
namespace {

using virt::Share;
using virt::testing::TempDir;

// Sets an environment variable for one scope.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const std::string& value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    ::setenv(name, value.c_str(), 1);
  }
  ~ScopedEnv() {
    if (old_)
      ::setenv(name_, old_->c_str(), 1);
    else
      ::unsetenv(name_);
  }

 private:
  const char* name_;
  std::optional<std::string> old_;
};

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const UserError& e) {
    return e.what();
  }
  return "<no UserError>";
}

TEST(LibvirtShares, ParseTakesHostdirAndOptionalGuestdir) {
  auto same = virt::parse_share("/home/me/src/");
  EXPECT_EQ(same.host, "/home/me/src");
  EXPECT_EQ(same.guest, "/home/me/src");
  auto other = virt::parse_share("/home/me/src:/src/");
  EXPECT_EQ(other.host, "/home/me/src");
  EXPECT_EQ(other.guest, "/src");
  auto dotted = virt::parse_share("/a/./b/../c:/mnt//host");
  EXPECT_EQ(dotted.host, "/a/c");
  EXPECT_EQ(dotted.guest, "/mnt/host");
  // A colon in the host path is fine; the guest part starts at the last ":/".
  auto colon = virt::parse_share("/data/a:b:/mnt/ab");
  EXPECT_EQ(colon.host, "/data/a:b");
  EXPECT_EQ(colon.guest, "/mnt/ab");
}

TEST(LibvirtShares, ParseRejectsRelativeAndReservedPaths) {
  EXPECT_NE(error_of([] { virt::parse_share("src"); }).find("HOSTDIR must be an absolute path"), std::string::npos);
  EXPECT_NE(error_of([] { virt::parse_share("src:/src"); }).find("HOSTDIR must be an absolute path"),
            std::string::npos);
  EXPECT_NE(error_of([] { virt::parse_share("/home/me:src"); }).find("GUESTDIR must be an absolute path"),
            std::string::npos);
  EXPECT_THROW(virt::parse_share(""), UserError);
  EXPECT_THROW(virt::parse_share("/a\nb"), UserError);
  for (const char* guest : {"/", "/proc", "/etc/berth", "/usr/local/bin", "/root", "/root/.ssh", "/var/lib/berth",
                            "/var/lib/berth/x", "/dev", "/run/x", "/var/log"}) {
    const std::string e = error_of([&] { virt::parse_share(std::string("/srv:") + guest); });
    EXPECT_NE(e.find("--libvirt-share '/srv:"), std::string::npos) << guest << ": " << e;
    EXPECT_NE(e.find("choose another GUESTDIR"), std::string::npos) << guest << ": " << e;
  }
  for (const char* guest : {"/mnt/host", "/home/me", "/src", "/var/lib/other", "/rootless", "/tmp/x", "/devel"})
    EXPECT_EQ(virt::reserved_guest_path(guest), "") << guest;
}

TEST(LibvirtShares, HomeIsSharedAtTheSamePathByDefault) {
  TempDir t;
  const auto home = t.path / "home";
  fs::create_directories(home / "project");
  auto plan = virt::plan_shares({}, true, home);
  ASSERT_EQ(plan.shares.size(), 1u);
  EXPECT_EQ(plan.shares[0].tag, "berth0");
  EXPECT_EQ(plan.shares[0].host, home.string());
  EXPECT_EQ(plan.shares[0].guest, home.string());
  EXPECT_EQ(plan.note, "");
  EXPECT_TRUE(virt::plan_shares({}, false, home).shares.empty()) << "--libvirt-no-share";

  // Explicit shares add to it; sorted by guest path so parents mount first, tagged in that order.
  plan = virt::plan_shares({"/srv/data:/mnt/z", (home / "project").string() + ":/mnt/a",
                            (home / "project").string()},
                           true, home);
  ASSERT_EQ(plan.shares.size(), 4u);
  EXPECT_EQ(plan.shares[0].guest, "/mnt/a");
  EXPECT_EQ(plan.shares[1].guest, "/mnt/z");
  EXPECT_EQ(plan.shares[2].guest, home.string());
  EXPECT_EQ(plan.shares[3].guest, (home / "project").string());  // on top of the home share
  for (size_t i = 0; i < plan.shares.size(); ++i) {
    EXPECT_EQ(plan.shares[i].tag, "berth" + std::to_string(i));
    EXPECT_LE(plan.shares[i].tag.size(), 31u);
  }
  // --libvirt-no-share leaves only the explicit ones.
  plan = virt::plan_shares({"/srv/data:/mnt/z"}, false, home);
  ASSERT_EQ(plan.shares.size(), 1u);
  EXPECT_EQ(plan.shares[0].host, "/srv/data");
  EXPECT_EQ(plan.shares[0].tag, "berth0");
}

TEST(LibvirtShares, TwoFoldersOnOneGuestPathAreRefused) {
  TempDir t;
  const auto home = t.path / "home";
  fs::create_directories(home);
  const std::string e = error_of([&] { virt::plan_shares({"/srv:" + home.string()}, true, home); });
  EXPECT_NE(e.find("would both be mounted on " + home.string()), std::string::npos) << e;
  EXPECT_NE(e.find("--libvirt-no-share"), std::string::npos) << e;
  EXPECT_NO_THROW(virt::plan_shares({"/srv:" + home.string()}, false, home));
  EXPECT_THROW(virt::plan_shares({"/a:/mnt/x", "/b:/mnt/x"}, false, home), UserError);
  // The same share twice is one share.
  EXPECT_EQ(virt::plan_shares({"/a:/mnt/x", "/a/:/mnt/x/"}, false, home).shares.size(), 1u);
}

TEST(LibvirtShares, HomeThatCannotBeSharedIsSkippedWithANote) {
  auto root = virt::plan_shares({}, true, "/root");
  EXPECT_TRUE(root.shares.empty());
  EXPECT_NE(root.note.find("/root is not shared"), std::string::npos) << root.note;
  EXPECT_NE(root.note.find("--libvirt-share /root:/host/root"), std::string::npos) << root.note;
  TempDir t;
  auto missing = virt::plan_shares({}, true, t.path / "gone");
  EXPECT_TRUE(missing.shares.empty());
  EXPECT_NE(missing.note.find("not a directory"), std::string::npos) << missing.note;
}

TEST(LibvirtShares, CheckNamesTheMachineAndTheFolder) {
  TempDir t;
  write_file_atomic(t.path / "file", "x");
  EXPECT_NO_THROW(virt::check_share_dirs({{"berth0", t.path.string(), "/mnt/host"}}, "dev"));
  const std::string gone = error_of([&] {
    virt::check_share_dirs({{"berth0", (t.path / "gone").string(), "/mnt/host"}}, "dev");
  });
  EXPECT_NE(gone.find("machine 'dev'"), std::string::npos) << gone;
  EXPECT_NE(gone.find((t.path / "gone").string() + ", does not exist"), std::string::npos) << gone;
  const std::string file = error_of([&] {
    virt::check_share_dirs({{"berth0", (t.path / "file").string(), "/mnt/host"}}, "dev");
  });
  EXPECT_NE(file.find("is not a directory"), std::string::npos) << file;
}

// --- the factory -------------------------------------------------------------

struct Fixture {
  Fixture() {
    fs::create_directories(os_dir);
    write_file_atomic(os_dir / "vmlinuz", "kernel");
    write_file_atomic(os_dir / "initrd", "initrd");
    write_file_atomic(os_dir / "cmdline", "console=ttyS0 quiet\n");
    fs::create_directories(store / "machines" / "dev");
    fs::create_directories(home / "project");
  }
  DriverContext ctx() { return DriverContext{"dev", store / "machines" / "dev", {}}; }
  FlagValues flags(std::vector<std::string> shares = {}, bool no_share = false) {
    FlagValues v;
    v.set("libvirt-image", {os_dir.string()});
    // An unreachable libvirtd: the share check must come before anything else.
    v.set("libvirt-uri", {"qemu+unix:///system?socket=" + (t.path / "no-libvirtd.sock").string()});
    v.set("libvirt-accel", {"tcg"});
    if (!shares.empty()) v.set("libvirt-share", shares);
    if (no_share) v.set("libvirt-no-share", {"true"});
    return v;
  }
  TempDir t;
  fs::path os_dir = t.path / "os";
  fs::path store = t.path / "store";
  fs::path home = t.path / "home";
};

TEST(LibvirtShares, FlagsAreDeclaredAsData) {
  LibvirtDriverFactory f;
  std::map<std::string, FlagSpec> by_name;
  for (const auto& s : f.flags()) by_name[s.name] = s;
  ASSERT_TRUE(by_name.count("libvirt-share"));
  ASSERT_TRUE(by_name.count("libvirt-no-share"));
  EXPECT_EQ(by_name["libvirt-share"].kind, FlagSpec::Kind::StringList);
  EXPECT_EQ(by_name["libvirt-no-share"].kind, FlagSpec::Kind::Bool);
  EXPECT_EQ(by_name["libvirt-no-share"].env_var, "LIBVIRT_NO_SHARE");
}

TEST(LibvirtShares, TheDriverStateRecordsTheShares) {
  Fixture fx;
  ScopedEnv home("HOME", fx.home.string());
  LibvirtDriverFactory f;
  auto j = f.make(fx.flags(), fx.ctx())->save_state();
  ASSERT_EQ(j["shares"].size(), 1u) << j.dump();
  EXPECT_EQ(j["shares"][0], (nlohmann::json{{"tag", "berth0"}, {"host", fx.home.string()}, {"guest", fx.home.string()}}));

  j = f.make(fx.flags({}, true), fx.ctx())->save_state();
  EXPECT_TRUE(j["shares"].empty()) << j.dump();

  const std::string project = (fx.home / "project").string();
  j = f.make(fx.flags({project + ":/mnt/host"}, true), fx.ctx())->save_state();
  ASSERT_EQ(j["shares"].size(), 1u) << j.dump();
  EXPECT_EQ(j["shares"][0], (nlohmann::json{{"tag", "berth0"}, {"host", project}, {"guest", "/mnt/host"}}));
  // Loaded back, the shares stay; a record made before shares existed has none.
  EXPECT_EQ(f.load(j, fx.ctx())->save_state()["shares"], j["shares"]);
  j.erase("shares");
  EXPECT_TRUE(f.load(j, fx.ctx())->save_state()["shares"].empty());

  EXPECT_THROW(f.make(fx.flags({"project:/mnt/host"}), fx.ctx()), UserError);
  EXPECT_THROW(f.make(fx.flags({project + ":/root"}), fx.ctx()), UserError);
}

TEST(LibvirtShares, AMissingFolderFailsThePreCreateCheckFirst) {
  Fixture fx;
  ScopedEnv home("HOME", fx.home.string());
  LibvirtDriverFactory f;
  const std::string gone = (fx.t.path / "gone").string();
  auto d = f.make(fx.flags({gone + ":/mnt/host"}), fx.ctx());
  try {
    d->pre_create_check();
    FAIL() << "expected PreCreateCheckFailed";
  } catch (const PreCreateCheckFailed& e) {
    EXPECT_EQ(e.exit_code(), kExitPreCreateCheck);
    const std::string what = e.what();
    EXPECT_NE(what.find("machine 'dev': the folder to share, " + gone + ", does not exist"), std::string::npos)
        << what;
  }
  EXPECT_FALSE(fs::exists(fx.store / "pool"));
  // With the folders all there, the check goes on to libvirt (unreachable here).
  auto ok = f.make(fx.flags({(fx.home / "project").string() + ":/mnt/host"}), fx.ctx());
  try {
    ok->pre_create_check();
    FAIL() << "expected PreCreateCheckFailed";
  } catch (const PreCreateCheckFailed& e) {
    EXPECT_EQ(std::string(e.what()).find("folder to share"), std::string::npos) << e.what();
  }
}

// --- berth-os's side: etc/berth-os/shares with a fake mount -------------------

TEST(LibvirtShares, BerthOsMountsEachLineAndGoesOnAfterAFailure) {
  const fs::path script = fs::path(BERTH_TEST_SOURCE_DIR) / "image/rootfs/etc/berth-os/shares";
  ASSERT_TRUE(fs::exists(script)) << script;
  TempDir t;
  const fs::path bin = t.path / "bin", guest = t.path / "guest";
  fs::create_directories(bin);
  // mount records its arguments and fails for berth1; modprobe does nothing.
  write_file_atomic(bin / "mount",
                    "#!/bin/sh\nfor a in \"$@\"; do printf '[%s]' \"$a\" >>" + (t.path / "mount.log").string() +
                        "; done\necho >>" + (t.path / "mount.log").string() +
                        "\ncase \"$*\" in *' berth1 '*) echo 'mount: no such device' >&2; exit 1 ;; esac\n",
                    0755);
  write_file_atomic(bin / "modprobe", "#!/bin/sh\necho \"$*\" >" + (t.path / "modprobe.log").string() + "\n", 0755);
  const std::string g = guest.string();
  write_file_atomic(t.path / "mounts", "berth0 " + g + "/home/me\nberth1 " + g + "/mnt/broken\nbad/tag " + g +
                                           "/x\nberth2 relative/path\nberth3 " + g + "/mnt/my host");  // no last \n
  const std::string cmd = "PATH=" + bin.string() + ":$PATH BERTH_OS_CONSOLE=" + (t.path / "console").string() +
                          " sh " + script.string() + " " + (t.path / "mounts").string();
  EXPECT_EQ(std::system(cmd.c_str()), 0);
  const std::string opts = "[-t][9p][-o][trans=virtio,version=9p2000.L,msize=262144,cache=mmap]";
  EXPECT_EQ(read_file(t.path / "mount.log"), opts + "[berth0][" + g + "/home/me]\n" + opts + "[berth1][" + g +
                                                 "/mnt/broken]\n" + opts + "[berth3][" + g + "/mnt/my host]\n");
  EXPECT_TRUE(fs::is_directory(guest / "home/me"));
  EXPECT_TRUE(fs::is_directory(guest / "mnt/my host"));
  EXPECT_EQ(read_file(t.path / "modprobe.log"), "-qa 9pnet_virtio 9p\n");
  const std::string console = read_file(t.path / "console");
  EXPECT_NE(console.find("berth-os: host folder berth0 mounted on " + g + "/home/me\n"), std::string::npos)
      << console;
  EXPECT_NE(console.find("berth-os: cannot mount host folder berth1 on " + g + "/mnt/broken: mount: no such device"),
            std::string::npos)
      << console;
  EXPECT_NE(console.find("bad tag 'bad/tag'"), std::string::npos) << console;
  EXPECT_NE(console.find("'relative/path' is not an absolute path"), std::string::npos) << console;

  // No file (no shares): nothing happens, not even modprobe.
  fs::remove(t.path / "modprobe.log");
  const std::string none = "PATH=" + bin.string() + ":$PATH sh " + script.string() + " " +
                           (t.path / "absent").string();
  EXPECT_EQ(std::system(none.c_str()), 0);
  EXPECT_FALSE(fs::exists(t.path / "modprobe.log"));
}

}  // namespace
}  // namespace berth
