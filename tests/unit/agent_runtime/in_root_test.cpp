// Files read as the container sees them (its /etc/passwd and /etc/group).
#include "agent/runtime/in_root.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <chrono>
#include <fstream>

namespace berth::agent::runtime {
namespace {

namespace fs = std::filesystem;

class InRoot : public ::testing::TestWithParam<Resolver> {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "berth-in-root-XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    fs::create_directories(root() / "etc");
    fs::create_directories(dir_ / "outside");
    write(dir_ / "outside" / "secret", "root:x:0:0:leaked:/leaked-home:/bin/sh\n");
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path root() const { return dir_ / "root"; }
  static void write(const fs::path& p, const std::string& text) { std::ofstream(p) << text; }
  std::optional<std::string> read(const char* path, std::size_t limit = 1 << 20) {
    return read_regular_file_in_root(root(), path, limit, GetParam());
  }

  fs::path dir_;
};

TEST_P(InRoot, ReadsARegularFile) {
  write(root() / "etc" / "passwd", "app:x:1000:1000::/home/app:/bin/sh\n");
  EXPECT_EQ(read("/etc/passwd"),
            "app:x:1000:1000::/home/app:/bin/sh\n");
  EXPECT_EQ(read("/etc/missing"), std::nullopt);
}

TEST_P(InRoot, AbsoluteAndRelativeLinksStayInTheRoot) {
  write(root() / "etc" / "real", "inside\n");
  fs::create_symlink("/etc/real", root() / "etc" / "abs");
  fs::create_symlink("../../../../../../etc/real", root() / "etc" / "rel");
  EXPECT_EQ(read("/etc/abs"), "inside\n");
  EXPECT_EQ(read("/etc/rel"), "inside\n");
  // A link to the machine's file names a path that does not exist in the root.
  fs::create_symlink(dir_ / "outside" / "secret", root() / "etc" / "passwd");
  EXPECT_EQ(read("/etc/passwd"), std::nullopt);
  fs::create_symlink("../../outside/secret", root() / "etc" / "group");
  EXPECT_EQ(read("/etc/group"), std::nullopt);
}

TEST_P(InRoot, DevicesFifosAndBigFilesAreNotRead) {
  fs::create_symlink("/dev/zero", root() / "etc" / "passwd");
  fs::create_directories(root() / "dev");
  ASSERT_EQ(::mknod((root() / "dev" / "zero").c_str(), S_IFCHR | 0666, makedev(1, 5)), 0);
  EXPECT_EQ(read("/etc/passwd"), std::nullopt);
  ASSERT_EQ(::mkfifo((root() / "etc" / "group").c_str(), 0644), 0);
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(read("/etc/group"), std::nullopt);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(1));
  write(root() / "etc" / "big", std::string(4096, 'x'));
  EXPECT_EQ(read("/etc/big", 4095), std::nullopt);
  EXPECT_EQ(read("/etc/big", 4096)->size(), 4096u);
}

TEST_P(InRoot, LinkLoopsEnd) {
  fs::create_symlink("/etc/b", root() / "etc" / "a");
  fs::create_symlink("/etc/a", root() / "etc" / "b");
  EXPECT_EQ(read("/etc/a"), std::nullopt);
}

INSTANTIATE_TEST_SUITE_P(Resolvers, InRoot, ::testing::Values(Resolver::Openat2, Resolver::Walk),
                         [](const auto& info) {
                           return info.param == Resolver::Openat2 ? "openat2" : "walk";
                         });

}  // namespace
}  // namespace berth::agent::runtime
