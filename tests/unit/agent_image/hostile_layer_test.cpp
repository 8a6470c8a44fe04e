// Hostile layers: entries that try to leave the layer root through a symlink
// of the same layer, "..", or a hardlink; and what an unpacked layer keeps
// (replacements, owners, modes, times, xattrs, sparse files). Runs as root.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "agent/image/layer.h"
#include "tar_builder.h"
#include "test_util.h"

namespace berth::agent::image {
namespace {
namespace fs = std::filesystem;
using testing::string_reader;
using testing::TarBuilder;
using testing::TempDir;

// A layer root and, beside it, the directory a hostile layer aims at.
struct Sandbox {
  TempDir tmp;
  fs::path root = tmp.path / "root";
  fs::path outside = tmp.path / "outside";
  Sandbox() {
    fs::create_directory(root);
    fs::create_directory(outside);
  }
  // What exists beside the root and under `outside`, as relative names.
  std::vector<std::string> stray() const {
    std::vector<std::string> out;
    for (const auto& e : fs::recursive_directory_iterator(tmp.path)) {
      fs::path rel = e.path().lexically_relative(tmp.path);
      if (rel == "root" || rel == "outside" || *rel.begin() == "root") continue;
      out.push_back(rel.string());
    }
    return out;
  }
};

// What unpacking `tar` into `dest` throws ("" when it succeeds).
std::string unpack_error(const std::string& tar, const fs::path& dest) {
  try {
    unpack_layer(string_reader(tar), dest);
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "";
}

bool has_xattr(const fs::path& p, const char* name) {
  char value[64];
  return ::lgetxattr(p.c_str(), name, value, sizeof value) >= 0;
}

// Whether this filesystem keeps trusted.* xattrs (it needs root too).
bool trusted_xattrs_work(const fs::path& dir) {
  fs::path probe = dir / ".xattr-probe";
  fs::create_directory(probe);
  bool ok = ::lsetxattr(probe.c_str(), "trusted.berth-probe", "1", 1, 0) == 0;
  fs::remove(probe);
  return ok;
}

TEST(HostileLayer, WhiteoutBeneathASymlinkFailsAndCreatesNothingOutside) {
  Sandbox box;
  std::string tar = TarBuilder().symlink("a", box.outside.string()).file("a/x/.wh.f", "").finish();
  std::string error = unpack_error(tar, box.root);
  EXPECT_NE(error.find("a/x/.wh.f"), std::string::npos) << error;
  EXPECT_NE(error.find("symlink"), std::string::npos) << error;
  EXPECT_EQ(box.stray(), std::vector<std::string>{});
}

TEST(HostileLayer, OpaqueMarkerBeneathASymlinkFailsAndMarksNothingOutside) {
  Sandbox box;
  std::string tar = TarBuilder().symlink("a", box.outside.string()).file("a/x/.wh..wh..opq", "").finish();
  std::string error = unpack_error(tar, box.root);
  EXPECT_NE(error.find("a/x/.wh..wh..opq"), std::string::npos) << error;
  EXPECT_EQ(box.stray(), std::vector<std::string>{});
  // The marker for the symlink itself must not reach its target either.
  Sandbox direct;
  std::string at_link = TarBuilder().symlink("a", direct.outside.string()).file("a/.wh..wh..opq", "").finish();
  EXPECT_NE(unpack_error(at_link, direct.root).find("a/.wh..wh..opq"), std::string::npos);
  EXPECT_FALSE(has_xattr(direct.outside, "trusted.overlay.opaque"));
}

TEST(HostileLayer, FileBeneathASymlinkFails) {
  Sandbox box;
  std::string tar = TarBuilder().symlink("a", box.outside.string()).file("a/file", "pwned").finish();
  std::string error = unpack_error(tar, box.root);
  EXPECT_NE(error.find("a/file"), std::string::npos) << error;
  EXPECT_NE(error.find("symlink"), std::string::npos) << error;
  EXPECT_EQ(box.stray(), std::vector<std::string>{});
}

TEST(HostileLayer, EveryEntryKindBeneathASymlinkFails) {
  using Add = std::function<void(TarBuilder&)>;
  const std::vector<std::pair<std::string, Add>> kinds = {
      {"a/d", [](TarBuilder& t) { t.dir("a/d"); }},
      {"a/f", [](TarBuilder& t) { t.file("a/f", "x"); }},
      {"a/s", [](TarBuilder& t) { t.symlink("a/s", "/etc/passwd"); }},
      {"a/h", [](TarBuilder& t) { t.file("in", "x").hardlink("a/h", "in"); }},
      {"a/p", [](TarBuilder& t) { t.fifo("a/p"); }},
      {"a/c", [](TarBuilder& t) { t.chardev("a/c", makedev(1, 3)); }},
      {"a/.wh.w", [](TarBuilder& t) { t.file("a/.wh.w", ""); }},
      {"a/.wh..wh..opq", [](TarBuilder& t) { t.file("a/.wh..wh..opq", ""); }},
      {"a/deep/er/f", [](TarBuilder& t) { t.file("a/deep/er/f", "x"); }},
      {"b/f", [](TarBuilder& t) { t.symlink("b", "a").file("b/f", "x"); }},  // a chain of links
  };
  for (const auto& [member, add] : kinds) {
    SCOPED_TRACE(member);
    Sandbox box;
    TarBuilder tar;
    tar.symlink("a", box.outside.string());
    add(tar);
    std::string error = unpack_error(tar.finish(), box.root);
    EXPECT_NE(error.find(member), std::string::npos) << error;
    EXPECT_EQ(box.stray(), std::vector<std::string>{});
  }
}

TEST(HostileLayer, HardlinkTargetBeneathASymlinkFails) {
  Sandbox box;
  { std::ofstream(box.outside / "secret") << "host data"; }
  std::string tar = TarBuilder().symlink("a", box.outside.string()).hardlink("h", "a/secret").finish();
  std::string error = unpack_error(tar, box.root);
  EXPECT_NE(error.find("h"), std::string::npos) << error;
  EXPECT_NE(error.find("symlink"), std::string::npos) << error;
  EXPECT_FALSE(fs::exists(fs::symlink_status(box.root / "h")));
  struct stat st {};
  ASSERT_EQ(::stat((box.outside / "secret").c_str(), &st), 0);
  EXPECT_EQ(st.st_nlink, 1u);
  // A target that names ".." is refused too.
  Sandbox up;
  EXPECT_NE(unpack_error(TarBuilder().hardlink("h", "../outside/x").finish(), up.root), "");
}

TEST(HostileLayer, SymlinkToDotDotFails) {
  Sandbox box;
  std::string tar = TarBuilder().symlink("up", "..").file("up/escaped", "x").finish();
  std::string error = unpack_error(tar, box.root);
  EXPECT_NE(error.find("up"), std::string::npos) << error;
  EXPECT_EQ(box.stray(), std::vector<std::string>{});
  // Deeper, with the link alone: dockerd refuses a link that points above the root.
  Sandbox deep;
  std::string alone = TarBuilder().dir("d").symlink("d/up", "../../outside").finish();
  EXPECT_NE(unpack_error(alone, deep.root).find("d/up"), std::string::npos);
  EXPECT_EQ(deep.stray(), std::vector<std::string>{});
  // Links that stay inside, relative or absolute, are fine.
  Sandbox fine;
  std::string inside = TarBuilder().dir("d").symlink("d/sib", "../e/f").symlink("abs", "/etc/passwd").finish();
  EXPECT_EQ(unpack_error(inside, fine.root), "");
  EXPECT_EQ(fs::read_symlink(fine.root / "d/sib"), "../e/f");
  EXPECT_EQ(fs::read_symlink(fine.root / "abs"), "/etc/passwd");
}

TEST(HostileLayer, ASymlinkReplacedByADirectoryIsNotFollowed) {
  Sandbox box;
  std::string tar = TarBuilder().symlink("a", box.outside.string()).dir("a").file("a/f", "inside").finish();
  EXPECT_EQ(unpack_error(tar, box.root), "");
  EXPECT_TRUE(fs::is_directory(fs::symlink_status(box.root / "a")));
  EXPECT_EQ(testing::read_all((box.root / "a/f").string()), "inside");
  EXPECT_EQ(box.stray(), std::vector<std::string>{});
}

TEST(HostileLayer, AFileOverADirectoryRemovesItWithoutFollowingSymlinks) {
  Sandbox box;
  { std::ofstream(box.outside / "keep") << "host data"; }
  std::string tar = TarBuilder()
                        .dir("d")
                        .symlink("d/link", box.outside.string())
                        .dir("d/sub")
                        .file("d/sub/f", "x")
                        .file("d", "now a file")
                        .finish();
  EXPECT_EQ(unpack_error(tar, box.root), "");
  EXPECT_TRUE(fs::is_regular_file(fs::symlink_status(box.root / "d")));
  EXPECT_EQ(testing::read_all((box.root / "d").string()), "now a file");
  EXPECT_EQ(testing::read_all((box.outside / "keep").string()), "host data");
}

TEST(Layer, ADirectoryOverADirectoryKeepsItsContentAndTakesTheNewMode) {
  TempDir tmp;
  std::string tar = TarBuilder().dir("d", 0755).file("d/f", "x").dir("d", 0700).symlink("l", "d").file("l", "f").finish();
  EXPECT_EQ(unpack_error(tar, tmp.path), "");
  EXPECT_EQ(testing::read_all((tmp.path / "d/f").string()), "x");
  struct stat st {};
  ASSERT_EQ(::lstat((tmp.path / "d").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0700u);
  EXPECT_TRUE(fs::is_regular_file(fs::symlink_status(tmp.path / "l")));  // the link was replaced
}

TEST(Layer, KeepsOwnersModesTimesAndXattrs) {
  TempDir tmp;
  auto owned = [](int uid, int gid, long mtime) {
    return [=](archive_entry* e) {
      archive_entry_set_uid(e, uid);
      archive_entry_set_gid(e, gid);
      archive_entry_set_mtime(e, mtime, 500);
    };
  };
  std::string tar = TarBuilder()
                        .custom("d", AE_IFDIR, 0750, owned(1001, 1002, 1600000000))
                        .custom("d/suid", AE_IFREG, 04755,
                                [&](archive_entry* e) {
                                  owned(1003, 1004, 1600000001)(e);
                                  archive_entry_xattr_add_entry(e, "user.berth", "v1", 2);
                                },
                                "#!/bin/sh\n")
                        .custom("d/link", AE_IFLNK, 0777,
                                [&](archive_entry* e) {
                                  owned(1005, 1006, 1600000002)(e);
                                  archive_entry_set_symlink(e, "suid");
                                })
                        .custom("d/pipe", AE_IFIFO, 0640, owned(1007, 1008, 1600000003))
                        .custom("d/null", AE_IFCHR, 0666,
                                [&](archive_entry* e) {
                                  owned(0, 5, 1600000004)(e);
                                  archive_entry_set_rdev(e, makedev(1, 3));
                                })
                        .finish();
  ASSERT_EQ(unpack_error(tar, tmp.path), "");
  struct Want {
    const char* name;
    mode_t type;
    mode_t perm;
    uid_t uid;
    gid_t gid;
    time_t mtime;
  };
  for (const Want& w : {Want{"d", S_IFDIR, 0750, 1001, 1002, 1600000000},
                        Want{"d/suid", S_IFREG, 04755, 1003, 1004, 1600000001},
                        Want{"d/link", S_IFLNK, 0777, 1005, 1006, 1600000002},
                        Want{"d/pipe", S_IFIFO, 0640, 1007, 1008, 1600000003},
                        Want{"d/null", S_IFCHR, 0666, 0, 5, 1600000004}}) {
    SCOPED_TRACE(w.name);
    struct stat st {};
    ASSERT_EQ(::lstat((tmp.path / w.name).c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & S_IFMT, w.type);
    if (w.type != S_IFLNK) {
      EXPECT_EQ(st.st_mode & 07777, w.perm);
    }
    EXPECT_EQ(st.st_uid, w.uid);
    EXPECT_EQ(st.st_gid, w.gid);
    EXPECT_EQ(st.st_mtim.tv_sec, w.mtime);
  }
  // Nanoseconds travel in a pax header, which the file has for its xattr.
  struct stat file {};
  ASSERT_EQ(::lstat((tmp.path / "d/suid").c_str(), &file), 0);
  EXPECT_EQ(file.st_mtim.tv_nsec, 500);
  struct stat dev {};
  ASSERT_EQ(::lstat((tmp.path / "d/null").c_str(), &dev), 0);
  EXPECT_EQ(dev.st_rdev, makedev(1, 3));
  char value[8] = {};
  ASSERT_EQ(::lgetxattr((tmp.path / "d/suid").c_str(), "user.berth", value, sizeof value), 2) << std::strerror(errno);
  EXPECT_EQ(std::string(value, 2), "v1");
}

TEST(Layer, DropsOverlayXattrsCarriedByTheTar) {
  TempDir tmp;
  if (!trusted_xattrs_work(tmp.path)) GTEST_SKIP() << "this filesystem refuses trusted.* xattrs";
  std::string tar = TarBuilder()
                        .custom("d", AE_IFDIR, 0755,
                                [](archive_entry* e) {
                                  archive_entry_xattr_add_entry(e, "trusted.overlay.redirect", "/etc", 4);
                                  archive_entry_xattr_add_entry(e, "trusted.berth", "kept", 4);
                                })
                        .finish();
  ASSERT_EQ(unpack_error(tar, tmp.path), "");
  EXPECT_FALSE(has_xattr(tmp.path / "d", "trusted.overlay.redirect"));
  EXPECT_TRUE(has_xattr(tmp.path / "d", "trusted.berth"));
}

TEST(Layer, OpaqueMarkersAndWhiteoutsStayInside) {
  TempDir tmp;
  if (!trusted_xattrs_work(tmp.path)) GTEST_SKIP() << "this filesystem refuses trusted.* xattrs";
  std::string tar = TarBuilder().file("a/b/.wh..wh..opq", "").file("a/b/.wh.gone", "").file(".wh..wh..opq", "").finish();
  ASSERT_EQ(unpack_error(tar, tmp.path), "");
  EXPECT_TRUE(has_xattr(tmp.path / "a/b", "trusted.overlay.opaque"));
  EXPECT_TRUE(has_xattr(tmp.path, "trusted.overlay.opaque"));
  struct stat st {};
  ASSERT_EQ(::lstat((tmp.path / "a/b/gone").c_str(), &st), 0);
  EXPECT_TRUE(S_ISCHR(st.st_mode));
  EXPECT_EQ(st.st_rdev, makedev(0, 0));
  EXPECT_EQ(st.st_uid, 0u);
  EXPECT_EQ(st.st_gid, 0u);
}

TEST(Layer, WritesSparseAndLargeFiles) {
  TempDir tmp;
  constexpr std::size_t kLogical = 16 << 20;
  std::string sparse(kLogical, '\0');
  std::fill_n(sparse.begin(), 4096, 'a');
  std::fill_n(sparse.begin() + (8 << 20), 4096, 'b');
  std::string large(3 << 20, '\0');
  for (std::size_t i = 0; i < large.size(); ++i) large[i] = static_cast<char>(i * 7 + i / 4096);
  std::string tar = TarBuilder()
                        .custom("sparse", AE_IFREG, 0644,
                                [](archive_entry* e) {
                                  archive_entry_sparse_add_entry(e, 0, 4096);
                                  archive_entry_sparse_add_entry(e, 8 << 20, 4096);
                                },
                                sparse)
                        .file("large", large)
                        .finish();
  ASSERT_LT(tar.size(), large.size() + (1 << 20));  // the holes are not in the tar
  UnpackedLayer out = unpack_layer(string_reader(tar), tmp.path);
  EXPECT_EQ(out.size, kLogical + large.size());
  EXPECT_EQ(testing::read_all((tmp.path / "sparse").string()) == sparse, true);
  EXPECT_EQ(testing::read_all((tmp.path / "large").string()) == large, true);
  struct stat st {};
  ASSERT_EQ(::stat((tmp.path / "sparse").c_str(), &st), 0);
  EXPECT_EQ(static_cast<std::size_t>(st.st_size), kLogical);
  EXPECT_LT(st.st_blocks * 512, 1 << 20);
}

}  // namespace
}  // namespace berth::agent::image
