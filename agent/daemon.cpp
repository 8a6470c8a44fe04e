#include "agent/daemon.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include "core/error.h"

namespace berth::agent {
namespace {

constexpr const char* kReady = "READY";
constexpr const char* kFailed = "FAILED ";

std::string errno_text() { return std::strerror(errno); }

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

// In the launching process: wait for the daemon's report and exit with it.
[[noreturn]] void wait_for_report(int fd, pid_t child) {
  std::string report;
  char buf[512];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n > 0) {
      report.append(buf, static_cast<std::size_t>(n));
    } else if (n == 0 || errno != EINTR) {
      break;
    }
  }
  ::close(fd);
  int status = 0;
  ::waitpid(child, &status, 0);  // the intermediate child, gone after the second fork
  if (report.starts_with(kReady)) std::_Exit(0);
  std::string message = report.starts_with(kFailed)
                            ? report.substr(std::strlen(kFailed))
                            : "berth-agent exited during startup; see its log file";
  std::fprintf(stderr, "berth-agent: error: %s\n", message.c_str());
  std::fflush(stderr);
  std::_Exit(1);
}

void redirect_stdio_to_devnull() {
  int null = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  if (null < 0) throw Error("cannot open /dev/null: " + errno_text());
  for (int fd : {STDIN_FILENO, STDOUT_FILENO, STDERR_FILENO}) ::dup2(null, fd);
  if (null > STDERR_FILENO) ::close(null);
}

}  // namespace

StartupReport& StartupReport::operator=(StartupReport&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = other.fd_;
    other.fd_ = -1;
  }
  return *this;
}

StartupReport::~StartupReport() {
  if (fd_ >= 0) ::close(fd_);
}

void StartupReport::ready() { send(kReady); }

void StartupReport::failed(const std::string& message) { send(kFailed + message); }

void StartupReport::send(const std::string& text) {
  if (fd_ < 0) return;
  ssize_t n = ::write(fd_, text.data(), text.size());
  (void)n;  // the launcher is gone: nobody left to tell
  ::close(fd_);
  fd_ = -1;
}

StartupReport daemonize() {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0)
    throw Error("cannot create a pipe to daemonize: " + errno_text());
  std::fflush(nullptr);
  pid_t child = ::fork();
  if (child < 0) throw Error("cannot fork to daemonize: " + errno_text());
  if (child > 0) {
    ::close(fds[1]);
    wait_for_report(fds[0], child);
  }
  ::close(fds[0]);
  if (::setsid() < 0) std::_Exit(1);
  pid_t grandchild = ::fork();
  if (grandchild < 0) std::_Exit(1);
  if (grandchild > 0) std::_Exit(0);  // the daemon is not a session leader: no controlling tty
  if (::chdir("/") != 0) std::_Exit(1);
  ::umask(022);
  StartupReport report(fds[1]);
  redirect_stdio_to_devnull();
  return report;
}

PidFile::PidFile(std::string path) : path_(std::move(path)) {
  std::string old = slurp(path_);
  long other = std::atol(old.c_str());
  if (other > 0 && other != ::getpid() && ::kill(static_cast<pid_t>(other), 0) == 0 &&
      slurp("/proc/" + std::to_string(other) + "/comm").starts_with("berth-agent")) {
    throw UserError("berth-agent is already running as pid " + std::to_string(other) +
                    " (pidfile " + path_ + "); stop it first");
  }
  std::string text = std::to_string(::getpid()) + "\n";
  std::string tmp = path_ + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  bool ok = fd >= 0 && ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  int saved = errno;
  if (fd >= 0) ::close(fd);
  if (!ok || ::rename(tmp.c_str(), path_.c_str()) != 0) {
    if (ok) saved = errno;
    ::unlink(tmp.c_str());
    throw UserError("cannot write pidfile " + path_ + ": " + std::strerror(saved) +
                    "; fix \"pid_file\" in the config or pass --pidfile");
  }
}

PidFile::~PidFile() {
  if (std::atol(slurp(path_).c_str()) == ::getpid()) ::unlink(path_.c_str());
}

}  // namespace berth::agent
