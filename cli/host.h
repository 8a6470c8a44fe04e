#pragma once
// Operations on one stored machine that several commands share: its driver,
// its endpoints, SSH with host-key pinning, certificates and provisioning.
#include <chrono>
#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "cli/context.h"
#include "core/agent_client.h"
#include "core/machine.h"
#include "core/ssh.h"
#include "drivers/driver.h"

namespace berth::cli {

using StepReporter = std::function<void(std::string_view)>;

// Where and how Steps shows progress; tests swap the stream and the intervals.
struct StepsOutput {
  enum class Mode { Auto, Terminal, Lines };  // Auto: Terminal when `out` is a tty
  std::FILE* out = stderr;
  Mode mode = Mode::Auto;
  std::chrono::milliseconds redraw_every{100};   // terminal: the spinner
  std::chrono::milliseconds still_every{10'000};  // lines: "still STEP (Ns)"
};

// Shows each step from its start: on a terminal "NAME: step (3s)" with a
// spinner, redrawn in place; otherwise "NAME: step..." when it starts and
// "NAME: still step (10s)" every 10 s. When it ends, "NAME: step (12.3s)".
// Quiet: nothing at all.
class Steps {
 public:
  explicit Steps(std::string machine, bool quiet = false, StepsOutput output = {});
  ~Steps();
  Steps(const Steps&) = delete;
  Steps& operator=(const Steps&) = delete;
  // Ends the current step and starts `step` ("": none).
  void operator()(std::string_view step);
  StepReporter reporter() { return [this](std::string_view s) { (*this)(s); }; }

 private:
  class Running;
  std::string machine_;
  bool quiet_;
  StepsOutput output_;
  bool terminal_;
  std::unique_ptr<Running> current_;
};

DriverContext driver_context(Context& ctx, const std::string& name, int engine_port = 2376);
std::unique_ptr<Driver> load_driver(Context& ctx, const MachineRecord& record);
const DriverFactory& driver_factory(Context& ctx, const MachineRecord& record);

// Throws a one-line UserError when `record` is a docker-machine engine host
// (dockerd, no berth-agent), saying how to turn it into a berth machine.
void refuse_on_engine_host(const MachineRecord& record, const std::string& what);

std::string machine_url(Context& ctx, const MachineRecord& record);

// Why a machine is in the Error state: its SSH port or its agent, as reached
// now within `timeout`. Empty when both answer.
std::string error_state_reason(Context& ctx, const MachineRecord& record, const Driver& driver,
                               std::chrono::milliseconds timeout);
AgentEndpoint agent_endpoint(Context& ctx, const MachineRecord& record);

// Refreshes record.ssh from the driver (the port or address may move) and opens
// a session, pinning the host key at first contact (and saving the record).
std::unique_ptr<SshSession> connect_ssh(Context& ctx, MachineRecord& record, std::chrono::milliseconds deadline);

// Issues this machine's server certificate for its current address and copies
// the client material into the machine dir (what DOCKER_CERT_PATH points at).
void issue_machine_certs(Context& ctx, MachineRecord& record);

// Installs (or re-installs) the agent over one SSH connection and waits for it
// to answer over mTLS.
void provision_machine(Context& ctx, MachineRecord& record, const StepReporter& step);

// Re-issues the server certificate when the machine's address no longer matches
// it, installs it and makes the agent reload. Returns true when it re-issued.
bool refresh_certs_if_address_changed(Context& ctx, MachineRecord& record, const StepReporter& step);

// Removes the machine: agent (when the host outlives it), driver resources and
// the store directory. With force, failures are warnings and removal goes on.
void remove_machine(Context& ctx, const std::string& name, bool force);
// The same for a caller that already holds the machine's lock; `record` is
// empty when config.json was unusable.
void destroy_machine(Context& ctx, const std::string& name, const std::optional<MachineRecord>& record, bool force);

enum class PowerOp { Start, Stop, Restart, Kill };
// Runs a power operation the driver declares it can do; afterwards a started
// machine gets certificates for its (maybe new) address and its agent answers.
void change_power(Context& ctx, const std::string& name, PowerOp op, bool quiet = false);

// The active machine: the one whose URL is $DOCKER_HOST, else the one the
// current docker context (berth-NAME) names.
std::optional<std::string> active_machine(Context& ctx);

// `name`, or the active machine when it is empty (UsageError when there is none).
std::string machine_name_or_active(Context& ctx, const std::string& name);

}  // namespace berth::cli
