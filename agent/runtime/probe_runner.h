#pragma once
// The health probes themselves: each one a `crun exec` of the container's
// probe command, its stdout and stderr into one pipe (kept up to 4 KiB, as
// dockerd keeps them), its exit seen through a pidfd. One thread reaps every
// probe in flight, whatever the number of containers. Thread-safe.
#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "agent/runtime/fd.h"
#include "agent/runtime/health.h"
#include "agent/runtime/health_scheduler.h"

namespace berth::agent::runtime {

class ProbeRunner : public Prober {
 public:
  // How to run one container's probe.
  struct Target {
    std::vector<std::string> argv;   // the runtime's exec command line, container id last
    std::filesystem::path pid_file;  // where the runtime writes the probe's pid (--pid-file)
    // "/berth/<id>": the pid in pid_file is only killed when it is in there
    // (or is the exec's child), so a stale pid never is.
    std::string cgroup;
    std::vector<std::string> command;  // the probe's command, for the started hook
  };
  struct Hooks {
    // Before a probe's process starts (events). Called without the runner's lock.
    std::function<void(const std::string& id, std::uint64_t probe, const std::vector<std::string>& command)>
        started;
    // A probe's end: its exit code (-1 when it could not start) and output.
    std::function<void(std::uint64_t probe, int exit_code, std::string output)> finished;
  };

  explicit ProbeRunner(Hooks hooks);
  ~ProbeRunner() override;  // kills and reaps what is still running
  ProbeRunner(const ProbeRunner&) = delete;
  ProbeRunner& operator=(const ProbeRunner&) = delete;

  void set_target(const std::string& id, Target target);
  void forget(const std::string& id);

  void start(const std::string& id, std::uint64_t probe) override;
  void kill(std::uint64_t probe) override;
  void stop();

 private:
  struct Running {
    pid_t pid = -1;  // the runtime's exec process, our child
    UniqueFd pidfd, output_fd;
    ProbeOutput output;
    std::filesystem::path pid_file;
    std::string cgroup;
    bool exited = false;
    int exit_code = -1;
  };
  void loop();
  void wake();
  // Ends the probe: the probe's process in the container, then the runtime's.
  static void kill_running(const Running& r);

  Hooks hooks_;
  std::mutex mu_;
  std::map<std::string, Target> targets_;
  std::map<std::uint64_t, std::unique_ptr<Running>> running_;
  UniqueFd wake_fd_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace berth::agent::runtime
