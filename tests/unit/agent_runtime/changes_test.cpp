// docker diff's kinds from an overlayfs upper directory against its lower
// layers, built by hand: whiteouts (0:0 character devices, which need root),
// opaque directories (trusted.overlay.opaque), and directories whose metadata
// equals the lower one's.
#include "agent/runtime/changes.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <fstream>

namespace berth::agent::runtime {
namespace {

namespace fs = std::filesystem;

std::string shown(const std::vector<Change>& changes) {
  std::string out;
  for (const Change& c : changes) out += "CAD"[c.kind] + std::string(" ") + c.path + "\n";
  return out;
}

class Changes : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "berth-changes-XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    for (const char* d : {"lower/etc", "lower/usr/bin", "lower/var/cache/old", "upper"}) fs::create_directories(dir_ / d);
    write(lower() / "etc/passwd", "root\n");
    write(lower() / "usr/bin/tool", "bin");
    write(lower() / "var/cache/old/f", "old");
  }
  void TearDown() override { fs::remove_all(dir_); }

  fs::path lower() const { return dir_ / "lower"; }
  fs::path upper() const { return dir_ / "upper"; }
  static void write(const fs::path& p, const std::string& text) { std::ofstream(p) << text; }
  // An upper directory copied up as overlayfs does: same mode and times as below.
  void copy_up_dir(const std::string& rel) {
    fs::create_directories(upper() / rel);
    struct stat st {};
    ASSERT_EQ(::stat((lower() / rel).c_str(), &st), 0);
    ASSERT_EQ(::chmod((upper() / rel).c_str(), st.st_mode & 07777), 0);
  }
  void same_times(const std::string& rel) {
    struct stat st {};
    ASSERT_EQ(::stat((lower() / rel).c_str(), &st), 0);
    timespec times[2] = {st.st_atim, st.st_mtim};
    ASSERT_EQ(::utimensat(AT_FDCWD, (upper() / rel).c_str(), times, AT_SYMLINK_NOFOLLOW), 0);
  }
  void whiteout(const std::string& rel) {
    ASSERT_EQ(::mknod((upper() / rel).c_str(), S_IFCHR | 0600, makedev(0, 0)), 0) << "needs root";
  }
  std::vector<Change> diff() { return overlay_changes(upper(), {lower()}); }

  fs::path dir_;
};

TEST_F(Changes, NothingChangedIsNoChange) {
  EXPECT_TRUE(diff().empty());
  EXPECT_TRUE(overlay_changes(dir_ / "never-started", {lower()}).empty());
}

TEST_F(Changes, AModifiedFileUnderAnUnchangedDirectory) {
  copy_up_dir("etc");
  write(upper() / "etc/passwd", "root\napp\n");
  same_times("etc");
  EXPECT_EQ(shown(diff()), "C /etc/passwd\n");
}

TEST_F(Changes, AnAddedFileMarksItsParentModified) {
  copy_up_dir("etc");
  write(upper() / "etc/added", "x");
  same_times("etc");
  write(upper() / "top-level", "x");
  EXPECT_EQ(shown(diff()), "C /etc\nA /etc/added\nA /top-level\n");
}

TEST_F(Changes, ADirectoryWithNewTimesIsModified) {
  copy_up_dir("etc");
  write(upper() / "etc/passwd", "changed");
  timespec later[2] = {{1000, 0}, {1000, 0}};
  ASSERT_EQ(::utimensat(AT_FDCWD, (upper() / "etc").c_str(), later, 0), 0);
  EXPECT_EQ(shown(diff()), "C /etc\nC /etc/passwd\n");
}

TEST_F(Changes, WhiteoutsAreDeletions) {
  copy_up_dir("usr");
  copy_up_dir("usr/bin");
  whiteout("usr/bin/tool");
  same_times("usr/bin");
  same_times("usr");
  EXPECT_EQ(shown(diff()), "C /usr/bin\nD /usr/bin/tool\n");
}

TEST_F(Changes, NewDirectoriesAndTheirContentAreAdded) {
  fs::create_directories(upper() / "opt/app");
  write(upper() / "opt/app/run", "x");
  EXPECT_EQ(shown(diff()), "A /opt\nA /opt/app\nA /opt/app/run\n");
}

TEST_F(Changes, AnOpaqueDirectoryReplacedTheOneBelow) {
  copy_up_dir("var");
  copy_up_dir("var/cache");
  same_times("var");
  same_times("var/cache");
  fs::create_directories(upper() / "var/cache/old");
  ASSERT_EQ(::setxattr((upper() / "var/cache/old").c_str(), "trusted.overlay.opaque", "y", 1, 0), 0)
      << "needs root and a file system with trusted xattrs";
  write(upper() / "var/cache/old/new", "x");
  same_times("var/cache");
  EXPECT_EQ(shown(diff()), "C /var/cache\nD /var/cache/old\nA /var/cache/old/new\n");
}

TEST_F(Changes, LowerLayersAreReadTopFirstAndNeverThroughTheirLinks) {
  // A higher lower layer deleted the file: adding it again is an addition.
  fs::create_directories(dir_ / "middle/usr/bin");
  ASSERT_EQ(::mknod((dir_ / "middle/usr/bin/tool").c_str(), S_IFCHR | 0600, makedev(0, 0)), 0);
  copy_up_dir("usr");
  copy_up_dir("usr/bin");
  for (const char* d : {"usr/bin", "usr"}) {  // the middle layer's directories are the lower ones, copied up
    same_times(d);
    struct stat st {};
    ASSERT_EQ(::stat((lower() / d).c_str(), &st), 0);
    timespec times[2] = {st.st_atim, st.st_mtim};
    ASSERT_EQ(::utimensat(AT_FDCWD, (dir_ / "middle" / d).c_str(), times, 0), 0);
  }
  write(upper() / "usr/bin/tool", "back");
  EXPECT_EQ(shown(overlay_changes(upper(), {dir_ / "middle", lower()})), "C /usr/bin\nA /usr/bin/tool\n");
  // A lower layer's symlink to the machine's / is not looked through.
  fs::create_directories(dir_ / "linked");
  fs::create_symlink("/", dir_ / "linked/sys-root");
  fs::create_directories(upper() / "sys-root/etc");
  EXPECT_EQ(shown(overlay_changes(upper(), {dir_ / "linked"})).find("C /sys-root/etc"), std::string::npos);
}

}  // namespace
}  // namespace berth::agent::runtime
