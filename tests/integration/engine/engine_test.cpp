// docker stats, docker update and health checks end to end on the shared
// berth-os VM (tests/integration/containers/shared_vm.h): the real docker CLI,
// the container's cgroup files read through `berth ssh`, and Debian's
// docker-compose waiting on `depends_on: condition: service_healthy`.
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <ctime>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>
#include <thread>

#include "tests/integration/containers/harness.h"
#include "tests/integration/containers/shared_vm.h"

namespace berth::it::containers {
namespace {

const std::string kImage = "busybox:latest";
const std::string kHealthImage = "it-engine/healthy:latest";

class Engine : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    try {
      lease_ = std::make_unique<SharedVmLease>();
      // An image whose config has a HEALTHCHECK (every second, always passing).
      const fs::path dir = vm().scratch() / "engine-images";
      fs::create_directories(dir);
      const fs::path tar = dir / "healthy.tar";
      auto made = run({"python3", (source_dir() / "tests/integration/support/make_image.py").string(), tar.string(),
                       kHealthImage, "--from", lease_->vm().image.tarball.string(), "--config",
                       R"({"Healthcheck":{"Test":["CMD-SHELL","echo image-check"],"Interval":1000000000}})"},
                      {}, 60s);
      if (!made.ok()) throw std::runtime_error("make_image.py: " + made.describe());
      auto load = vm().docker({"load", "-i", tar.string()}, 120s);
      if (!load.ok()) throw std::runtime_error("docker load: " + load.describe());
      if (!vm().docker({"image", "inspect", kImage}).ok()) {
        auto base = vm().docker({"load", "-i", lease_->vm().image.tarball.string()}, 120s);
        if (!base.ok()) throw std::runtime_error("docker load busybox: " + base.describe());
      }
    } catch (const std::exception& e) {
      setup_error_ = std::string("suite setup failed: ") + e.what();
    }
  }
  static void TearDownTestSuite() {
    if (lease_) vm().docker({"rmi", "-f", kHealthImage});
    lease_.reset();
  }
  void SetUp() override { ASSERT_TRUE(setup_error_.empty()) << setup_error_; }

  static Machine& vm() { return *lease_->vm().machine; }

  static RunResult docker(const std::vector<std::string>& args, std::chrono::milliseconds timeout = 60s) {
    return vm().docker(args, timeout);
  }
  // docker ARGS..., which must succeed: a failure ends the case. Trimmed stdout.
  static std::string must(const std::vector<std::string>& args, std::chrono::milliseconds timeout = 60s) {
    auto r = docker(args, timeout);
    if (!r.ok()) throw std::runtime_error("required step failed: " + describe_call(args, r));
    return trim(r.out);
  }
  static std::string inspect(const std::string& format, const std::string& object) {
    return trim(docker({"inspect", "-f", format, object}).out);
  }
  static std::string health(const std::string& name) { return inspect("{{.State.Health.Status}}", name); }
  // A file of the container's cgroup, read in the VM.
  static std::string cgroup_file(const std::string& name, const std::string& file) {
    const std::string id = inspect("{{.Id}}", name);
    return trim(vm().ssh("cat /sys/fs/cgroup/berth/" + id + "/" + file).out);
  }
  // The names `docker ps` lists with `filter`.
  static std::vector<std::string> ps(const std::string& filter) {
    auto names = lines(must({"ps", "-a", "--filter", filter, "--format", "{{.Names}}"}));
    std::sort(names.begin(), names.end());
    return names;
  }
  static std::string ps_status(const std::string& name) {
    return must({"ps", "-a", "--filter", "name=^" + name + "$", "--format", "{{.Status}}"});
  }
  // Container events of `name` since `since` (unix seconds), their actions.
  static std::vector<std::string> events(const std::string& name, const std::string& since,
                                         const std::string& event = "") {
    std::vector<std::string> args = {"events", "--since", since, "--until", std::to_string(::time(nullptr) + 1),
                                     "--filter", "container=" + name, "--format", "{{.Action}}"};
    if (!event.empty()) args.insert(args.end(), {"--filter", "event=" + event});
    return lines(must(args));
  }
  static std::string now() { return std::to_string(::time(nullptr) - 1); }
  // RFC 3339 as unix seconds (with a fraction).
  static double unix_time(const std::string& rfc3339) {
    return std::stod(trim(run({"date", "+%s.%N", "-d", rfc3339}).out));
  }

  // Removes a case's containers at its end, whatever happened.
  struct Remove {
    std::vector<std::string> names;
    ~Remove() {
      for (const auto& n : names) docker({"rm", "-f", n});
    }
  };

  static inline std::unique_ptr<SharedVmLease> lease_;
  static inline std::string setup_error_;
};

bool contains(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

// "12.34%" -> 12.34
double percent(const std::string& s) { return std::stod(s.substr(0, s.find('%'))); }

// --- docker stats ---

TEST_F(Engine, StatsNoStreamShowsTheCpuOfABusyContainerAndItsMemoryLimit) {
  Remove cleanup{{"eng-busy", "eng-idle", "eng-stopped"}};
  must({"run", "-d", "--name", "eng-busy", "-m", "64m", kImage, "sh", "-c", "while :; do :; done"});
  must({"run", "-d", "--name", "eng-idle", kImage, "sleep", "1000"});
  must({"create", "--name", "eng-stopped", kImage, "true"});
  std::this_thread::sleep_for(2s);
  auto t0 = std::chrono::steady_clock::now();
  auto out = must({"stats", "--no-stream", "--format",
                   "{{.Name}}|{{.CPUPerc}}|{{.MemUsage}}|{{.MemPerc}}|{{.PIDs}}|{{.NetIO}}",
                   "eng-busy", "eng-idle", "eng-stopped"});
  auto took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::map<std::string, std::vector<std::string>> rows;
  for (const std::string& line : lines(out)) {
    std::vector<std::string> fields;
    std::stringstream ss(line);
    for (std::string f; std::getline(ss, f, '|');) fields.push_back(f);
    ASSERT_EQ(fields.size(), 6u) << line;
    rows[fields[0]] = fields;
  }
  ASSERT_EQ(rows.size(), 3u) << out;
  EXPECT_GT(percent(rows["eng-busy"][1]), 20.0) << out;
  EXPECT_LT(percent(rows["eng-idle"][1]), 20.0) << out;
  EXPECT_NE(rows["eng-busy"][2].find(" / 64MiB"), std::string::npos) << out;
  EXPECT_GT(percent(rows["eng-busy"][3]), 0.0) << out;
  EXPECT_EQ(rows["eng-busy"][4], "1") << out;
  EXPECT_EQ(rows["eng-idle"][2].find("0B / 0B"), std::string::npos) << "the machine's memory as the limit: " << out;
  // A container that is not running: dockerd's zeroed sample.
  EXPECT_EQ(rows["eng-stopped"][1], "0.00%") << out;
  EXPECT_EQ(rows["eng-stopped"][2], "0B / 0B") << out;
  std::printf("[ figures  ] docker stats --no-stream of 3 containers: %.2f s\n", took);
  // The same from the API: dockerd's JSON shape.
  auto [status, body] = vm().api("GET", "/v1.47/containers/eng-busy/stats?stream=false");
  ASSERT_EQ(status, 200) << body;
  auto s = nlohmann::json::parse(body);
  EXPECT_EQ(s["name"], "/eng-busy");
  EXPECT_EQ(s["memory_stats"]["limit"], 64 * 1024 * 1024);
  EXPECT_GT(s["cpu_stats"]["cpu_usage"]["total_usage"].get<double>(),
            s["precpu_stats"]["cpu_usage"]["total_usage"].get<double>());
  EXPECT_GT(s["cpu_stats"]["online_cpus"].get<int>(), 0);
  EXPECT_TRUE(s["networks"].contains("eth0")) << body;
  EXPECT_TRUE(s["memory_stats"]["stats"].contains("inactive_file")) << body;
  auto [status404, body404] = vm().api("GET", "/v1.47/containers/eng-nosuch/stats?stream=false");
  EXPECT_EQ(status404, 404) << body404;
}

TEST_F(Engine, StatsStreamsJsonOncePerSecond) {
  Remove cleanup{{"eng-stream"}};
  must({"run", "-d", "--name", "eng-stream", "-m", "32m", kImage, "sh", "-c", "while :; do :; done"});
  SpawnOptions options;
  options.env = vm().docker_env();
  Process stats = Process::start({"docker", "stats", "--format", "{{json .}}", "eng-stream"}, options);
  auto count = [&] {
    std::string so_far = stats.stdout_so_far();
    std::size_t n = 0;
    for (std::size_t at = so_far.find("{\"BlockIO\""); at != std::string::npos; at = so_far.find("{\"BlockIO\"", at + 1))
      ++n;
    return n;
  };
  for (int i = 0; i < 100 && count() < 4; ++i) std::this_thread::sleep_for(100ms);  // the first is partial
  const std::string out = stats.stdout_so_far();
  stats.signal(SIGINT);
  stats.wait(10s);
  std::vector<nlohmann::json> samples;
  static const std::regex object(R"(\{"BlockIO"[^\n]*?\})");
  for (std::sregex_iterator it(out.begin(), out.end(), object), end; it != end; ++it)
    samples.push_back(nlohmann::json::parse(it->str()));
  ASSERT_GE(samples.size(), 3u) << out;
  const auto& last = samples.back();
  EXPECT_EQ(last["Name"], "eng-stream");
  EXPECT_GT(percent(last["CPUPerc"]), 20.0) << last.dump();
  EXPECT_NE(last["MemUsage"].get<std::string>().find("/ 32MiB"), std::string::npos) << last.dump();
}

// --- docker update ---

TEST_F(Engine, UpdateChangesTheRunningContainersCgroupAndIsKept) {
  Remove cleanup{{"eng-upd", "eng-nolimit", "eng-rm"}};
  must({"run", "-d", "--name", "eng-upd", "-m", "32m", kImage, "sleep", "1000"});
  const std::string since = now();
  EXPECT_EQ(cgroup_file("eng-upd", "memory.max"), "33554432");
  EXPECT_EQ(must({"update", "-m", "48m", "--cpus", "0.5", "--pids-limit", "20", "--cpu-shares", "512",
                  "--restart", "always", "eng-upd"}),
            "eng-upd");
  EXPECT_EQ(cgroup_file("eng-upd", "memory.max"), "50331648");
  EXPECT_EQ(cgroup_file("eng-upd", "cpu.max"), "50000 100000");
  EXPECT_EQ(cgroup_file("eng-upd", "pids.max"), "20");
  EXPECT_EQ(cgroup_file("eng-upd", "cpu.weight"), "20");
  // The container sees its own limits.
  EXPECT_EQ(trim(docker({"exec", "eng-upd", "cat", "/sys/fs/cgroup/pids.max"}).out), "20");
  EXPECT_EQ(inspect("{{.HostConfig.Memory}} {{.HostConfig.NanoCpus}} {{.HostConfig.PidsLimit}} "
                    "{{.HostConfig.CpuShares}} {{.HostConfig.RestartPolicy.Name}}",
                    "eng-upd"),
            "50331648 500000000 20 512 always");
  EXPECT_TRUE(contains(events("eng-upd", since, "update"), "update"));
  // Kept: a restart builds the new cgroup from the stored HostConfig.
  must({"restart", "-t", "1", "eng-upd"});
  EXPECT_EQ(cgroup_file("eng-upd", "memory.max"), "50331648");
  EXPECT_EQ(cgroup_file("eng-upd", "pids.max"), "20");
  EXPECT_EQ(cgroup_file("eng-upd", "cpu.max"), "50000 100000");
  // The policy took: the container comes back after its process is killed.
  const std::string pid = inspect("{{.State.Pid}}", "eng-upd");
  vm().ssh("kill -9 " + pid);
  EXPECT_TRUE(eventually([&] { return inspect("{{.RestartCount}}", "eng-upd") == "1"; }, 60s, 500ms));

  // dockerd's refusals.
  must({"run", "-d", "--name", "eng-nolimit", kImage, "sleep", "1000"});
  auto refused = docker({"update", "-m", "64m", "eng-nolimit"});
  EXPECT_FALSE(refused.ok());
  EXPECT_NE(refused.err.find("Memory limit should be smaller than already set memoryswap limit, update the "
                             "memoryswap at the same time"),
            std::string::npos)
      << refused.describe();
  auto with_swap = docker({"update", "-m", "64m", "--memory-swap", "128m", "eng-nolimit"});
  EXPECT_TRUE(with_swap.ok()) << with_swap.describe();
  EXPECT_EQ(cgroup_file("eng-nolimit", "memory.max"), "67108864");
  auto small = docker({"update", "-m", "4m", "--memory-swap", "8m", "eng-nolimit"});
  EXPECT_NE(small.err.find("Minimum memory limit allowed is 6MB"), std::string::npos) << small.describe();
  must({"run", "-d", "--rm", "--name", "eng-rm", kImage, "sleep", "1000"});
  auto rm = docker({"update", "--restart", "always", "eng-rm"});
  EXPECT_NE(rm.err.find("Restart policy cannot be updated because AutoRemove is enabled for the container"),
            std::string::npos)
      << rm.describe();
}

// --- health checks ---

TEST_F(Engine, AHealthCheckGoesFromStartingToHealthy) {
  Remove cleanup{{"eng-hc-ok"}};
  const std::string since = now();
  must({"run", "-d", "--name", "eng-hc-ok", "--health-cmd", "test -f /tmp/ready", "--health-interval", "30s",
        "--health-start-period", "60s", "--health-start-interval", "1s", kImage, "sh", "-c",
        "sleep 4; touch /tmp/ready; exec sleep 1000"});
  EXPECT_EQ(health("eng-hc-ok"), "starting");
  EXPECT_TRUE(contains(ps("health=starting"), "eng-hc-ok"));
  EXPECT_NE(ps_status("eng-hc-ok").find("(health: starting)"), std::string::npos) << ps_status("eng-hc-ok");
  // The start interval (1 s) applies in the start period, not the interval (30 s).
  ASSERT_TRUE(eventually([&] { return health("eng-hc-ok") == "healthy"; }, 60s, 500ms))
      << inspect("{{json .State.Health}}", "eng-hc-ok");
  auto h = nlohmann::json::parse(inspect("{{json .State.Health}}", "eng-hc-ok"));
  EXPECT_EQ(h["FailingStreak"], 0);
  ASSERT_GE(h["Log"].size(), 2u) << h.dump();
  EXPECT_EQ(h["Log"].back()["ExitCode"], 0);
  EXPECT_EQ(h["Log"].front()["ExitCode"], 1) << "before /tmp/ready: " << h.dump();
  EXPECT_LE(h["Log"].size(), 5u);
  EXPECT_TRUE(contains(ps("health=healthy"), "eng-hc-ok"));
  EXPECT_FALSE(contains(ps("health=starting"), "eng-hc-ok"));
  EXPECT_NE(ps_status("eng-hc-ok").find("(healthy)"), std::string::npos) << ps_status("eng-hc-ok");
  auto health_events = events("eng-hc-ok", since, "health_status");
  EXPECT_EQ(health_events, std::vector<std::string>{"health_status: healthy"});
  auto execs = events("eng-hc-ok", since, "exec_create");
  ASSERT_FALSE(execs.empty());
  EXPECT_EQ(execs[0], "exec_create: /bin/sh -c test -f /tmp/ready");
  EXPECT_FALSE(events("eng-hc-ok", since, "exec_die").empty());
}

TEST_F(Engine, RetriesAndTimeoutsMakeItUnhealthy) {
  Remove cleanup{{"eng-hc-bad", "eng-hc-slow"}};
  const std::string since = now();
  must({"run", "-d", "--name", "eng-hc-bad", "--health-cmd", "echo failing; exit 1", "--health-interval", "1s",
        "--health-retries", "2", kImage, "sleep", "1000"});
  must({"run", "-d", "--name", "eng-hc-slow", "--health-cmd", "sleep 30", "--health-timeout", "1s",
        "--health-interval", "1s", "--health-retries", "1", kImage, "sleep", "1000"});
  ASSERT_TRUE(eventually([&] { return health("eng-hc-bad") == "unhealthy"; }, 60s, 500ms))
      << inspect("{{json .State.Health}}", "eng-hc-bad");
  auto bad = nlohmann::json::parse(inspect("{{json .State.Health}}", "eng-hc-bad"));
  EXPECT_GE(bad["FailingStreak"].get<int>(), 2);
  EXPECT_EQ(bad["Log"][0]["ExitCode"], 1);
  EXPECT_EQ(bad["Log"][0]["Output"], "failing\n");
  EXPECT_NE(ps_status("eng-hc-bad").find("(unhealthy)"), std::string::npos) << ps_status("eng-hc-bad");
  EXPECT_EQ(events("eng-hc-bad", since, "health_status"), std::vector<std::string>{"health_status: unhealthy"});

  ASSERT_TRUE(eventually([&] { return health("eng-hc-slow") == "unhealthy"; }, 60s, 500ms))
      << inspect("{{json .State.Health}}", "eng-hc-slow");
  auto slow = nlohmann::json::parse(inspect("{{json .State.Health}}", "eng-hc-slow"));
  EXPECT_EQ(slow["Log"][0]["ExitCode"], -1);
  EXPECT_EQ(slow["Log"][0]["Output"], "Health check exceeded timeout (1s)");
  // Killed probes are gone from the container: never more than the one in flight.
  for (int i = 0; i < 5; ++i) {
    auto top = docker({"top", "eng-hc-slow"});
    std::size_t probes = 0;
    for (const std::string& line : lines(top.out)) probes += line.find("sleep 30") != std::string::npos;
    EXPECT_LE(probes, 1u) << top.out;
    std::this_thread::sleep_for(1s);
  }

  auto unhealthy = ps("health=unhealthy");
  EXPECT_TRUE(contains(unhealthy, "eng-hc-bad") && contains(unhealthy, "eng-hc-slow"));
  EXPECT_FALSE(contains(ps("health=healthy"), "eng-hc-bad"));
  auto bogus = docker({"ps", "--filter", "health=sick"});
  EXPECT_NE(bogus.err.find("Unrecognized filter value for health: sick"), std::string::npos) << bogus.describe();
}

TEST_F(Engine, TheImagesHealthcheckTheFlagsOverItAndNoHealthcheck) {
  Remove cleanup{{"eng-hc-image", "eng-hc-flags", "eng-hc-none"}};
  must({"run", "-d", "--name", "eng-hc-image", kHealthImage, "sleep", "1000"});
  must({"run", "-d", "--name", "eng-hc-flags", "--health-retries", "7", kHealthImage, "sleep", "1000"});
  must({"run", "-d", "--name", "eng-hc-none", "--no-healthcheck", kHealthImage, "sleep", "1000"});
  EXPECT_TRUE(eventually([&] { return health("eng-hc-image") == "healthy"; }, 60s, 500ms));
  auto log = nlohmann::json::parse(inspect("{{json .State.Health.Log}}", "eng-hc-image"));
  EXPECT_EQ(log.back()["Output"], "image-check\n");
  // --health-retries alone keeps the image's test and interval.
  EXPECT_EQ(inspect("{{json .Config.Healthcheck.Test}}", "eng-hc-flags"), R"(["CMD-SHELL","echo image-check"])");
  EXPECT_EQ(inspect("{{.Config.Healthcheck.Retries}}", "eng-hc-flags"), "7");
  EXPECT_TRUE(eventually([&] { return health("eng-hc-flags") == "healthy"; }, 60s, 500ms));
  // --no-healthcheck: no State.Health at all.
  EXPECT_EQ(inspect("{{json .State.Health}}", "eng-hc-none"), "null");
  EXPECT_TRUE(contains(ps("health=none"), "eng-hc-none"));
  EXPECT_FALSE(contains(ps("health=none"), "eng-hc-image"));
  EXPECT_EQ(ps_status("eng-hc-none").find("health"), std::string::npos);
}

TEST_F(Engine, AnAgentRestartKeepsTheProbesGoingAndStopEndsThem) {
  Remove cleanup{{"eng-hc-keep"}};
  must({"run", "-d", "--name", "eng-hc-keep", "--health-cmd", "true", "--health-interval", "1s", kImage,
        "sleep", "1000"});
  ASSERT_TRUE(eventually([&] { return health("eng-hc-keep") == "healthy"; }, 60s, 500ms));
  auto restart = vm().ssh("/etc/berth/berth-agent.sh restart", 90s);
  ASSERT_EQ(restart.exit_code, 0) << restart.describe();
  ASSERT_TRUE(eventually([&] { return docker({"version"}).ok(); }, 60s, 500ms));
  const double restarted = static_cast<double>(::time(nullptr));
  EXPECT_EQ(inspect("{{.State.Running}}", "eng-hc-keep"), "true");
  // dockerd's restore starts over from "starting"; the probes go on.
  ASSERT_TRUE(eventually([&] {
    auto h = nlohmann::json::parse(inspect("{{json .State.Health}}", "eng-hc-keep"));
    return h["Status"] == "healthy" && unix_time(h["Log"].back()["End"]) > restarted;
  }, 60s, 500ms)) << inspect("{{json .State.Health}}", "eng-hc-keep");
  // Stopped: dockerd says unhealthy, and no probe runs any more.
  must({"stop", "-t", "1", "eng-hc-keep"});
  EXPECT_EQ(health("eng-hc-keep"), "unhealthy");
  const std::string log = inspect("{{json .State.Health.Log}}", "eng-hc-keep");
  std::this_thread::sleep_for(3s);
  EXPECT_EQ(inspect("{{json .State.Health.Log}}", "eng-hc-keep"), log);
}

// --- docker-compose ---

// Three services end to end: a built image, a named volume seeded from it, a
// healthy dependency, service-name DNS on a user network, a port published on
// the laptop's 127.0.0.1, logs -f, exec, scale, restart, stop/start, down -v.
TEST_F(Engine, ComposeRunsAThreeServiceProjectEndToEnd) {
  if (!run({"bash", "-c", "command -v docker-compose"}, {}, 10s).ok()) GTEST_SKIP() << "no docker-compose";
  const fs::path dir = vm().scratch() / "compose-project";
  fs::create_directories(dir / "db");
  const int port = free_port();
  write_text(dir / "db" / "Dockerfile",
             "FROM busybox:latest\n"
             "RUN mkdir -p /data && echo seeded-from-image > /data/seed\n");
  write_text(dir / "docker-compose.yml",
             "version: \"2.4\"\n"
             "services:\n"
             "  db:\n"
             "    build: ./db\n"
             "    image: itproject/db\n"
             "    command: httpd -f -p 80 -h /data\n"
             "    volumes: [\"dbdata:/data\"]\n"
             "    networks: [back]\n"
             "    healthcheck:\n"
             "      test: [\"CMD\", \"wget\", \"-qO-\", \"http://127.0.0.1/seed\"]\n"
             "      interval: 1s\n"
             "      retries: 60\n"
             "  api:\n"
             "    image: busybox:latest\n"
             "    command: sh -c 'i=0; while true; do echo tick-$$i; i=$$((i+1)); sleep 0.5; done'\n"
             "    networks: [back]\n"
             "    depends_on:\n"
             "      db:\n"
             "        condition: service_healthy\n"
             "  web:\n"
             "    image: busybox:latest\n"
             "    command: sh -c 'mkdir -p /www && wget -qO /www/index.html http://db/seed && exec httpd -f -p 80 -h /www'\n"
             "    ports: [\"" + std::to_string(port) + ":80\"]\n"
             "    networks: [back]\n"
             "    depends_on:\n"
             "      db:\n"
             "        condition: service_healthy\n"
             "networks:\n"
             "  back: {}\n"
             "volumes:\n"
             "  dbdata: {}\n");
  Env env = vm().docker_env();
  env["REQUESTS_CA_BUNDLE"] = std::nullopt;
  env["CURL_CA_BUNDLE"] = std::nullopt;
  auto compose = [&](std::vector<std::string> args, std::chrono::milliseconds timeout = 300s) {
    args.insert(args.begin(), {"docker-compose", "-p", "itproject", "-f", (dir / "docker-compose.yml").string()});
    return run(args, env, timeout);
  };
  struct Down {
    std::function<void()> fn;
    ~Down() { fn(); }
  } down{[&] { compose({"down", "-v", "-t", "1"}); }};
  auto curl_page = [&] {
    return run({"curl", "-sS", "--max-time", "3", "http://127.0.0.1:" + std::to_string(port) + "/"}, {}, 10s);
  };
  auto page_is_seeded = [&] { return trim(curl_page().out) == "seeded-from-image"; };

  auto up = compose({"up", "-d", "--build"});
  ASSERT_TRUE(up.ok()) << up.describe();
  EXPECT_EQ(health("itproject_db_1"), "healthy");
  // web fetched db's page by service name; the laptop reaches web on 127.0.0.1.
  EXPECT_TRUE(eventually(page_is_seeded, 30s, 300ms)) << curl_page().describe();
  auto exec = compose({"exec", "-T", "db", "cat", "/data/seed"});
  EXPECT_EQ(trim(exec.out), "seeded-from-image") << exec.describe();

  // logs -f follows: killed after a few seconds, it has shown new lines.
  auto follow = run({"bash", "-c", "timeout 4 \"$@\"", "follow", "docker-compose", "-p", "itproject", "-f",
                     (dir / "docker-compose.yml").string(), "logs", "-f", "--no-color", "api"},
                    env, 30s);
  EXPECT_EQ(follow.exit_code, 124) << "logs -f ended by itself: " << follow.describe();
  std::size_t ticks = 0;
  for (const auto& line : lines(follow.out)) ticks += line.find("tick-") != std::string::npos;
  EXPECT_GE(ticks, 6u) << follow.describe();

  auto scaled = compose({"up", "-d", "--scale", "api=2"});
  ASSERT_TRUE(scaled.ok()) << scaled.describe();
  EXPECT_EQ(lines(trim(compose({"ps", "-q", "api"}).out)).size(), 2u);
  EXPECT_EQ(inspect("{{.State.Running}}", "itproject_api_2"), "true");

  auto restarted = compose({"restart", "-t", "1", "web"});
  EXPECT_TRUE(restarted.ok()) << restarted.describe();
  EXPECT_TRUE(eventually(page_is_seeded, 30s, 300ms)) << curl_page().describe();

  auto stopped = compose({"stop", "-t", "1"});
  EXPECT_TRUE(stopped.ok()) << stopped.describe();
  EXPECT_EQ(ps("label=com.docker.compose.project=itproject").size(), 4u);
  EXPECT_TRUE(must({"ps", "-q", "--filter", "label=com.docker.compose.project=itproject"}).empty());
  auto started = compose({"start"});
  EXPECT_TRUE(started.ok()) << started.describe();
  EXPECT_TRUE(eventually(page_is_seeded, 30s, 300ms)) << curl_page().describe();

  auto gone = compose({"down", "-v", "-t", "1"});
  EXPECT_TRUE(gone.ok()) << gone.describe();
  EXPECT_TRUE(ps("label=com.docker.compose.project=itproject").empty());
  EXPECT_TRUE(must({"network", "ls", "-q", "--filter", "name=itproject_back"}).empty());
  EXPECT_TRUE(must({"volume", "ls", "-q", "--filter", "name=itproject_dbdata"}).empty());
}

TEST_F(Engine, ComposeWaitsForAHealthyService) {
  if (!run({"bash", "-c", "command -v docker-compose"}, {}, 10s).ok()) GTEST_SKIP() << "no docker-compose";
  const fs::path dir = vm().scratch() / "compose-health";
  fs::create_directories(dir);
  write_text(dir / "docker-compose.yml",
             "version: \"2.4\"\n"
             "services:\n"
             "  db:\n"
             "    image: busybox:latest\n"
             "    command: sh -c \"sleep 3; touch /tmp/ready; exec sleep 1000\"\n"
             "    healthcheck:\n"
             "      test: [\"CMD\", \"test\", \"-f\", \"/tmp/ready\"]\n"
             "      interval: 1s\n"
             "      retries: 60\n"
             "  app:\n"
             "    image: busybox:latest\n"
             "    command: sleep 1000\n"
             "    depends_on:\n"
             "      db:\n"
             "        condition: service_healthy\n");
  write_text(dir / "failing.yml",
             "version: \"2.4\"\n"
             "services:\n"
             "  db:\n"
             "    image: busybox:latest\n"
             "    command: sleep 1000\n"
             "    healthcheck:\n"
             "      test: [\"CMD-SHELL\", \"exit 1\"]\n"
             "      interval: 1s\n"
             "      retries: 1\n"
             "  app:\n"
             "    image: busybox:latest\n"
             "    command: sleep 1000\n"
             "    depends_on:\n"
             "      db:\n"
             "        condition: service_healthy\n");
  Env env = vm().docker_env();
  // Python's requests would take these over DOCKER_CERT_PATH's CA.
  env["REQUESTS_CA_BUNDLE"] = std::nullopt;
  env["CURL_CA_BUNDLE"] = std::nullopt;
  auto compose = [&](const std::string& project, const std::string& file, std::vector<std::string> args) {
    args.insert(args.begin(), {"docker-compose", "-p", project, "-f", (dir / file).string()});
    return run(args, env, 300s);
  };
  struct Down {
    std::function<void()> fn;
    ~Down() { fn(); }
  } down{[&] {
    compose("itengine", "docker-compose.yml", {"down", "-v", "-t", "1"});
    compose("itengfail", "failing.yml", {"down", "-v", "-t", "1"});
  }};
  auto up = compose("itengine", "docker-compose.yml", {"up", "-d"});
  ASSERT_TRUE(up.ok()) << up.describe();
  EXPECT_EQ(health("itengine_db_1"), "healthy");
  const double db_started = unix_time(inspect("{{.State.StartedAt}}", "itengine_db_1"));
  const double app_started = unix_time(inspect("{{.State.StartedAt}}", "itengine_app_1"));
  EXPECT_GE(app_started - db_started, 2.5) << "app started before db was healthy";
  // An unhealthy dependency stops `up`, in compose's words.
  auto failing = compose("itengfail", "failing.yml", {"up", "-d"});
  EXPECT_FALSE(failing.ok()) << failing.describe();
  EXPECT_NE((failing.out + failing.err).find("is unhealthy"), std::string::npos) << failing.describe();
  EXPECT_NE(inspect("{{.State.Running}}", "itengfail_app_1"), "true") << "app was never started";
}

// docker login, through the agent, against the suite's registry (which has
// no authentication: any credentials pass) and against a port nothing serves.
TEST_F(Engine, LoginGoesThroughTheAgentToTheRegistry) {
  TempDir config("berth-it-docker-config");
  Env env = vm().docker_env();
  env["DOCKER_CONFIG"] = config.path().string();
  const std::string registry = lease_->vm().registry_guest();
  auto ok = run({"docker", "login", "-u", "alice", "-p", "s3cret", registry}, env, 60s);
  ASSERT_TRUE(ok.ok()) << ok.describe();
  EXPECT_NE(ok.out.find("Login Succeeded"), std::string::npos) << ok.describe();
  EXPECT_NE(read_text(config.path() / "config.json").find(registry), std::string::npos);
  auto refused = run({"docker", "login", "-u", "alice", "-p", "s3cret", "10.0.2.2:1"}, env, 60s);
  EXPECT_FALSE(refused.ok()) << refused.describe();
  EXPECT_NE(refused.err.find("10.0.2.2:1"), std::string::npos) << refused.describe();
}

// docker system df counts what is there; image prune removes a dangling image
// and keeps one a container runs; system prune answers with its total.
TEST_F(Engine, SystemDfAndPruneSeeWhatIsThere) {
  Remove remove{{"itdf", "itdf-user"}};
  must({"run", "-d", "--name", "itdf", kImage, "sh", "-c",
        "dd if=/dev/zero of=/big bs=1024 count=2048 2>/dev/null; touch /done; exec sleep 1000"});
  ASSERT_TRUE(eventually([&] { return docker({"exec", "itdf", "test", "-f", "/done"}).ok(); }, 30s, 200ms));
  const std::string dangling = must({"commit", "itdf"});
  const std::string in_use = must({"commit", "itdf"});
  ASSERT_EQ(dangling.rfind("sha256:", 0), 0u) << dangling;
  must({"run", "-d", "--name", "itdf-user", in_use, "sleep", "1000"});

  const std::string df = must({"system", "df"});
  for (const char* row : {"Images", "Containers", "Local Volumes", "Build Cache"})
    EXPECT_NE(df.find(row), std::string::npos) << df;
  const std::string verbose = must({"system", "df", "-v"});
  EXPECT_NE(verbose.find("itdf-user"), std::string::npos) << verbose;
  // The writable layer holds the 2 MiB file.
  const std::string size = must({"ps", "-s", "--filter", "name=^itdf$", "--format", "{{.Size}}"});
  EXPECT_EQ(size.rfind("2.1", 0), 0u) << size;

  const std::string pruned = must({"image", "prune", "-f"});
  EXPECT_NE(pruned.find("deleted: " + dangling), std::string::npos) << pruned;
  EXPECT_EQ(pruned.find(in_use), std::string::npos) << pruned;
  EXPECT_NE(pruned.find("Total reclaimed space"), std::string::npos) << pruned;
  EXPECT_FALSE(docker({"image", "inspect", dangling}).ok());
  EXPECT_TRUE(docker({"image", "inspect", in_use}).ok());
  EXPECT_TRUE(docker({"image", "inspect", kImage}).ok()) << "a tagged image is not dangling";

  const std::string system = must({"system", "prune", "-f"}, 120s);
  EXPECT_NE(system.find("Total reclaimed space"), std::string::npos) << system;
  EXPECT_EQ(inspect("{{.State.Running}}", "itdf-user"), "true") << "system prune keeps running containers";
  docker({"rm", "-f", "itdf-user"});
  docker({"rmi", in_use});
}

TEST_F(Engine, SwarmCommandsSayThisIsNoSwarmManager) {
  auto nodes = docker({"node", "ls"});
  EXPECT_FALSE(nodes.ok());
  EXPECT_NE(nodes.err.find("This node is not a swarm manager"), std::string::npos) << nodes.describe();
  EXPECT_EQ(must({"plugin", "ls", "-q"}), "");
}

// Debian's python3-docker: run, df, prune and distribution inspect.
TEST_F(Engine, PythonSdkRunsDfPrunesAndInspectsTheRegistry) {
  if (!run({"python3", "-c", "import docker"}, {}, 30s).ok()) GTEST_SKIP() << "no python3-docker";
  Env env = vm().docker_env();
  env["REQUESTS_CA_BUNDLE"] = std::nullopt;  // requests would take it over DOCKER_CERT_PATH's CA
  env["CURL_CA_BUNDLE"] = std::nullopt;
  const std::string script =
      "import docker, sys\n"
      "c = docker.from_env()\n"
      "out = c.containers.run('busybox:latest', ['echo', 'hello from python'], remove=True)\n"
      "assert out == b'hello from python\\n', out\n"
      "df = c.df()\n"
      "assert df['LayersSize'] > 0 and any('busybox:latest' in i['RepoTags'] for i in df['Images']), df\n"
      "p = c.images.prune(filters={'dangling': True})\n"
      "assert 'SpaceReclaimed' in p, p\n"
      "d = c.api.inspect_distribution(sys.argv[1] + '/busybox:latest')\n"
      "assert d['Descriptor']['digest'].startswith('sha256:'), d\n"
      "print('python ok')\n";
  auto r = run({"python3", "-c", script, lease_->vm().registry_guest()}, env, 180s);
  ASSERT_TRUE(r.ok()) << r.describe();
  EXPECT_NE(r.out.find("python ok"), std::string::npos) << r.describe();
}

// python3-docker beyond run: cp both ways, stats, exec, streamed logs, networks, volumes.
TEST_F(Engine, PythonSdkCopiesStatsExecsStreamsLogsAndMakesNetworksAndVolumes) {
  if (!run({"python3", "-c", "import docker"}, {}, 30s).ok()) GTEST_SKIP() << "no python3-docker";
  Remove cleanup{{"pysdk", "pylogs"}};
  Env env = vm().docker_env();
  env["REQUESTS_CA_BUNDLE"] = std::nullopt;
  env["CURL_CA_BUNDLE"] = std::nullopt;
  const std::string script =
      "import docker, io, tarfile\n"
      "c = docker.from_env()\n"
      "ct = c.containers.run('busybox:latest', ['sleep', '300'], detach=True, name='pysdk')\n"
      "data = b'from python'\n"
      "buf = io.BytesIO()\n"
      "with tarfile.open(fileobj=buf, mode='w') as t:\n"
      "    info = tarfile.TarInfo('hello.txt'); info.size = len(data)\n"
      "    t.addfile(info, io.BytesIO(data))\n"
      "assert ct.put_archive('/tmp', buf.getvalue())\n"
      "bits, stat = ct.get_archive('/tmp/hello.txt')\n"
      "assert stat['name'] == 'hello.txt' and stat['size'] == len(data), stat\n"
      "with tarfile.open(fileobj=io.BytesIO(b''.join(bits))) as t:\n"
      "    assert t.extractfile('hello.txt').read() == data\n"
      "st = ct.stats(stream=False)\n"
      "assert st['memory_stats']['usage'] > 0 and 'precpu_stats' in st and st['pids_stats']['current'] >= 1, st\n"
      "r = ct.exec_run(['cat', '/tmp/hello.txt'])\n"
      "assert r.exit_code == 0 and r.output == data, r\n"
      "assert ct.exec_run(['sh', '-c', 'exit 3']).exit_code == 3\n"
      "lg = c.containers.run('busybox:latest', ['sh', '-c', 'for i in 1 2 3; do echo $i; sleep 0.3; done'],\n"
      "                      detach=True, name='pylogs')\n"
      "assert b''.join(lg.logs(stream=True, follow=True)) == b'1\\n2\\n3\\n'\n"
      "n = c.networks.create('pynet', labels={'by': 'python'})\n"
      "n.connect(ct, aliases=['pyalias'])\n"
      "ct.reload()\n"
      "assert 'pyalias' in ct.attrs['NetworkSettings']['Networks']['pynet']['Aliases'], ct.attrs['NetworkSettings']\n"
      "n.disconnect(ct)\n"
      "n.remove()\n"
      "v = c.volumes.create('pyvol', labels={'by': 'python'})\n"
      "assert c.volumes.get('pyvol').attrs['Labels'] == {'by': 'python'}\n"
      "v.remove()\n"
      "assert not [x for x in c.networks.list() if x.name == 'pynet']\n"
      "print('python ok')\n";
  auto r = run({"python3", "-c", script}, env, 180s);
  docker({"network", "rm", "pynet"});
  docker({"volume", "rm", "pyvol"});
  ASSERT_TRUE(r.ok()) << r.describe();
  EXPECT_NE(r.out.find("python ok"), std::string::npos) << r.describe();
}

// Detach keys end a TTY attach and leave the container running (python3-docker,
// which, unlike the docker CLI, leaves the keys to the daemon).
TEST_F(Engine, DetachKeysEndATtyAttachAndTheContainerRunsOn) {
  if (!run({"python3", "-c", "import docker"}, {}, 30s).ok()) GTEST_SKIP() << "no python3-docker";
  Remove cleanup{{"detacher"}};
  Env env = vm().docker_env();
  env["REQUESTS_CA_BUNDLE"] = std::nullopt;
  env["CURL_CA_BUNDLE"] = std::nullopt;
  const std::string since = now();
  const std::string script =
      "import docker, time\n"
      "c = docker.from_env()\n"
      "ct = c.containers.run('busybox:latest', ['sh'], detach=True, tty=True, stdin_open=True, name='detacher')\n"
      "try:\n"
      "    c.api.attach_socket(ct.id, params={'stdin': 1, 'stream': 1, 'detachKeys': 'ctrl-1'})\n"
      "    raise SystemExit('bad detach keys were accepted')\n"
      "except docker.errors.APIError as e:\n"
      "    assert e.status_code == 400 and 'Invalid detach keys (ctrl-1) provided' in str(e), e\n"
      "s = c.api.attach_socket(ct.id, params={'stdin': 1, 'stdout': 1, 'stream': 1, 'detachKeys': 'ctrl-x,x'})\n"
      "sock = getattr(s, '_sock', s)  # over TLS, the SSL socket itself\n"
      "sock.settimeout(20)\n"
      "sock.sendall(b'echo marker-$((6*7))\\n')\n"
      "buf = b''\n"
      "while b'marker-42' not in buf:\n"
      "    buf += sock.recv(4096)\n"
      "sock.sendall(b'\\x18x')\n"
      "while sock.recv(4096):\n"
      "    pass\n"
      "ct.reload()\n"
      "assert ct.status == 'running', ct.status\n"
      "# An exec session too: the client is let go at once, the process runs on.\n"
      "eid = c.api.exec_create(ct.id, ['sh'], stdin=True, tty=True, detach_keys='ctrl-x,x')['Id']\n"
      "s = c.api.exec_start(eid, tty=True, socket=True)\n"
      "sock = getattr(s, '_sock', s)\n"
      "sock.settimeout(20)\n"
      "sock.sendall(b'echo exec-$((6*7))\\n')\n"
      "buf = b''\n"
      "while b'exec-42' not in buf:\n"
      "    buf += sock.recv(4096)\n"
      "sock.sendall(b'sleep 4; exit 5\\n\\x18x')\n"
      "t0 = time.time()\n"
      "while sock.recv(4096):\n"
      "    pass\n"
      "assert time.time() - t0 < 2.5, 'the session ended only with the process'\n"
      "assert c.api.exec_inspect(eid)['Running'], c.api.exec_inspect(eid)\n"
      "deadline = time.time() + 20\n"
      "while c.api.exec_inspect(eid)['Running'] and time.time() < deadline:\n"
      "    time.sleep(0.2)\n"
      "assert c.api.exec_inspect(eid)['ExitCode'] == 5, c.api.exec_inspect(eid)\n"
      "print('detached')\n";
  auto r = run({"python3", "-c", script}, env, 120s);
  ASSERT_TRUE(r.ok()) << r.describe();
  EXPECT_NE(r.out.find("detached"), std::string::npos) << r.describe();
  EXPECT_EQ(inspect("{{.State.Status}}", "detacher"), "running");
  EXPECT_TRUE(contains(events("detacher", since), "detach"));
}

}  // namespace
}  // namespace berth::it::containers
