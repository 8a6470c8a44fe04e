// docker load of hostile archives: many members must not pile up in memory,
// the spool under the store's tmp goes away whatever happens, and the JSON
// documents read into memory are capped.
#include <archive.h>
#include <archive_entry.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "agent/image/archive_io.h"
#include "agent/image/digest.h"
#include "agent/image/image_store.h"
#include "tar_builder.h"
#include "test_util.h"

namespace berth::agent::image {
namespace {
namespace fs = std::filesystem;
using nlohmann::json;
using testing::string_reader;
using testing::TarBuilder;
using testing::TempDir;

// Writes a tarball member by member to a file, so the test itself holds
// none of it in memory.
class TarFile {
 public:
  explicit TarFile(const fs::path& path) {
    archive_write_set_format_pax_restricted(a_);
    if (archive_write_open_filename(a_, path.c_str()) != ARCHIVE_OK) throw std::runtime_error("tar open");
  }
  ~TarFile() { archive_write_free(a_); }
  void file(const std::string& name, const std::string& content) {
    archive_entry* e = archive_entry_new();
    archive_entry_set_pathname(e, name.c_str());
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, 0644);
    archive_entry_set_size(e, static_cast<la_int64_t>(content.size()));
    if (archive_write_header(a_, e) != ARCHIVE_OK) throw std::runtime_error("tar header");
    archive_write_data(a_, content.data(), content.size());
    archive_entry_free(e);
  }
  void close() {
    if (archive_write_close(a_) != ARCHIVE_OK) throw std::runtime_error("tar close");
  }

 private:
  archive* a_ = archive_write_new();
};

// A one-layer image as docker-archive members: layer.tar, config.json, manifest.json.
void add_image(TarFile& tar, const std::string& tag) {
  std::string layer = TarBuilder().file("hello", "world").finish();
  json config = {{"architecture", "amd64"}, {"os", "linux"}, {"config", json::object()},
                 {"rootfs", {{"type", "layers"}, {"diff_ids", {sha256_digest(layer)}}}}};
  tar.file("layer.tar", layer);
  tar.file("config.json", config.dump());
  tar.file("manifest.json",
           json::array({{{"Config", "config.json"}, {"RepoTags", {tag}}, {"Layers", {"layer.tar"}}}}).dump());
}

// `count` members of `size` bytes nothing refers to.
void add_filler(TarFile& tar, int count, std::size_t size) {
  std::string content(size, '\0');
  for (int i = 0; i < count; ++i) {
    for (std::size_t k = 0; k < content.size(); k += 512) content[k] = static_cast<char>(i + k);
    tar.file("junk/" + std::to_string(i), content);
  }
}

long status_kib(const char* field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(field, 0) == 0) return std::stol(line.substr(std::strlen(field) + 1));
  return -1;
}

std::vector<std::string> entries(const fs::path& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path().filename().string());
  return out;
}

TEST(LoadSpool, ManySmallMembersLoadWithBoundedMemory) {
  TempDir tmp;
  constexpr int kMembers = 2000;
  constexpr std::size_t kMemberSize = 64 * 1024;  // 125 MiB in all
  {
    TarFile tar(tmp.path / "big.tar");
    add_filler(tar, kMembers / 2, kMemberSize);
    add_image(tar, "spooled:latest");
    add_filler(tar, kMembers / 2, kMemberSize);
    tar.close();
  }
  // The peak RSS of a child doing only the load, from a reset high-water mark.
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::close(fds[0]);
    std::string report;
    try {
      std::ofstream("/proc/self/clear_refs") << "5";
      long before = status_kib("VmHWM:");
      ImageStore store(tmp.path / "store");
      auto lines = load_images(store, file_reader(tmp.path / "big.tar"));
      long grown = status_kib("VmHWM:") - before;
      report = std::to_string(grown) + " " + (lines.empty() ? "" : lines[0]);
    } catch (const std::exception& e) {
      report = std::string("error ") + e.what();
    }
    (void)!::write(fds[1], report.data(), report.size());
    ::_exit(0);
  }
  ::close(fds[1]);
  std::string report;
  char buf[512];
  ssize_t n;
  while ((n = ::read(fds[0], buf, sizeof buf)) > 0) report.append(buf, static_cast<std::size_t>(n));
  ::close(fds[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  ASSERT_EQ(report.rfind("error", 0), std::string::npos) << report;
  long grown_kib = std::stol(report);
  EXPECT_EQ(report.substr(report.find(' ') + 1), "Loaded image: spooled:latest");
  long total_kib = static_cast<long>(kMembers * kMemberSize / 1024);
  RecordProperty("peak_rss_growth_kib", std::to_string(grown_kib));
  EXPECT_LT(grown_kib, total_kib / 4) << "peak RSS grew by " << grown_kib << " KiB for " << total_kib
                                      << " KiB of members";
  ImageStore store(tmp.path / "store");
  EXPECT_TRUE(store.find("spooled:latest"));
  EXPECT_EQ(entries(tmp.path / "store/tmp"), std::vector<std::string>{});
}

TEST(LoadSpool, TheSpoolIsUnderTheStoreTmpAndGoesAwayAfterSuccessAndFailure) {
  TempDir tmp;
  ImageStore store(tmp.path / "store");
  auto archive_with = [&](const std::function<void(TarFile&)>& add) {
    fs::path path = tmp.path / "a.tar";
    TarFile tar(path);
    add(tar);
    tar.close();
    return testing::read_all(path.string());
  };
  // Lists the store's tmp, and the files in it, at each read: members are
  // spooled there while the input is read.
  auto watching = [&](std::string bytes, std::vector<std::string>& seen) {
    ReadFn inner = string_reader(std::move(bytes));
    return [&seen, inner, &store](char* buf, std::size_t n) {
      seen.clear();
      for (const auto& e : fs::recursive_directory_iterator(store.root() / "tmp"))
        seen.push_back(e.path().lexically_relative(store.root() / "tmp").string());
      return inner(buf, n);
    };
  };

  std::vector<std::string> seen;
  std::string good = archive_with([](TarFile& t) {
    add_filler(t, 200, 4096);
    add_image(t, "ok:1");
  });
  EXPECT_EQ(load_images(store, watching(good, seen)), std::vector<std::string>{"Loaded image: ok:1"});
  ASSERT_GT(seen.size(), 10u);  // read in several chunks, the last after most members
  for (const auto& name : seen) EXPECT_EQ(name.rfind("load-", 0), 0u) << name;
  EXPECT_EQ(entries(store.root() / "tmp"), std::vector<std::string>{});

  // A manifest that names a member the archive lacks.
  seen.clear();
  std::string missing = archive_with([](TarFile& t) {
    add_filler(t, 200, 4096);
    t.file("manifest.json", R"([{"Config":"nope.json","RepoTags":["x:1"],"Layers":[]}])");
  });
  EXPECT_THROW(load_images(store, watching(missing, seen)), std::runtime_error);
  EXPECT_GT(seen.size(), 10u);
  EXPECT_EQ(entries(store.root() / "tmp"), std::vector<std::string>{});

  // An archive cut in the middle of a member.
  std::string cut = good.substr(0, good.size() / 2 + 100);
  EXPECT_THROW(load_images(store, string_reader(cut)), std::runtime_error);
  EXPECT_EQ(entries(store.root() / "tmp"), std::vector<std::string>{});

  // An input that fails while reading.
  std::size_t given = 0;
  ReadFn failing = [&](char* buf, std::size_t n) -> std::size_t {
    if (given > 400000) throw std::runtime_error("client went away");
    std::size_t k = std::min(n, good.size() - given);
    std::memcpy(buf, good.data() + given, k);
    given += k;
    return k;
  };
  EXPECT_THROW(load_images(store, failing), std::runtime_error);
  EXPECT_EQ(entries(store.root() / "tmp"), std::vector<std::string>{});
}

TEST(LoadSpool, JsonDocumentsAreCapped) {
  TempDir tmp;
  ImageStore store(tmp.path / "store");
  // A manifest.json padded past the limit with whitespace (still valid JSON).
  std::string manifest = R"([{"Config":"c.json","RepoTags":["x:1"],"Layers":[]}])" + std::string(9 << 20, ' ');
  std::string tar = TarBuilder().file("c.json", "{}").file("manifest.json", manifest).finish();
  try {
    load_images(store, string_reader(tar));
    FAIL() << "a 9 MiB manifest.json was accepted";
  } catch (const std::runtime_error& e) {
    std::string what = e.what();
    EXPECT_NE(what.find("manifest.json"), std::string::npos) << what;
    EXPECT_NE(what.find("8 MiB"), std::string::npos) << what;
  }
  // An image config, likewise.
  std::string config = R"({"rootfs":{"type":"layers","diff_ids":[]}})" + std::string(9 << 20, ' ');
  std::string tar2 = TarBuilder()
                         .file("big.json", config)
                         .file("manifest.json", R"([{"Config":"big.json","RepoTags":["x:1"],"Layers":[]}])")
                         .finish();
  try {
    load_images(store, string_reader(tar2));
    FAIL() << "a 9 MiB config was accepted";
  } catch (const std::runtime_error& e) {
    std::string what = e.what();
    EXPECT_NE(what.find("big.json"), std::string::npos) << what;
    EXPECT_NE(what.find("8 MiB"), std::string::npos) << what;
  }
  EXPECT_EQ(store.count(), 0u);
  EXPECT_EQ(entries(store.root() / "tmp"), std::vector<std::string>{});
}

}  // namespace
}  // namespace berth::agent::image
