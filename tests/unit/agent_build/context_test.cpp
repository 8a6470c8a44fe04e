// The build context: a tar body (plain or compressed) unpacked as it comes,
// capped in size, refusing names and links that lead out of it. Runs as root.
#include "agent/build/context.h"

#include <archive.h>
#include <archive_entry.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <string>
#include <vector>

#include "agent/build/error.h"
#include "tests/unit/agent_image/tar_builder.h"
#include "tests/unit/agent_image/test_util.h"

namespace berth::agent::build {
namespace {
namespace fs = std::filesystem;
using image::testing::read_all;
using image::testing::string_reader;
using image::testing::TarBuilder;
using image::testing::TempDir;

constexpr std::uint64_t kMiB = 1024 * 1024;

// `data` through one of libarchive's compressors.
std::string compress(const std::string& data, int (*add_filter)(archive*)) {
  std::string out;
  archive* a = archive_write_new();
  add_filter(a);
  archive_write_set_format_raw(a);
  archive_write_set_bytes_in_last_block(a, 1);
  archive_write_open(
      a, &out, nullptr,
      [](archive*, void* self, const void* buf, size_t n) {
        static_cast<std::string*>(self)->append(static_cast<const char*>(buf), n);
        return static_cast<la_ssize_t>(n);
      },
      nullptr);
  archive_entry* e = archive_entry_new();
  archive_entry_set_filetype(e, AE_IFREG);
  archive_entry_set_size(e, static_cast<la_int64_t>(data.size()));
  archive_write_header(a, e);
  archive_write_data(a, data.data(), data.size());
  archive_entry_free(e);
  archive_write_close(a);
  archive_write_free(a);
  return out;
}

// A context with a bit of everything a docker CLI sends.
std::string sample_context() {
  return TarBuilder()
      .dir("app")
      .file("Dockerfile", "FROM scratch\nCOPY app /app\n")
      .custom(
          "app/run.sh", AE_IFREG, 0755,
          [](archive_entry* e) {
            archive_entry_set_uid(e, 1000);
            archive_entry_set_gid(e, 1001);
            archive_entry_set_mtime(e, 1500000000, 0);
          },
          "#!/bin/sh\necho hi\n")
      .symlink("app/current", "run.sh")
      .hardlink("app/again.sh", "app/run.sh")
      .dir("app/empty", 0700)
      .finish();
}

struct Received {
  TempDir tmp;
  fs::path dir = tmp.path / "ctx";
  ContextInfo info;
  Received() { fs::create_directory(dir); }
};

std::string receive_error(const std::string& body, const fs::path& dir, std::uint64_t max = 64 * kMiB) {
  try {
    receive_context(string_reader(body), dir, max);
  } catch (const BuildError& e) {
    return e.what();
  }
  return "";
}

void expect_sample(const fs::path& dir) {
  EXPECT_EQ(read_all((dir / "Dockerfile").string()), "FROM scratch\nCOPY app /app\n");
  struct stat st {};
  ASSERT_EQ(::lstat((dir / "app/run.sh").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0755u);
  EXPECT_EQ(st.st_uid, 1000u);
  EXPECT_EQ(st.st_gid, 1001u);
  EXPECT_EQ(st.st_mtim.tv_sec, 1500000000);
  EXPECT_EQ(fs::read_symlink(dir / "app/current"), "run.sh");
  struct stat again {};
  ASSERT_EQ(::lstat((dir / "app/again.sh").c_str(), &again), 0);
  EXPECT_EQ(again.st_ino, st.st_ino);
  ASSERT_EQ(::lstat((dir / "app/empty").c_str(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0700u);
}

TEST(BuildContext, UnpacksAPlainTar) {
  Received r;
  const std::string body = sample_context();
  r.info = receive_context(string_reader(body), r.dir, 64 * kMiB);
  expect_sample(r.dir);
  EXPECT_EQ(r.info.files, 6u);
  EXPECT_EQ(r.info.content, 27u + 18u);
  EXPECT_EQ(r.info.bytes, body.size());
}

TEST(BuildContext, UnpacksCompressedTars) {
  const std::string tar = sample_context();
  struct Kind {
    const char* name;
    int (*filter)(archive*);
  };
  for (const Kind& kind : {Kind{"gzip", archive_write_add_filter_gzip}, Kind{"bzip2", archive_write_add_filter_bzip2},
                           Kind{"xz", archive_write_add_filter_xz}, Kind{"zstd", archive_write_add_filter_zstd}}) {
    SCOPED_TRACE(kind.name);
    Received r;
    const std::string body = compress(tar, kind.filter);
    ASSERT_NE(body, tar);
    r.info = receive_context(string_reader(body), r.dir, 64 * kMiB);
    expect_sample(r.dir);
    EXPECT_EQ(r.info.bytes, body.size());
    EXPECT_EQ(r.info.files, 6u);
  }
}

// A body that counts what was pulled from it.
struct CountingBody {
  std::string data;
  std::size_t pulled = 0;
  image::ReadFn reader() {
    return [this](char* buf, std::size_t n) {
      std::size_t k = std::min(n, data.size() - pulled);
      std::memcpy(buf, data.data() + pulled, k);
      pulled += k;
      return k;
    };
  }
};

TEST(BuildContext, StopsAtTheLimitWithoutReadingTheRest) {
  CountingBody body;
  body.data = TarBuilder().file("big", std::string(16 * kMiB, 'z')).file("after", "x").finish();
  Received r;
  try {
    receive_context(body.reader(), r.dir, 1 * kMiB);
    FAIL() << "no error";
  } catch (const BuildError& e) {
    EXPECT_EQ(std::string(e.what()),
              "the build context is larger than the limit of 1 MiB (build.max_context_bytes in agent.json)");
  }
  EXPECT_LT(body.pulled, 2 * kMiB);
  EXPECT_FALSE(fs::exists(r.dir / "after"));
}

TEST(BuildContext, TheLimitCountsUncompressedBytes) {
  const std::string tar = TarBuilder().file("zeros", std::string(4 * kMiB, '\0')).finish();
  CountingBody body;
  body.data = compress(tar, archive_write_add_filter_gzip);
  ASSERT_LT(body.data.size(), 64 * 1024u);
  Received r;
  EXPECT_EQ(receive_error(body.data, r.dir, 3 * kMiB / 2),
            "the build context is larger than the limit of 1.5 MiB (build.max_context_bytes in agent.json)");
}

TEST(BuildContext, AContextOfExactlyTheLimitPasses) {
  const std::string tar = TarBuilder().file("a", std::string(5000, 'a')).finish();
  Received r;
  EXPECT_EQ(receive_context(string_reader(tar), r.dir, tar.size()).files, 1u);
  Received again;
  EXPECT_NE(receive_error(tar, again.dir, tar.size() - 1).find("larger than the limit"), std::string::npos);
}

TEST(BuildContext, RefusesNamesLeavingIt) {
  for (const std::string name : {"../x", "a/../../x", "..", "a/.."}) {
    SCOPED_TRACE(name);
    Received r;
    EXPECT_EQ(receive_error(TarBuilder().file(name, "x").finish(), r.dir),
              "\"" + name + "\" is outside of the build context");
    EXPECT_EQ(std::vector<fs::path>(fs::directory_iterator(r.tmp.path), {}), std::vector<fs::path>{r.dir});
  }
}

TEST(BuildContext, RefusesAbsoluteNames) {
  Received r;
  EXPECT_EQ(receive_error(TarBuilder().file("ok", "1").file("/etc/evil", "x").finish(), r.dir),
            "\"/etc/evil\" is outside of the build context");
}

TEST(BuildContext, NeverWritesThroughASymlinkOfTheContext) {
  Received r;
  const fs::path outside = r.tmp.path / "outside";
  fs::create_directory(outside);
  std::string error =
      receive_error(TarBuilder().symlink("link", outside.string()).file("link/planted", "x").finish(), r.dir);
  EXPECT_NE(error.find("\"link/planted\" is outside of the build context"), std::string::npos) << error;
  EXPECT_NE(error.find("symlink"), std::string::npos) << error;
  EXPECT_TRUE(fs::is_empty(outside));
}

TEST(BuildContext, RefusesLinksLeadingOut) {
  Received r;
  EXPECT_EQ(receive_error(TarBuilder().symlink("up", "../../etc").finish(), r.dir),
            "invalid symlink \"up\" -> \"../../etc\"");
  Received h;
  EXPECT_EQ(receive_error(TarBuilder().hardlink("h", "../etc/passwd").finish(), h.dir),
            "invalid hardlink \"h\" -> \"../etc/passwd\"");
  // Absolute symlinks resolve in the build, not here: they are kept.
  Received a;
  receive_context(string_reader(TarBuilder().symlink("abs", "/etc/passwd").finish()), a.dir, kMiB);
  EXPECT_EQ(fs::read_symlink(a.dir / "abs"), "/etc/passwd");
}

TEST(BuildContext, AnEmptyBodyIsAnError) {
  Received r;
  EXPECT_EQ(receive_error("", r.dir), "the build context is empty: the request body holds no tar stream");
}

TEST(BuildContext, AnEmptyTarIsAnEmptyContext) {
  Received r;
  ContextInfo info = receive_context(string_reader(TarBuilder().finish()), r.dir, kMiB);
  EXPECT_EQ(info.files, 0u);
  EXPECT_GT(info.bytes, 0u);
  EXPECT_TRUE(fs::is_empty(r.dir));
}

TEST(BuildContext, MalformedStreamsAreErrors) {
  Received r;
  std::string error = receive_error("this is not a tar stream, just some text that goes on\n", r.dir);
  EXPECT_EQ(error.rfind("the build context is not a valid tar stream: ", 0), 0u) << error;

  const std::string gz =
      compress(TarBuilder().file("f", std::string(300000, 'q')).finish(), archive_write_add_filter_gzip);
  Received t;
  error = receive_error(gz.substr(0, gz.size() / 2), t.dir);
  EXPECT_EQ(error.rfind("the build context is not a valid tar stream: ", 0), 0u) << error;

  const std::string tar = TarBuilder().file("f", std::string(300000, 'q')).finish();
  Received cut;
  error = receive_error(tar.substr(0, 100000), cut.dir);
  EXPECT_EQ(error.rfind("the build context is not a valid tar stream: ", 0), 0u) << error;
}

TEST(BuildContext, TheBodysOwnErrorComesThrough) {
  struct ClientGone : std::runtime_error {
    using std::runtime_error::runtime_error;
  };
  const std::string tar = TarBuilder().file("f", std::string(300000, 'q')).finish();
  std::size_t served = 0;
  image::ReadFn body = [&](char* buf, std::size_t n) -> std::size_t {
    if (served > 100000) throw ClientGone("the client went away");
    std::size_t k = std::min(n, tar.size() - served);
    std::memcpy(buf, tar.data() + served, k);
    served += k;
    return k;
  };
  Received r;
  EXPECT_THROW(receive_context(body, r.dir, 64 * kMiB), ClientGone);
}

}  // namespace
}  // namespace berth::agent::build
