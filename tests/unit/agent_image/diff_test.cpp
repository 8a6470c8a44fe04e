// An overlayfs upper directory as a layer tar: every kind of entry survives a
// round trip through unpack_layer, whiteouts and opaque directories become
// `.wh.` entries, and the bytes are the same each time. Runs as root.
#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "agent/image/diff.h"
#include "agent/image/digest.h"
#include "agent/image/layer.h"
#include "tar_builder.h"
#include "test_util.h"

namespace berth::agent::image {
namespace {
namespace fs = std::filesystem;
using testing::read_all;
using testing::string_reader;
using testing::TempDir;

struct Written {
  std::string bytes;
  LayerTar layer;
};

Written tar_of(const fs::path& upper) {
  Written w;
  w.layer = write_layer_tar(upper, [&](const char* p, std::size_t n) { w.bytes.append(p, n); });
  return w;
}

// The members of a tar, in order: name and libarchive file type.
std::vector<std::pair<std::string, unsigned>> members_of(const std::string& tar) {
  std::vector<std::pair<std::string, unsigned>> out;
  archive* a = archive_read_new();
  archive_read_support_format_tar(a);
  archive_read_support_format_empty(a);
  EXPECT_EQ(archive_read_open_memory(a, tar.data(), tar.size()), ARCHIVE_OK);
  archive_entry* e = nullptr;
  while (archive_read_next_header(a, &e) == ARCHIVE_OK)
    out.emplace_back(archive_entry_pathname(e), archive_entry_hardlink(e) ? 0u : archive_entry_filetype(e));
  archive_read_free(a);
  return out;
}

void write_file(const fs::path& p, const std::string& content, mode_t mode) {
  std::ofstream(p, std::ios::binary) << content;
  ASSERT_EQ(::chmod(p.c_str(), mode), 0);
}

std::string xattrs(const fs::path& p) {
  char names[4096];
  ssize_t n = ::llistxattr(p.c_str(), names, sizeof names);
  std::vector<std::string> list;
  for (ssize_t i = 0; i < n;) {
    std::string name(names + i);
    i += static_cast<ssize_t>(name.size()) + 1;
    char value[256];
    ssize_t v = ::lgetxattr(p.c_str(), name.c_str(), value, sizeof value);
    list.push_back(name + "=" + std::string(value, static_cast<std::size_t>(std::max<ssize_t>(v, 0))));
  }
  std::sort(list.begin(), list.end());
  std::string out;
  for (const auto& x : list) out += x + ";";
  return out;
}

// Everything about a tree that a layer carries, path by path. Whiteouts are
// just whiteouts (the unpacker makes them anew); hard links name the first
// path of their inode.
std::map<std::string, std::string> describe(const fs::path& root) {
  std::map<std::string, std::string> out;
  std::map<std::pair<dev_t, ino_t>, std::string> inodes;
  for (auto it = fs::recursive_directory_iterator(root); it != fs::recursive_directory_iterator(); ++it) {
    const fs::path& p = it->path();
    const std::string rel = p.lexically_relative(root).string();
    struct stat st {};
    EXPECT_EQ(::lstat(p.c_str(), &st), 0) << rel;
    if (S_ISCHR(st.st_mode) && st.st_rdev == makedev(0, 0)) {
      out[rel] = "whiteout";
      continue;
    }
    std::string d = std::to_string(st.st_mode) + " " + std::to_string(st.st_uid) + ":" + std::to_string(st.st_gid);
    if (!S_ISDIR(st.st_mode)) d += " size=" + std::to_string(st.st_size);
    d += " mtime=" + std::to_string(st.st_mtim.tv_sec);  // whole seconds, as docker's layers
    if (S_ISREG(st.st_mode)) d += " content=" + sha256_digest(read_all(p.string()));
    if (S_ISLNK(st.st_mode)) d += " -> " + fs::read_symlink(p).string();
    if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) d += " dev=" + std::to_string(st.st_rdev);
    if (!S_ISDIR(st.st_mode) && st.st_nlink > 1) {
      auto [first, fresh] = inodes.try_emplace({st.st_dev, st.st_ino}, rel);
      d += " inode-of=" + first->second;
    }
    d += " xattrs=" + xattrs(p);
    out[rel] = d;
  }
  return out;
}

// Sets every mtime, children first, so directories keep theirs.
void set_times(const fs::path& root, std::int64_t base) {
  std::vector<fs::path> paths;
  for (const auto& e : fs::recursive_directory_iterator(root)) paths.push_back(e.path());
  std::reverse(paths.begin(), paths.end());
  std::int64_t n = 0;
  for (const auto& p : paths) {
    timespec times[2] = {{base + n, 123}, {base + n, 456000 + n}};
    ASSERT_EQ(::utimensat(AT_FDCWD, p.c_str(), times, AT_SYMLINK_NOFOLLOW), 0) << p;
    ++n;
  }
}

bool trusted_xattrs_work(const fs::path& dir) {
  fs::path probe = dir / ".xattr-probe";
  fs::create_directory(probe);
  bool ok = ::lsetxattr(probe.c_str(), "trusted.berth-probe", "1", 1, 0) == 0;
  fs::remove(probe);
  return ok;
}

// An upper directory with every kind of entry overlayfs leaves there.
void make_upper(const fs::path& u) {
  fs::create_directories(u / "etc");
  write_file(u / "etc/hosts", "127.0.0.1 localhost\n", 0644);
  fs::create_directories(u / "bin");
  write_file(u / "bin/tool", std::string(70000, 'x'), 04755);
  ASSERT_EQ(::link((u / "bin/tool").c_str(), (u / "bin/tool2").c_str()), 0);
  fs::create_directories(u / "home/user");
  write_file(u / "home/user/.profile", "export A=1\n", 0600);
  ASSERT_EQ(::lchown((u / "home/user").c_str(), 1000, 1000), 0);
  ASSERT_EQ(::lchown((u / "home/user/.profile").c_str(), 1000, 1001), 0);
  fs::create_symlink("usr/lib", u / "lib");
  fs::create_symlink("/etc/hosts", u / "hosts-link");
  ASSERT_EQ(::lchown((u / "lib").c_str(), 5, 6), 0);
  ASSERT_EQ(::mknod((u / "gone").c_str(), S_IFCHR, makedev(0, 0)), 0);  // a whiteout
  // overlayfs may share one whiteout inode: each link is still its own whiteout.
  ASSERT_EQ(::link((u / "gone").c_str(), (u / "etc/gone-too").c_str()), 0);
  fs::create_directories(u / "var/cache");
  ASSERT_EQ(::setxattr((u / "var/cache").c_str(), "trusted.overlay.opaque", "y", 1, 0), 0);
  write_file(u / "var/cache/kept", "new\n", 0644);
  ASSERT_EQ(::setxattr((u / "etc/hosts").c_str(), "trusted.berth.note", "hello", 5, 0), 0);
  ASSERT_EQ(::setxattr((u / "etc/hosts").c_str(), "trusted.overlay.origin", "x", 1, 0), 0);  // left out
  fs::create_directories(u / "dev");
  ASSERT_EQ(::mknod((u / "dev/null").c_str(), S_IFCHR | 0666, makedev(1, 3)), 0);
  ASSERT_EQ(::mknod((u / "dev/loop9").c_str(), S_IFBLK | 0660, makedev(7, 9)), 0);
  ASSERT_EQ(::mkfifo((u / "dev/fifo").c_str(), 0620), 0);
  fs::create_directories(u / "empty");
  ASSERT_EQ(::chmod((u / "empty").c_str(), 0700), 0);
  // A socket: a tar cannot hold one, so the layer leaves it out.
  int s = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::string sock = (u / "dev/sock").string();
  ASSERT_LT(sock.size(), sizeof addr.sun_path);
  std::memcpy(addr.sun_path, sock.c_str(), sock.size() + 1);
  ASSERT_EQ(::bind(s, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ::close(s);
  set_times(u, 1600000000);
}

TEST(LayerDiff, RoundTripsThroughUnpackLayer) {
  TempDir tmp;
  if (!trusted_xattrs_work(tmp.path)) GTEST_SKIP() << "this filesystem refuses trusted.* xattrs";
  const fs::path upper = tmp.path / "upper", back = tmp.path / "back";
  make_upper(upper);
  fs::create_directory(back);

  Written w = tar_of(upper);
  EXPECT_EQ(w.layer.diff_id, sha256_digest(w.bytes));
  EXPECT_EQ(w.layer.tar_size, w.bytes.size());
  EXPECT_EQ(w.layer.size, 20u + 70000u + 11u + 4u);
  EXPECT_EQ(w.layer.entries, members_of(w.bytes).size());

  UnpackedLayer unpacked = unpack_layer(string_reader(w.bytes), back);
  EXPECT_EQ(unpacked.diff_id, w.layer.diff_id);

  auto expected = describe(upper);
  expected.erase("dev/sock");
  EXPECT_TRUE(expected["etc/hosts"].find("trusted.overlay.origin") != std::string::npos);
  expected["etc/hosts"].replace(expected["etc/hosts"].find("trusted.overlay.origin=x;"),
                                std::string("trusted.overlay.origin=x;").size(), "");
  EXPECT_EQ(describe(back), expected);
  EXPECT_NE(expected["var/cache"].find("trusted.overlay.opaque=y"), std::string::npos);
  EXPECT_NE(expected["bin/tool2"].find("inode-of=bin/tool"), std::string::npos);
}

TEST(LayerDiff, WritesWhiteoutsAndOpaqueMarkersInPathOrder) {
  TempDir tmp;
  if (!trusted_xattrs_work(tmp.path)) GTEST_SKIP() << "this filesystem refuses trusted.* xattrs";
  make_upper(tmp.path / "upper");
  auto members = members_of(tar_of(tmp.path / "upper").bytes);
  std::vector<std::string> names;
  for (const auto& [name, type] : members) names.push_back(name);
  const std::vector<std::string> expected = {
      "bin/",          "bin/tool", "bin/tool2", "dev/",       "dev/fifo",
      "dev/loop9",     "dev/null", "empty/",    "etc/",       "etc/.wh.gone-too",
      "etc/hosts",     ".wh.gone", "home/",     "home/user/", "home/user/.profile",
      "hosts-link",    "lib",      "var/",      "var/cache/", "var/cache/.wh..wh..opq",
      "var/cache/kept"};
  EXPECT_EQ(names, expected);
  std::map<std::string, unsigned> types(members.begin(), members.end());
  EXPECT_EQ(types["bin/tool2"], 0u);  // a hard link
  EXPECT_EQ(types[".wh.gone"], static_cast<unsigned>(AE_IFREG));
  EXPECT_EQ(types["etc/.wh.gone-too"], static_cast<unsigned>(AE_IFREG));
  EXPECT_EQ(types["var/cache/.wh..wh..opq"], static_cast<unsigned>(AE_IFREG));
  EXPECT_EQ(types["lib"], static_cast<unsigned>(AE_IFLNK));
  EXPECT_EQ(types["dev/fifo"], static_cast<unsigned>(AE_IFIFO));
  EXPECT_EQ(types["dev/loop9"], static_cast<unsigned>(AE_IFBLK));
}

TEST(LayerDiff, TheSameTreeGivesTheSameBytes) {
  TempDir tmp;
  if (!trusted_xattrs_work(tmp.path)) GTEST_SKIP() << "this filesystem refuses trusted.* xattrs";
  make_upper(tmp.path / "upper");
  Written a = tar_of(tmp.path / "upper");
  Written b = tar_of(tmp.path / "upper");  // reading changed atimes: they are not in the tar
  EXPECT_EQ(a.bytes, b.bytes);
  EXPECT_EQ(a.layer.diff_id, b.layer.diff_id);
}

TEST(LayerDiff, AnEmptyUpperHasNoEntries) {
  TempDir tmp;
  Written w = tar_of(tmp.path);
  EXPECT_EQ(w.layer.entries, 0u);
  EXPECT_EQ(w.layer.size, 0u);
  EXPECT_EQ(w.layer.tar_size, w.bytes.size());
  EXPECT_EQ(w.layer.diff_id, sha256_digest(w.bytes));
  EXPECT_TRUE(members_of(w.bytes).empty());
  TempDir back;
  unpack_layer(string_reader(w.bytes), back.path);
  EXPECT_TRUE(fs::is_empty(back.path));
}

TEST(LayerDiff, FailsNamingAMissingUpper) {
  TempDir tmp;
  try {
    tar_of(tmp.path / "missing");
    FAIL() << "no error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("missing"), std::string::npos) << e.what();
  }
}

TEST(LayerDiff, AnErrorFromTheOutputComesThrough) {
  TempDir tmp;
  write_file(tmp.path / "f", std::string(100000, 'a'), 0644);
  struct Gone : std::runtime_error {
    using std::runtime_error::runtime_error;
  };
  EXPECT_THROW(write_layer_tar(tmp.path, [](const char*, std::size_t) { throw Gone("client gone"); }), Gone);
}

// A real overlay: deleting a lower file leaves a whiteout in the upper
// directory, replacing a lower directory an opaque one.
TEST(LayerDiff, AnOverlayUpperDirectoryBecomesWhiteouts) {
  TempDir tmp;
  const fs::path lower = tmp.path / "lower", upper = tmp.path / "upper", work = tmp.path / "work",
                 merged = tmp.path / "merged";
  for (const auto& d : {lower, upper, work, merged}) fs::create_directories(d);
  write_file(lower / "a.txt", "a", 0644);
  fs::create_directories(lower / "dir/sub");
  write_file(lower / "dir/x", "x", 0644);
  write_file(lower / "keep", "k", 0644);
  const std::string options =
      "lowerdir=" + lower.string() + ",upperdir=" + upper.string() + ",workdir=" + work.string();
  if (::mount("overlay", merged.c_str(), "overlay", 0, options.c_str()) != 0)
    GTEST_SKIP() << "cannot mount overlayfs here: " << std::strerror(errno);
  fs::remove(merged / "a.txt");
  fs::remove_all(merged / "dir");
  fs::create_directory(merged / "dir");
  write_file(merged / "dir/new", "n", 0644);
  write_file(merged / "added", "+", 0644);
  ASSERT_EQ(::umount(merged.c_str()), 0);

  std::vector<std::string> names;
  for (const auto& [name, type] : members_of(tar_of(upper).bytes)) names.push_back(name);
  EXPECT_EQ(names, (std::vector<std::string>{".wh.a.txt", "added", "dir/", "dir/.wh..wh..opq", "dir/new"}));
}

}  // namespace
}  // namespace berth::agent::image
