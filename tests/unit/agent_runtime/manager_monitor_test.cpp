// Health checks, stats and update through the ContainerManager and the shim
// on this host, with fake_crun.py (a FAKE OCI runtime that runs processes
// directly; its exec runs the probe) and a fixture cgroup directory.
#include <stdlib.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "agent/api/http.h"
#include "agent/engine.h"
#include "agent/runtime/container_manager.h"
#include "agent/runtime/fd.h"
#include "agent/runtime/json_log.h"

namespace berth::agent::runtime {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using namespace std::chrono_literals;

constexpr std::int64_t kMs = 1'000'000;

class MonitorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/bmt.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    ::setenv("FAKE_CRUN_STATE", (root_ / "crun").c_str(), 1);
    options_.data_root = root_.string();
    options_.runtime_path = BERTH_FAKE_CRUN;
    options_.agent_path = BERTH_TEST_SHIM;
    images_ = std::make_unique<image::ImageStore>(root_ / "image");
    volumes_ = std::make_unique<volume::VolumeStore>(root_ / "volumes");
    networks_ = std::make_unique<network::NetworkManager>(root_ / "network");
    make_manager();
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
    engine_.reset();
    cm_.reset();
    std::error_code ec;
    fs::remove_all(root_, ec);
  }

  // A new manager on the same data: what an agent restart does.
  void make_manager() {
    if (cm_) cm_->shutdown();
    engine_.reset();
    cm_.reset();
    ContainerManager::Options o;
    o.mount_overlay = false;
    o.cgroup_root = (root_ / "cgroup").string();
    o.boot_marker = (root_ / "run" / "marker").string();
    o.run_dir = (root_ / "run").string();
    o.resolve_image = [](std::string_view ref) -> std::optional<image::ResolvedImage> {
      if (ref != "busybox") return std::nullopt;
      image::ResolvedImage img;
      img.id = "sha256:feed";
      img.reference = "busybox:latest";
      img.config = {{"config",
                     {{"Cmd", {"sh"}},
                      {"Env", {"PATH=/usr/local/bin:/usr/bin:/bin"}},
                      {"Healthcheck", {{"Test", {"CMD-SHELL", "exit 0"}}, {"Interval", 30'000 * kMs}}}}}};
      return img;
    };
    cm_ = std::make_unique<ContainerManager>(o);
    engine_ = std::make_unique<Engine>(Engine{options_, log_, *images_, *volumes_, *networks_, *cm_});
    cm_->restore(*engine_);
  }

  std::string run(json body, const std::string& name) {
    body["Image"] = "busybox";
    body["HostConfig"]["NetworkMode"] = "host";
    if (!body.contains("Cmd")) body["Cmd"] = {"sleep", "60"};
    std::string id = cm_->create(name, body).id;
    cm_->start(id);
    return id;
  }

  json health(const std::string& ref) { return cm_->inspect(ref)["State"].value("Health", json()); }
  std::string status(const std::string& ref) { return health(ref).value("Status", "<none>"); }

  template <typename F>
  bool eventually(F pred, std::chrono::milliseconds timeout = 10s) {
    for (auto end = std::chrono::steady_clock::now() + timeout; std::chrono::steady_clock::now() < end;) {
      if (pred()) return true;
      std::this_thread::sleep_for(20ms);
    }
    return pred();
  }

  // A fixture cgroup directory for a container, as crun would make it.
  fs::path fake_cgroup(const std::string& id) {
    fs::path dir = root_ / "cgroup" / "berth" / id;
    fs::create_directories(dir);
    auto put = [&](const char* f, const std::string& v) { std::ofstream(dir / f) << v; };
    put("cpu.stat", "usage_usec 1000\nuser_usec 600\nsystem_usec 400\n");
    put("memory.current", "8388608\n");
    put("memory.max", "67108864\n");
    put("memory.stat", "inactive_file 1048576\n");
    put("pids.current", "1\n");
    put("pids.max", "max\n");
    for (const char* f : {"memory.swap.max", "memory.low", "cpu.max", "cpu.weight", "cpuset.cpus", "cpuset.mems"})
      put(f, "");
    return dir;
  }

  fs::path root_;
  EngineOptions options_;
  Logger log_;
  std::unique_ptr<image::ImageStore> images_;
  std::unique_ptr<volume::VolumeStore> volumes_;
  std::unique_ptr<network::NetworkManager> networks_;
  std::unique_ptr<ContainerManager> cm_;
  std::unique_ptr<Engine> engine_;
};

json fast_check(json test, std::int64_t interval_ms = 100, int retries = 3) {
  return {{"Test", std::move(test)}, {"Interval", interval_ms * kMs}, {"Retries", retries}};
}

TEST_F(MonitorTest, AProbeGoesFromStartingToHealthyWithDockerdsEvents) {
  auto events = engine_->events->subscribe(events::Filter{});
  std::string id = run({{"Healthcheck", fast_check({"CMD", "sh", "-c", "echo probed"})}}, "ok");
  EXPECT_EQ(status(id), "starting") << "at once after start, as docker-compose expects";
  ASSERT_TRUE(eventually([&] { return status(id) == "healthy"; })) << health(id).dump();
  json h = health(id);
  EXPECT_EQ(h["FailingStreak"], 0);
  ASSERT_GE(h["Log"].size(), 1u);
  EXPECT_EQ(h["Log"][0]["ExitCode"], 0);
  EXPECT_EQ(h["Log"][0]["Output"], "probed\n");
  EXPECT_NE(h["Log"][0]["Start"], h["Log"][0]["End"]);
  EXPECT_NE(cm_->list({})[0]["Status"].get<std::string>().find("(healthy)"), std::string::npos);
  // Probes run on schedule; the log keeps five.
  ASSERT_TRUE(eventually([&] { return health(id)["Log"].size() == 5; }));
  std::this_thread::sleep_for(300ms);
  EXPECT_EQ(health(id)["Log"].size(), 5u);
  // Events: each probe's exec, and the health status once.
  std::vector<std::string> actions;
  events::Event e;
  while (events->next(0ms, e) == events::Subscription::Status::Event)
    if (e.actor_id == id) actions.push_back(e.action);
  auto count = [&](const std::string& a) { return std::count(actions.begin(), actions.end(), a); };
  EXPECT_EQ(count("health_status: healthy"), 1);
  EXPECT_GE(count("exec_create: sh -c echo probed"), 5);
  EXPECT_GE(count("exec_start: sh -c echo probed"), 5);
  EXPECT_GE(count("exec_die"), 5);
  EXPECT_TRUE(cm_->inspect(id)["ExecIDs"].is_null()) << "probes are not the container's execs";
}

TEST_F(MonitorTest, FailuresTimeoutsAndTheListFilter) {
  std::string failing = run({{"Healthcheck", fast_check({"CMD-SHELL", "echo sick; exit 3"}, 50, 2)}}, "failing");
  json slow_check = fast_check({"CMD", "sleep", "10"}, 50, 1);
  slow_check["Timeout"] = 200 * kMs;
  std::string slow = run({{"Healthcheck", slow_check}}, "slow");
  std::string none = run({{"Healthcheck", {{"Test", {"NONE"}}}}}, "none");
  std::string image = run(json::object(), "image");  // the image's HEALTHCHECK, every 30 s
  ASSERT_TRUE(eventually([&] { return status(failing) == "unhealthy"; })) << health(failing).dump();
  EXPECT_GE(health(failing)["FailingStreak"].get<int>(), 2);
  EXPECT_EQ(health(failing)["Log"][0]["ExitCode"], 3);
  EXPECT_EQ(health(failing)["Log"][0]["Output"], "sick\n");
  ASSERT_TRUE(eventually([&] { return status(slow) == "unhealthy"; })) << health(slow).dump();
  json timed_out = health(slow)["Log"][0];
  EXPECT_EQ(timed_out["ExitCode"], -1);
  EXPECT_EQ(timed_out["Output"], "Health check exceeded timeout (200ms)");
  auto took = *parse_rfc3339(timed_out["End"].get<std::string>()) - *parse_rfc3339(timed_out["Start"].get<std::string>());
  EXPECT_LT(took, 2'000 * kMs) << "the probe was killed, not waited for";
  EXPECT_FALSE(cm_->inspect(none)["State"].contains("Health"));
  EXPECT_EQ(status(image), "starting");
  EXPECT_EQ(cm_->inspect(image)["Config"]["Healthcheck"]["Test"], json({"CMD-SHELL", "exit 0"}));

  auto names = [&](const std::string& health) {
    std::vector<std::string> out;
    for (const json& c : cm_->list({.filters = {{"health", {health}}}})) out.push_back(c["Names"][0]);
    std::sort(out.begin(), out.end());
    return out;
  };
  EXPECT_EQ(names("unhealthy"), (std::vector<std::string>{"/failing", "/slow"}));
  EXPECT_EQ(names("starting"), (std::vector<std::string>{"/image"}));
  EXPECT_EQ(names("none"), (std::vector<std::string>{"/none"}));
  EXPECT_TRUE(names("healthy").empty());
  try {
    cm_->list({.filters = {{"health", {"sick"}}}});
    FAIL();
  } catch (const api::HttpError& e) {
    EXPECT_EQ(e.status(), 400u);
    EXPECT_EQ(std::string(e.what()), "Unrecognized filter value for health: sick");
  }
  for (const json& c : cm_->list({})) {
    if (c["Names"][0] == "/image") {
      EXPECT_NE(c["Status"].get<std::string>().find("(health: starting)"), std::string::npos);
    }
  }
}

TEST_F(MonitorTest, StoppingEndsTheProbesAndARestartedAgentResumesThem) {
  std::string id = run({{"Healthcheck", fast_check({"CMD", "true"}, 50)}}, "resumes");
  ASSERT_TRUE(eventually([&] { return status(id) == "healthy"; }));
  // An agent restart: the container keeps running and its probes go on.
  make_manager();
  EXPECT_EQ(cm_->inspect(id)["State"]["Status"], "running");
  EXPECT_EQ(status(id), "starting") << "dockerd's restore starts over";
  ASSERT_TRUE(eventually([&] { return status(id) == "healthy"; }));
  const std::string last_end = health(id)["Log"].back()["End"];
  ASSERT_TRUE(eventually([&] { return health(id)["Log"].back()["End"] != last_end; }));
  // Stopped: dockerd says unhealthy, and no probe runs any more.
  cm_->stop(id, 1);
  EXPECT_EQ(status(id), "unhealthy");
  json log = health(id)["Log"];
  std::this_thread::sleep_for(300ms);
  EXPECT_EQ(health(id)["Log"], log);
  // Started again: starting, then healthy.
  cm_->start(id);
  EXPECT_EQ(status(id), "starting");
  EXPECT_TRUE(eventually([&] { return status(id) == "healthy"; }));
  // Paused: no probes; unpaused: they go on.
  cm_->pause(id);
  EXPECT_EQ(status(id), "unhealthy");
  cm_->unpause(id);
  EXPECT_TRUE(eventually([&] { return status(id) == "healthy"; }));
}

TEST_F(MonitorTest, StatsOfARunningAndAStoppedContainer) {
  std::string id = run({}, "stats");
  fs::path cg = fake_cgroup(id);
  std::vector<json> got;
  cm_->stats(id, {.stream = false, .one_shot = true}, [&](const json& s) {
    got.push_back(s);
    return true;
  });
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0]["name"], "/stats");
  EXPECT_EQ(got[0]["memory_stats"]["usage"], 8388608);
  EXPECT_EQ(got[0]["memory_stats"]["limit"], 67108864);
  EXPECT_EQ(got[0]["cpu_stats"]["cpu_usage"]["total_usage"], 1'000'000);
  EXPECT_GT(got[0]["cpu_stats"]["system_cpu_usage"].get<std::uint64_t>(), 0u);
  EXPECT_EQ(got[0]["precpu_stats"]["cpu_usage"]["total_usage"], 0);
  EXPECT_FALSE(got[0].contains("networks")) << "host network";
  // Without one-shot: the second read, with the first as precpu.
  got.clear();
  std::ofstream(cg / "cpu.stat") << "usage_usec 5000\n";
  auto t0 = std::chrono::steady_clock::now();
  cm_->stats(id, {.stream = false}, [&](const json& s) {
    got.push_back(s);
    return true;
  });
  auto took = std::chrono::steady_clock::now() - t0;
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0]["precpu_stats"]["cpu_usage"]["total_usage"], 5'000'000);
  EXPECT_GT(got[0]["cpu_stats"]["system_cpu_usage"].get<std::uint64_t>(),
            got[0]["precpu_stats"]["system_cpu_usage"].get<std::uint64_t>());
  EXPECT_GE(took, 500ms);
  EXPECT_LT(took, 2500ms);
  // Streamed: one a second, chained.
  got.clear();
  cm_->stats(id, {}, [&](const json& s) {
    got.push_back(s);
    return got.size() < 3;
  });
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0]["preread"], "0001-01-01T00:00:00Z");
  EXPECT_EQ(got[1]["preread"], got[0]["read"]);
  EXPECT_EQ(got[2]["precpu_stats"], got[1]["cpu_stats"]);
  // Stopped: dockerd's zeroed sample, at once.
  cm_->stop(id, 1);
  got.clear();
  cm_->stats(id, {.stream = false}, [&](const json& s) {
    got.push_back(s);
    return true;
  });
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0]["read"], "0001-01-01T00:00:00Z");
  EXPECT_EQ(got[0]["memory_stats"], json::object());
  EXPECT_EQ(got[0]["id"], id);
  // A stream ends when its container is removed.
  std::thread remover([&] {
    std::this_thread::sleep_for(300ms);
    cm_->remove(id, true, false);
  });
  int frames = 0;
  cm_->stats(id, {}, [&](const json&) { return ++frames < 100; });
  remover.join();
  EXPECT_LT(frames, 100);
  EXPECT_THROW(cm_->stats("nosuch", {}, [](const json&) { return true; }), api::HttpError);
}

TEST_F(MonitorTest, UpdateAppliesToTheCgroupAndPersists) {
  auto events = engine_->events->subscribe(events::Filter{});
  std::string id = run({{"HostConfig", {{"Memory", 32 * 1024 * 1024}}}}, "upd");
  fs::path cg = fake_cgroup(id);
  json r = cm_->update(id, {{"Memory", 48 * 1024 * 1024}, {"PidsLimit", 20}, {"NanoCpus", 500'000'000},
                            {"RestartPolicy", {{"Name", "unless-stopped"}}}});
  EXPECT_EQ(r, json({{"Warnings", json::array()}}));
  EXPECT_EQ(read_file(cg / "memory.max"), std::to_string(48 * 1024 * 1024));
  EXPECT_EQ(read_file(cg / "pids.max"), "20");
  EXPECT_EQ(read_file(cg / "cpu.max"), "50000 100000");
  json hc = cm_->inspect(id)["HostConfig"];
  EXPECT_EQ(hc["Memory"], 48 * 1024 * 1024);
  EXPECT_EQ(hc["PidsLimit"], 20);
  EXPECT_EQ(hc["NanoCpus"], 500'000'000);
  EXPECT_EQ(hc["RestartPolicy"]["Name"], "unless-stopped");
  json on_disk = json::parse(*read_file(root_ / "containers" / id / "config.json"));
  EXPECT_EQ(on_disk["HostConfig"]["PidsLimit"], 20);
  bool saw_update = false;
  events::Event e;
  while (events->next(0ms, e) == events::Subscription::Status::Event)
    saw_update = saw_update || (e.actor_id == id && e.action == "update");
  EXPECT_TRUE(saw_update);
  // A refused update changes nothing.
  EXPECT_THROW(cm_->update(id, {{"Memory", 1024}}), api::HttpError);
  EXPECT_EQ(cm_->inspect(id)["HostConfig"]["Memory"], 48 * 1024 * 1024);
  // A stopped container's update is stored only.
  cm_->stop(id, 1);
  std::ofstream(cg / "pids.max") << "untouched";
  cm_->update(id, {{"PidsLimit", 99}});
  EXPECT_EQ(read_file(cg / "pids.max"), "untouched");
  EXPECT_EQ(cm_->inspect(id)["HostConfig"]["PidsLimit"], 99);
  // A running container whose cgroup refuses: 500, and nothing stored.
  cm_->start(id);
  fs::remove_all(cg);
  try {
    cm_->update(id, {{"PidsLimit", 5}});
    FAIL();
  } catch (const api::HttpError& e) {
    EXPECT_EQ(e.status(), 500u);
    EXPECT_NE(std::string(e.what()).find("Cannot update container " + id + ": failed to write 5 to"),
              std::string::npos);
  }
  EXPECT_EQ(cm_->inspect(id)["HostConfig"]["PidsLimit"], 99);
  EXPECT_THROW(cm_->update("nosuch", json::object()), api::HttpError);
}

}  // namespace
}  // namespace berth::agent::runtime
