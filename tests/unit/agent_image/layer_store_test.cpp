#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>

#include <cstring>
#include <nlohmann/json.hpp>
#include <thread>

#include "agent/image/digest.h"
#include "agent/image/image_store.h"
#include "agent/image/layer.h"
#include "tar_builder.h"
#include "test_util.h"

namespace berth::agent::image {
namespace {
namespace fs = std::filesystem;
using testing::TarBuilder;
using testing::TempDir;

ReadFn string_reader(const std::string& data) {
  auto pos = std::make_shared<std::size_t>(0);
  return [data, pos](char* buf, std::size_t n) {
    std::size_t k = std::min(n, data.size() - *pos);
    std::memcpy(buf, data.data() + *pos, k);
    *pos += k;
    return k;
  };
}

TEST(Digest, Sha256AndChainId) {
  EXPECT_EQ(sha256_digest(""), "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  std::string a = sha256_digest("a"), b = sha256_digest("b");
  EXPECT_EQ(chain_id("", a), a);
  EXPECT_EQ(chain_id(a, b), sha256_digest(a + " " + b));
  EXPECT_EQ(short_id(a), std::string(digest_hex(a).substr(0, 12)));
}

TEST(Layer, UnpacksFilesLinksAndHashesTheUncompressedTar) {
  TempDir tmp;
  std::string tar = TarBuilder()
                        .dir("etc")
                        .file("etc/hostname", "box\n")
                        .file("./bin/tool", "#!/bin/sh\n", 0755)
                        .symlink("bin/link", "tool")
                        .hardlink("bin/hard", "bin/tool")
                        .finish();
  std::string gz = TarBuilder(true)
                       .dir("etc")
                       .file("etc/hostname", "box\n")
                       .file("./bin/tool", "#!/bin/sh\n", 0755)
                       .symlink("bin/link", "tool")
                       .hardlink("bin/hard", "bin/tool")
                       .finish();
  ASSERT_NE(tar, gz);
  fs::create_directory(tmp.path / "plain");
  fs::create_directory(tmp.path / "gz");
  UnpackedLayer plain = unpack_layer(string_reader(tar), tmp.path / "plain");
  UnpackedLayer zipped = unpack_layer(string_reader(gz), tmp.path / "gz");
  EXPECT_EQ(plain.diff_id, sha256_digest(tar));
  EXPECT_EQ(plain.tar_size, tar.size());
  EXPECT_EQ(plain.size, 4u + 10u);
  EXPECT_EQ(testing::read_all((tmp.path / "gz/etc/hostname").string()), "box\n");
  EXPECT_EQ(fs::read_symlink(tmp.path / "gz/bin/link"), "tool");
  struct stat a {}, b {};
  ASSERT_EQ(::stat((tmp.path / "gz/bin/tool").c_str(), &a), 0);
  ASSERT_EQ(::stat((tmp.path / "gz/bin/hard").c_str(), &b), 0);
  EXPECT_EQ(a.st_ino, b.st_ino);
  EXPECT_EQ(a.st_mode & 07777, 0755u);
  // The gzip'ed layer hashes to its uncompressed tar when both are the same bytes.
  UnpackedLayer again;
  std::string out;
  again = decompress_stream(string_reader(gz), [&](const char* p, std::size_t n) { out.append(p, n); });
  EXPECT_EQ(again.diff_id, sha256_digest(out));
  EXPECT_EQ(zipped.diff_id, again.diff_id);
}

TEST(Layer, ConvertsWhiteouts) {
  TempDir tmp;
  std::string tar = TarBuilder()
                        .dir("etc")
                        .file("etc/.wh.passwd", "")
                        .dir("var/cache")
                        .file("var/cache/.wh..wh..opq", "")
                        .file("var/cache/new", "n")
                        .file(".wh..wh..plnk/123", "x")
                        .finish();
  fs::create_directory(tmp.path / "d");
  unpack_layer(string_reader(tar), tmp.path / "d");
  struct stat st {};
  ASSERT_EQ(::lstat((tmp.path / "d/etc/passwd").c_str(), &st), 0);
  EXPECT_TRUE(S_ISCHR(st.st_mode));
  EXPECT_EQ(st.st_rdev, makedev(0, 0));
  EXPECT_FALSE(fs::exists(tmp.path / "d/etc/.wh.passwd"));
  char value[8] = {};
  ssize_t n = ::lgetxattr((tmp.path / "d/var/cache").c_str(), "trusted.overlay.opaque", value, sizeof value);
  ASSERT_EQ(n, 1) << std::strerror(errno);
  EXPECT_EQ(value[0], 'y');
  EXPECT_FALSE(fs::exists(tmp.path / "d/var/cache/.wh..wh..opq"));
  EXPECT_TRUE(fs::exists(tmp.path / "d/var/cache/new"));
  EXPECT_FALSE(fs::exists(tmp.path / "d/.wh..wh..plnk"));
}

TEST(Layer, RefusesEntriesThatEscape) {
  TempDir tmp;
  fs::create_directory(tmp.path / "d");
  std::string up = TarBuilder().file("../evil", "x").finish();
  EXPECT_THROW(unpack_layer(string_reader(up), tmp.path / "d"), std::runtime_error);
  EXPECT_FALSE(fs::exists(tmp.path / "evil"));
  fs::create_directory(tmp.path / "e");
  std::string via_link = TarBuilder().symlink("out", "/tmp").file("out/evil-berth-test", "x").finish();
  try {
    unpack_layer(string_reader(via_link), tmp.path / "e");
    EXPECT_TRUE(fs::is_directory(fs::symlink_status(tmp.path / "e/out")));  // the link was replaced
  } catch (const std::runtime_error&) {
  }
  EXPECT_FALSE(fs::exists("/tmp/evil-berth-test"));
  std::string garbage(3000, 'z');
  fs::create_directory(tmp.path / "f");
  EXPECT_THROW(unpack_layer(string_reader(garbage), tmp.path / "f"), std::runtime_error);
}

std::string config_for(const std::vector<std::string>& diff_ids, const std::string& created = "2024-01-02T03:04:05Z") {
  nlohmann::json c = {{"architecture", "amd64"}, {"os", "linux"}, {"created", created},
                      {"config", {{"Cmd", {"sh"}}}},
                      {"rootfs", {{"type", "layers"}, {"diff_ids", diff_ids}}}};
  return c.dump();
}

TEST(ImageStore, StoresLayersOnceAndResolvesReferences) {
  TempDir tmp;
  ImageStore store(tmp.path / "image");
  std::string base = TarBuilder(true).file("a", "1").finish();
  std::string top = TarBuilder().file("b", "22").finish();
  std::string base_blob = store.put_blob_bytes(base);
  std::string top_blob = store.put_blob_bytes(top);
  EXPECT_EQ(base_blob, sha256_digest(base));
  EXPECT_TRUE(fs::exists(tmp.path / "image/blobs/sha256" / std::string(digest_hex(base_blob))));

  // Concurrent unpacks of the same layer share one result.
  std::string base_diff;
  {
    std::string out;
    base_diff = decompress_stream(string_reader(base), [&](const char* p, std::size_t n) { out.append(p, n); }).diff_id;
  }
  std::vector<std::thread> threads;
  std::vector<LayerInfo> infos(4);
  for (int i = 0; i < 4; ++i)
    threads.emplace_back([&, i] {
      infos[i] = store.add_layer("", {base_blob, std::string(kMediaLayerGzip), base.size()}, base_diff);
    });
  for (auto& t : threads) t.join();
  for (const auto& info : infos) EXPECT_EQ(info.chain_id, base_diff);
  LayerInfo l2 = store.add_layer(base_diff, {top_blob, std::string(kMediaLayerTar), top.size()});
  EXPECT_EQ(l2.diff_id, top_blob);
  EXPECT_EQ(l2.chain_id, chain_id(base_diff, top_blob));
  EXPECT_EQ(testing::read_all((l2.dir / "b").string()), "22");
  std::size_t layer_dirs = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(tmp.path / "image/layers/sha256")) ++layer_dirs;
  EXPECT_EQ(layer_dirs, 2u);

  EXPECT_THROW(store.add_layer("", {top_blob, std::string(kMediaLayerTar), 0}, base_diff), std::runtime_error);

  std::string id = store.add_image(config_for({base_diff, top_blob}));
  store.tag(id, parse_reference_default_tag("busybox"));
  EXPECT_EQ(store.count(), 1u);
  auto resolved = store.resolve("busybox");
  ASSERT_TRUE(resolved);
  EXPECT_EQ(resolved->id, id);
  EXPECT_EQ(resolved->reference, "busybox:latest");
  ASSERT_EQ(resolved->layers.size(), 2u);
  EXPECT_TRUE(fs::exists(resolved->layers[0] / "a"));
  EXPECT_TRUE(fs::exists(resolved->layers[1] / "b"));
  EXPECT_EQ(resolved->config["config"]["Cmd"][0], "sh");
  EXPECT_TRUE(store.resolve("docker.io/library/busybox:latest"));
  EXPECT_TRUE(store.resolve(id));
  EXPECT_TRUE(store.resolve(std::string(digest_hex(id).substr(0, 12))));
  EXPECT_TRUE(store.resolve("sha256:" + std::string(digest_hex(id).substr(0, 6))));
  EXPECT_FALSE(store.resolve("busybox:other"));
  EXPECT_FALSE(store.resolve("nothere"));

  // A new store on the same directory sees the same images and references.
  ImageStore reopened(tmp.path / "image");
  EXPECT_EQ(reopened.count(), 1u);
  auto rec = reopened.image(id);
  ASSERT_TRUE(rec);
  ASSERT_EQ(rec->tags.size(), 1u);
  EXPECT_EQ(rec->tags[0].familiar_string(), "busybox:latest");
  EXPECT_EQ(rec->size, 3u);
}

TEST(ImageStore, RemoveUntagsThenDeletesAndHonoursInUse) {
  TempDir tmp;
  ImageStore store(tmp.path / "image");
  std::string layer = TarBuilder().file("x", "1").finish();
  std::string blob = store.put_blob_bytes(layer);
  store.add_layer("", {blob, std::string(kMediaLayerTar), layer.size()}, blob);
  std::string id = store.add_image(config_for({blob}));
  store.tag(id, parse_reference_default_tag("app:1"));
  store.tag(id, parse_reference_default_tag("app:2"));

  std::string user;
  store.set_in_use_lookup([&](const std::string& image_id) { return image_id == id ? user : ""; });
  auto r1 = store.remove("app:1", false);
  EXPECT_EQ(r1.untagged, std::vector<std::string>{"app:1"});
  EXPECT_TRUE(r1.deleted.empty());

  user = std::string(64, 'c');
  try {
    store.remove("app:2", false);
    FAIL();
  } catch (const ConflictError& e) {
    EXPECT_EQ(std::string(e.what()), "conflict: unable to remove repository reference \"app:2\" (must force) - container "
                                     "cccccccccccc is using its referenced image " + short_id(id));
  }
  EXPECT_THROW(store.remove(std::string(digest_hex(id).substr(0, 8)), false), ConflictError);
  user.clear();
  EXPECT_THROW(store.remove("nope", false), NoSuchImage);
  auto r2 = store.remove("app:2", false);
  EXPECT_EQ(r2.untagged, std::vector<std::string>{"app:2"});
  ASSERT_EQ(r2.deleted.size(), 2u);
  EXPECT_EQ(r2.deleted[0], id);
  EXPECT_EQ(r2.deleted[1], blob);
  EXPECT_EQ(store.count(), 0u);
  EXPECT_FALSE(store.layer(blob));
  EXPECT_FALSE(store.has_blob(blob));
}

TEST(ImageStore, BlobDigestMismatchStoresNothing) {
  TempDir tmp;
  ImageStore store(tmp.path / "image");
  std::string wrong = sha256_digest("other");
  EXPECT_THROW(store.put_blob(string_reader("data"), wrong), std::runtime_error);
  EXPECT_FALSE(store.has_blob(wrong));
  EXPECT_FALSE(store.has_blob(sha256_digest("data")));
  EXPECT_TRUE(fs::is_empty(tmp.path / "image/tmp"));
}

}  // namespace
}  // namespace berth::agent::image
