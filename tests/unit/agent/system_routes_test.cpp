#include <gtest/gtest.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <string>

#include "agent/api/api.h"
#include "agent/api/system.h"
#include "fake_system_info.h"

namespace berth::agent::api {
namespace {

using nlohmann::json;
using testing::FakeSystemInfo;

// Property names from docker-engine-api-v1.47.yaml (definitions SystemVersion,
// SystemInfo, SwarmInfo, RegistryServiceConfig, IndexInfo).
const std::set<std::string> kSystemVersionFields = {
    "Platform",  "Components", "Version", "ApiVersion",    "MinAPIVersion", "GitCommit",
    "GoVersion", "Os",         "Arch",    "KernelVersion", "Experimental",  "BuildTime"};
const std::set<std::string> kSystemInfoFields = {"ID",
                                                 "Containers",
                                                 "ContainersRunning",
                                                 "ContainersPaused",
                                                 "ContainersStopped",
                                                 "Images",
                                                 "Driver",
                                                 "DriverStatus",
                                                 "DockerRootDir",
                                                 "Plugins",
                                                 "MemoryLimit",
                                                 "SwapLimit",
                                                 "KernelMemoryTCP",
                                                 "CpuCfsPeriod",
                                                 "CpuCfsQuota",
                                                 "CPUShares",
                                                 "CPUSet",
                                                 "PidsLimit",
                                                 "OomKillDisable",
                                                 "IPv4Forwarding",
                                                 "BridgeNfIptables",
                                                 "BridgeNfIp6tables",
                                                 "Debug",
                                                 "NFd",
                                                 "NGoroutines",
                                                 "SystemTime",
                                                 "LoggingDriver",
                                                 "CgroupDriver",
                                                 "CgroupVersion",
                                                 "NEventsListener",
                                                 "KernelVersion",
                                                 "OperatingSystem",
                                                 "OSVersion",
                                                 "OSType",
                                                 "Architecture",
                                                 "NCPU",
                                                 "MemTotal",
                                                 "IndexServerAddress",
                                                 "RegistryConfig",
                                                 "GenericResources",
                                                 "HttpProxy",
                                                 "HttpsProxy",
                                                 "NoProxy",
                                                 "Name",
                                                 "Labels",
                                                 "ExperimentalBuild",
                                                 "ServerVersion",
                                                 "Runtimes",
                                                 "DefaultRuntime",
                                                 "Swarm",
                                                 "LiveRestoreEnabled",
                                                 "Isolation",
                                                 "InitBinary",
                                                 "ContainerdCommit",
                                                 "RuncCommit",
                                                 "InitCommit",
                                                 "SecurityOptions",
                                                 "ProductLicense",
                                                 "DefaultAddressPools",
                                                 "Warnings",
                                                 "CDISpecDirs",
                                                 "Containerd"};
const std::set<std::string> kSwarmInfoFields = {
    "NodeID",         "NodeAddr", "LocalNodeState", "ControlAvailable", "Error",
    "RemoteManagers", "Nodes",    "Managers",       "Cluster"};
const std::set<std::string> kRegistryConfigFields = {
    "AllowNondistributableArtifactsCIDRs", "AllowNondistributableArtifactsHostnames",
    "InsecureRegistryCIDRs", "IndexConfigs", "Mirrors"};
const std::set<std::string> kIndexInfoFields = {"Name", "Mirrors", "Secure", "Official"};

void expect_only_spec_fields(const json& obj, const std::set<std::string>& spec, const char* what) {
  ASSERT_TRUE(obj.is_object()) << what;
  for (const auto& [key, value] : obj.items()) {
    EXPECT_TRUE(spec.count(key)) << what << " has \"" << key
                                 << "\", which the spec does not define";
  }
}

struct SystemRoutes : ::testing::Test {
  std::shared_ptr<FakeSystemInfo> host = std::make_shared<FakeSystemInfo>();
  EngineSettings engine{"/var/lib/berth",
                        {"env=prod", "zone=a"},
                        {"10.0.0.0/8", "fd00::/8", "myregistry:5000"},
                        {"https://mirror.example/"},
                        {},
                        {}};

  Response get(const std::string& target, const std::string& method = "GET") {
    Router router;
    add_system_routes(router, host, engine);
    Api api(std::move(router));
    Request req;
    req.method = method;
    req.target = target;
    return api.handle(std::move(req));
  }
};

TEST_F(SystemRoutes, PingAnswersOkWithDockerdHeaders) {
  for (const char* target : {"/_ping", "/v1.47/_ping", "/v1.24/_ping"}) {
    Response r = get(target);
    EXPECT_EQ(r.status, 200u) << target;
    EXPECT_EQ(r.body, "OK");
    EXPECT_EQ(r.headers.get("Content-Type"), "text/plain; charset=utf-8");
    EXPECT_EQ(r.headers.get("Api-Version"), "1.47");
    EXPECT_EQ(r.headers.get("Ostype"), "linux");
    EXPECT_EQ(r.headers.get("Docker-Experimental"), "false");
    EXPECT_EQ(r.headers.get("Cache-Control"), "no-cache, no-store, must-revalidate");
    EXPECT_EQ(r.headers.get("Pragma"), "no-cache");
    EXPECT_EQ(r.headers.get("Builder-Version"), "1");
    EXPECT_EQ(r.headers.get("Server"), "Docker/" BERTH_VERSION " (linux)");
  }
}

TEST_F(SystemRoutes, HeadPingHasHeadersButNoBody) {
  Response r = get("/_ping", "HEAD");
  EXPECT_EQ(r.status, 200u);
  EXPECT_EQ(r.body, "");
  EXPECT_EQ(r.headers.get("Api-Version"), "1.47");
  EXPECT_EQ(r.headers.get("Builder-Version"), "1");
}

TEST_F(SystemRoutes, OnlyGetAndHeadAreRouted) {
  EXPECT_EQ(get("/_ping", "POST").status, 404u);
  EXPECT_EQ(get("/version", "HEAD").status, 404u);
  EXPECT_EQ(get("/info", "DELETE").status, 404u);
}

TEST_F(SystemRoutes, VersionMatchesTheSpecShape) {
  Response r = get("/v1.47/version");
  ASSERT_EQ(r.status, 200u);
  EXPECT_EQ(r.headers.get("Content-Type"), "application/json");
  json v = json::parse(r.body);
  expect_only_spec_fields(v, kSystemVersionFields, "SystemVersion");
  EXPECT_EQ(v["Version"], BERTH_VERSION);
  EXPECT_EQ(v["ApiVersion"], "1.47");
  EXPECT_EQ(v["MinAPIVersion"], "1.24");
  EXPECT_EQ(v["Os"], "linux");
  EXPECT_EQ(v["Arch"], "amd64");
  EXPECT_EQ(v["KernelVersion"], "6.1.0-18-amd64");
  EXPECT_FALSE(v["GoVersion"].get<std::string>().empty());
  EXPECT_TRUE(v["GitCommit"].is_string());
  EXPECT_TRUE(v["BuildTime"].is_string());
  ASSERT_TRUE(v["Platform"]["Name"].is_string());
  ASSERT_EQ(v["Components"].size(), 1u);
  const json& engine_component = v["Components"][0];
  EXPECT_EQ(engine_component["Name"], "Engine");
  EXPECT_EQ(engine_component["Version"], BERTH_VERSION);
  const json& d = engine_component["Details"];
  EXPECT_EQ(d["ApiVersion"], "1.47");
  EXPECT_EQ(d["MinAPIVersion"], "1.24");
  EXPECT_EQ(d["Os"], "linux");
  EXPECT_EQ(d["Arch"], "amd64");
  EXPECT_EQ(d["Experimental"], "false");
  for (const char* key : {"GitCommit", "GoVersion", "KernelVersion", "BuildTime"}) {
    EXPECT_TRUE(d[key].is_string()) << key;
  }
}

TEST_F(SystemRoutes, VersionMapsUnameMachineToGoarch) {
  host->mutable_facts().machine = "aarch64";
  EXPECT_EQ(json::parse(get("/version").body)["Arch"], "arm64");
}

TEST_F(SystemRoutes, InfoMatchesTheSpecShapeAndReportsTheHost) {
  Response r = get("/v1.47/info");
  ASSERT_EQ(r.status, 200u);
  json i = json::parse(r.body);
  expect_only_spec_fields(i, kSystemInfoFields, "SystemInfo");
  expect_only_spec_fields(i["Swarm"], kSwarmInfoFields, "SwarmInfo");
  expect_only_spec_fields(i["RegistryConfig"], kRegistryConfigFields, "RegistryServiceConfig");
  for (const auto& [name, index] : i["RegistryConfig"]["IndexConfigs"].items()) {
    expect_only_spec_fields(index, kIndexInfoFields, "IndexInfo");
  }

  EXPECT_EQ(i["ID"], "0f0e0d0c-0b0a-4908-8706-050403020100");
  for (const char* zero :
       {"Containers", "ContainersRunning", "ContainersPaused", "ContainersStopped", "Images"}) {
    EXPECT_EQ(i[zero], 0) << zero;
  }
  EXPECT_EQ(i["Driver"], "overlay2");
  EXPECT_EQ(i["KernelVersion"], "6.1.0-18-amd64");
  EXPECT_EQ(i["OperatingSystem"], "Debian GNU/Linux 12 (bookworm)");
  EXPECT_EQ(i["OSVersion"], "12");
  EXPECT_EQ(i["OSType"], "linux");
  EXPECT_EQ(i["Architecture"], "x86_64");
  EXPECT_EQ(i["NCPU"], 4);
  EXPECT_EQ(i["MemTotal"], 8LL << 30);
  EXPECT_EQ(i["Name"], "berth-host");
  EXPECT_EQ(i["Labels"], json({"env=prod", "zone=a"}));
  EXPECT_EQ(i["ServerVersion"], BERTH_VERSION);
  EXPECT_EQ(i["DockerRootDir"], "/var/lib/berth");
  EXPECT_EQ(i["IndexServerAddress"], "https://index.docker.io/v1/");
  EXPECT_EQ(i["SecurityOptions"], json::array());
  EXPECT_EQ(i["CgroupDriver"], "cgroupfs");
  EXPECT_EQ(i["CgroupVersion"], "2");
  EXPECT_EQ(i["LoggingDriver"], "json-file");
  EXPECT_EQ(i["Plugins"]["Volume"], json({"local"}));
  EXPECT_EQ(i["Plugins"]["Network"], json({"bridge", "host", "none"}));
  EXPECT_EQ(i["Plugins"]["Log"], json({"json-file"}));
  EXPECT_EQ(i["Swarm"]["LocalNodeState"], "inactive");
  EXPECT_EQ(i["DefaultRuntime"], "crun");
  EXPECT_EQ(i["Runtimes"], json({{"crun", {{"path", "crun"}}}}));
  EXPECT_EQ(i["SystemTime"], "2025-01-02T03:04:05.000000006+00:00");
  EXPECT_EQ(i["MemoryLimit"], true);
  EXPECT_EQ(i["KernelMemoryTCP"], false);
  EXPECT_EQ(i["Warnings"], json::array());  // every cgroup v2 feature dockerd checks is there
}

TEST_F(SystemRoutes, InfoCountsComeFromTheEngine) {
  engine.counts = [] { return EngineCounts{2, 1, 4, 7}; };
  json i = json::parse(get("/info").body);
  EXPECT_EQ(i["Containers"], 7);
  EXPECT_EQ(i["ContainersRunning"], 2);
  EXPECT_EQ(i["ContainersPaused"], 1);
  EXPECT_EQ(i["ContainersStopped"], 4);
  EXPECT_EQ(i["Images"], 7);
}

TEST_F(SystemRoutes, InfoRegistryConfigReflectsTheConfig) {
  json reg = json::parse(get("/info").body)["RegistryConfig"];
  EXPECT_EQ(reg["InsecureRegistryCIDRs"], json({"10.0.0.0/8", "fd00::/8"}));
  EXPECT_EQ(reg["Mirrors"], json({"https://mirror.example/"}));
  const json& hub = reg["IndexConfigs"]["docker.io"];
  EXPECT_EQ(hub["Secure"], true);
  EXPECT_EQ(hub["Official"], true);
  EXPECT_EQ(hub["Mirrors"], json({"https://mirror.example/"}));
  const json& mine = reg["IndexConfigs"]["myregistry:5000"];
  EXPECT_EQ(mine["Name"], "myregistry:5000");
  EXPECT_EQ(mine["Secure"], false);
  EXPECT_EQ(mine["Official"], false);
  EXPECT_EQ(reg["IndexConfigs"].size(), 2u);
}

TEST_F(SystemRoutes, InfoWarnsAboutMissingCgroupFeaturesLikeDockerd) {
  host->mutable_facts().cgroups.memory_limit = false;
  host->mutable_facts().cgroups.swap_limit = false;
  host->mutable_facts().cgroups.cpuset = false;
  json w = json::parse(get("/info").body)["Warnings"];
  EXPECT_EQ(w, json({"WARNING: No memory limit support", "WARNING: No swap limit support",
                     "WARNING: No cpuset support"}));
}

TEST(IsCidr, AcceptsWhatGoParseCidrAccepts) {
  EXPECT_TRUE(is_cidr("10.0.0.0/8"));
  EXPECT_TRUE(is_cidr("192.168.1.0/24"));
  EXPECT_TRUE(is_cidr("fd00::/8"));
  EXPECT_FALSE(is_cidr("10.0.0.0"));
  EXPECT_FALSE(is_cidr("10.0.0.0/33"));
  EXPECT_FALSE(is_cidr("10.0.0.0/"));
  EXPECT_FALSE(is_cidr("10.0.0.0/8x"));
  EXPECT_FALSE(is_cidr("registry.local/8"));
}

}  // namespace
}  // namespace berth::agent::api
