#pragma once
// What the containers suite needs around one berth-os VM: the real berth CLI
// with its own store, a Debian docker-registry on 127.0.0.1 (seen by the guest
// as 10.0.2.2:PORT through QEMU's user-mode gateway), the test image built by
// scripts/make-test-image.sh, and the docker CLI pointed at the VM through
// `berth env`.
//
// Binaries: $BERTH_BINARY (else BUILD/cli/berth) and $BERTH_AGENT_BINARY
// (else BUILD/agent/berth-agent), so a test binary built elsewhere can drive
// the lead's berth and upload a chosen agent.
#include <memory>
#include <string>
#include <vector>

#include "tests/integration/generic/berth_cli.h"

namespace berth::it::containers {

// A docker-registry serving 127.0.0.1:port from a temp dir; stopped on destruction.
class Registry {
 public:
  Registry();  // throws when it does not answer
  int port() const { return port_; }
  // How the guest names it: "10.0.2.2:PORT".
  std::string guest_address() const { return "10.0.2.2:" + std::to_string(port_); }
  std::string host_address() const { return "127.0.0.1:" + std::to_string(port_); }

 private:
  TempDir dir_;
  int port_ = 0;
  std::unique_ptr<Process> process_;
};

// The test image (docker-archive) and what identifies it.
struct TestImage {
  fs::path tarball;
  std::string ref;        // "busybox:latest"
  std::string id;         // "sha256:<config digest>"
  std::string diff_id;    // "sha256:<layer tar digest>"
};
// Runs scripts/make-test-image.sh; throws on failure.
TestImage make_test_image(const fs::path& out, const std::string& ref);

// The suite's machine: berth binaries, store, docker env.
class Machine {
 public:
  explicit Machine(std::string name);
  // A machine in the store under `root` (kept after this object goes).
  Machine(std::string name, const fs::path& root);

  const std::string& name() const { return name_; }
  const BerthCli& cli() const { return cli_; }
  fs::path scratch() const { return cli_.scratch(); }

  // The berth CLI with this suite's environment.
  RunResult berth(const std::vector<std::string>& args, std::chrono::milliseconds timeout = 120s) const;
  Process start_berth(const std::vector<std::string>& args) const;
  // `berth ssh NAME COMMAND`.
  RunResult ssh(const std::string& command, std::chrono::milliseconds timeout = 60s) const;

  // Reads `berth env NAME` into the docker environment (again after a reboot).
  void refresh_docker_env();
  // The docker CLI with the machine's environment; stdin from `input`.
  RunResult docker(const std::vector<std::string>& args, std::chrono::milliseconds timeout = 60s,
                   const std::string& input = "") const;
  // bash -c SCRIPT with the machine's docker environment.
  RunResult sh(const std::string& script, std::chrono::milliseconds timeout = 60s) const;
  // curl against the agent's API with the client certificate: METHOD PATH [BODY].
  // Returns {status, body}; status 0 when curl itself failed.
  std::pair<int, std::string> api(const std::string& method, const std::string& path,
                                  const std::string& body = "") const;

  // The libvirt domain, from `berth inspect`.
  std::string domain() const;
  // HMP command on the running domain (virsh qemu-monitor-command --hmp).
  RunResult monitor(const std::string& hmp) const;

  const Env& docker_env() const { return docker_env_; }

 private:
  void init_env();
  std::string name_;
  BerthCli cli_;
  Env env_;         // berth's environment
  Env docker_env_;  // env_ plus DOCKER_HOST etc.
};

// A free TCP port on 127.0.0.1 (bound and released).
int free_port();
// "" when the suite can run here, else why not. Starts libvirtd/virtlogd when needed.
std::string unavailable_reason();
// Removes libvirt storage pools rooted under `store` (what a failed run may leave).
void drop_pools_under(const fs::path& store);
// The command line of a docker call, for failure messages.
std::string describe_call(const std::vector<std::string>& args, const RunResult& r);

}  // namespace berth::it::containers
