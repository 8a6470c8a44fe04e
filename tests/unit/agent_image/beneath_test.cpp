// Paths beneath a root fd: components are walked one by one, symlinks and ".."
// are refused, removal never follows a link.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <system_error>

#include "agent/image/beneath.h"
#include "tar_builder.h"
#include "test_util.h"

namespace berth::agent::image {
namespace {
namespace fs = std::filesystem;
using testing::TempDir;

TEST(Beneath, SplitsPathsAndRefusesDotDot) {
  EXPECT_EQ(split_beneath("./a//b/./c/"), (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(split_beneath("/abs/path"), (std::vector<std::string>{"abs", "path"}));
  EXPECT_TRUE(split_beneath("").empty());
  EXPECT_TRUE(split_beneath("/./").empty());
  EXPECT_EQ(split_beneath("a..b/..c"), (std::vector<std::string>{"a..b", "..c"}));
  EXPECT_THROW(split_beneath("a/../b"), BreakoutError);
  EXPECT_THROW(split_beneath(".."), BreakoutError);
}

TEST(Beneath, OpensAndCreatesDirectoriesWithoutCrossingSymlinks) {
  TempDir tmp;
  fs::create_directories(tmp.path / "root/real");
  fs::create_directories(tmp.path / "outside");
  fs::create_directory_symlink(tmp.path / "outside", tmp.path / "root/link");
  fs::create_directory_symlink("real", tmp.path / "root/inner");  // even one that stays inside
  { std::ofstream(tmp.path / "root/file") << "x"; }
  Beneath tree(tmp.path / "root");

  Fd made = tree.open_dir("real/x/y", MissingDirs::kCreate);
  EXPECT_TRUE(made);
  EXPECT_TRUE(fs::is_directory(tmp.path / "root/real/x/y"));
  EXPECT_THROW(tree.open_dir("real/missing"), std::system_error);
  EXPECT_THROW(tree.open_dir("link/x", MissingDirs::kCreate), BreakoutError);
  EXPECT_THROW(tree.open_dir("inner"), BreakoutError);
  EXPECT_THROW(tree.open_dir("../outside"), BreakoutError);
  try {
    tree.open_dir("file/x", MissingDirs::kCreate);
    FAIL();
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code().value(), ENOTDIR);
  }
  EXPECT_TRUE(fs::is_empty(tmp.path / "outside"));

  Beneath::Slot slot = tree.open_parent("real/x/new", MissingDirs::kFail);
  EXPECT_EQ(slot.name, "new");
  ASSERT_EQ(::mkdirat(slot.dir.get(), slot.name.c_str(), 0755), 0);
  EXPECT_TRUE(fs::is_directory(tmp.path / "root/real/x/new"));
  EXPECT_EQ(tree.open_parent("/", MissingDirs::kFail).name, "");

  // open(): a symlink as the last component is not followed either.
  Fd file = tree.open("file", O_RDONLY);
  char c = 0;
  EXPECT_EQ(::read(file.get(), &c, 1), 1);
  EXPECT_EQ(c, 'x');
  try {
    tree.open("link", O_RDONLY);
    FAIL();
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code().value(), ELOOP);
  }
  EXPECT_THROW(tree.open("link", O_RDONLY | O_DIRECTORY), std::system_error);  // ENOTDIR then
  EXPECT_THROW(tree.open("link/anything", O_WRONLY | O_CREAT, 0644), BreakoutError);
}

TEST(Beneath, RemoveAtDeletesTreesWithoutFollowingSymlinks) {
  TempDir tmp;
  fs::create_directories(tmp.path / "root/d/sub/deeper");
  fs::create_directories(tmp.path / "outside");
  { std::ofstream(tmp.path / "outside/keep") << "host"; }
  { std::ofstream(tmp.path / "root/d/sub/deeper/f") << "x"; }
  fs::create_directory_symlink(tmp.path / "outside", tmp.path / "root/d/link");
  fs::create_symlink(tmp.path / "outside/keep", tmp.path / "root/d/sub/file-link");
  ASSERT_EQ(::mkfifo((tmp.path / "root/d/fifo").c_str(), 0600), 0);
  Beneath tree(tmp.path / "root");
  remove_at(tree.root_fd(), "d");
  EXPECT_FALSE(fs::exists(fs::symlink_status(tmp.path / "root/d")));
  EXPECT_EQ(testing::read_all((tmp.path / "outside/keep").string()), "host");
  remove_at(tree.root_fd(), "absent");  // fine

  fs::create_directory_symlink(tmp.path / "outside", tmp.path / "root/top-link");
  remove_at(tree.root_fd(), "top-link");
  EXPECT_FALSE(fs::exists(fs::symlink_status(tmp.path / "root/top-link")));
  EXPECT_TRUE(fs::exists(tmp.path / "outside/keep"));
}

TEST(Beneath, FdOwnsItsDescriptor) {
  int raw = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  ASSERT_GE(raw, 0);
  {
    Fd a(raw);
    Fd b(std::move(a));
    EXPECT_FALSE(a);
    EXPECT_EQ(b.get(), raw);
    Fd c;
    c = std::move(b);
    EXPECT_EQ(c.get(), raw);
  }
  EXPECT_EQ(::fcntl(raw, F_GETFD), -1);  // closed once, by the last owner
  EXPECT_EQ(errno, EBADF);
}

}  // namespace
}  // namespace berth::agent::image
