// GET /system/df and POST /images/prune on a real image store, volume store
// and container manager (fake_crun.py, a FAKE OCI runtime), through the API.
#include <stdlib.h>
#include <sys/stat.h>

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>

#include "agent/api/api.h"
#include "agent/api/routes.h"
#include "agent/engine.h"
#include "agent/runtime/container_manager.h"
#include "tests/unit/agent_image/tar_builder.h"

namespace berth::agent::runtime {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using namespace std::chrono_literals;

class DiskUsageTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/brdf.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    ::setenv("FAKE_CRUN_STATE", (root_ / "crun").c_str(), 1);
    options_.data_root = root_.string();
    options_.runtime_path = BERTH_FAKE_CRUN;
    options_.agent_path = BERTH_TEST_SHIM;
    images_ = std::make_unique<image::ImageStore>(root_ / "image");
    volumes_ = std::make_unique<volume::VolumeStore>(root_ / "volumes");
    networks_ = std::make_unique<network::NetworkManager>(root_ / "network");
    ContainerManager::Options o;
    o.mount_overlay = false;
    o.cgroup_root = (root_ / "cgroup").string();
    o.boot_marker = (root_ / "run" / "marker").string();
    o.run_dir = (root_ / "run").string();
    cm_ = std::make_unique<ContainerManager>(o);
    engine_ = std::make_unique<Engine>(Engine{options_, log_, *images_, *volumes_, *networks_, *cm_});
    images_->set_in_use_lookup([this](const std::string& id) {
      auto users = cm_->users_of_image(id);
      return users.empty() ? std::string() : users.front();
    });
    volumes_->set_users_query([this](const std::string& name) { return cm_->users_of_volume(name); });
    cm_->restore(*engine_);
    Router r;
    api::add_image_prune_routes(r, *engine_);
    api::add_system_df_routes(r, *engine_);
    api::add_container_routes(r, *engine_);
    api_ = std::make_unique<api::Api>(std::move(r));

    // app:1 and app:2 share a 1000-byte base layer; the dangling one shares nothing.
    base_ = layer("", "a", 1000);
    top1_ = layer(base_.chain_id, "b", 200);
    top2_ = layer(base_.chain_id, "c", 30);
    lone_ = layer("", "d", 5);
    app1_ = image({base_, top1_}, {});
    app2_ = image({base_, top2_}, {{"keep", "yes"}});
    dangling_ = image({lone_}, {});
    images_->tag(app1_, image::parse_reference_default_tag("app:1"));
    images_->tag(app2_, image::parse_reference_default_tag("app:2"));
  }

  void TearDown() override {
    if (cm_) {
      for (const json& c : cm_->list({.all = true})) {
        try {
          cm_->remove(c["Id"], true, true);
        } catch (...) {
        }
      }
      cm_->shutdown();
    }
    api_.reset();
    engine_.reset();
    cm_.reset();
    std::error_code ec;
    fs::remove_all(root_, ec);
  }

  using Router = api::Router;

  image::LayerInfo layer(const std::string& parent, const std::string& file, std::size_t bytes) {
    std::string tar = image::testing::TarBuilder().file(file, std::string(bytes, 'x')).finish();
    std::string blob = images_->put_blob_bytes(tar);
    return images_->add_layer(parent, {blob, std::string(image::kMediaLayerTar), tar.size()}, blob);
  }

  std::string image(const std::vector<image::LayerInfo>& layers, const json& labels) {
    json diff_ids = json::array();
    for (const auto& l : layers) diff_ids.push_back(l.diff_id);
    json config = {{"architecture", "amd64"}, {"os", "linux"}, {"created", "2024-01-02T03:04:05Z"},
                   {"config", {{"Cmd", {"sh"}}, {"Labels", labels}}},
                   {"rootfs", {{"type", "layers"}, {"diff_ids", diff_ids}}}};
    return images_->add_image(config.dump());
  }

  api::Response call(const std::string& method, const std::string& target, const std::string& body = "") {
    api::Request req;
    req.method = method;
    req.target = target;
    req.body = body;
    return api_->handle(std::move(req));
  }

  json prune(const std::string& query = "") {
    api::Response r = call("POST", "/v1.47/images/prune" + query);
    EXPECT_EQ(r.status, 200u) << r.body;
    return json::parse(r.body);
  }

  std::string create_on_app1() {
    api::Response r = call("POST", "/v1.47/containers/create?name=web",
                           json({{"Image", "app:1"}, {"Cmd", {"true"}},
                                 {"HostConfig", {{"NetworkMode", "host"}, {"Binds", {"used:/data"}}}}})
                               .dump());
    EXPECT_EQ(r.status, 201u) << r.body;
    return json::parse(r.body).value("Id", "");
  }

  fs::path root_;
  EngineOptions options_;
  Logger log_;
  std::unique_ptr<image::ImageStore> images_;
  std::unique_ptr<volume::VolumeStore> volumes_;
  std::unique_ptr<network::NetworkManager> networks_;
  std::unique_ptr<ContainerManager> cm_;
  std::unique_ptr<Engine> engine_;
  std::unique_ptr<api::Api> api_;
  image::LayerInfo base_, top1_, top2_, lone_;
  std::string app1_, app2_, dangling_;
};

TEST_F(DiskUsageTest, SystemDfCountsSharedLayersContainersAndVolumes) {
  const std::string id = create_on_app1();
  ASSERT_FALSE(id.empty());
  // The writable layer (made at start when overlayfs is on; by hand here).
  ASSERT_TRUE(fs::is_directory(root_ / "containers" / id));
  const fs::path diff = root_ / "containers" / id / "diff";
  fs::create_directories(diff);
  std::ofstream(diff / "written") << std::string(4096, 'w');
  volumes_->ensure("lonely");
  std::ofstream(volumes_->get("lonely")->mountpoint / "f") << std::string(77, 'v');

  api::Response r = call("GET", "/v1.47/system/df");
  ASSERT_EQ(r.status, 200u) << r.body;
  json df = json::parse(r.body);
  EXPECT_EQ(df["LayersSize"], 1000 + 200 + 30 + 5);
  EXPECT_EQ(df["BuildCache"], json::array());

  std::map<std::string, json> images;
  for (const json& i : df["Images"]) images[i["Id"]] = i;
  ASSERT_EQ(images.size(), 3u) << df["Images"].dump();
  EXPECT_EQ(images[app1_]["Size"], 1200);
  EXPECT_EQ(images[app1_]["SharedSize"], 1000);
  EXPECT_EQ(images[app1_]["Containers"], 1);
  EXPECT_EQ(images[app1_]["RepoTags"], json({"app:1"}));
  EXPECT_EQ(images[app2_]["Size"], 1030);
  EXPECT_EQ(images[app2_]["SharedSize"], 1000);
  EXPECT_EQ(images[app2_]["Containers"], 0);
  EXPECT_EQ(images[dangling_]["Size"], 5);
  EXPECT_EQ(images[dangling_]["SharedSize"], 0);
  EXPECT_EQ(images[dangling_]["Containers"], 0);

  ASSERT_EQ(df["Containers"].size(), 1u);
  const json& c = df["Containers"][0];
  EXPECT_EQ(c["Id"], id);
  EXPECT_EQ(c["ImageID"], app1_);
  EXPECT_EQ(c["SizeRw"], 4096);
  EXPECT_EQ(c["SizeRootFs"], 4096 + 1200);

  std::map<std::string, json> volumes;
  for (const json& v : df["Volumes"]) volumes[v["Name"]] = v;
  ASSERT_EQ(volumes.size(), 2u) << df["Volumes"].dump();
  EXPECT_EQ(volumes["used"]["UsageData"]["RefCount"], 1);
  EXPECT_EQ(volumes["lonely"]["UsageData"]["RefCount"], 0);
  struct stat st {};
  ASSERT_EQ(::stat((volumes_->get("lonely")->mountpoint / "f").c_str(), &st), 0);
  EXPECT_GE(volumes["lonely"]["UsageData"]["Size"].get<std::int64_t>(), static_cast<std::int64_t>(st.st_blocks) * 512);
  EXPECT_GT(volumes["lonely"]["UsageData"]["Size"].get<std::int64_t>(), 0);

  // ?type= narrows it to what was asked for.
  json only = json::parse(call("GET", "/v1.47/system/df?type=volume").body);
  EXPECT_TRUE(only["Images"].is_null());
  EXPECT_TRUE(only["Containers"].is_null());
  EXPECT_EQ(only["Volumes"].size(), 2u);
  EXPECT_EQ(call("GET", "/v1.47/system/df?type=bogus").status, 400u);
}

TEST_F(DiskUsageTest, ImagePruneNeverRemovesAnImageInUse) {
  const std::string id = create_on_app1();
  ASSERT_FALSE(id.empty());
  // A second tag: rmi would untag it even while the image is in use; prune must not.
  images_->tag(app1_, image::parse_reference_default_tag("web:latest"));
  auto sub = engine_->events->subscribe({});

  // By default only dangling images go.
  json out = prune();
  EXPECT_EQ(out["ImagesDeleted"], json::array({{{"Deleted", dangling_}}, {{"Deleted", lone_.chain_id}}}));
  EXPECT_EQ(out["SpaceReclaimed"], 5);
  EXPECT_FALSE(images_->image(dangling_));

  // Filters that match nothing remove nothing.
  out = prune("?filters=" + std::string("%7B%22dangling%22%3A%5B%22false%22%5D%2C%22label%21%22%3A%5B%22keep%22%5D%7D"));
  EXPECT_TRUE(out["ImagesDeleted"].is_null()) << out.dump();
  EXPECT_EQ(out["SpaceReclaimed"], 0);
  out = prune("?filters=%7B%22dangling%22%3A%7B%22false%22%3Atrue%7D%2C%22until%22%3A%7B%222020-01-01T00%3A00%3A00Z%22%3Atrue%7D%7D");
  EXPECT_TRUE(out["ImagesDeleted"].is_null()) << out.dump();

  EXPECT_EQ(call("POST", "/v1.47/images/prune?filters=%7B%22dangling%22%3A%5B%22maybe%22%5D%7D").status, 400u);
  EXPECT_EQ(call("POST", "/v1.47/images/prune?filters=%7B%22color%22%3A%5B%22red%22%5D%7D").status, 400u);

  // -a: app:2 goes with its own layer; app:1 stays for its container, and so
  // does the base layer they share. ("False": docker-py's spelling.)
  out = prune("?filters=%7B%22dangling%22%3A%5B%22False%22%5D%7D");
  EXPECT_EQ(out["ImagesDeleted"],
            json::array({{{"Untagged", "app:2"}}, {{"Deleted", app2_}}, {{"Deleted", top2_.chain_id}}}));
  EXPECT_EQ(out["SpaceReclaimed"], 30);
  EXPECT_TRUE(images_->image(app1_));
  EXPECT_TRUE(images_->layer(base_.chain_id));
  EXPECT_TRUE(images_->resolve("app:1"));
  EXPECT_TRUE(images_->resolve("web:latest"));

  // The events dockerd sends: delete per image (untag per reference), then prune.
  std::vector<std::string> seen;
  events::Event e;
  while (sub->next(100ms, e) == events::Subscription::Status::Event)
    seen.push_back(e.action + " " + e.actor_id + " " + e.attributes["name"] + e.attributes["reclaimed"]);
  EXPECT_EQ(seen, (std::vector<std::string>{"delete " + dangling_ + " " + dangling_, "prune  5", "prune  0",
                                            "prune  0", "untag " + app2_ + " " + app2_,
                                            "delete " + app2_ + " " + app2_, "prune  30"}));

  // Once its container is gone, app:1 goes too.
  cm_->remove(id, true, true);
  out = prune("?filters=%7B%22dangling%22%3A%5B%22false%22%5D%7D");
  EXPECT_EQ(out["SpaceReclaimed"], 1200) << out.dump();
  EXPECT_EQ(images_->count(), 0u);
}

TEST_F(DiskUsageTest, WrongTypedCreateBodyIs400) {
  for (const std::string& body : {std::string(R"({"Image":5})"), std::string(R"([{"Image":"app:1"}])"),
                                  std::string(R"("app:1")")}) {
    api::Response r = call("POST", "/v1.47/containers/create", body);
    EXPECT_EQ(r.status, 400u) << body << " " << r.body;
    EXPECT_FALSE(json::parse(r.body).value("message", "").empty());
  }
  EXPECT_TRUE(cm_->list({.all = true}).empty());
}

}  // namespace
}  // namespace berth::agent::runtime
