#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstring>
#include <nlohmann/json.hpp>

#include "agent/api/images.h"
#include "agent/image/archive_io.h"
#include "agent/image/digest.h"
#include "agent/image/image_store.h"
#include "tar_builder.h"
#include "test_util.h"
#include "tests/spec/engine_spec.h"

namespace berth::agent::image {
namespace {
namespace fs = std::filesystem;
using nlohmann::json;
using testing::TarBuilder;
using testing::CollectingWriter;
using testing::TempDir;

ReadFn string_reader(std::string data) {
  auto shared = std::make_shared<std::string>(std::move(data));
  auto pos = std::make_shared<std::size_t>(0);
  return [shared, pos](char* buf, std::size_t n) {
    std::size_t k = std::min(n, shared->size() - *pos);
    std::memcpy(buf, shared->data() + *pos, k);
    *pos += k;
    return k;
  };
}

// A classic `docker save` tarball: <id>/layer.tar, <config>.json, manifest.json.
struct DockerArchive {
  std::string tarball;
  std::string image_id;
  std::vector<std::string> diff_ids;
};

DockerArchive make_docker_archive(const std::vector<std::string>& tags, bool gzip_outer = false) {
  std::string l1 = TarBuilder().dir("bin").file("bin/hello", "echo hi\n", 0755).dir("etc").file("etc/motd", "welcome\n").finish();
  std::string l2 = TarBuilder().dir("etc").file("etc/.wh.motd", "").file("etc/new", "n").finish();
  DockerArchive out;
  out.diff_ids = {sha256_digest(l1), sha256_digest(l2)};
  json config = {{"architecture", "amd64"},
                 {"os", "linux"},
                 {"created", "2024-05-06T07:08:09.5Z"},
                 {"config", {{"Cmd", {"/bin/hello"}}, {"Env", {"PATH=/bin"}}, {"Labels", {{"team", "a"}}}}},
                 {"rootfs", {{"type", "layers"}, {"diff_ids", out.diff_ids}}},
                 {"history", {{{"created", "2024-05-06T07:08:09Z"}, {"created_by", "ADD hello"}},
                              {{"created", "2024-05-06T07:08:09Z"}, {"created_by", "RUN rm motd"}},
                              {{"created", "2024-05-06T07:08:09Z"}, {"created_by", "CMD"}, {"empty_layer", true}}}}};
  std::string config_bytes = config.dump();
  out.image_id = sha256_digest(config_bytes);
  std::string h1(digest_hex(out.diff_ids[0])), h2(digest_hex(out.diff_ids[1]));
  json manifest = json::array({{{"Config", std::string(digest_hex(out.image_id)) + ".json"},
                                {"RepoTags", tags},
                                {"Layers", {h1 + "/layer.tar", "dup/layer.tar"}}}});
  out.tarball = TarBuilder(gzip_outer)
                    .dir(h1)
                    .file(h1 + "/layer.tar", l1)
                    .dir(h2)
                    .file(h2 + "/layer.tar", l2)
                    .dir("dup")
                    .symlink("dup/layer.tar", "../" + h2 + "/layer.tar")
                    .file(std::string(digest_hex(out.image_id)) + ".json", config_bytes)
                    .file("manifest.json", manifest.dump())
                    .finish();
  return out;
}

// Reads a tarball's regular files into name -> content.
std::map<std::string, std::string> untar(const std::string& data) {
  std::map<std::string, std::string> files;
  archive* a = archive_read_new();
  archive_read_support_format_tar(a);
  archive_read_open_memory(a, data.data(), data.size());
  archive_entry* e;
  while (archive_read_next_header(a, &e) == ARCHIVE_OK) {
    if (archive_entry_filetype(e) != AE_IFREG) continue;
    std::string content;
    char buf[65536];
    la_ssize_t n;
    while ((n = archive_read_data(a, buf, sizeof buf)) > 0) content.append(buf, static_cast<std::size_t>(n));
    files[archive_entry_pathname(e)] = content;
  }
  archive_read_free(a);
  return files;
}

TEST(Archive, LoadDockerArchiveThenSaveAndLoadAgain) {
  TempDir tmp;
  ImageStore store(tmp.path / "a");
  DockerArchive ar = make_docker_archive({"busybox:latest", "example.com:5000/team/app:v1"}, true);
  auto lines = load_images(store, string_reader(ar.tarball));
  EXPECT_EQ(lines, (std::vector<std::string>{"Loaded image: busybox:latest", "Loaded image: example.com:5000/team/app:v1"}));
  auto resolved = store.resolve("busybox");
  ASSERT_TRUE(resolved);
  EXPECT_EQ(resolved->id, ar.image_id);
  ASSERT_EQ(resolved->layers.size(), 2u);
  struct stat st {};
  ASSERT_EQ(::lstat((resolved->layers[1] / "etc/motd").c_str(), &st), 0);
  EXPECT_TRUE(S_ISCHR(st.st_mode));
  EXPECT_TRUE(fs::exists(resolved->layers[0] / "bin/hello"));

  std::string saved;
  save_images(store, {"busybox:latest"}, [&](std::string_view chunk) {
    saved.append(chunk);
    return true;
  });
  auto files = untar(saved);
  ASSERT_TRUE(files.count("manifest.json"));
  json manifest = json::parse(files["manifest.json"]);
  ASSERT_EQ(manifest.size(), 1u);
  EXPECT_EQ(manifest[0]["RepoTags"], json::array({"busybox:latest"}));
  EXPECT_EQ(manifest[0]["Config"], "blobs/sha256/" + std::string(digest_hex(ar.image_id)));
  ASSERT_EQ(manifest[0]["Layers"].size(), 2u);
  // Layers are the original uncompressed tarballs, so the diff ids match.
  for (std::size_t i = 0; i < 2; ++i)
    EXPECT_EQ(sha256_digest(files[manifest[0]["Layers"][i].get<std::string>()]), ar.diff_ids[i]);
  EXPECT_TRUE(files.count("index.json"));
  EXPECT_TRUE(files.count("oci-layout"));

  ImageStore second(tmp.path / "b");
  EXPECT_EQ(load_images(second, string_reader(saved)), std::vector<std::string>{"Loaded image: busybox:latest"});
  EXPECT_EQ(second.find("busybox:latest"), ar.image_id);

  // The same tarball read as an OCI layout (no manifest.json).
  std::map<std::string, std::string> oci = files;
  oci.erase("manifest.json");
  TarBuilder rebuilt;
  for (const auto& [name, content] : oci) rebuilt.file(name, content);
  ImageStore third(tmp.path / "c");
  EXPECT_EQ(load_images(third, string_reader(rebuilt.finish())), std::vector<std::string>{"Loaded image: busybox:latest"});
  EXPECT_EQ(third.find("busybox"), ar.image_id);
}

TEST(Archive, LoadRejectsGarbageAndMissingManifest) {
  TempDir tmp;
  ImageStore store(tmp.path / "a");
  EXPECT_THROW(load_images(store, string_reader(std::string(5000, 'x'))), std::runtime_error);
  EXPECT_THROW(load_images(store, string_reader(TarBuilder().file("x", "y").finish())), std::runtime_error);
  EXPECT_EQ(store.count(), 0u);
}

TEST(Archive, ImportMakesAOneLayerImageWithChanges) {
  TempDir tmp;
  ImageStore store(tmp.path / "a");
  std::string rootfs = TarBuilder(true).dir("bin").file("bin/x", "x", 0755).finish();
  ImportOptions options;
  options.repo = "imported";
  options.tag = "v1";
  options.changes = {"CMD [\"/bin/x\"]", "ENV A=b", "WORKDIR /w"};
  std::string id = import_image(store, string_reader(rootfs), options);
  auto rec = store.image(id);
  ASSERT_TRUE(rec);
  ASSERT_EQ(rec->tags.size(), 1u);
  EXPECT_EQ(rec->tags[0].familiar_string(), "imported:v1");
  EXPECT_EQ(rec->config["config"]["Cmd"], json::array({"/bin/x"}));
  EXPECT_EQ(rec->config["config"]["Env"], json::array({"A=b"}));
  EXPECT_EQ(rec->config["config"]["WorkingDir"], "/w");
  EXPECT_EQ(rec->config["history"][0]["comment"], "Imported from -");
  ASSERT_EQ(rec->diff_ids.size(), 1u);
  auto layer = store.layer(rec->chain_ids[0]);
  ASSERT_TRUE(layer);
  EXPECT_TRUE(fs::exists(layer->dir / "bin/x"));
  ImportOptions bad;
  bad.changes = {"FROM x"};
  EXPECT_THROW(import_image(store, string_reader(rootfs), bad), std::invalid_argument);
}

// --- the routes, through the Router as the server calls them

struct Routes {
  TempDir tmp;
  ImageStore store{tmp.path / "image"};
  api::Router router;
  Routes() { api::add_image_routes(router, store, {}); }

  api::Response call(const std::string& method, const std::string& path, const std::string& query = "",
                     std::string body = {}) {
    auto match = router.match(method, path);
    if (!match) throw std::runtime_error("no route for " + method + " " + path);
    api::Request req;
    req.method = method;
    req.path = path;
    req.query = query;
    req.params = match->params;
    req.body = std::move(body);
    try {
      return (*match->handler)(req);
    } catch (const api::HttpError& e) {
      return api::Response::error(e.status(), e.what());
    }
  }
};

TEST(ImageRoutes, LoadListInspectHistoryTagRemove) {
  Routes r;
  DockerArchive ar = make_docker_archive({"busybox:latest"});
  auto load = r.call("POST", "/images/load", "quiet=1", ar.tarball);
  EXPECT_EQ(load.status, 200u);
  EXPECT_EQ(load.body, "{\"stream\":\"Loaded image: busybox:latest\\n\"}\n");

  auto list = r.call("GET", "/images/json");
  json images = json::parse(list.body);
  ASSERT_EQ(images.size(), 1u);
  EXPECT_EQ(images[0]["Id"], ar.image_id);
  EXPECT_EQ(images[0]["RepoTags"], json::array({"busybox:latest"}));
  EXPECT_EQ(images[0]["Created"], 1714979289);
  EXPECT_EQ(images[0]["Size"], 8 + 8 + 1);
  EXPECT_EQ(images[0]["Labels"]["team"], "a");
  berth::testing::expect_spec_fields(images[0], "ImageSummary");

  EXPECT_EQ(r.call("POST", "/images/busybox/tag", "repo=127.0.0.1%3A5000%2Fbox&tag=v2").status, 201u);
  EXPECT_EQ(r.call("POST", "/images/nothere/tag", "repo=x").status, 404u);
  EXPECT_EQ(r.call("POST", "/images/busybox/tag", "repo=Bad").status, 400u);

  auto filtered = json::parse(r.call("GET", "/images/json", "filters=%7B%22reference%22%3A%7B%22127.0.0.1%3A5000%2F*%22%3Atrue%7D%7D").body);
  ASSERT_EQ(filtered.size(), 1u);
  EXPECT_EQ(json::parse(r.call("GET", "/images/json", "filters=%7B%22dangling%22%3A%5B%22true%22%5D%7D").body).size(), 0u);
  EXPECT_EQ(json::parse(r.call("GET", "/images/json", "filters=%7B%22label%22%3A%5B%22team%3Db%22%5D%7D").body).size(), 0u);
  EXPECT_EQ(json::parse(r.call("GET", "/images/json", "filters=%7B%22label%22%3A%5B%22team%3Da%22%5D%7D").body).size(), 1u);
  EXPECT_EQ(r.call("GET", "/images/json", "filters=%7B%22bogus%22%3A%5B%22x%22%5D%7D").status, 400u);

  auto inspect = r.call("GET", "/images/127.0.0.1:5000/box:v2/json");
  ASSERT_EQ(inspect.status, 200u);
  json doc = json::parse(inspect.body);
  EXPECT_EQ(doc["Id"], ar.image_id);
  EXPECT_EQ(doc["RepoTags"], json::array({"127.0.0.1:5000/box:v2", "busybox:latest"}));
  EXPECT_EQ(doc["Config"]["Cmd"], json::array({"/bin/hello"}));
  EXPECT_EQ(doc["RootFS"]["Layers"], json(ar.diff_ids));
  EXPECT_EQ(doc["Os"], "linux");
  EXPECT_EQ(doc["Architecture"], "amd64");
  EXPECT_EQ(doc["Created"], "2024-05-06T07:08:09.5Z");
  berth::testing::expect_spec_fields(doc, "ImageInspect");
  berth::testing::expect_spec_fields(doc["Config"], "ImageConfig");
  auto missing = r.call("GET", "/images/nothere/json");
  EXPECT_EQ(missing.status, 404u);
  EXPECT_EQ(missing.body, "{\"message\":\"No such image: nothere\"}\n");

  json history = json::parse(r.call("GET", "/images/busybox/history").body);
  ASSERT_EQ(history.size(), 3u);
  EXPECT_EQ(history[0]["Id"], ar.image_id);
  for (const json& item : history) berth::testing::expect_spec_fields(item, "ImageHistoryResponseItem");
  EXPECT_EQ(history[0]["CreatedBy"], "CMD");
  EXPECT_EQ(history[0]["Size"], 0);
  EXPECT_EQ(history[1]["CreatedBy"], "RUN rm motd");
  EXPECT_EQ(history[1]["Size"], 1);
  EXPECT_EQ(history[2]["Id"], "<missing>");
  EXPECT_EQ(history[2]["Size"], 16);

  auto save = r.call("GET", "/images/get", "names=busybox&names=127.0.0.1%3A5000%2Fbox%3Av2");
  ASSERT_TRUE(save.stream);
  CollectingWriter out;
  save.stream(out);
  json saved_manifest = json::parse(untar(out.data)["manifest.json"]);
  ASSERT_EQ(saved_manifest.size(), 1u);
  EXPECT_EQ(saved_manifest[0]["RepoTags"], json::array({"busybox:latest", "127.0.0.1:5000/box:v2"}));
  EXPECT_EQ(r.call("GET", "/images/nothere/get").status, 404u);

  r.store.set_in_use_check([&](const std::string& id) { return id == ar.image_id; });
  auto untag = json::parse(r.call("DELETE", "/images/busybox").body);
  EXPECT_EQ(untag, json::array({{{"Untagged", "busybox:latest"}}}));
  auto conflict = r.call("DELETE", "/images/127.0.0.1:5000/box:v2");
  EXPECT_EQ(conflict.status, 409u);
  r.store.set_in_use_check([](const std::string&) { return false; });
  r.store.set_in_use_lookup({});
  auto deleted = json::parse(r.call("DELETE", "/images/127.0.0.1:5000/box:v2").body);
  ASSERT_EQ(deleted.size(), 4u);
  EXPECT_EQ(deleted[0]["Untagged"], "127.0.0.1:5000/box:v2");
  EXPECT_EQ(deleted[1]["Deleted"], ar.image_id);
  EXPECT_EQ(r.call("DELETE", "/images/busybox").status, 404u);
  EXPECT_EQ(json::parse(r.call("GET", "/images/json").body).size(), 0u);

  // import through /images/create?fromSrc=-
  std::string rootfs = TarBuilder().file("f", "1").finish();
  auto imported = r.call("POST", "/images/create", "fromSrc=-&repo=imp&tag=t&changes=CMD%20%5B%22sh%22%5D", rootfs);
  ASSERT_EQ(imported.status, 200u);
  json status = json::parse(imported.body);
  EXPECT_TRUE(is_sha256_digest(status["status"].get<std::string>()));
  EXPECT_EQ(r.store.find("imp:t"), status["status"].get<std::string>());
}

}  // namespace
}  // namespace berth::agent::image
