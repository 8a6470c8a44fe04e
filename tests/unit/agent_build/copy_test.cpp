// COPY and ADD as dockerd's classic builder does them, made straight into a
// layer tar: which sources a pattern names, where each lands, with which
// owner and mode, archives extracted by ADD, and the cache checksum.
#include "agent/build/copy.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "agent/build/error.h"
#include "agent/image/digest.h"
#include "agent/image/layer.h"
#include "tests/unit/agent_image/tar_builder.h"
#include "tests/unit/agent_image/test_util.h"

namespace berth::agent::build {
namespace {
namespace fs = std::filesystem;
using image::testing::read_all;
using image::testing::string_reader;
using image::testing::TarBuilder;
using image::testing::TempDir;
using Strings = std::vector<std::string>;

// A build context and, beside it, the file system of the image being built.
struct Fixture {
  TempDir tmp;
  fs::path ctx = tmp.path / "ctx";
  fs::path img = tmp.path / "img";
  Fixture() {
    fs::create_directory(ctx);
    fs::create_directory(img);
  }
  void file(const fs::path& p, const std::string& content, mode_t mode = 0644) {
    fs::create_directories(p.parent_path());
    std::ofstream(p, std::ios::binary) << content;
    ::chmod(p.c_str(), mode);
  }
  void put(const std::string& rel, const std::string& content, mode_t mode = 0644) { file(ctx / rel, content, mode); }
  void dir(const std::string& rel, mode_t mode = 0755) {
    fs::create_directories(ctx / rel);
    ::chmod((ctx / rel).c_str(), mode);
  }
  void link(const std::string& rel, const std::string& target) {
    fs::create_directories((ctx / rel).parent_path());
    fs::create_symlink(target, ctx / rel);
  }
  CopyPlan plan(const Strings& patterns, const std::string& dest, const IgnoreMatcher* ignore = nullptr,
                const std::string& instruction = "COPY") const {
    CopyPlan p;
    p.root = ctx;
    p.sources = resolve_sources(ctx, patterns, ignore, instruction, false);
    p.dest = dest;
    p.dest_root = img;
    p.unpack_archives = instruction == "ADD";
    p.ignore = ignore;
    return p;
  }
};

struct Member {
  unsigned type = 0;  // AE_IF*, 0 for a hard link
  unsigned mode = 0;
  unsigned uid = 0, gid = 0;
  std::int64_t mtime = 0;
  std::string link;  // symlink target or hard link name
  std::string content;
};

struct Layer {
  CopyResult result;
  std::string bytes;
  std::vector<std::string> names;  // in order, without trailing "/"
  std::map<std::string, Member> members;
  const Member& operator[](const std::string& name) const {
    static const Member none;
    auto it = members.find(name);
    EXPECT_NE(it, members.end()) << name << " is not in the layer";
    return it == members.end() ? none : it->second;
  }
  bool has(const std::string& name) const { return members.count(name) > 0; }
};

Layer write(const CopyPlan& plan) {
  Layer l;
  l.result = write_copy_layer(plan, [&](const char* p, std::size_t n) { l.bytes.append(p, n); });
  archive* a = archive_read_new();
  archive_read_support_format_tar(a);
  archive_read_support_format_empty(a);
  EXPECT_EQ(archive_read_open_memory(a, l.bytes.data(), l.bytes.size()), ARCHIVE_OK);
  archive_entry* e = nullptr;
  while (archive_read_next_header(a, &e) == ARCHIVE_OK) {
    std::string name = archive_entry_pathname(e);
    if (!name.empty() && name.back() == '/') name.pop_back();
    Member m;
    m.type = archive_entry_hardlink(e) ? 0u : archive_entry_filetype(e);
    m.mode = archive_entry_perm(e);
    m.uid = static_cast<unsigned>(archive_entry_uid(e));
    m.gid = static_cast<unsigned>(archive_entry_gid(e));
    m.mtime = archive_entry_mtime(e);
    if (const char* h = archive_entry_hardlink(e)) m.link = h;
    if (const char* s = archive_entry_symlink(e)) m.link = s;
    char buf[65536];
    la_ssize_t n;
    while ((n = archive_read_data(a, buf, sizeof buf)) > 0) m.content.append(buf, static_cast<std::size_t>(n));
    l.names.push_back(name);
    l.members[name] = m;
  }
  archive_read_free(a);
  EXPECT_EQ(l.result.layer.entries, l.names.size());
  EXPECT_EQ(l.result.layer.tar_size, l.bytes.size());
  EXPECT_EQ(l.result.layer.diff_id, image::sha256_digest(l.bytes));
  return l;
}

template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const BuildError& e) {
    return e.what();
  }
  return "(no error)";
}

std::vector<std::string> paths_of(const std::vector<CopySource>& sources) {
  std::vector<std::string> out;
  for (const auto& s : sources) out.push_back(s.path + (s.is_dir ? "/" : ""));
  return out;
}

// --- resolve_sources

TEST(ResolveSources, FindsFilesAndDirectoriesFromTheRoot) {
  Fixture f;
  f.put("a.txt", "a");
  f.put("dir/x", "x");
  auto found = resolve_sources(f.ctx, {"a.txt", "./a.txt", "/a.txt", ".", "/", "dir", "dir/", "dir/../a.txt"}, nullptr,
                               "COPY", false);
  EXPECT_EQ(paths_of(found), (Strings{"a.txt", "a.txt", "a.txt", "/", "/", "dir/", "dir/", "a.txt"}));
  EXPECT_EQ(found[1].pattern, "./a.txt");
}

TEST(ResolveSources, MissingSourcesInDockerdsWords) {
  Fixture f;
  f.put("a.txt", "a");
  EXPECT_EQ(error_of([&] {
              resolve_sources(f.ctx, {"a.txt", "missing.txt"}, nullptr, "COPY", false);
            }),
            "COPY failed: file not found in build context or excluded by .dockerignore: stat missing.txt: file does "
            "not exist");
  EXPECT_EQ(error_of([&] { resolve_sources(f.ctx, {"./sub/missing"}, nullptr, "ADD", false); }),
            "ADD failed: file not found in build context or excluded by .dockerignore: stat sub/missing: file does "
            "not exist");
  EXPECT_EQ(error_of([&] { resolve_sources(f.ctx, {"/missing.txt"}, nullptr, "COPY", true); }),
            "COPY failed: stat missing.txt: file does not exist");
  EXPECT_EQ(error_of([&] { resolve_sources(f.ctx, {"a.txt/x"}, nullptr, "COPY", false); }),
            "COPY failed: file not found in build context or excluded by .dockerignore: stat a.txt/x: file does not "
            "exist");
}

TEST(ResolveSources, PathsLeavingTheRootAreForbidden) {
  Fixture f;
  f.put("a/b", "b");
  EXPECT_EQ(error_of([&] { resolve_sources(f.ctx, {"../x"}, nullptr, "COPY", false); }),
            "COPY failed: forbidden path outside the build context: ../x ()");
  EXPECT_EQ(error_of([&] { resolve_sources(f.ctx, {"a/../../x"}, nullptr, "ADD", false); }),
            "ADD failed: forbidden path outside the build context: a/../../x ()");
  EXPECT_EQ(paths_of(resolve_sources(f.ctx, {"a/../a/b"}, nullptr, "COPY", false)), Strings{"a/b"});
}

TEST(ResolveSources, SymlinksResolveInsideTheRoot) {
  Fixture f;
  f.put("real/f.txt", "f");
  f.link("to-file", "real/f.txt");
  f.link("to-dir", "real");
  f.link("absolute", "/real/f.txt");          // the root's /real, not the machine's
  f.link("climbing", "../../../real/f.txt");  // ".." stops at the root
  f.link("dangling", "/nowhere");
  f.link("loop1", "loop2");
  f.link("loop2", "loop1");
  EXPECT_EQ(paths_of(resolve_sources(f.ctx, {"to-file", "to-dir", "absolute", "climbing", "to-dir/f.txt"}, nullptr,
                                     "COPY", false)),
            (Strings{"to-file", "to-dir/", "absolute", "climbing", "to-dir/f.txt"}));
  EXPECT_EQ(error_of([&] { resolve_sources(f.ctx, {"dangling"}, nullptr, "COPY", false); }),
            "COPY failed: file not found in build context or excluded by .dockerignore: stat dangling: file does not "
            "exist");
  EXPECT_EQ(error_of([&] { resolve_sources(f.ctx, {"loop1"}, nullptr, "COPY", false); }),
            "COPY failed: forbidden path outside the build context: loop1 ()");
}

TEST(ResolveSources, WildcardsMatchLikeGosPathMatch) {
  Fixture f;
  for (const char* p : {"a.txt", "b.txt", "c.md", "dir/d.txt", "dir2/e.txt", "dir2/sub/f.txt", "ü.txt"}) f.put(p, p);
  f.link("ld", "dir");
  auto find = [&](const Strings& patterns) {
    return paths_of(resolve_sources(f.ctx, patterns, nullptr, "COPY", false));
  };
  EXPECT_EQ(find({"*.txt"}), (Strings{"a.txt", "b.txt", "ü.txt"}));
  EXPECT_EQ(find({"./*.md"}), (Strings{"c.md"}));
  EXPECT_EQ(find({"d*/*.txt"}), (Strings{"dir/d.txt", "dir2/e.txt"}));
  EXPECT_EQ(find({"?.txt"}), (Strings{"a.txt", "b.txt", "ü.txt"}));
  EXPECT_EQ(find({"[ab].txt"}), (Strings{"a.txt", "b.txt"}));
  EXPECT_EQ(find({"[^a].txt"}), (Strings{"b.txt", "ü.txt"}));
  EXPECT_EQ(find({"[a-b].t?t"}), (Strings{"a.txt", "b.txt"}));
  EXPECT_EQ(find({"dir2/*"}), (Strings{"dir2/e.txt", "dir2/sub/"}));
  EXPECT_EQ(find({"/d?r\\2/*.txt"}), (Strings{"dir2/e.txt"}));
  // A directory reached through a symlink is not walked; the symlink itself matches.
  EXPECT_EQ(find({"l*/d.txt", "l*"}), (Strings{"ld/"}));
  // A wildcard matching nothing is fine beside a source that is there...
  EXPECT_EQ(find({"*.none", "c.md"}), (Strings{"c.md"}));
  // ...but not alone; a malformed one matches nothing.
  EXPECT_EQ(error_of([&] { find({"*.none"}); }), "COPY failed: no source files were specified");
  EXPECT_EQ(error_of([&] { find({"[a"}); }), "COPY failed: no source files were specified");
}

TEST(ResolveSources, DockerignoreHidesWhatItExcludes) {
  Fixture f;
  for (const char* p : {"a.log", "ok.txt", "secret/key", "build/x", "build/keep"}) f.put(p, p);
  IgnoreMatcher ignore({"*.log", "secret", "build", "!build/keep"});
  auto find = [&](const Strings& patterns) {
    return paths_of(resolve_sources(f.ctx, patterns, &ignore, "COPY", false));
  };
  const std::string missing = "COPY failed: file not found in build context or excluded by .dockerignore: stat ";
  EXPECT_EQ(error_of([&] { find({"a.log"}); }), missing + "a.log: file does not exist");
  EXPECT_EQ(error_of([&] { find({"secret/key"}); }), missing + "secret/key: file does not exist");
  EXPECT_EQ(error_of([&] { find({"build/x"}); }), missing + "build/x: file does not exist");
  EXPECT_EQ(error_of([&] { find({"*.log"}); }), "COPY failed: no source files were specified");
  EXPECT_EQ(find({"build", "build/keep"}), (Strings{"build/", "build/keep"}));
  EXPECT_EQ(find({"*"}), (Strings{"build/", "ok.txt"}));
}

// --- write_copy_layer

TEST(CopyLayer, AFileToANewPath) {
  Fixture f;
  f.put("a.txt", "hello", 0640);
  ::chown((f.ctx / "a.txt").c_str(), 1000, 1000);
  Layer l = write(f.plan({"a.txt"}, "/dest.txt"));
  EXPECT_EQ(l.names, Strings{"dest.txt"});
  EXPECT_EQ(l["dest.txt"].type, static_cast<unsigned>(AE_IFREG));
  EXPECT_EQ(l["dest.txt"].content, "hello");
  EXPECT_EQ(l["dest.txt"].mode, 0640u);
  EXPECT_EQ(l["dest.txt"].uid, 0u);  // context files are root's
  EXPECT_EQ(l.result.checksum.rfind("file:", 0), 0u);
  EXPECT_EQ(l.result.checksum.size(), 5u + 64u);
  EXPECT_EQ(l.result.layer.size, 5u);
}

TEST(CopyLayer, AFileGoesInsideADirectoryDestination) {
  Fixture f;
  f.put("a.txt", "a");
  Layer slash = write(f.plan({"a.txt"}, "/dir/"));
  EXPECT_EQ(slash.names, (Strings{"dir", "dir/a.txt"}));
  EXPECT_EQ(slash["dir"].mode, 0755u);

  fs::create_directory(f.img / "opt");
  ::chmod((f.img / "opt").c_str(), 0750);
  ::chown((f.img / "opt").c_str(), 7, 8);
  Layer existing = write(f.plan({"a.txt"}, "/opt"));
  EXPECT_EQ(existing.names, (Strings{"opt", "opt/a.txt"}));
  EXPECT_EQ(existing["opt"].mode, 0750u);  // kept as the image has it
  EXPECT_EQ(existing["opt"].uid, 7u);
  EXPECT_EQ(existing["opt"].gid, 8u);

  // Told only whether the destination is a directory.
  CopyPlan told = f.plan({"a.txt"}, "/srv");
  told.dest_root.clear();
  told.dest_is_dir = [](const std::string& path) { return path == "/srv"; };
  EXPECT_EQ(write(told).names, (Strings{"srv", "srv/a.txt"}));
  told.dest_is_dir = [](const std::string&) { return false; };
  EXPECT_EQ(write(told).names, (Strings{"srv"}));
}

TEST(CopyLayer, MissingParentsAreMadeForTheChownUser) {
  Fixture f;
  f.put("a.txt", "a");
  Layer plain = write(f.plan({"a.txt"}, "/a/b/c.txt"));
  EXPECT_EQ(plain.names, (Strings{"a", "a/b", "a/b/c.txt"}));
  EXPECT_EQ(plain["a/b"].mode, 0755u);
  EXPECT_EQ(plain["a/b"].uid, 0u);

  CopyPlan chown = f.plan({"a.txt"}, "/a/b/c.txt");
  chown.uid = 1000;
  chown.gid = 1001;
  Layer owned = write(chown);
  for (const char* p : {"a", "a/b", "a/b/c.txt"}) {
    EXPECT_EQ(owned[p].uid, 1000u) << p;
    EXPECT_EQ(owned[p].gid, 1001u) << p;
  }
}

TEST(CopyLayer, ADirectoryCopiesItsContents) {
  Fixture f;
  f.put("src/x", "x", 0600);
  f.put("src/sub/y", "y");
  f.link("src/link", "x");
  ::chmod((f.ctx / "src/sub").c_str(), 0700);
  Layer l = write(f.plan({"src"}, "/app"));
  EXPECT_EQ(l.names, (Strings{"app", "app/link", "app/sub", "app/sub/y", "app/x"}));
  EXPECT_EQ(l["app"].mode, 0755u);  // made, as dockerd makes it
  EXPECT_EQ(l["app/sub"].mode, 0700u);
  EXPECT_EQ(l["app/x"].mode, 0600u);
  EXPECT_EQ(l["app/link"].type, static_cast<unsigned>(AE_IFLNK));
  EXPECT_EQ(l["app/link"].link, "x");
  EXPECT_EQ(l.result.checksum.rfind("dir:", 0), 0u);

  Layer root = write(f.plan({"."}, "/ctx/"));
  EXPECT_EQ(root.names, (Strings{"ctx", "ctx/src", "ctx/src/link", "ctx/src/sub", "ctx/src/sub/y", "ctx/src/x"}));
}

TEST(CopyLayer, SeveralSourcesNeedADirectoryDestination) {
  Fixture f;
  f.put("a.txt", "a");
  f.put("b.txt", "b");
  EXPECT_EQ(error_of([&] {
              write(f.plan({"a.txt", "b.txt"}, "/dest"));
            }),
            "When using COPY with more than one source file, the destination must be a directory and end with a /");
  EXPECT_EQ(error_of([&] { write(f.plan({"*.txt"}, "/dest", nullptr, "ADD")); }),
            "When using ADD with more than one source file, the destination must be a directory and end with a /");
  CopyPlan with_inline = f.plan({"a.txt"}, "/dest");
  with_inline.inline_sources.push_back({"motd", "hi\n"});
  EXPECT_EQ(error_of([&] { write(with_inline); }),
            "When using COPY with more than one source file, the destination must be a directory and end with a /");
  Layer l = write(f.plan({"*.txt"}, "/dest/"));
  EXPECT_EQ(l.names, (Strings{"dest", "dest/a.txt", "dest/b.txt"}));
  EXPECT_EQ(l.result.checksum.rfind("multi:", 0), 0u);
}

TEST(CopyLayer, ChownAppliesToEverythingCopied) {
  Fixture f;
  f.put("src/x", "x");
  f.put("src/sub/y", "y");
  f.link("src/link", "x");
  CopyPlan p = f.plan({"src"}, "/a/app");
  p.uid = 1000;
  p.gid = 1001;
  Layer l = write(p);
  EXPECT_EQ(l.names, (Strings{"a", "a/app", "a/app/link", "a/app/sub", "a/app/sub/y", "a/app/x"}));
  for (const char* path : {"a/app", "a/app/link", "a/app/sub", "a/app/sub/y", "a/app/x"}) {
    EXPECT_EQ(l[path].uid, 1000u) << path;
    EXPECT_EQ(l[path].gid, 1001u) << path;
  }
  EXPECT_EQ(l["a"].uid, 0u);  // dockerd's CopyWithTar makes the parents as root
}

TEST(CopyLayer, ChownDropsSetUserIdAsChownDoes) {
  Fixture f;
  f.put("suid", "s", 06755);
  CopyPlan p = f.plan({"suid"}, "/suid");
  EXPECT_EQ(write(p)["suid"].mode, 06755u);
  p.uid = 1;
  p.gid = 1;
  EXPECT_EQ(write(p)["suid"].mode, 0755u);
}

TEST(CopyLayer, ChmodAppliesToFilesAndDirectories) {
  Fixture f;
  f.put("src/x", "x", 0644);
  f.put("src/sub/y", "y", 0600);
  f.link("src/link", "x");
  CopyPlan p = f.plan({"src"}, "/app");
  p.mode = 0750;
  Layer l = write(p);
  for (const char* path : {"app", "app/sub", "app/sub/y", "app/x"}) EXPECT_EQ(l[path].mode, 0750u) << path;
  EXPECT_EQ(l["app/link"].mode, 0777u);
}

TEST(CopyLayer, OwnersAreKeptFromAnImage) {
  Fixture f;
  f.put("usr/bin/tool", "t", 0755);
  ::chown((f.ctx / "usr/bin/tool").c_str(), 33, 44);
  CopyPlan p = f.plan({"usr/bin/tool"}, "/tool");
  EXPECT_EQ(write(p)["tool"].uid, 0u);
  p.context_owner_root = false;  // COPY --from
  Layer l = write(p);
  EXPECT_EQ(l["tool"].uid, 33u);
  EXPECT_EQ(l["tool"].gid, 44u);
}

TEST(CopyLayer, ATopLevelSymlinkIsFollowed) {
  Fixture f;
  f.put("real/f.txt", "content");
  f.put("real/g.txt", "g");
  f.link("to-file", "real/f.txt");
  f.link("to-dir", "real");
  Layer file = write(f.plan({"to-file"}, "/x"));
  EXPECT_EQ(file["x"].type, static_cast<unsigned>(AE_IFREG));
  EXPECT_EQ(file["x"].content, "content");
  EXPECT_EQ(write(f.plan({"to-file"}, "/d/")).names, (Strings{"d", "d/to-file"}));  // the link's name
  EXPECT_EQ(write(f.plan({"to-dir"}, "/d")).names, (Strings{"d", "d/f.txt", "d/g.txt"}));
}

TEST(CopyLayer, HardLinksInADirectoryStayLinked) {
  Fixture f;
  f.put("h/a", "same");
  ASSERT_EQ(::link((f.ctx / "h/a").c_str(), (f.ctx / "h/b").c_str()), 0);
  Layer l = write(f.plan({"h"}, "/h2"));
  EXPECT_EQ(l["h2/b"].type, 0u);
  EXPECT_EQ(l["h2/b"].link, "h2/a");
  TempDir out;
  image::unpack_layer(string_reader(l.bytes), out.path);
  struct stat a {
  }, b{};
  ASSERT_EQ(::lstat((out.path / "h2/a").c_str(), &a), 0);
  ASSERT_EQ(::lstat((out.path / "h2/b").c_str(), &b), 0);
  EXPECT_EQ(a.st_ino, b.st_ino);
  EXPECT_EQ(read_all((out.path / "h2/b").string()), "same");
}

TEST(CopyLayer, DockerignoreAppliesBelowDirectories) {
  Fixture f;
  for (const char* p : {"src/x", "src/a.log", "src/tmp/junk", "src/tmp/keep"}) f.put(p, p);
  IgnoreMatcher ignore({"src/*.log", "src/tmp", "!src/tmp/keep"});
  Layer l = write(f.plan({"src"}, "/app", &ignore));
  EXPECT_EQ(l.names, (Strings{"app", "app/tmp", "app/tmp/keep", "app/x"}));
}

TEST(CopyLayer, AddExtractsLocalArchives) {
  Fixture f;
  std::string tar = TarBuilder(true)
                        .dir("d", 0750)
                        .custom(
                            "d/f", AE_IFREG, 0640,
                            [](archive_entry* e) {
                              archive_entry_set_uid(e, 1234);
                              archive_entry_set_gid(e, 4321);
                            },
                            "inside")
                        .symlink("d/l", "f")
                        .hardlink("d/h", "d/f")
                        .file("top", "t")
                        .finish();
  f.put("a.tar.gz", tar);
  Layer l = write(f.plan({"a.tar.gz"}, "/opt/", nullptr, "ADD"));
  EXPECT_EQ(l.names, (Strings{"opt", "opt/d", "opt/d/f", "opt/d/l", "opt/d/h", "opt/top"}));
  EXPECT_EQ(l["opt/d"].mode, 0750u);
  EXPECT_EQ(l["opt/d/f"].content, "inside");
  EXPECT_EQ(l["opt/d/f"].uid, 1234u);  // the archive's owners
  EXPECT_EQ(l["opt/d/f"].gid, 4321u);
  EXPECT_EQ(l["opt/d/l"].link, "f");
  EXPECT_EQ(l["opt/d/h"].link, "opt/d/f");
  EXPECT_EQ(l.result.checksum.rfind("file:", 0), 0u);

  CopyPlan chown = f.plan({"a.tar.gz"}, "/opt", nullptr, "ADD");
  chown.uid = 1000;
  chown.gid = 1000;
  EXPECT_EQ(write(chown)["opt/d/f"].uid, 1000u);

  // COPY copies it as it is; so does ADD for what is not a tar.
  EXPECT_EQ(write(f.plan({"a.tar.gz"}, "/opt/"))["opt/a.tar.gz"].content, tar);
  f.put("notes.gz", "plain text, not an archive");
  EXPECT_EQ(write(f.plan({"notes.gz"}, "/opt/", nullptr, "ADD"))["opt/notes.gz"].content, "plain text, not an archive");
  f.put("empty.tar", TarBuilder().finish());  // no entry: dockerd copies it too
  EXPECT_TRUE(write(f.plan({"empty.tar"}, "/opt/", nullptr, "ADD")).has("opt/empty.tar"));

  struct Kind {
    const char* name;
    int (*filter)(archive*);
  };
  for (const Kind& kind : {Kind{"bzip2", archive_write_add_filter_bzip2}, Kind{"xz", archive_write_add_filter_xz},
                           Kind{"zstd", archive_write_add_filter_zstd}}) {
    SCOPED_TRACE(kind.name);
    std::string out;
    archive* a = archive_write_new();
    kind.filter(a);
    archive_write_set_format_pax_restricted(a);
    archive_write_set_bytes_in_last_block(a, 1);
    archive_write_open(
        a, &out, nullptr,
        [](archive*, void* self, const void* buf, size_t n) {
          static_cast<std::string*>(self)->append(static_cast<const char*>(buf), n);
          return static_cast<la_ssize_t>(n);
        },
        nullptr);
    archive_entry* e = archive_entry_new();
    archive_entry_set_pathname(e, "k");
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, 0644);
    archive_entry_set_size(e, 1);
    archive_write_header(a, e);
    archive_write_data(a, "k", 1);
    archive_entry_free(e);
    archive_write_close(a);
    archive_write_free(a);
    f.put(std::string("k.") + kind.name, out);
    EXPECT_EQ(write(f.plan({std::string("k.") + kind.name}, "/x/", nullptr, "ADD"))["x/k"].content, "k");
  }
}

TEST(CopyLayer, AddFollowsTheImagesSymlinksAboveArchiveEntries) {
  Fixture f;
  fs::create_directories(f.img / "usr/bin");
  fs::create_symlink("usr/bin", f.img / "bin");
  f.put("tools.tar", TarBuilder().file("bin/tool", "t").dir("etc").file("etc/conf", "c").finish());
  Layer l = write(f.plan({"tools.tar"}, "/", nullptr, "ADD"));
  EXPECT_EQ(l.names, (Strings{"usr", "usr/bin", "usr/bin/tool", "etc", "etc/conf"}));
  EXPECT_EQ(l["usr/bin/tool"].content, "t");
}

TEST(CopyLayer, AddRefusesArchivesThatLeadOut) {
  Fixture f;
  auto add_error = [&](const std::string& tar) {
    f.put("evil.tar", tar);
    return error_of([&] { write(f.plan({"evil.tar"}, "/dst", nullptr, "ADD")); });
  };
  EXPECT_EQ(add_error(TarBuilder().file("ok", "1").file("../x", "x").finish()),
            "ADD failed: \"../x\" is outside of \"/dst\"");
  EXPECT_EQ(add_error(TarBuilder().symlink("l", "/etc").file("l/x", "x").finish()),
            "ADD failed: \"l/x\" is beneath the symlink /dst/l of the archive");
  EXPECT_EQ(add_error(TarBuilder().symlink("up", "../../etc").finish()),
            "ADD failed: invalid symlink \"up\" -> \"../../etc\"");
  EXPECT_EQ(add_error(TarBuilder().hardlink("h", "missing").finish()),
            "ADD failed: invalid hardlink \"h\" -> \"missing\"");
  // Absolute names are taken as relative, as dockerd's untar does.
  f.put("abs.tar", TarBuilder().file("/etc/conf", "c").finish());
  EXPECT_EQ(write(f.plan({"abs.tar"}, "/dst", nullptr, "ADD"))["dst/etc/conf"].content, "c");
}

TEST(CopyLayer, TheChecksumFollowsContentModesAndNamesButNotTimes) {
  Fixture f;
  f.put("src/a", "aaaa");
  f.put("src/b", "bbbb");
  auto sum = [&] { return write(f.plan({"src"}, "/app")).result.checksum; };
  const std::string base = sum();
  EXPECT_EQ(sum(), base);
  timespec times[2] = {{1000, 0}, {1000, 0}};
  ASSERT_EQ(::utimensat(AT_FDCWD, (f.ctx / "src/a").c_str(), times, 0), 0);
  ASSERT_EQ(::utimensat(AT_FDCWD, (f.ctx / "src").c_str(), times, 0), 0);
  EXPECT_EQ(sum(), base);  // dockerd's cache leaves mtimes out (tarsum v1)

  f.put("src/a", "aaab");
  const std::string content = sum();
  EXPECT_NE(content, base);
  ::chmod((f.ctx / "src/a").c_str(), 0600);
  const std::string mode = sum();
  EXPECT_NE(mode, content);
  fs::rename(f.ctx / "src/a", f.ctx / "src/c");
  const std::string name = sum();
  EXPECT_NE(name, mode);
  CopyPlan owned = f.plan({"src"}, "/app");
  owned.uid = 5;
  owned.gid = 5;
  EXPECT_NE(write(owned).result.checksum, name);
  EXPECT_EQ(name.rfind("dir:", 0), 0u);
  EXPECT_EQ(write(f.plan({"src/b"}, "/b")).result.checksum.rfind("file:", 0), 0u);
  EXPECT_EQ(write(f.plan({"src/b", "src/c"}, "/b/")).result.checksum.rfind("multi:", 0), 0u);
}

TEST(CopyLayer, InlineSourcesFromHeredocs) {
  Fixture f;
  CopyPlan p;
  p.dest = "/etc/motd";
  p.dest_root = f.img;
  p.inline_sources.push_back({"EOF", "hello\n"});
  Layer one = write(p);
  EXPECT_EQ(one.names, (Strings{"etc", "etc/motd"}));
  EXPECT_EQ(one["etc/motd"].content, "hello\n");
  EXPECT_EQ(one["etc/motd"].mode, 0644u);
  EXPECT_EQ(one["etc/motd"].uid, 0u);
  EXPECT_EQ(one.result.checksum.rfind("file:", 0), 0u);

  p.dest = "/scripts/";
  p.inline_sources = {{"a.sh", "echo a\n"}, {"b.sh", "echo b\n", 0600, 1234567}};
  p.mode = std::nullopt;
  p.uid = 1000;
  p.gid = 1000;
  Layer two = write(p);
  EXPECT_EQ(two.names, (Strings{"scripts", "scripts/a.sh", "scripts/b.sh"}));
  EXPECT_EQ(two["scripts/a.sh"].uid, 1000u);
  EXPECT_EQ(two["scripts/b.sh"].mode, 0600u);
  EXPECT_EQ(two["scripts/b.sh"].mtime, 1234567);
  EXPECT_EQ(two.result.checksum.rfind("multi:", 0), 0u);
  p.mode = 0755;
  EXPECT_EQ(write(p)["scripts/b.sh"].mode, 0755u);

  p.inline_sources = {{"../x", "x"}};
  EXPECT_EQ(error_of([&] { write(p); }), "COPY failed: invalid file name \"../x\"");
}

TEST(CopyLayer, TheDestinationResolvesThroughTheImagesSymlinks) {
  Fixture f;
  f.put("tool", "t", 0755);
  fs::create_directories(f.img / "usr/bin");
  ::chmod((f.img / "usr").c_str(), 0751);
  fs::create_symlink("usr/bin", f.img / "bin");
  fs::create_symlink("/usr/bin/real", f.img / "usr/bin/alias");
  fs::create_directories(f.img / "usr/bin/real");
  Layer l = write(f.plan({"tool"}, "/bin/"));
  EXPECT_EQ(l.names, (Strings{"usr", "usr/bin", "usr/bin/tool"}));
  EXPECT_EQ(l["usr"].mode, 0751u);
  // A destination naming a symlink to a directory goes into that directory.
  EXPECT_EQ(write(f.plan({"tool"}, "/bin/alias")).names,
            (Strings{"usr", "usr/bin", "usr/bin/real", "usr/bin/real/tool"}));
}

TEST(CopyLayer, ADirectoryOntoAFileFails) {
  Fixture f;
  f.put("src/x", "x");
  f.file(f.img / "x", "file");
  EXPECT_EQ(error_of([&] { write(f.plan({"src"}, "/x")); }), "COPY failed: mkdir /x: not a directory");
  EXPECT_EQ(error_of([&] { write(f.plan({"src/x"}, "/x/y/")); }), "COPY failed: mkdir /x: not a directory");
}

TEST(CopyLayer, NoSourcesMakeTheDestinationDirectory) {
  Fixture f;
  fs::create_directory(f.img / "a");
  ::chown((f.img / "a").c_str(), 3, 3);
  CopyPlan p;
  p.dest = "/a/b/c/";
  p.dest_root = f.img;
  Layer l = write(p);
  EXPECT_EQ(l.names, (Strings{"a", "a/b", "a/b/c"}));
  EXPECT_EQ(l["a"].uid, 3u);
  EXPECT_EQ(l["a/b/c"].mode, 0755u);
  EXPECT_EQ(l["a/b/c"].uid, 0u);
}

TEST(CopyLayer, TheLayerUnpacksToWhatWasCopied) {
  Fixture f;
  f.put("src/x", "x", 0600);
  f.put("src/deep/er/y", std::string(200000, 'y'));
  f.link("src/l", "deep");
  Layer l = write(f.plan({"src"}, "/app/"));
  TempDir out;
  image::UnpackedLayer u = image::unpack_layer(string_reader(l.bytes), out.path);
  EXPECT_EQ(u.diff_id, l.result.layer.diff_id);
  EXPECT_EQ(read_all((out.path / "app/deep/er/y").string()), std::string(200000, 'y'));
  EXPECT_EQ(fs::read_symlink(out.path / "app/l"), "deep");
  EXPECT_EQ(l.result.layer.size, 200001u);
}

}  // namespace
}  // namespace berth::agent::build
