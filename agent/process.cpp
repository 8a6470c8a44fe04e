#include "agent/process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <stdexcept>

extern char** environ;

namespace berth::agent {
namespace {

struct FdGuard {
  int fd = -1;
  ~FdGuard() { close(); }
  void close() {
    if (fd >= 0) ::close(fd);
    fd = -1;
  }
};

void make_pipe(FdGuard& r, FdGuard& w) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0)
    throw std::runtime_error(std::string("pipe: ") + std::strerror(errno));
  r.fd = fds[0];
  w.fd = fds[1];
}

}  // namespace

pid_t spawn_process(const std::vector<std::string>& argv, int in, int out, int err) {
  if (argv.empty()) throw std::invalid_argument("spawn_process: empty argv");
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, in, 0);
  posix_spawn_file_actions_adddup2(&actions, out, 1);
  posix_spawn_file_actions_adddup2(&actions, err, 2);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&attr, &none);
  sigset_t defaults;
  sigemptyset(&defaults);
  sigaddset(&defaults, SIGPIPE);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = -1;
  int rc = ::posix_spawnp(&pid, args[0], &actions, &attr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) throw std::runtime_error("cannot run " + argv[0] + ": " + std::strerror(rc));
  return pid;
}

int exit_code_of(int wait_status) {
  return WIFEXITED(wait_status) ? WEXITSTATUS(wait_status) : 128 + WTERMSIG(wait_status);
}

ProcessResult run_process(const std::vector<std::string>& argv, const std::string& input,
                          std::chrono::milliseconds timeout) {
  if (argv.empty()) throw std::invalid_argument("run_process: empty argv");
  FdGuard in_r, in_w, out_r, out_w, err_r, err_w;
  make_pipe(in_r, in_w);
  make_pipe(out_r, out_w);
  make_pipe(err_r, err_w);

  const pid_t pid = spawn_process(argv, in_r.fd, out_w.fd, err_w.fd);
  in_r.close();
  out_w.close();
  err_w.close();

  ProcessResult result;
  std::size_t written = 0;
  if (input.empty()) in_w.close();
  if (in_w.fd >= 0) ::fcntl(in_w.fd, F_SETFL, O_NONBLOCK);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  bool timed_out = false;
  while (out_r.fd >= 0 || err_r.fd >= 0) {
    std::array<pollfd, 3> fds{};
    nfds_t n = 0;
    int out_i = -1, err_i = -1, in_i = -1;
    if (out_r.fd >= 0) { out_i = static_cast<int>(n); fds[n++] = {out_r.fd, POLLIN, 0}; }
    if (err_r.fd >= 0) { err_i = static_cast<int>(n); fds[n++] = {err_r.fd, POLLIN, 0}; }
    if (in_w.fd >= 0) { in_i = static_cast<int>(n); fds[n++] = {in_w.fd, POLLOUT, 0}; }
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      timed_out = true;
      break;
    }
    int ready = ::poll(fds.data(), n, static_cast<int>(left.count()));
    if (ready < 0 && errno == EINTR) continue;
    if (ready < 0) break;
    auto drain = [&](int idx, FdGuard& fd, std::string& sink) {
      if (idx < 0 || fds[static_cast<std::size_t>(idx)].revents == 0) return;
      char buf[8192];
      ssize_t got = ::read(fd.fd, buf, sizeof buf);
      if (got > 0) {
        sink.append(buf, static_cast<std::size_t>(got));
      } else if (got == 0 || errno != EINTR) {
        fd.close();
      }
    };
    drain(out_i, out_r, result.out);
    drain(err_i, err_r, result.err);
    if (in_i >= 0 && fds[static_cast<std::size_t>(in_i)].revents != 0) {
      ssize_t put = ::write(in_w.fd, input.data() + written, input.size() - written);
      if (put > 0) written += static_cast<std::size_t>(put);
      if (put < 0 && errno != EAGAIN && errno != EINTR) in_w.close();
      if (written == input.size()) in_w.close();
    }
  }
  in_w.close();
  if (timed_out) ::kill(pid, SIGKILL);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (timed_out) {
    throw std::runtime_error(argv[0] + " did not finish within " +
                             std::to_string(timeout.count()) + " ms; killed it");
  }
  result.exit_code = exit_code_of(status);
  return result;
}

std::string run_checked(const std::vector<std::string>& argv, const std::string& input,
                        std::chrono::milliseconds timeout) {
  ProcessResult r = run_process(argv, input, timeout);
  if (!r.ok()) {
    std::string err = r.err;
    while (!err.empty() && (err.back() == '\n' || err.back() == '\r')) err.pop_back();
    throw std::runtime_error(argv[0] + " failed (exit " + std::to_string(r.exit_code) +
                             "): " + err);
  }
  return r.out;
}

}  // namespace berth::agent
