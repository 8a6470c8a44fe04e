#include "drivers/virtualbox/vboxmanage.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "core/error.h"
#include "core/fs.h"
#include "core/lock.h"
#include "core/log.h"

extern char** environ;

namespace berth::vbox {
namespace {

constexpr const char* kLog = "virtualbox";

struct Fd {
  int fd = -1;
  Fd() = default;
  explicit Fd(int f) : fd(f) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { reset(); }
  void reset() {
    if (fd >= 0) ::close(fd);
    fd = -1;
  }
};

struct Pipe {
  Fd read, write;
  Pipe() {
    int p[2];
    if (::pipe2(p, O_CLOEXEC) != 0) throw Error(std::string("pipe: ") + std::strerror(errno));
    read.fd = p[0];
    write.fd = p[1];
  }
};

std::string to_lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(" \t\r\n") - b + 1);
}

std::string command_name(const std::vector<std::string>& args) {
  if (args.empty()) return "";
  // "controlvm NAME poweroff" reads better with the action than with the name.
  if (args[0] == "controlvm" && args.size() > 2) return "controlvm " + args[2];
  if ((args[0] == "hostonlyif" || args[0] == "dhcpserver" || args[0] == "sharedfolder") && args.size() > 1)
    return args[0] + " " + args[1];
  return args[0];
}

bool executable(const std::filesystem::path& p) {
  return ::access(p.c_str(), X_OK) == 0 && !std::filesystem::is_directory(p);
}

}  // namespace

ProcessResult run_process(const std::vector<std::string>& argv, std::chrono::milliseconds timeout) {
  if (argv.empty()) throw Error("run_process: empty argv");
  Pipe out, err;
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, out.write.fd, 1);
  posix_spawn_file_actions_adddup2(&fa, err.write.fd, 2);
  // Default SIGPIPE/SIGINT handling in the child, whatever berth set for itself.
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t defaults;
  sigemptyset(&defaults);
  sigaddset(&defaults, SIGPIPE);
  sigaddset(&defaults, SIGINT);
  sigaddset(&defaults, SIGTERM);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&attr, &none);
  // Its own process group: Ctrl-C at the terminal reaches berth, which lets the running
  // call finish (an interrupted VBoxManage can leave a VM locked) and then cleans up.
  posix_spawnattr_setpgroup(&attr, 0);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETPGROUP);

  std::vector<char*> cargv;
  for (const auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);
  pid_t pid = -1;
  const int rc = ::posix_spawnp(&pid, argv[0].c_str(), &fa, &attr, cargv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) throw Error(fmt::format("cannot run {}: {}", argv[0], std::strerror(rc)));
  out.write.reset();
  err.write.reset();

  ProcessResult r;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  Fd* fds[2] = {&out.read, &err.read};
  std::string* bufs[2] = {&r.out, &r.err};
  while (out.read.fd >= 0 || err.read.fd >= 0) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      r.timed_out = true;
      ::kill(pid, SIGKILL);
      break;
    }
    pollfd p[2];
    int idx[2];
    nfds_t n = 0;
    for (int i = 0; i < 2; ++i)
      if (fds[i]->fd >= 0) {
        p[n] = {fds[i]->fd, POLLIN, 0};
        idx[n++] = i;
      }
    const int pr = ::poll(p, n, static_cast<int>(std::min<long long>(left.count(), 1000)));
    if (pr < 0 && errno != EINTR) break;
    for (nfds_t k = 0; pr > 0 && k < n; ++k) {
      if (!(p[k].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      char buf[8192];
      const ssize_t got = ::read(p[k].fd, buf, sizeof buf);
      if (got > 0)
        bufs[idx[k]]->append(buf, static_cast<size_t>(got));
      else if (got == 0 || (errno != EINTR && errno != EAGAIN))
        fds[idx[k]]->reset();
    }
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status))
    r.exit_code = WEXITSTATUS(status);
  else if (WIFSIGNALED(status))
    r.exit_code = 128 + WTERMSIG(status);
  return r;
}

std::optional<std::filesystem::path> find_vboxmanage() {
  namespace fs = std::filesystem;
  if (const char* p = std::getenv("BERTH_VBOXMANAGE"); p && *p) {
    if (executable(p)) return fs::path(p);
    return std::nullopt;
  }
  if (const char* dir = std::getenv("VBOX_MSI_INSTALL_PATH"); dir && *dir) {
    for (const char* exe : {"VBoxManage", "VBoxManage.exe"})
      if (executable(fs::path(dir) / exe)) return fs::path(dir) / exe;
  }
  if (const char* path = std::getenv("PATH")) {
    std::string all = path;
    size_t start = 0;
    while (start <= all.size()) {
      size_t end = all.find(':', start);
      if (end == std::string::npos) end = all.size();
      const std::string dir = all.substr(start, end - start);
      const fs::path cand = fs::path(dir.empty() ? "." : dir) / "VBoxManage";
      if (executable(cand)) return cand;
      start = end + 1;
    }
  }
  return std::nullopt;
}

std::string error_summary(const ProcessResult& r) {
  if (r.timed_out) return "it did not finish in time and was killed";
  const std::string& text = trim(r.err).empty() ? r.out : r.err;
  std::string last;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string::npos) nl = text.size();
    std::string line = trim(text.substr(pos, nl - pos));
    pos = nl + 1;
    if (line.empty()) continue;
    const auto e = line.find("error: ");
    if (e != std::string::npos && line.find("Details:") == std::string::npos &&
        line.find("Context:") == std::string::npos)
      return trim(line.substr(e + 7));
    last = line;
  }
  return last.empty() ? fmt::format("exit status {}", r.exit_code) : last;
}

bool is_transient(const ProcessResult& r) {
  if (r.exit_code == 0 || r.timed_out) return false;
  const std::string text = to_lower(r.err + "\n" + r.out);
  return text.find("object is not ready") != std::string::npos || text.find("e_accessdenied") != std::string::npos ||
         text.find("object functionality is limited") != std::string::npos ||
         text.find("is already locked for a session") != std::string::npos ||
         text.find("session is busy") != std::string::npos;
}

bool is_vm_not_found(const ProcessResult& r) {
  if (r.exit_code == 0) return false;
  const std::string text = r.err + "\n" + r.out;
  return text.find("VBOX_E_OBJECT_NOT_FOUND") != std::string::npos ||
         text.find("Could not find a registered machine") != std::string::npos;
}

ProcessResult VBoxManage::run(const std::vector<std::string>& args) const {
  std::vector<std::string> argv{o_.program.string()};
  argv.insert(argv.end(), args.begin(), args.end());
  ProcessResult r;
  for (int attempt = 1;; ++attempt) {
    {
      std::optional<FileLock> lock;
      if (!o_.lock_file.empty()) {
        ensure_private_dir(o_.lock_file.parent_path());
        lock = FileLock::acquire(o_.lock_file, o_.lock_timeout);
        if (!lock)
          throw DriverError(fmt::format("machine '{}': another berth kept the VirtualBox lock {} for {} s; try again",
                                        o_.machine, o_.lock_file.string(),
                                        std::chrono::duration_cast<std::chrono::seconds>(o_.lock_timeout).count()));
      }
      try {
        r = run_process(argv, o_.timeout);
      } catch (const Error& e) {
        throw DriverError(fmt::format("machine '{}': {}", o_.machine, e.what()));
      }
    }
    log::debug(kLog, "VBoxManage {} -> {}", fmt::join(args, " "), r.exit_code);
    if (!is_transient(r) || attempt >= o_.attempts) return r;
    log::debug(kLog, "transient VirtualBox error ({}); retrying", error_summary(r));
    std::this_thread::sleep_for(o_.retry_delay);
  }
}

std::string VBoxManage::check(const std::vector<std::string>& args) const {
  ProcessResult r = run(args);
  if (r.exit_code != 0)
    throw DriverError(
        fmt::format("machine '{}': VBoxManage {} failed: {}", o_.machine, command_name(args), error_summary(r)));
  return r.out;
}

}  // namespace berth::vbox
