#include "agent/runtime/probe_runner.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <tuple>

#include "agent/process.h"

namespace berth::agent::runtime {
namespace {

// Reads what is there without blocking; false at EOF or on an error.
bool drain(int fd, ProbeOutput& out) {
  char buf[16384];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n > 0) {
      out.append(std::string_view(buf, static_cast<std::size_t>(n)));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    return n < 0 && errno == EAGAIN;
  }
}

// Whether `pid` is in `cgroup` (its cgroup v2 path, or below it).
bool in_cgroup(pid_t pid, const std::string& cgroup) {
  auto text = read_file("/proc/" + std::to_string(pid) + "/cgroup");
  if (!text) return false;
  auto pos = text->find("0::");
  if (pos == std::string::npos) return false;
  std::string path = text->substr(pos + 3, text->find('\n', pos) - pos - 3);
  return path == cgroup || path.rfind(cgroup + "/", 0) == 0;
}

// The parent pid of `pid` from /proc; 0 when unknown.
pid_t parent_of(pid_t pid) {
  auto stat = read_file("/proc/" + std::to_string(pid) + "/stat");
  if (!stat) return 0;
  auto close = stat->rfind(')');
  if (close == std::string::npos || close + 4 > stat->size()) return 0;
  // ") S <ppid> ..."
  return std::atoi(stat->c_str() + stat->find(' ', close + 2) + 1);
}

}  // namespace

ProbeRunner::ProbeRunner(Hooks hooks)
    : hooks_(std::move(hooks)), wake_fd_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {}

ProbeRunner::~ProbeRunner() { stop(); }

void ProbeRunner::set_target(const std::string& id, Target target) {
  std::lock_guard l(mu_);
  targets_[id] = std::move(target);
}

void ProbeRunner::forget(const std::string& id) {
  std::lock_guard l(mu_);
  targets_.erase(id);
}

void ProbeRunner::start(const std::string& id, std::uint64_t probe) {
  Target target;
  {
    std::lock_guard l(mu_);
    auto it = targets_.find(id);
    if (it != targets_.end()) target = it->second;
  }
  if (target.argv.empty()) {
    hooks_.finished(probe, -1, "container " + id + " is not running");
    return;
  }
  if (hooks_.started) hooks_.started(id, probe, target.command);
  try {
    std::error_code ec;
    std::filesystem::remove(target.pid_file, ec);  // never kill a stale pid
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error(std::string("pipe: ") + std::strerror(errno));
    UniqueFd out_r(fds[0]), out_w(fds[1]);
    UniqueFd null(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    auto run = std::make_unique<Running>();
    run->pid = spawn_process(target.argv, null.get(), out_w.get(), out_w.get());
    out_w.reset();
    ::fcntl(out_r.get(), F_SETFL, O_NONBLOCK);
    run->pidfd = UniqueFd(static_cast<int>(::syscall(SYS_pidfd_open, run->pid, 0)));
    run->output_fd = std::move(out_r);
    run->pid_file = target.pid_file;
    run->cgroup = target.cgroup;
    {
      std::lock_guard l(mu_);
      running_[probe] = std::move(run);
      if (!thread_.joinable() && !stopping_) thread_ = std::thread([this] { loop(); });
    }
    wake();
  } catch (const std::exception& e) {
    hooks_.finished(probe, -1, e.what());
  }
}

void ProbeRunner::kill_running(const Running& r) {
  auto text = read_file(r.pid_file);
  pid_t pid = text ? std::atoi(text->c_str()) : 0;
  if (pid > 0 && (parent_of(pid) == r.pid || (!r.cgroup.empty() && in_cgroup(pid, r.cgroup)))) {
    ::kill(pid, SIGKILL);  // the runtime's exec then ends with it
  } else {
    ::kill(r.pid, SIGKILL);  // not started yet
  }
}

void ProbeRunner::kill(std::uint64_t probe) {
  std::lock_guard l(mu_);
  if (auto it = running_.find(probe); it != running_.end() && !it->second->exited)
    kill_running(*it->second);
}

void ProbeRunner::wake() {
  std::uint64_t one = 1;
  (void)!::write(wake_fd_.get(), &one, sizeof one);
}

void ProbeRunner::stop() {
  {
    std::lock_guard l(mu_);
    stopping_ = true;
  }
  wake();
  if (thread_.joinable()) thread_.join();
  std::lock_guard l(mu_);
  for (auto& [probe, r] : running_) {
    if (r->exited) continue;
    kill_running(*r);
    ::kill(r->pid, SIGKILL);
    int status;
    while (::waitpid(r->pid, &status, 0) < 0 && errno == EINTR) {
    }
  }
  running_.clear();
}

void ProbeRunner::loop() {
  for (;;) {
    std::vector<pollfd> fds;
    bool without_pidfd = false;
    {
      std::lock_guard l(mu_);
      if (stopping_) return;
      fds.push_back({wake_fd_.get(), POLLIN, 0});
      for (auto& [probe, r] : running_) {
        if (r->output_fd) fds.push_back({r->output_fd.get(), POLLIN, 0});
        if (r->pidfd) fds.push_back({r->pidfd.get(), POLLIN, 0});
        else without_pidfd = true;
      }
    }
    // Without pidfds (old kernels) exits are polled for.
    int r = ::poll(fds.data(), fds.size(), without_pidfd ? 100 : -1);
    if (r < 0 && errno != EINTR) return;
    std::uint64_t v;
    (void)!::read(wake_fd_.get(), &v, sizeof v);
    std::vector<std::tuple<std::uint64_t, int, std::string>> done;
    {
      std::lock_guard l(mu_);
      for (auto it = running_.begin(); it != running_.end();) {
        Running& run = *it->second;
        if (run.output_fd && !drain(run.output_fd.get(), run.output)) run.output_fd.reset();
        int status;
        if (!run.exited && ::waitpid(run.pid, &status, WNOHANG) == run.pid) {
          run.exited = true;
          run.exit_code = exit_code_of(status);
        }
        if (!run.exited) {
          ++it;
          continue;
        }
        // Its output ends with it, even when something it left behind holds the pipe.
        if (run.output_fd) drain(run.output_fd.get(), run.output);
        done.emplace_back(it->first, run.exit_code, run.output.text());
        it = running_.erase(it);
      }
    }
    for (auto& [probe, code, output] : done) hooks_.finished(probe, code, std::move(output));
  }
}

}  // namespace berth::agent::runtime
