// ContainerManager + shim end to end on this host, with fake_crun.py (a FAKE
// OCI runtime: a test double that runs the process directly) instead of crun,
// host networking and no overlay mount.
#include "agent/runtime/container_manager.h"

#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "agent/api/http.h"
#include "agent/engine.h"
#include "agent/runtime/fd.h"
#include "agent/runtime/json_log.h"
#include "tests/spec/engine_spec.h"

namespace berth::agent::runtime {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using namespace std::chrono_literals;

// A hijacked connection: sends `input` (then half-closes) and collects output.
class FakeConnection : public api::Connection {
 public:
  std::string input;
  std::string output;
  bool detached = false;
  bool write(std::string_view d) override {
    output += d;
    return true;
  }
  void pump(int in_fd, int out_fd, const InputFilter& filter) override {
    std::string passed = input;
    if (filter) {
      passed.clear();
      detached = !filter(input, passed);
    }
    if (!passed.empty()) write_all(in_fd, passed);
    if (detached) return;
    ::shutdown(in_fd, SHUT_WR);
    char buf[4096];
    ssize_t n;
    while ((n = ::read(out_fd, buf, sizeof buf)) > 0) output.append(buf, static_cast<std::size_t>(n));
  }
};

// Splits a multiplexed stream into stdout and stderr text; fails on bad framing.
std::pair<std::string, std::string> demux(const std::string& s) {
  std::string out, err;
  std::size_t pos = 0;
  while (pos < s.size()) {
    EXPECT_GE(s.size() - pos, 8u) << "truncated header";
    if (s.size() - pos < 8) break;
    auto type = static_cast<unsigned char>(s[pos]);
    std::size_t n = (static_cast<unsigned char>(s[pos + 4]) << 24) |
                    (static_cast<unsigned char>(s[pos + 5]) << 16) |
                    (static_cast<unsigned char>(s[pos + 6]) << 8) |
                    static_cast<unsigned char>(s[pos + 7]);
    EXPECT_TRUE(type == 1 || type == 2) << "stream type " << int(type);
    (type == 2 ? err : out) += s.substr(pos + 8, n);
    pos += 8 + n;
  }
  return {out, err};
}

class ManagerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/brt.XXXXXX";
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
    // Kill what is left (a failed test, restarted containers), then the files.
    if (cm_) {
      for (const json& c : cm_->list({.all = true})) {
        try {
          cm_->remove(c["Id"], true, true);
        } catch (...) {
        }
      }
    }
    if (cm_) cm_->shutdown();
    engine_.reset();
    cm_.reset();
    std::error_code ec;
    fs::remove_all(root_, ec);
  }

  void make_manager() {
    if (cm_) cm_->shutdown();
    engine_.reset();
    ContainerManager::Options o;
    o.mount_overlay = false;
    o.cgroup_root = (root_ / "cgroup").string();
    o.boot_marker = (root_ / "run" / "marker").string();
    o.run_dir = (root_ / "run").string();
    o.resolve_image = [](std::string_view ref) -> std::optional<image::ResolvedImage> {
      if (ref == "hostile") {  // an image config from a registry nobody checked
        image::ResolvedImage img;
        img.id = "sha256:bad0";
        img.reference = "hostile:latest";
        img.config = {{"config", {{"Cmd", {"true"}}, {"Volumes", {{"/:/host", json::object()}}}}}};
        return img;
      }
      if (ref != "busybox" && ref != "busybox:latest" && ref != "sha256:feed") return std::nullopt;
      image::ResolvedImage img;
      img.id = "sha256:feed";
      img.reference = "busybox:latest";
      img.config = {{"config", {{"Cmd", {"sh"}}, {"Env", {"PATH=/usr/local/bin:/usr/bin:/bin"}}}}};
      return img;
    };
    cm_ = std::make_unique<ContainerManager>(o);
    engine_ = std::make_unique<Engine>(
        Engine{options_, log_, *images_, *volumes_, *networks_, *cm_});
    cm_->restore(*engine_);
  }

  std::string create(json body, const std::string& name = "") {
    if (!body.contains("Image")) body["Image"] = "busybox";
    body["HostConfig"]["NetworkMode"] = "host";
    return cm_->create(name, body).id;
  }

  json wait(const std::string& id, const std::string& condition = "not-running") {
    auto waiter = cm_->prepare_wait(id, condition);
    auto r = waiter([] { return false; });
    return r.value_or(json());
  }

  // Polls until pred() holds (or 10 s).
  template <typename F>
  bool eventually(F pred) {
    for (int i = 0; i < 200; ++i) {
      if (pred()) return true;
      std::this_thread::sleep_for(50ms);
    }
    return false;
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

TEST_F(ManagerTest, CreatePersistsTheRecordAndRefusesBadInput) {
  std::string id = create({{"Cmd", {"true"}}, {"Labels", {{"k", "v"}}}}, "first");
  json doc = cm_->inspect("first");
  EXPECT_EQ(doc["Id"], id);
  EXPECT_EQ(doc["Name"], "/first");
  EXPECT_EQ(doc["State"]["Status"], "created");
  EXPECT_EQ(doc["State"]["StartedAt"], "0001-01-01T00:00:00Z");
  EXPECT_EQ(doc["Path"], "true");
  EXPECT_EQ(doc["Image"], "sha256:feed");
  EXPECT_EQ(doc["Config"]["Image"], "busybox");
  EXPECT_EQ(doc["Config"]["Env"], json({"PATH=/usr/local/bin:/usr/bin:/bin"}));
  EXPECT_EQ(doc["HostConfig"]["RestartPolicy"]["Name"], "no");
  EXPECT_FALSE(doc.contains("Berth"));
  EXPECT_EQ(cm_->resolve(id.substr(0, 5)), id);
  EXPECT_EQ(cm_->resolve("/first"), id);

  json on_disk = json::parse(*read_file(root_ / "containers" / id / "config.json"));
  EXPECT_EQ(on_disk["Name"], "/first");
  EXPECT_EQ(on_disk["Config"]["Labels"]["k"], "v");

  try {
    create({{"Cmd", {"true"}}}, "first");
    FAIL();
  } catch (const api::HttpError& e) {
    EXPECT_EQ(e.status(), 409u);
    EXPECT_EQ(std::string(e.what()),
              "Conflict. The container name \"/first\" is already in use by container \"" + id +
                  "\". You have to remove (or rename) that container to be able to reuse that name.");
  }
  try {
    cm_->create("", {{"Image", "nosuch"}});
    FAIL();
  } catch (const api::HttpError& e) {
    EXPECT_EQ(e.status(), 404u);
    EXPECT_EQ(std::string(e.what()), "No such image: nosuch:latest");
  }
  try {
    create({{"Cmd", {"true"}}}, "bad name");
    FAIL();
  } catch (const api::HttpError& e) {
    EXPECT_EQ(e.status(), 400u);
  }
  try {
    create({{"Cmd", {"true"}}, {"HostConfig", {{"PortBindings", {{"http/tcp", json::array()}}}}}});
    FAIL();
  } catch (const api::HttpError& e) {
    EXPECT_EQ(e.status(), 400u);
  }
  try {
    cm_->inspect("nothere");
    FAIL();
  } catch (const api::HttpError& e) {
    EXPECT_EQ(e.status(), 404u);
    EXPECT_EQ(std::string(e.what()), "No such container: nothere");
  }
  EXPECT_EQ(cm_->list({}).size(), 0u);
  EXPECT_EQ(cm_->list({.all = true}).size(), 1u);
}

TEST_F(ManagerTest, RunsToCompletionAndKeepsSeparatedLogs) {
  std::string id = create({{"Cmd", {"sh", "-c", "echo out; echo err >&2; exit 3"}}}, "runner");
  EXPECT_TRUE(cm_->start(id));
  json result = wait(id);
  EXPECT_EQ(result["StatusCode"], 3);
  json doc = cm_->inspect(id);
  EXPECT_EQ(doc["State"]["Status"], "exited");
  EXPECT_EQ(doc["State"]["ExitCode"], 3);
  EXPECT_NE(doc["State"]["FinishedAt"], "0001-01-01T00:00:00Z");

  auto text = read_file(doc["LogPath"].get<std::string>());
  ASSERT_TRUE(text);
  LogFilter all;
  auto entries = select_logs(*text, all);
  ASSERT_EQ(entries.size(), 2u);
  std::map<std::string, std::string> by_stream;
  for (const auto& e : entries) by_stream[e.stream] += e.text;
  EXPECT_EQ(by_stream["stdout"], "out\n");
  EXPECT_EQ(by_stream["stderr"], "err\n");

  std::string got;
  ContainerManager::LogOptions o;
  o.stdout_stream = true;
  cm_->logs(id, o, [&](std::string_view s) {
    got += s;
    return true;
  });
  EXPECT_EQ(got, frame(StreamType::Stdout, "out\n"));
  // Starting an exited container again works; a second start while running is a no-op.
  auto list = cm_->list({.all = true, .filters = {{"exited", {"3"}}}});
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0]["Status"].get<std::string>().rfind("Exited (3)", 0), 0u);
}

TEST_F(ManagerTest, LogOptMaxSizeRotatesTheShimsLogAndLogsReadsEveryFile) {
  std::string id = create(
      {{"Cmd", {"sh", "-c", "i=0; while [ $i -lt 200 ]; do echo line-$i; i=$((i+1)); done"}},
       {"HostConfig", {{"LogConfig", {{"Type", "json-file"},
                                      {"Config", {{"max-size", "1k"}, {"max-file", "3"}}}}}}}});
  json doc = cm_->inspect(id);
  EXPECT_EQ(doc["HostConfig"]["LogConfig"]["Type"], "json-file");
  EXPECT_EQ(doc["HostConfig"]["Runtime"], "runc");
  ASSERT_TRUE(cm_->start(id));
  wait(id);
  const std::string path = doc["LogPath"];
  ASSERT_TRUE(fs::exists(path + ".1"));
  ASSERT_TRUE(fs::exists(path + ".2"));
  EXPECT_FALSE(fs::exists(path + ".3"));
  for (const std::string& f : {path, path + ".1", path + ".2"})
    EXPECT_LE(fs::file_size(f), 1024u + 100u) << f;  // full at 1 KiB, one record over at most
  std::string got;
  ContainerManager::LogOptions o;
  o.stdout_stream = true;
  cm_->logs(id, o, [&](std::string_view s) {
    got += s;
    return true;
  });
  // The last records, in order, across the rotated files; the oldest are gone.
  EXPECT_NE(got.find("line-199\n"), std::string::npos);
  EXPECT_EQ(got.find("line-0\n"), std::string::npos);
  EXPECT_LT(got.find("line-180\n"), got.find("line-199\n"));
  auto text = read_file(path + ".2");
  ASSERT_TRUE(text);
  auto first = select_logs(*text, LogFilter{}).front().text;
  EXPECT_NE(got.find(first), std::string::npos);
  // Bad options are refused at create, in dockerd's words.
  try {
    create({{"Cmd", {"true"}},
            {"HostConfig", {{"LogConfig", {{"Type", "json-file"}, {"Config", {{"max-size", "huge"}}}}}}}});
    FAIL();
  } catch (const api::HttpError& e) {
    EXPECT_EQ(e.status(), 400u);
    EXPECT_EQ(std::string(e.what()), "invalid size: 'huge'");
  }
}

TEST_F(ManagerTest, AttachBeforeStartSeesAllOutputAndFeedsStdin) {
  std::string id = create({{"Cmd", {"sh", "-c", "read x; echo got $x; echo bye >&2"}},
                           {"OpenStdin", true},
                           {"StdinOnce", true},
                           {"AttachStdin", true}});
  FakeConnection conn;
  conn.input = "abc\n";
  ContainerManager::AttachOptions o{.stream = true, .in = true, .out = true, .err = true, .detach_keys = {}};
  cm_->prepare_attach(id, o);
  std::thread attacher([&] { cm_->attach(id, o, conn); });
  std::this_thread::sleep_for(200ms);
  ASSERT_TRUE(cm_->start(id));
  attacher.join();
  auto [out, err] = demux(conn.output);
  EXPECT_EQ(out, "got abc\n");
  EXPECT_EQ(err, "bye\n");
  EXPECT_EQ(wait(id)["StatusCode"], 0);
}

TEST_F(ManagerTest, TtyContainersStreamRaw) {
  std::string id = create({{"Cmd", {"sh", "-c", "tty; echo done"}}, {"Tty", true}});
  FakeConnection conn;
  ContainerManager::AttachOptions o{.stream = true, .out = true, .err = true, .detach_keys = {}};
  std::thread attacher([&] { cm_->attach(id, o, conn); });
  std::this_thread::sleep_for(200ms);
  ASSERT_TRUE(cm_->start(id));
  attacher.join();
  EXPECT_NE(conn.output.find("/dev/pts/"), std::string::npos) << conn.output;
  EXPECT_NE(conn.output.find("done\r\n"), std::string::npos) << conn.output;
  EXPECT_TRUE(cm_->is_tty(id));
}

TEST_F(ManagerTest, StopSignalsThenReportsTheExit) {
  std::string id = create({{"Cmd", {"sleep", "100"}}});
  ASSERT_TRUE(cm_->start(id));
  EXPECT_FALSE(cm_->start(id));  // 304
  json doc = cm_->inspect(id);
  EXPECT_EQ(doc["State"]["Status"], "running");
  EXPECT_GT(doc["State"]["Pid"].get<int>(), 0);
  EXPECT_EQ(cm_->counts().running, 1);
  try {
    cm_->remove(id, false, false);
    FAIL();
  } catch (const api::HttpError& e) {
    EXPECT_EQ(e.status(), 409u);
  }
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_TRUE(cm_->stop(id, 5));
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 4s);
  doc = cm_->inspect(id);
  EXPECT_EQ(doc["State"]["Status"], "exited");
  EXPECT_EQ(doc["State"]["ExitCode"], 128 + 15);
  EXPECT_FALSE(cm_->stop(id, 1));  // 304
  try {
    cm_->kill(id, "KILL");
    FAIL();
  } catch (const api::HttpError& e) {
    EXPECT_EQ(e.status(), 409u);
  }
}

TEST_F(ManagerTest, PauseUnpauseAndForcedRemove) {
  std::string id = create({{"Cmd", {"sleep", "100"}}});
  ASSERT_TRUE(cm_->start(id));
  cm_->pause(id);
  EXPECT_EQ(cm_->inspect(id)["State"]["Status"], "paused");
  EXPECT_THROW(cm_->pause(id), api::HttpError);
  cm_->unpause(id);
  EXPECT_EQ(cm_->inspect(id)["State"]["Status"], "running");
  auto waiter = cm_->prepare_wait(id, "removed");
  cm_->remove(id, true, true);
  EXPECT_TRUE(waiter([] { return false; }).has_value());
  EXPECT_THROW(cm_->inspect(id), api::HttpError);
  EXPECT_FALSE(fs::exists(root_ / "containers" / id));
}

TEST_F(ManagerTest, OnFailureRestartsUpToTheLimit) {
  std::string id = create({{"Cmd", {"sh", "-c", "exit 1"}},
                           {"HostConfig", {{"RestartPolicy", {{"Name", "on-failure"}, {"MaximumRetryCount", 2}}}}}});
  ASSERT_TRUE(cm_->start(id));
  EXPECT_TRUE(eventually([&] {
    json d = cm_->inspect(id);
    return d["RestartCount"] == 2 && d["State"]["Status"] == "exited";
  }));
  std::this_thread::sleep_for(500ms);
  EXPECT_EQ(cm_->inspect(id)["RestartCount"], 2);
}

TEST_F(ManagerTest, AutoRemoveRemovesAfterExit) {
  std::string id = create({{"Cmd", {"true"}}, {"HostConfig", {{"AutoRemove", true}}}});
  auto waiter = cm_->prepare_wait(id, "removed");
  ASSERT_TRUE(cm_->start(id));
  EXPECT_TRUE(waiter([] { return false; }).has_value());
  EXPECT_THROW(cm_->inspect(id), api::HttpError);
}

TEST_F(ManagerTest, AFailedStartEndsAttachesAndRemovesRmContainers) {
  // The runtime refuses to create it (like crun for a missing binary).
  std::string id = create({{"Cmd", {"/nonexistent/binary"}}, {"HostConfig", {{"AutoRemove", true}}}});
  auto waiter = cm_->prepare_wait(id, "removed");
  FakeConnection conn;
  ContainerManager::AttachOptions o{.stream = true, .out = true, .err = true, .detach_keys = {}};
  std::thread attacher([&] { cm_->attach(id, o, conn); });
  std::this_thread::sleep_for(200ms);
  try {
    cm_->start(id);
    FAIL() << "started";
  } catch (const api::HttpError& e) {
    EXPECT_EQ(e.status(), 400u);
    EXPECT_NE(std::string(e.what()).find("not found"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(waiter([] { return false; }).has_value());
  attacher.join();
  EXPECT_THROW(cm_->inspect(id), api::HttpError);
}

TEST_F(ManagerTest, ARestartedAgentReattachesToRunningContainers) {
  std::string id = create({{"Cmd", {"sleep", "100"}}}, "survivor");
  ASSERT_TRUE(cm_->start(id));
  int pid = cm_->inspect(id)["State"]["Pid"];
  make_manager();  // a new agent over the same data root
  json doc = cm_->inspect("survivor");
  EXPECT_EQ(doc["State"]["Status"], "running");
  EXPECT_EQ(doc["State"]["Pid"], pid);
  EXPECT_TRUE(cm_->stop("survivor", 5));
  EXPECT_EQ(cm_->inspect(id)["State"]["ExitCode"], 143);
}

TEST_F(ManagerTest, TheFirstStartAfterABootAppliesRestartPolicies) {
  std::string always = create({{"Cmd", {"sleep", "100"}},
                               {"HostConfig", {{"RestartPolicy", {{"Name", "always"}}}}}});
  std::string plain = create({{"Cmd", {"sleep", "100"}}});
  ASSERT_TRUE(cm_->start(always));
  ASSERT_TRUE(cm_->start(plain));
  // A "reboot": every process is gone, and so is /run.
  cm_->shutdown();
  for (const std::string& id : {always, plain}) {
    auto shim = read_file(root_ / "containers" / id / "shim.pid");
    auto ctr = read_file(root_ / "containers" / id / "container.pid");
    ASSERT_TRUE(shim && ctr);
    ::kill(std::stoi(*shim), SIGKILL);
    ::kill(std::stoi(*ctr), SIGKILL);
  }
  std::this_thread::sleep_for(300ms);
  fs::remove_all(root_ / "crun");
  fs::remove(root_ / "run" / "marker");
  make_manager();
  EXPECT_TRUE(eventually([&] { return cm_->inspect(always)["State"]["Status"] == "running"; }));
  EXPECT_EQ(cm_->inspect(plain)["State"]["Status"], "exited");
}

TEST_F(ManagerTest, ExecRunsInTheContainerWithItsExitCode) {
  std::string id = create({{"Cmd", {"sleep", "100"}}, {"Env", {"WHO=container"}}});
  ASSERT_TRUE(cm_->start(id));
  std::string exec = cm_->exec_create(
      id, {{"Cmd", {"sh", "-c", "echo $WHO; echo oops >&2; exit 5"}},
           {"AttachStdout", true},
           {"AttachStderr", true}});
  EXPECT_EQ(cm_->exec_inspect(exec)["Running"], false);
  EXPECT_TRUE(cm_->exec_inspect(exec)["ExitCode"].is_null());
  EXPECT_FALSE(cm_->exec_prepare(exec));
  FakeConnection conn;
  cm_->exec_start(exec, &conn);
  auto [out, err] = demux(conn.output);
  EXPECT_EQ(out, "container\n");
  EXPECT_EQ(err, "oops\n");
  json info = cm_->exec_inspect(exec);
  EXPECT_EQ(info["ExitCode"], 5);
  EXPECT_EQ(info["Running"], false);
  EXPECT_EQ(info["ContainerID"], id);
  EXPECT_THROW(cm_->exec_prepare(exec), api::HttpError);  // already ran
  EXPECT_EQ(cm_->inspect(id)["ExecIDs"], json({exec}));
  EXPECT_THROW(cm_->exec_create(id, {{"Cmd", json::array()}}), api::HttpError);
  EXPECT_THROW(cm_->exec_inspect("nope"), api::HttpError);
  berth::testing::expect_spec_fields(info, "ExecInspectResponse");
  berth::testing::expect_spec_fields(info["ProcessConfig"], "ProcessConfig");
}

TEST_F(ManagerTest, InspectAndListUseTheSpecModels) {
  std::string id = create({{"Cmd", {"sleep", "100"}},
                           {"Labels", {{"team", "a"}}},
                           {"ExposedPorts", {{"80/tcp", json::object()}}},
                           {"HostConfig", {{"Binds", {"data:/data"}},
                                           {"RestartPolicy", {{"Name", "on-failure"},
                                                              {"MaximumRetryCount", 2}}}}}},
                          "models");
  for (bool started : {false, true}) {
    if (started) {
      ASSERT_TRUE(cm_->start(id));
    }
    SCOPED_TRACE(started ? "running" : "created");
    json doc = cm_->inspect(id);
    berth::testing::expect_spec_fields(doc, "ContainerInspectResponse");
    berth::testing::expect_spec_fields(doc["State"], "ContainerState");
    berth::testing::expect_spec_fields(doc["Config"], "ContainerConfig");
    berth::testing::expect_spec_fields(doc["HostConfig"], "HostConfig");
    berth::testing::expect_spec_fields(doc["NetworkSettings"], "NetworkSettings");
    ASSERT_TRUE(doc["Mounts"].is_array());
    for (const json& m : doc["Mounts"]) berth::testing::expect_spec_fields(m, "MountPoint");
    auto list = cm_->list({.all = true});
    ASSERT_EQ(list.size(), 1u);
    berth::testing::expect_spec_fields(list[0], "ContainerSummary");
    EXPECT_EQ(list[0]["Id"], id);
  }
  EXPECT_EQ(cm_->inspect(id)["State"]["Status"], "running");
  cm_->remove(id, true, true);
}

TEST_F(ManagerTest, TtyExecGetsATerminalOfTheRequestedSize) {
  std::string id = create({{"Cmd", {"sleep", "100"}}});
  ASSERT_TRUE(cm_->start(id));
  std::string exec = cm_->exec_create(
      id, {{"Cmd", {"sh", "-c", "tty; stty size; exit 4"}}, {"Tty", true}, {"AttachStdout", true}});
  EXPECT_TRUE(cm_->exec_prepare(exec));
  FakeConnection conn;
  cm_->exec_start(exec, &conn, std::make_pair(33, 77));
  EXPECT_NE(conn.output.find("/dev/pts/"), std::string::npos) << conn.output;
  EXPECT_NE(conn.output.find("33 77"), std::string::npos) << conn.output;
  EXPECT_EQ(cm_->exec_inspect(exec)["ExitCode"], 4);
}

TEST_F(ManagerTest, RenameAndListFilters) {
  std::string a = create({{"Cmd", {"true"}}, {"Labels", {{"team", "a"}}}}, "alpha");
  std::string b = create({{"Cmd", {"true"}}}, "beta");
  cm_->rename("alpha", "gamma");
  EXPECT_EQ(cm_->inspect(a)["Name"], "/gamma");
  EXPECT_THROW(cm_->rename("gamma", "beta"), api::HttpError);
  auto by_label = cm_->list({.all = true, .filters = {{"label", {"team=a"}}}});
  ASSERT_EQ(by_label.size(), 1u);
  EXPECT_EQ(by_label[0]["Id"], a);
  auto by_name = cm_->list({.all = true, .filters = {{"name", {"bet"}}}});
  ASSERT_EQ(by_name.size(), 1u);
  EXPECT_EQ(by_name[0]["Id"], b);
  EXPECT_EQ(cm_->list({.all = true, .filters = {{"status", {"created"}}}}).size(), 2u);
  EXPECT_EQ(cm_->list({.all = true, .filters = {{"ancestor", {"busybox"}}}}).size(), 2u);
  EXPECT_THROW(cm_->list({.all = true, .filters = {{"bogus", {"x"}}}}), api::HttpError);
  json pruned = cm_->prune(json::object());
  EXPECT_EQ(pruned["ContainersDeleted"].size(), 2u);
  EXPECT_EQ(cm_->list({.all = true}).size(), 0u);
}

// docker-compose lists by label while it creates other containers: a name
// reserved by a create in progress is neither listed nor pruned (before, the
// label filter read the half-made record's missing Config, and prune removed it).
TEST_F(ManagerTest, ListAndPruneLeaveACreateInProgressAlone) {
  constexpr int kCreates = 40;
  std::atomic<bool> done{false};
  std::atomic<int> list_errors{0}, prune_errors{0}, deleted{0};
  std::thread reader([&] {
    while (!done) {
      try {
        cm_->list({.all = true, .filters = {{"label", {"team=a"}}, {"status", {"created"}}}});
      } catch (const std::exception&) {
        ++list_errors;
      }
      try {
        deleted += static_cast<int>(cm_->prune({{"label", {"keep=no"}}})["ContainersDeleted"].size());
      } catch (const std::exception&) {
        ++prune_errors;
      }
    }
  });
  int created = 0;
  for (int i = 0; i < kCreates; ++i) {
    try {
      create({{"Cmd", {"true"}}, {"Labels", {{"team", "a"}}}}, "c" + std::to_string(i));
      ++created;
    } catch (const std::exception& e) {
      ADD_FAILURE() << "create c" << i << ": " << e.what();
    }
  }
  done = true;
  reader.join();
  EXPECT_EQ(list_errors, 0);
  EXPECT_EQ(prune_errors, 0);
  EXPECT_EQ(deleted, 0);
  EXPECT_EQ(created, kCreates);
  EXPECT_EQ(cm_->list({.all = true, .filters = {{"label", {"team=a"}}}}).size(), std::size_t{kCreates});
}

TEST_F(ManagerTest, BeforeSinceAndPortFilters) {
  std::string a = create({{"Cmd", {"true"}}}, "first");
  std::string b = create({{"Cmd", {"true"}},
                          {"ExposedPorts", {{"80/tcp", json::object()}}},
                          {"HostConfig", {{"PortBindings", {{"80/tcp", {{{"HostPort", "8080"}}}}}}}}},
                         "second");
  std::string c = create({{"Cmd", {"true"}}, {"ExposedPorts", {{"53/udp", json::object()}}}},
                         "third");
  auto ids = [&](json filters) {
    std::vector<std::string> out;
    for (const json& s : cm_->list({.all = true, .filters = std::move(filters)})) out.push_back(s["Id"]);
    return out;
  };
  using V = std::vector<std::string>;
  EXPECT_EQ(ids(json::object()), (V{c, b, a}));  // newest first
  EXPECT_EQ(ids({{"before", {"second"}}}), (V{a}));
  EXPECT_EQ(ids({{"since", {"first"}}}), (V{c, b}));
  EXPECT_EQ(ids({{"since", {a.substr(0, 12)}}, {"before", {"third"}}}), (V{b}));
  EXPECT_EQ(ids({{"publish", {"80"}}}), (V{b}));
  EXPECT_EQ(ids({{"publish", {"79-81/tcp"}}}), (V{b}));
  EXPECT_EQ(ids({{"publish", {"80/udp"}}}), V{});
  EXPECT_EQ(ids({{"expose", {"53/udp"}}}), (V{c}));
  EXPECT_EQ(ids({{"health", {"none"}}}).size(), 3u);
  EXPECT_EQ(ids({{"health", {"healthy"}}}), V{});
  EXPECT_EQ(ids({{"is-task", {"false"}}}).size(), 3u);
  EXPECT_THROW(ids({{"before", {"nope"}}}), api::HttpError);
  EXPECT_THROW(ids({{"publish", {"http"}}}), api::HttpError);
}

TEST_F(ManagerTest, AnonymousVolumesGoWithRmV) {
  std::string id = create({{"Cmd", {"true"}}, {"Volumes", {{"/data", json::object()}}},
                           {"HostConfig", {{"Binds", {"named:/named"}}}}});
  json mounts = cm_->inspect(id)["Mounts"];
  ASSERT_EQ(mounts.size(), 2u);
  std::string anon;
  for (const json& m : mounts) {
    EXPECT_EQ(m["Type"], "volume");
    if (m["Destination"] == "/data") anon = m["Name"];
  }
  ASSERT_EQ(anon.size(), 64u);
  EXPECT_EQ(cm_->users_of_volume("named"), std::vector<std::string>{id});
  cm_->remove(id, false, true);
  EXPECT_FALSE(volumes_->get(anon));
  EXPECT_TRUE(volumes_->get("named"));
}

TEST_F(ManagerTest, AnImagesVolumesNeverBindTheMachine) {
  std::string id = create({{"Image", "hostile"}});
  json mounts = cm_->inspect(id)["Mounts"];
  ASSERT_EQ(mounts.size(), 1u);
  EXPECT_EQ(mounts[0]["Type"], "volume");
  EXPECT_EQ(mounts[0]["Destination"], "/:/host");
  EXPECT_EQ(mounts[0]["Name"].get<std::string>().size(), 64u);
  EXPECT_EQ(mounts[0]["Source"].get<std::string>().rfind((root_ / "volumes").string(), 0), 0u)
      << mounts[0].dump();
}

TEST_F(ManagerTest, SecurityOptionsAreCheckedAtCreateAndReachTheSpec) {
  auto status = [&](json body) {
    try {
      create(std::move(body));
    } catch (const api::HttpError& e) {
      return e.status();
    }
    return 0u;
  };
  EXPECT_EQ(status({{"Cmd", {"true"}}, {"HostConfig", {{"SecurityOpt", {"bogus=1"}}}}}), 400u);
  EXPECT_EQ(status({{"Cmd", {"true"}}, {"HostConfig", {{"SecurityOpt", {R"(seccomp={"syscalls":[]})"}}}}}),
            400u);
  EXPECT_TRUE(cm_->list({.all = true}).empty());  // nothing half-made

  auto spec_of = [&](json host_config) {
    json body = {{"Cmd", {"true"}}, {"HostConfig", std::move(host_config)}};
    std::string id = create(body);
    cm_->start(id);
    wait(id);
    return json::parse(*read_file(root_ / "containers" / id / "bundle" / "config.json"));
  };
  json spec = spec_of(json::object());
  ASSERT_TRUE(spec["linux"].contains("seccomp"));
  EXPECT_EQ(spec["linux"]["seccomp"]["defaultAction"], "SCMP_ACT_ERRNO");
  EXPECT_EQ(spec["process"]["noNewPrivileges"], false);
  spec = spec_of({{"SecurityOpt", {"seccomp=unconfined", "no-new-privileges"}}});
  EXPECT_FALSE(spec["linux"].contains("seccomp"));
  EXPECT_EQ(spec["process"]["noNewPrivileges"], true);
  spec = spec_of({{"Privileged", true}});
  EXPECT_FALSE(spec["linux"].contains("seccomp"));
  spec = spec_of({{"SecurityOpt", {R"(seccomp={"defaultAction":"SCMP_ACT_LOG"})"}}});
  EXPECT_EQ(spec["linux"]["seccomp"]["defaultAction"], "SCMP_ACT_LOG");
}

TEST_F(ManagerTest, TheUserIsLookedUpInsideTheContainersRoot) {
  // The rootfs is a plain directory in these tests: plant links before start.
  std::string id = create({{"Cmd", {"true"}}, {"User", "app"}});
  fs::path etc = root_ / "containers" / id / "rootfs" / "etc";
  fs::create_directories(etc);
  fs::create_symlink("/dev/zero", etc / "passwd");
  ASSERT_EQ(::mkfifo((etc / "group").c_str(), 0644), 0);
  auto t0 = std::chrono::steady_clock::now();
  try {
    cm_->start(id);
    ADD_FAILURE() << "a user from /dev/zero";
  } catch (const api::HttpError& e) {
    EXPECT_EQ(e.status(), 400u);
    EXPECT_NE(std::string(e.what()).find("unable to find user app"), std::string::npos) << e.what();
  }
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s);  // neither /dev/zero nor the FIFO held it

  // A link to a machine file never lends the container its fields (HOME here).
  std::string id2 = create({{"Cmd", {"true"}}, {"User", "root"}});
  fs::path etc2 = root_ / "containers" / id2 / "rootfs" / "etc";
  fs::create_directories(etc2);
  std::ofstream(root_ / "machine-passwd") << "root:x:0:0:root:/machine-secret:/bin/sh\n";
  fs::create_symlink(root_ / "machine-passwd", etc2 / "passwd");
  try {
    cm_->start(id2);
    wait(id2);
  } catch (const api::HttpError& e) {
    EXPECT_NE(std::string(e.what()).find("unable to find user root"), std::string::npos) << e.what();
  }
  auto spec = read_file(root_ / "containers" / id2 / "bundle" / "config.json");
  if (spec) {
    EXPECT_EQ(spec->find("/machine-secret"), std::string::npos);
  }
}

}  // namespace
}  // namespace berth::agent::runtime
