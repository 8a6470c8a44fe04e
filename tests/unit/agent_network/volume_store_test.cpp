#include "agent/volume/volume_store.h"

#include <gtest/gtest.h>

#include <fstream>

#include "agent/api/http.h"
#include "agent/volume/volume_routes.h"
#include "test_util.h"
#include "tests/spec/engine_spec.h"

namespace berth::agent::volume {
namespace {

using agent::testing::call;
using agent::testing::json_of;
using agent::testing::TempDir;
namespace fs = std::filesystem;

TEST(VolumeStore, CreatesDataDirAndMetadataAndReloads) {
  TempDir dir;
  {
    VolumeStore store(dir.path);
    Volume v = store.ensure("data", {{"a", "b"}});
    EXPECT_EQ(v.mountpoint, dir.path / "data" / "_data");
    EXPECT_TRUE(fs::is_directory(v.mountpoint));
    EXPECT_TRUE(fs::exists(dir.path / "data" / "volume.json"));
    EXPECT_FALSE(v.anonymous);
    // Same name again: the existing volume, labels unchanged.
    Volume again = store.ensure("data", {{"x", "y"}});
    EXPECT_EQ(again.created_at, v.created_at);
    EXPECT_EQ(again.labels.at("a"), "b");
  }
  VolumeStore reloaded(dir.path);
  auto v = reloaded.get("data");
  ASSERT_TRUE(v);
  EXPECT_EQ(v->labels.at("a"), "b");
  EXPECT_EQ(reloaded.list().size(), 1u);
}

TEST(VolumeStore, AnonymousGetsRandomNameAndLabel) {
  TempDir dir;
  VolumeStore store(dir.path);
  Volume v = store.ensure("");
  EXPECT_EQ(v.name.size(), 64u);
  EXPECT_TRUE(v.anonymous);
  EXPECT_TRUE(v.labels.count(kAnonymousLabel));
  EXPECT_NE(store.ensure("").name, v.name);
}

TEST(VolumeStore, RefusesBadNames) {
  TempDir dir;
  VolumeStore store(dir.path);
  for (const char* bad : {"a", "../x", "x/y", "-x", "a b"}) {
    try {
      store.ensure(bad);
      ADD_FAILURE() << bad;
    } catch (const api::HttpError& e) {
      EXPECT_EQ(e.status(), 400u);
      EXPECT_NE(std::string(e.what()).find("includes invalid characters"), std::string::npos);
    }
  }
}

TEST(VolumeStore, RemoveInUseIs409EvenForced) {
  TempDir dir;
  VolumeStore store(dir.path);
  store.ensure("busy");
  store.set_users_query([](const std::string& name) {
    return name == "busy" ? std::vector<std::string>{"abc123"} : std::vector<std::string>{};
  });
  for (bool force : {false, true}) {
    try {
      store.remove("busy", force);
      ADD_FAILURE();
    } catch (const api::HttpError& e) {
      EXPECT_EQ(e.status(), 409u);
      EXPECT_STREQ(e.what(), "remove busy: volume is in use - [abc123]");
    }
  }
  EXPECT_TRUE(store.get("busy"));
}

TEST(VolumeStore, RemoveMissingIs404UnlessForced) {
  TempDir dir;
  VolumeStore store(dir.path);
  try {
    store.remove("nope");
    ADD_FAILURE();
  } catch (const api::HttpError& e) {
    EXPECT_EQ(e.status(), 404u);
    EXPECT_STREQ(e.what(), "get nope: no such volume");
  }
  EXPECT_NO_THROW(store.remove("nope", true));
  Volume v = store.ensure("gone");
  std::ofstream(v.mountpoint / "file") << "x";
  store.remove("gone");
  EXPECT_FALSE(fs::exists(dir.path / "gone"));
  EXPECT_FALSE(store.get("gone"));
}

struct VolumeApi : ::testing::Test {
  TempDir dir;
  VolumeStore store{dir.path};
  std::vector<std::string> users_of_used{"c1"};
  api::Api api = [this] {
    api::Router r;
    api::add_volume_routes(r, store);
    store.set_users_query([this](const std::string& name) {
      return name == "used" ? users_of_used : std::vector<std::string>{};
    });
    return api::Api(std::move(r));
  }();
};

TEST_F(VolumeApi, CreateInspectShape) {
  auto r = call(api, "POST", "/v1.47/volumes/create",
                R"({"Name":"web","Labels":{"tier":"front"},"DriverOpts":{"type":"tmpfs"}})");
  ASSERT_EQ(r.status, 201u) << r.body;
  auto j = json_of(r);
  EXPECT_EQ(j["Name"], "web");
  EXPECT_EQ(j["Driver"], "local");
  EXPECT_EQ(j["Scope"], "local");
  EXPECT_EQ(j["Labels"]["tier"], "front");
  EXPECT_EQ(j["Options"]["type"], "tmpfs");
  EXPECT_EQ(j["Mountpoint"], (dir.path / "web" / "_data").string());
  EXPECT_TRUE(j["CreatedAt"].get<std::string>().ends_with("Z"));
  berth::testing::expect_spec_fields(j, "Volume");
  auto i = call(api, "GET", "/v1.47/volumes/web");
  ASSERT_EQ(i.status, 200u);
  EXPECT_EQ(json_of(i), j);
  auto missing = call(api, "GET", "/v1.47/volumes/nope");
  EXPECT_EQ(missing.status, 404u);
  EXPECT_EQ(json_of(missing)["message"], "get nope: no such volume");
}

TEST_F(VolumeApi, CreateErrors) {
  EXPECT_EQ(call(api, "POST", "/volumes/create", R"({"Name":"x","Driver":"nfs"})").status, 404u);
  EXPECT_EQ(call(api, "POST", "/volumes/create", R"({"Name":"bad/name"})").status, 400u);
  EXPECT_EQ(call(api, "POST", "/volumes/create", R"({"Name":)").status, 400u);
  EXPECT_EQ(call(api, "POST", "/volumes/create", R"({"DriverOpts":{"bogus":"1"}})").status, 400u);
  // No name: an anonymous-named (random) volume, as `docker volume create` does.
  auto r = call(api, "POST", "/volumes/create", "{}");
  ASSERT_EQ(r.status, 201u);
  EXPECT_EQ(json_of(r)["Name"].get<std::string>().size(), 64u);
}

TEST_F(VolumeApi, ListFilters) {
  store.ensure("used", {{"env", "prod"}});
  store.ensure("idle", {{"env", "dev"}});
  store.ensure("other");
  auto names = [&](const std::string& filters) {
    auto r = call(api, "GET", "/volumes?filters=" + filters);
    EXPECT_EQ(r.status, 200u) << r.body;
    std::vector<std::string> out;
    auto j = json_of(r);
    for (auto& v : j["Volumes"]) out.push_back(v["Name"]);
    return out;
  };
  EXPECT_EQ(names("").size(), 3u);
  using V = std::vector<std::string>;
  EXPECT_EQ(names(R"({"name":{"idl":true}})"), V{"idle"});
  EXPECT_EQ(names(R"({"label":["env"]})"), (V{"idle", "used"}));
  EXPECT_EQ(names(R"({"label":{"env=prod":true}})"), V{"used"});
  EXPECT_EQ(names(R"({"dangling":{"true":true}})"), (V{"idle", "other"}));
  EXPECT_EQ(names(R"({"dangling":{"false":true}})"), V{"used"});
  auto bad = call(api, "GET", R"(/volumes?filters={"colour":{"x":true}})");
  EXPECT_EQ(bad.status, 400u);
  EXPECT_EQ(json_of(bad)["message"], "invalid filter 'colour'");
}

TEST_F(VolumeApi, DeleteInUseAndForce) {
  store.ensure("used");
  auto r = call(api, "DELETE", "/volumes/used");
  EXPECT_EQ(r.status, 409u);
  EXPECT_EQ(json_of(r)["message"], "remove used: volume is in use - [c1]");
  users_of_used = {"c1", "c2"};
  EXPECT_EQ(json_of(call(api, "DELETE", "/volumes/used?force=1"))["message"],
            "remove used: volume is in use - [c1 c2]");
  users_of_used.clear();
  EXPECT_EQ(call(api, "DELETE", "/volumes/used").status, 204u);
  EXPECT_EQ(call(api, "DELETE", "/volumes/used").status, 404u);
  EXPECT_EQ(call(api, "DELETE", "/volumes/used?force=true").status, 204u);
}

TEST_F(VolumeApi, PruneAnonymousByDefaultAllWhenAsked) {
  Volume anon = store.ensure("");
  std::ofstream(anon.mountpoint / "blob") << std::string(10000, 'x');
  store.ensure("named");
  store.ensure("used");
  auto r = call(api, "POST", "/volumes/prune");
  ASSERT_EQ(r.status, 200u);
  auto j = json_of(r);
  ASSERT_EQ(j["VolumesDeleted"].size(), 1u);
  EXPECT_EQ(j["VolumesDeleted"][0], anon.name);
  EXPECT_GE(j["SpaceReclaimed"].get<long>(), 10000);
  j = json_of(call(api, "POST", R"(/volumes/prune?filters={"all":["true"]})"));
  ASSERT_EQ(j["VolumesDeleted"].size(), 1u);
  EXPECT_EQ(j["VolumesDeleted"][0], "named");
  EXPECT_TRUE(store.get("used"));
}

}  // namespace
}  // namespace berth::agent::volume
