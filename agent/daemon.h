#pragma once
// Process plumbing for the agent: detaching into the background with a
// readiness report back to the launching process, and the pidfile.
#include <string>

namespace berth::agent {

// The daemon's way to tell the process that launched it how startup went.
// Default-constructed (foreground), every call is a no-op.
class StartupReport {
 public:
  StartupReport() = default;
  explicit StartupReport(int fd) : fd_(fd) {}
  StartupReport(StartupReport&& other) noexcept : fd_(other.fd_) { other.fd_ = -1; }
  StartupReport& operator=(StartupReport&& other) noexcept;
  ~StartupReport();

  bool active() const { return fd_ >= 0; }
  void ready();                             // the launcher exits 0
  void failed(const std::string& message);  // the launcher prints it and exits 1

 private:
  void send(const std::string& text);
  int fd_ = -1;
};

// fork, setsid, fork again; stdio goes to /dev/null and the cwd to "/". Returns
// only in the daemon. The launching process stays until the daemon reports,
// then exits: 0 after ready(), 1 after failed() or if the daemon died first.
StartupReport daemonize();

// Writes our pid to `path` (0644) and removes the file again on destruction if
// it still names us. Throws berth::UserError when the file cannot be written
// or names another live berth-agent.
class PidFile {
 public:
  explicit PidFile(std::string path);
  ~PidFile();
  PidFile(const PidFile&) = delete;
  PidFile& operator=(const PidFile&) = delete;

 private:
  std::string path_;
};

}  // namespace berth::agent
