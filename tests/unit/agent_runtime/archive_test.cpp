// docker cp's path resolver and archives on real directory trees: symlinks
// to "/" and to "..", loops, the last component's rules, mounts, and what the
// tars hold. A sibling "outside" directory with a marker stands for the
// machine: nothing may ever be read from or written to it.
#include "agent/runtime/archive.h"

#include <archive.h>
#include <archive_entry.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <map>

#include "agent/api/http.h"
#include "agent/image/diff.h"

namespace berth::agent::runtime {
namespace {

namespace fs = std::filesystem;
using image::TarMember;

struct TarEntry {
  std::string name;
  char type = 'f';  // f d l h c p
  std::string link;
  std::string content;
  unsigned uid = 0, gid = 0, mode = 0;
};

// The members of a tar, in order.
std::vector<TarEntry> read_tar(const std::string& bytes) {
  std::vector<TarEntry> out;
  std::unique_ptr<archive, decltype(&archive_read_free)> a(archive_read_new(), archive_read_free);
  archive_read_support_format_tar(a.get());
  EXPECT_EQ(archive_read_open_memory(a.get(), bytes.data(), bytes.size()), ARCHIVE_OK);
  archive_entry* e = nullptr;
  while (archive_read_next_header(a.get(), &e) == ARCHIVE_OK) {
    TarEntry t;
    t.name = archive_entry_pathname(e);
    t.uid = static_cast<unsigned>(archive_entry_uid(e));
    t.gid = static_cast<unsigned>(archive_entry_gid(e));
    t.mode = archive_entry_perm(e);
    if (const char* h = archive_entry_hardlink(e)) {
      t.type = 'h';
      t.link = h;
    } else {
      switch (archive_entry_filetype(e)) {
        case AE_IFDIR: t.type = 'd'; break;
        case AE_IFLNK: t.type = 'l'; t.link = archive_entry_symlink(e); break;
        case AE_IFCHR: t.type = 'c'; break;
        case AE_IFIFO: t.type = 'p'; break;
        default: break;
      }
    }
    char buf[4096];
    la_ssize_t n;
    while ((n = archive_read_data(a.get(), buf, sizeof buf)) > 0) t.content.append(buf, static_cast<std::size_t>(n));
    out.push_back(std::move(t));
  }
  return out;
}

std::vector<std::string> names(const std::vector<TarEntry>& entries) {
  std::vector<std::string> out;
  for (const auto& e : entries) out.push_back(e.name);
  return out;
}

// A tar made from members (a file's content follows its name).
std::string make_tar(const std::vector<std::pair<TarMember, std::string>>& members) {
  std::string out;
  image::LayerTarWriter w([&](const char* p, std::size_t n) { out.append(p, n); });
  for (const auto& [m, content] : members) {
    TarMember copy = m;
    if (copy.type == TarMember::Type::kFile) copy.size = content.size();
    if (copy.mode == 0) copy.mode = copy.type == TarMember::Type::kDir ? 0755 : 0644;
    w.add(copy);
    if (copy.type == TarMember::Type::kFile) w.data(content.data(), content.size());
  }
  w.finish();
  return out;
}

TarMember file(const std::string& name) {
  TarMember m;
  m.name = name;
  return m;
}
TarMember dir(const std::string& name) {
  TarMember m;
  m.name = name;
  m.type = TarMember::Type::kDir;
  return m;
}
TarMember symlink_member(const std::string& name, const std::string& target) {
  TarMember m;
  m.name = name;
  m.type = TarMember::Type::kSymlink;
  m.link = target;
  return m;
}

class Archive : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "berth-archive-XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    for (const char* d : {"root/etc", "root/tmp", "root/bin", "outside", "vol", "bind"}) fs::create_directories(dir_ / d);
    write(root() / "etc/hostname", "container\n");
    write(root() / "marker", "inside\n");
    write(outside() / "marker", "OUTSIDE\n");
    write(outside() / "secret", "OUTSIDE SECRET\n");
    write(dir_ / "vol/data.txt", "volume data\n");
  }
  void TearDown() override { fs::remove_all(dir_); }

  fs::path root() const { return dir_ / "root"; }
  fs::path outside() const { return dir_ / "outside"; }
  static void write(const fs::path& p, const std::string& text) { std::ofstream(p) << text; }
  static std::string read(const fs::path& p) {
    std::ifstream in(p);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }
  std::unique_ptr<ContainerTree> tree(std::vector<TreeMount> mounts = {}) {
    return std::make_unique<ContainerTree>(root(), std::move(mounts));
  }
  std::vector<TreeMount> volume_at(const std::string& dest, bool rw = true) {
    return {TreeMount{dest, dir_ / "vol", rw}};
  }
  // The outside directory holds only its two files.
  void expect_outside_untouched() {
    std::vector<std::string> found;
    for (const auto& e : fs::directory_iterator(outside())) found.push_back(e.path().filename());
    std::sort(found.begin(), found.end());
    EXPECT_EQ(found, (std::vector<std::string>{"marker", "secret"}));
    EXPECT_EQ(read(outside() / "marker"), "OUTSIDE\n");
  }
  std::string get(const ContainerTree& t, const std::string& path) {
    std::string out;
    Resource r = find_resource(t, path);
    write_resource(t, r, [&](const char* p, std::size_t n) { out.append(p, n); });
    return out;
  }
  void put(const ContainerTree& t, const std::string& path, const std::string& tar, ExtractOptions o = {}) {
    std::size_t pos = 0;
    extract_archive(
        t, path,
        [&](char* buf, std::size_t n) {
          std::size_t k = std::min(n, tar.size() - pos);
          std::memcpy(buf, tar.data() + pos, k);
          pos += k;
          return k;
        },
        o);
  }

  fs::path dir_;
};

// --- the resolver

TEST_F(Archive, CleansPathsAsGoDoes) {
  EXPECT_EQ(clean_container_path(""), "/");
  EXPECT_EQ(clean_container_path("a//b/./c/"), "/a/b/c");
  EXPECT_EQ(clean_container_path("/../../x/../y"), "/y");
  EXPECT_EQ(base_name("/a/b/"), "b");
  EXPECT_EQ(base_name("/"), "/");
  EXPECT_EQ(base_name("/a/."), ".");
  EXPECT_EQ(base_name("x"), "x");
}

TEST_F(Archive, ASymlinkToTheRootOrAboveItStaysInTheContainer) {
  fs::create_symlink("../../../..", root() / "tmp/up");
  fs::create_symlink("/", root() / "tmp/slash");
  fs::create_symlink(outside(), root() / "tmp/host");  // the machine's path: absent in the container
  auto t = tree();
  for (const char* link : {"/tmp/up", "/tmp/slash"}) {
    Resolved r = t->resolve(std::string(link) + "/marker", FollowLast::kNo);
    ASSERT_TRUE(r.exists) << link;
    EXPECT_EQ(r.place.path, "/marker");
    EXPECT_EQ(r.place.mount, -1);
    EXPECT_EQ(r.place.rel, "marker");
    Resolved missing = t->resolve(std::string(link) + "/x", FollowLast::kNo);
    EXPECT_EQ(missing.error, 0);
    EXPECT_FALSE(missing.exists);
    EXPECT_EQ(missing.place.path, "/x");
  }
  Resolved host = t->resolve("/tmp/host/secret", FollowLast::kNo);
  EXPECT_FALSE(host.exists);
  EXPECT_EQ(host.error, ENOENT) << "the machine's directory does not exist in the container";
  // ".." after a symlink goes up from its target, as the kernel does it.
  Resolved dotdot = t->resolve("/tmp/up/../../etc/hostname", FollowLast::kNo);
  ASSERT_TRUE(dotdot.exists);
  EXPECT_EQ(dotdot.place.path, "/etc/hostname");
}

TEST_F(Archive, LoopsAndNonDirectoriesFail) {
  fs::create_symlink("b", root() / "tmp/a");
  fs::create_symlink("a", root() / "tmp/b");
  fs::create_symlink("self", root() / "tmp/self");
  auto t = tree();
  EXPECT_EQ(t->resolve("/tmp/a/x", FollowLast::kNo).error, ELOOP);
  EXPECT_EQ(t->resolve("/tmp/self", FollowLast::kYes).error, ELOOP);
  Resolved link = t->resolve("/tmp/self", FollowLast::kNo);
  EXPECT_TRUE(link.exists) << "the last component is not followed";
  EXPECT_TRUE(S_ISLNK(link.st.st_mode));
  EXPECT_EQ(t->resolve("/etc/hostname/x", FollowLast::kNo).error, ENOTDIR);
  EXPECT_EQ(t->resolve("/etc/hostname/", FollowLast::kNo).error, ENOTDIR);
  EXPECT_EQ(t->resolve("/nope/x", FollowLast::kNo).error, ENOENT);
  int error = 0;
  EXPECT_EQ(t->follow_in_scope("/tmp/a", error), "");
  EXPECT_EQ(error, ELOOP);
}

TEST_F(Archive, TheLastComponentIsFollowedOnlyWhenAsked) {
  fs::create_symlink("/etc", root() / "tmp/etc-link");
  auto t = tree();
  EXPECT_TRUE(S_ISLNK(t->resolve("/tmp/etc-link", FollowLast::kNo).st.st_mode));
  EXPECT_TRUE(S_ISDIR(t->resolve("/tmp/etc-link", FollowLast::kYes).st.st_mode));
  EXPECT_TRUE(S_ISDIR(t->resolve("/tmp/etc-link/", FollowLast::kNo).st.st_mode)) << "a trailing slash follows";
  EXPECT_TRUE(S_ISDIR(t->resolve("/tmp/etc-link/.", FollowLast::kNo).st.st_mode)) << "so does /.";
  EXPECT_EQ(t->resolve("/tmp/etc-link/.", FollowLast::kNo).place.path, "/etc");
}

TEST_F(Archive, FollowInScopeTakesMissingPartsAsTheyAre) {
  fs::create_symlink("/nowhere/deeper", root() / "tmp/dangling");
  fs::create_symlink("../etc", root() / "tmp/rel");
  auto t = tree();
  int error = 0;
  EXPECT_EQ(t->follow_in_scope("/tmp/dangling", error), "/nowhere/deeper");
  EXPECT_EQ(error, 0);
  EXPECT_EQ(t->follow_in_scope("/tmp/rel/hostname", error), "/etc/hostname");
  EXPECT_EQ(t->follow_in_scope("/tmp/../../..", error), "/");
}

TEST_F(Archive, MountsMapToTheirSourcesAndTheirLinksStayInTheContainer) {
  fs::create_symlink("/etc", dir_ / "vol/to-etc");
  fs::create_symlink("../etc/hostname", dir_ / "vol/rel");
  fs::create_symlink("../../outside/secret", dir_ / "vol/escape");  // relative to the source on the machine
  auto t = tree(volume_at("/data"));
  Resolved in_volume = t->resolve("/data/data.txt", FollowLast::kNo);
  ASSERT_TRUE(in_volume.exists);
  EXPECT_EQ(in_volume.place.mount, 0);
  EXPECT_EQ(in_volume.place.rel, "data.txt");
  Resolved top = t->resolve("/data", FollowLast::kNo);
  ASSERT_TRUE(top.exists) << "the mount point needs no directory in the root";
  EXPECT_EQ(top.place.rel, "");
  Resolved through = t->resolve("/data/to-etc/hostname", FollowLast::kNo);
  ASSERT_TRUE(through.exists);
  EXPECT_EQ(through.place.mount, -1);
  EXPECT_EQ(through.place.path, "/etc/hostname");
  Resolved rel = t->resolve("/data/rel", FollowLast::kYes);
  ASSERT_TRUE(rel.exists);
  EXPECT_EQ(rel.place.path, "/etc/hostname") << "\"..\" leaves the mount into the container, not the machine";
  Resolved escape = t->resolve("/data/escape", FollowLast::kYes);
  EXPECT_FALSE(escape.exists);
  EXPECT_EQ(escape.error, ENOENT);
  EXPECT_EQ(t->resolve("/data/../etc/hostname", FollowLast::kNo).place.path, "/etc/hostname");
  // A destination through a symlink is where the runtime mounted it.
  fs::create_directories(root() / "run");
  fs::create_symlink("/run", root() / "var-run");
  auto t2 = tree(volume_at("/var-run/vol"));
  EXPECT_EQ(t2->mounts()[0].destination, "/run/vol");
  EXPECT_EQ(t2->resolve("/var-run/vol/data.txt", FollowLast::kNo).place.mount, 0);
  auto below = t2->mounts_below("/run");
  EXPECT_EQ(below, (std::vector<std::string>{"vol"}));
}

// --- HEAD and GET

TEST_F(Archive, StatSaysWhatDockerdSays) {
  ::chmod((root() / "etc").c_str(), 0755);
  fs::create_symlink("/etc/hostname", root() / "tmp/hn");
  auto t = tree();
  PathStat d = stat_path(*t, "/etc");
  EXPECT_EQ(d.name, "etc");
  EXPECT_EQ(d.mode, (1u << 31) | 0755u);
  EXPECT_EQ(d.link_target, "");
  PathStat l = stat_path(*t, "/tmp/hn");
  EXPECT_EQ(l.name, "hn");
  EXPECT_EQ(l.mode, (1u << 27) | 0777u);
  EXPECT_EQ(l.link_target, "/etc/hostname");
  PathStat f = stat_path(*t, "etc/hostname");
  EXPECT_EQ(f.size, 10);
  EXPECT_EQ(f.name, "hostname");
  EXPECT_EQ(f.mtime.back(), 'Z');
  EXPECT_THROW(stat_path(*t, "/nope"), PathNotFound);
  EXPECT_THROW(stat_path(*t, "/etc/hostname/x"), std::runtime_error);
  EXPECT_EQ(to_json(l).dump(), "{\"name\":\"hn\",\"size\":13,\"mode\":134218239,\"mtime\":\"" + l.mtime +
                          "\",\"linkTarget\":\"/etc/hostname\"}");
  EXPECT_EQ(go_file_mode(S_IFCHR | 0620), (1u << 26) | (1u << 21) | 0620u);
  EXPECT_EQ(go_file_mode(S_IFREG | 04755), (1u << 23) | 0755u);
  EXPECT_EQ(go_file_mode(S_IFDIR | 01777), (1u << 31) | (1u << 20) | 0777u);
}

TEST_F(Archive, AFileThroughALinkToTheRootIsTheContainersNeverTheMachines) {
  fs::create_symlink("../../../..", root() / "tmp/up");
  auto t = tree();
  auto entries = read_tar(get(*t, "/tmp/up/marker"));
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries[0].name, "marker");
  EXPECT_EQ(entries[0].content, "inside\n");
  fs::remove(root() / "marker");
  EXPECT_THROW(find_resource(*t, "/tmp/up/marker"), PathNotFound);
}

TEST_F(Archive, ADirectoryIsArchivedUnderItsName) {
  fs::create_directories(root() / "srv/sub");
  write(root() / "srv/a", "a");
  write(root() / "srv/sub/b", "b");
  fs::create_hard_link(root() / "srv/a", root() / "srv/sub/a-again");
  fs::create_symlink("a", root() / "srv/link");
  ASSERT_EQ(::mkfifo((root() / "srv/fifo").c_str(), 0600), 0);
  auto t = tree();
  auto entries = read_tar(get(*t, "/srv"));
  EXPECT_EQ(names(entries), (std::vector<std::string>{"srv/", "srv/a", "srv/fifo", "srv/link", "srv/sub/",
                                                      "srv/sub/a-again", "srv/sub/b"}));
  EXPECT_EQ(entries[1].content, "a");
  EXPECT_EQ(entries[2].type, 'p');
  EXPECT_EQ(entries[3].type, 'l');
  EXPECT_EQ(entries[3].link, "a");
  EXPECT_EQ(entries[5].type, 'h');
  EXPECT_EQ(entries[5].link, "srv/a");
  // "/." archives the content under "."; a trailing slash keeps the name.
  EXPECT_EQ(names(read_tar(get(*t, "/srv/."))).front(), "./");
  EXPECT_EQ(names(read_tar(get(*t, "/srv/."))).at(1), "./a");
  EXPECT_EQ(names(read_tar(get(*t, "/srv/"))).at(1), "srv/a");
}

TEST_F(Archive, ALinkAsTheLastComponentIsArchivedAsALink) {
  fs::create_symlink("/etc", root() / "tmp/etc-link");
  auto t = tree();
  auto link = read_tar(get(*t, "/tmp/etc-link"));
  ASSERT_EQ(link.size(), 1u);
  EXPECT_EQ(link[0].type, 'l');
  EXPECT_EQ(link[0].link, "/etc");
  auto followed = read_tar(get(*t, "/tmp/etc-link/"));
  EXPECT_EQ(names(followed), (std::vector<std::string>{"etc-link/", "etc-link/hostname"}));
}

TEST_F(Archive, AVolumeShowsInTheArchiveOfItsParent) {
  fs::create_directories(root() / "srv");
  auto t = tree(volume_at("/srv/data"));
  auto entries = read_tar(get(*t, "/srv"));
  EXPECT_EQ(names(entries), (std::vector<std::string>{"srv/", "srv/data/", "srv/data/data.txt"}));
  EXPECT_EQ(entries[2].content, "volume data\n");
  auto one = read_tar(get(*t, "/srv/data/data.txt"));
  ASSERT_EQ(one.size(), 1u);
  EXPECT_EQ(one[0].content, "volume data\n");
  // export leaves mounts out and names members without a leading directory.
  std::string exported;
  write_export(*t, [&](const char* p, std::size_t n) { exported.append(p, n); });
  auto all = names(read_tar(exported));
  EXPECT_NE(std::find(all.begin(), all.end(), "etc/hostname"), all.end());
  EXPECT_NE(std::find(all.begin(), all.end(), "srv/"), all.end());
  EXPECT_EQ(std::find(all.begin(), all.end(), "srv/data/data.txt"), all.end());
  for (const auto& n : all) EXPECT_NE(n.rfind("/", 0), 0u) << n;
}

// --- PUT

TEST_F(Archive, ExtractingThroughALinkToTheRootWritesInTheContainersRoot) {
  fs::create_symlink("../../../..", root() / "tmp/up");
  fs::create_symlink("/", root() / "tmp/slash");
  auto t = tree();
  put(*t, "/tmp/up", make_tar({{file("x"), "through up\n"}}));
  EXPECT_EQ(read(root() / "x"), "through up\n");
  put(*t, "/tmp/slash/", make_tar({{file("y"), "through slash\n"}}));
  EXPECT_EQ(read(root() / "y"), "through slash\n");
  // Members naming ".." or crossing the container's own links never leave the root.
  EXPECT_THROW(put(*t, "/tmp", make_tar({{file("../../outside/evil"), "x"}})), std::runtime_error);
  EXPECT_THROW(put(*t, "/tmp", make_tar({{file("up/../../outside/evil2"), "x"}})), std::runtime_error);
  EXPECT_THROW(put(*t, "/tmp", make_tar({{symlink_member("esc", "../../outside"), ""}, {file("esc/evil3"), "x"}})),
               std::runtime_error);
  fs::create_symlink(outside(), root() / "tmp/host");
  EXPECT_THROW(put(*t, "/tmp/host", make_tar({{file("evil4"), "x"}})), PathNotFound);
  expect_outside_untouched();
}

TEST_F(Archive, ExtractionChecksItsDestination) {
  auto t = tree(volume_at("/ro", false));
  EXPECT_THROW(put(*t, "/nope", make_tar({})), PathNotFound);
  try {
    put(*t, "/etc/hostname", make_tar({}));
    FAIL() << "a file is no extraction point";
  } catch (const api::HttpError& e) {
    EXPECT_EQ(e.status(), 400u);
    EXPECT_STREQ(e.what(), "extraction point is not a directory");
  }
  try {
    put(*t, "/ro", make_tar({{file("f"), "x"}}));
    FAIL() << "a read-only volume takes nothing";
  } catch (const api::HttpError& e) {
    EXPECT_STREQ(e.what(), "mounted volume is marked read-only");
  }
  ExtractOptions ro;
  ro.readonly_rootfs = true;
  try {
    put(*t, "/tmp", make_tar({{file("f"), "x"}}), ro);
    FAIL() << "a read-only root file system takes nothing";
  } catch (const api::HttpError& e) {
    EXPECT_STREQ(e.what(), "container rootfs is marked read-only");
  }
  EXPECT_THROW(put(*t, "/", make_tar({{file("ro/sneaky"), "x"}})), std::runtime_error)
      << "nor does it below a writable destination";
  EXPECT_FALSE(fs::exists(dir_ / "vol/sneaky"));
}

TEST_F(Archive, NoOverwriteDirNonDirRefusesToSwapKinds) {
  fs::create_directories(root() / "tmp/d");
  write(root() / "tmp/f", "file");
  auto t = tree();
  ExtractOptions strict;
  strict.no_overwrite_dir_non_dir = true;
  try {
    put(*t, "/tmp", make_tar({{file("d"), "x"}}), strict);
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "cannot overwrite directory \"/tmp/d\" with non-directory \"/tmp\"");
  }
  try {
    put(*t, "/tmp", make_tar({{dir("f"), ""}}), strict);
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "cannot overwrite non-directory \"/tmp/f\" with directory \"/tmp\"");
  }
  put(*t, "/tmp", make_tar({{file("d"), "now a file"}}));
  EXPECT_EQ(read(root() / "tmp/d"), "now a file");
}

TEST_F(Archive, ExtractionReachesIntoVolumesAndSetsOwners) {
  auto t = tree(volume_at("/srv/data"));
  t->make_mount_points();
  EXPECT_TRUE(fs::is_directory(root() / "srv/data")) << "the mount point is made as the runtime makes it";
  put(*t, "/srv/data", make_tar({{file("new.txt"), "into the volume\n"}}));
  EXPECT_EQ(read(dir_ / "vol/new.txt"), "into the volume\n");
  // A tar at the root crossing into the volume lands in its source.
  put(*t, "/", make_tar({{dir("srv"), ""}, {dir("srv/data"), ""}, {file("srv/data/deep.txt"), "deep\n"}}));
  EXPECT_EQ(read(dir_ / "vol/deep.txt"), "deep\n");
  EXPECT_FALSE(fs::exists(root() / "srv/data/deep.txt"));
  ExtractOptions owned;
  owned.owner = [] { return std::make_optional(std::make_pair(1234u, 5678u)); };
  put(*t, "/tmp", make_tar({{file("owned"), "x"}}), owned);
  struct stat st {};
  ASSERT_EQ(::lstat((root() / "tmp/owned").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 1234u);
  EXPECT_EQ(st.st_gid, 5678u);
}

}  // namespace
}  // namespace berth::agent::runtime
