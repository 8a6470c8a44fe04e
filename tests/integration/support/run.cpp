#include "tests/integration/support/run.h"

#include <utility>

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <system_error>
#include <thread>

extern char** environ;

namespace berth::it {
namespace {

std::runtime_error sys_error(const std::string& what, int err = errno) {
  return std::runtime_error(what + ": " + std::strerror(err));
}

fs::path make_temp_dir(const std::string& prefix) {
  const char* tmp = std::getenv("TMPDIR");
  std::string templ = (fs::path(tmp && *tmp ? tmp : "/tmp") / (prefix + "-XXXXXX")).string();
  if (!mkdtemp(templ.data())) throw sys_error("mkdtemp " + templ);
  return templ;
}

std::vector<std::string> merged_environment(const Env& changes) {
  std::map<std::string, std::string> vars;
  for (char** e = environ; *e; ++e) {
    std::string kv = *e;
    auto eq = kv.find('=');
    if (eq == std::string::npos) continue;
    vars[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  for (const auto& [k, v] : changes) {
    if (v) vars[k] = *v;
    else vars.erase(k);
  }
  std::vector<std::string> out;
  for (const auto& [k, v] : vars) out.push_back(k + "=" + v);
  return out;
}

std::vector<char*> c_strings(std::vector<std::string>& v) {
  std::vector<char*> out;
  for (auto& s : v) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

struct FileActions {
  posix_spawn_file_actions_t fa;
  FileActions() { posix_spawn_file_actions_init(&fa); }
  ~FileActions() { posix_spawn_file_actions_destroy(&fa); }
};
struct SpawnAttr {
  posix_spawnattr_t attr;
  SpawnAttr() { posix_spawnattr_init(&attr); }
  ~SpawnAttr() { posix_spawnattr_destroy(&attr); }
};

}  // namespace

std::string RunResult::describe() const {
  std::ostringstream s;
  s << "exit " << exit_code;
  if (term_signal) s << " (signal " << term_signal << ")";
  if (timed_out) s << " (timed out)";
  s << "\n--- stdout ---\n" << out << "\n--- stderr ---\n" << err;
  return s.str();
}

std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path.string());
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

void write_text(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  if (!out.flush()) throw std::runtime_error("cannot write " + path.string());
}

Process Process::start(const std::vector<std::string>& argv, const SpawnOptions& options) {
  if (argv.empty()) throw std::invalid_argument("Process::start: empty argv");
  fs::path dir = make_temp_dir("berth-it-proc");
  write_text(dir / "stdin", options.stdin_data);

  FileActions actions;
  posix_spawn_file_actions_addopen(&actions.fa, 0, (dir / "stdin").c_str(), O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions.fa, 1, (dir / "stdout").c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_addopen(&actions.fa, 2, (dir / "stderr").c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (options.cwd) posix_spawn_file_actions_addchdir_np(&actions.fa, options.cwd->c_str());

  SpawnAttr attr;
  posix_spawnattr_setpgroup(&attr.attr, 0);
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr.attr, &none);
  posix_spawnattr_setsigdefault(&attr.attr, &all);
  posix_spawnattr_setflags(&attr.attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
                                           POSIX_SPAWN_SETSIGDEF);

  std::vector<std::string> args = argv;
  std::vector<std::string> env = merged_environment(options.env);
  auto c_args = c_strings(args);
  auto c_env = c_strings(env);
  pid_t pid = -1;
  int rc = posix_spawnp(&pid, c_args[0], &actions.fa, &attr.attr, c_args.data(), c_env.data());
  if (rc != 0) {
    std::error_code ec;
    fs::remove_all(dir, ec);
    throw sys_error("cannot start " + argv[0], rc);
  }
  return Process(pid, std::move(dir));
}

Process::Process(pid_t pid, fs::path dir) : pid_(pid), dir_(std::move(dir)) {}

Process::Process(Process&& other) noexcept
    : pid_(other.pid_), dir_(std::move(other.dir_)), reaped_(other.reaped_), status_(other.status_) {
  other.pid_ = -1;
  other.dir_.clear();
}

Process::~Process() {
  if (pid_ > 0 && !reaped_) {
    ::kill(-pid_, SIGKILL);
    reap(true);
  }
  if (!dir_.empty()) {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
}

bool Process::reap(bool block) {
  if (reaped_) return true;
  while (true) {
    pid_t r = ::waitpid(pid_, &status_, block ? 0 : WNOHANG);
    if (r == pid_) return reaped_ = true;
    if (r == 0) return false;
    if (errno != EINTR) throw sys_error("waitpid");
  }
}

bool Process::running() { return !reap(false); }

void Process::signal(int sig, bool whole_group) {
  if (reaped_) return;
  ::kill(whole_group ? -pid_ : pid_, sig);
}

std::string Process::stdout_so_far() const { return read_text(dir_ / "stdout"); }
std::string Process::stderr_so_far() const { return read_text(dir_ / "stderr"); }

RunResult Process::wait(std::chrono::milliseconds timeout) {
  RunResult result;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!reap(false)) {
    if (std::chrono::steady_clock::now() >= deadline) {
      result.timed_out = true;
      ::kill(-pid_, SIGKILL);
      reap(true);
      break;
    }
    std::this_thread::sleep_for(10ms);
  }
  // Anything left in its group (daemonized helpers) goes too.
  ::kill(-pid_, SIGKILL);
  if (WIFEXITED(status_)) result.exit_code = WEXITSTATUS(status_);
  if (WIFSIGNALED(status_)) result.term_signal = WTERMSIG(status_);
  result.out = stdout_so_far();
  result.err = stderr_so_far();
  return result;
}

RunResult run(const std::vector<std::string>& argv, const Env& env,
              std::chrono::milliseconds timeout, const std::string& stdin_data) {
  SpawnOptions options;
  options.env = env;
  options.stdin_data = stdin_data;
  return Process::start(argv, options).wait(timeout);
}

RunResult run_bash(const std::string& script, const Env& env, std::chrono::milliseconds timeout) {
  return run({"bash", "-c", script}, env, timeout);
}

TempDir::TempDir(const std::string& prefix) : path_(make_temp_dir(prefix)) {}

TempDir TempDir::kept(const fs::path& existing) {
  fs::create_directories(existing);
  return TempDir(existing, false);
}

TempDir::TempDir(TempDir&& other) noexcept
    : path_(std::move(other.path_)), remove_(std::exchange(other.remove_, false)) {}

TempDir::~TempDir() {
  if (!remove_ || path_.empty()) return;
  std::error_code ec;
  fs::remove_all(path_, ec);
}

fs::path build_dir() {
  const char* d = std::getenv("BERTH_BUILD_DIR");
  return d && *d ? fs::path(d) : fs::path(BERTH_IT_DEFAULT_BUILD_DIR);
}

fs::path source_dir() {
  const char* d = std::getenv("BERTH_SOURCE_DIR");
  return d && *d ? fs::path(d) : fs::path(BERTH_IT_DEFAULT_SOURCE_DIR);
}

fs::path berth_binary() { return build_dir() / "cli" / "berth"; }
fs::path agent_binary() { return build_dir() / "agent" / "berth-agent"; }

}  // namespace berth::it
