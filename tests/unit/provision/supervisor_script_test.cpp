// Runs the generated supervisor script for real with /bin/sh against a fake
// agent (a shell script that daemonizes, writes the pidfile and logs signals).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "provision/common.h"

namespace berth::provision::detail {
namespace {

namespace fs = std::filesystem;

struct Shell {
  int exit_code;
  std::string out;
};

Shell sh(const std::string& command) {
  std::string full = command + " 2>&1";
  FILE* p = ::popen(full.c_str(), "r");
  if (!p) return {-1, "popen failed"};
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  int status = ::pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool alive(pid_t pid) {
  if (::kill(pid, 0) != 0) return false;
  std::string status = slurp("/proc/" + std::to_string(pid) + "/status");
  return status.find("State:\tZ") == std::string::npos;
}

// The fake agent: honours --pidfile and --daemon; SIGHUP appends "hup" to
// $DIR/hups; SIGTERM exits unless STUBBORN=1. Writes $BERTH_TEST_ENV to $DIR/env.
const char* kFakeAgent = R"(#!/bin/sh
dir=$(dirname "$0")
while [ $# -gt 0 ]; do
	case "$1" in --pidfile) pidfile=$2; shift ;; esac
	shift
done
printf '%s' "$BERTH_TEST_ENV" >"$dir/env"
setsid sh -c '
	echo $$ >"$1"
	trap "echo hup >>\"$2/hups\"" HUP
	if [ "$STUBBORN" = 1 ]; then trap "" TERM; else trap "exit 0" TERM; fi
	while :; do sleep 0.05; done
' berth-agent "$pidfile" "$dir" </dev/null >/dev/null 2>&1 &
)";

class SupervisorScriptTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("berth-supervisor-test-" + std::to_string(::getpid()) + "-" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
    std::ofstream(dir_ / "berth-agent") << kFakeAgent;
    fs::permissions(dir_ / "berth-agent", fs::perms(0755));
    write_script(10);
  }
  void TearDown() override {
    if (pid_t pid = pid_in_file(); pid > 0) ::kill(pid, SIGKILL);
    fs::remove_all(dir_);
  }

  void write_script(int timeout_s) {
    SupervisorPaths paths;
    paths.agent_binary = (dir_ / "berth-agent").string();
    paths.config = (dir_ / "agent.json").string();
    paths.pid_file = (dir_ / "agent.pid").string();
    paths.log_file = (dir_ / "agent.log").string();
    paths.stop_timeout_s = timeout_s;
    EngineOptions engine;
    engine.env = {"BERTH_TEST_ENV=hello 'quoted' $world"};
    std::ofstream(dir_ / "svc.sh") << supervisor_script(engine, paths);
  }

  Shell svc(const std::string& action, const std::string& env = "") {
    return sh(env + " /bin/sh " + (dir_ / "svc.sh").string() + " " + action);
  }
  pid_t pid_in_file() {
    std::ifstream in(dir_ / "agent.pid");
    pid_t pid = 0;
    in >> pid;
    return pid;
  }

  fs::path dir_;
};

TEST_F(SupervisorScriptTest, StartStatusReloadStop) {
  EXPECT_EQ(svc("status").exit_code, 3);

  Shell start = svc("start");
  ASSERT_EQ(start.exit_code, 0) << start.out;
  pid_t pid = pid_in_file();
  ASSERT_GT(pid, 0);
  EXPECT_TRUE(alive(pid));
  EXPECT_EQ(slurp(dir_ / "env"), "hello 'quoted' $world");  // env reaches the agent verbatim
  EXPECT_EQ(svc("status").exit_code, 0);

  Shell again = svc("start");  // already running: a no-op
  EXPECT_EQ(again.exit_code, 0);
  EXPECT_NE(again.out.find("already running"), std::string::npos) << again.out;
  EXPECT_EQ(pid_in_file(), pid);

  ASSERT_EQ(svc("reload").exit_code, 0);
  for (int i = 0; i < 100 && slurp(dir_ / "hups").empty(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_EQ(slurp(dir_ / "hups"), "hup\n");
  EXPECT_TRUE(alive(pid));

  Shell stop = svc("stop");
  ASSERT_EQ(stop.exit_code, 0) << stop.out;
  EXPECT_FALSE(alive(pid));
  EXPECT_FALSE(fs::exists(dir_ / "agent.pid"));
  EXPECT_EQ(svc("status").exit_code, 3);
  EXPECT_EQ(svc("stop").exit_code, 0);    // stopping a stopped agent is fine
  EXPECT_EQ(svc("reload").exit_code, 0);  // and so is reloading it: nothing to do
}

TEST_F(SupervisorScriptTest, RestartGivesANewProcess) {
  ASSERT_EQ(svc("start").exit_code, 0);
  pid_t first = pid_in_file();
  Shell restart = svc("restart");
  ASSERT_EQ(restart.exit_code, 0) << restart.out;
  pid_t second = pid_in_file();
  EXPECT_NE(first, second);
  EXPECT_FALSE(alive(first));
  EXPECT_TRUE(alive(second));
}

TEST_F(SupervisorScriptTest, StaleOrForeignPidfileIsNotRunning) {
  std::ofstream(dir_ / "agent.pid") << 1 << "\n";  // pid 1 is alive, but not a berth-agent
  EXPECT_EQ(svc("status").exit_code, 3);
  std::ofstream(dir_ / "agent.pid") << "garbage\n";
  EXPECT_EQ(svc("status").exit_code, 3);
  ASSERT_EQ(svc("start").exit_code, 0);
  EXPECT_TRUE(alive(pid_in_file()));
}

TEST_F(SupervisorScriptTest, StopKillsAnAgentThatIgnoresTerm) {
  write_script(1);
  ASSERT_EQ(svc("start", "STUBBORN=1").exit_code, 0);
  pid_t pid = pid_in_file();
  auto t0 = std::chrono::steady_clock::now();
  Shell stop = svc("stop");
  auto took = std::chrono::steady_clock::now() - t0;
  EXPECT_EQ(stop.exit_code, 0);
  EXPECT_NE(stop.out.find("killing it"), std::string::npos) << stop.out;
  EXPECT_GE(took, std::chrono::milliseconds(900));
  for (int i = 0; i < 50 && alive(pid); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_FALSE(alive(pid));
}

TEST_F(SupervisorScriptTest, UnknownActionIsAUsageError) {
  Shell r = svc("dance");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.out.find("usage:"), std::string::npos);
}

}  // namespace
}  // namespace berth::provision::detail
