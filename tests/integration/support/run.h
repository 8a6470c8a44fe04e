#pragma once
// Running real programs from integration tests: bounded by a timeout, output
// captured, each in its own process group so a timeout or a test's signal
// reaches everything it started.
#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace berth::it {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

// Changes on top of the test's own environment; nullopt removes a variable.
using Env = std::map<std::string, std::optional<std::string>>;

struct RunResult {
  int exit_code = -1;        // -1 when killed by a signal
  int term_signal = 0;       // the signal that killed it, else 0
  bool timed_out = false;    // killed by us at the deadline
  std::string out;
  std::string err;

  bool ok() const { return exit_code == 0; }
  // "exit 3 (signal 0)\nstdout:\n...\nstderr:\n..." for assertion messages.
  std::string describe() const;
};

struct SpawnOptions {
  Env env;
  std::string stdin_data;
  std::optional<fs::path> cwd;
};

// A child process in its own process group, stdout/stderr going to temp files
// (so nothing it or its descendants do can block on a full pipe).
class Process {
 public:
  // Throws std::runtime_error when the program cannot be started.
  static Process start(const std::vector<std::string>& argv, const SpawnOptions& options = {});

  Process(Process&& other) noexcept;
  Process& operator=(Process&&) = delete;
  Process(const Process&) = delete;
  ~Process();   // kills the process group and reaps the child if still running

  pid_t pid() const { return pid_; }
  bool running();
  // To the whole process group (like a terminal's Ctrl-C) or only the child.
  void signal(int sig, bool whole_group = true);
  // Waits for exit; at the deadline kills the group with SIGKILL and marks timed_out.
  RunResult wait(std::chrono::milliseconds timeout);
  // What it has written so far.
  std::string stdout_so_far() const;
  std::string stderr_so_far() const;

 private:
  Process(pid_t pid, fs::path dir);
  bool reap(bool block);
  pid_t pid_ = -1;
  fs::path dir_;           // holds stdin, stdout, stderr files
  bool reaped_ = false;
  int status_ = 0;
};

RunResult run(const std::vector<std::string>& argv, const Env& env = {},
              std::chrono::milliseconds timeout = 120s, const std::string& stdin_data = "");
// bash -c SCRIPT
RunResult run_bash(const std::string& script, const Env& env = {},
                   std::chrono::milliseconds timeout = 120s);

// A temp directory (0700) removed with everything in it on destruction.
class TempDir {
 public:
  explicit TempDir(const std::string& prefix = "berth-it");
  // An existing directory that outlives this object (a fixture's, shared by suites).
  static TempDir kept(const fs::path& existing);
  TempDir(TempDir&& other) noexcept;
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir();
  const fs::path& path() const { return path_; }
  fs::path operator/(const std::string& child) const { return path_ / child; }

 private:
  TempDir(fs::path path, bool remove) : path_(std::move(path)), remove_(remove) {}
  fs::path path_;
  bool remove_ = true;
};

std::string read_text(const fs::path& path);
void write_text(const fs::path& path, const std::string& text);

// $BERTH_BUILD_DIR (set by berth_test), else the build dir this was compiled in.
fs::path build_dir();
// $BERTH_SOURCE_DIR, else the source dir this was compiled from.
fs::path source_dir();
fs::path berth_binary();   // build/cli/berth
fs::path agent_binary();   // build/agent/berth-agent

// Polls `condition` every `interval` until it holds or `timeout` passes.
template <typename F>
bool eventually(F condition, std::chrono::milliseconds timeout,
                std::chrono::milliseconds interval = 20ms) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    if (condition()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(interval);
  }
}

}  // namespace berth::it
