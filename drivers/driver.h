#pragma once
// The driver contract. A DriverFactory per backend is registered by name; it
// declares its flags and capabilities as data and makes one Driver per machine.
// Drivers never include CLI11: cli/ turns FlagSpecs into options.
#include <atomic>
#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/secrets.h"

namespace berth {

enum class MachineState { Running, Stopped, Starting, Stopping, Paused, Error, Timeout, NotFound, Unknown };

std::string to_string(MachineState s);

struct FlagSpec {
  enum class Kind { String, Int, Bool, StringList };
  std::string name;           // without leading dashes, e.g. "generic-ip-address"
  std::string help;
  Kind kind = Kind::String;
  std::string default_value;  // as text; "" for none
  std::string env_var;        // read when the flag is not given
  bool secret = false;        // never stored in clear, never printed
};

// The values the user gave (or the defaults/env vars), keyed by FlagSpec::name.
class FlagValues {
 public:
  void set(const std::string& name, std::vector<std::string> values) { values_[name] = std::move(values); }
  bool has(const std::string& name) const;
  std::string get(const std::string& name, const std::string& fallback = "") const;
  int get_int(const std::string& name, int fallback) const;  // throws UserError on junk
  bool get_bool(const std::string& name) const;
  std::vector<std::string> get_list(const std::string& name) const;

 private:
  std::map<std::string, std::vector<std::string>> values_;
};

struct Capabilities {
  bool can_start = false;
  bool can_stop = false;
  bool can_kill = false;
  bool can_restart = false;   // falls back to stop+start when only those exist
  bool has_ssh = true;        // false: berth cannot provision (driver "none")
  // true: remove() destroys the host with everything on it (VMs, cloud servers).
  // false: the host outlives the machine (generic), so rm uninstalls the agent.
  bool remove_destroys_host = true;
};

struct SshEndpoint {
  std::string host;
  int port = 22;
  std::string user;
  std::filesystem::path key_path;
};

// Lets long operations notice Ctrl-C / SIGTERM and stop at a safe point.
struct CancelToken {
  std::atomic<bool>* flag = nullptr;
  bool cancelled() const { return flag && flag->load(); }
  void throw_if_cancelled() const;  // throws berth::Interrupted
};

// A machine's NIC on its cluster's private segment (local VMs: the cluster's
// VDE switch). The address inside is berth's business, not the driver's.
struct ClusterLink {
  std::filesystem::path vde_socket;  // the switch's socket directory
  std::string mac;
};

struct DriverContext {
  std::string machine_name;
  std::filesystem::path machine_dir;   // 0700, owned by this machine
  CancelToken cancel;
  int engine_port = 2376;  // where the agent listens on the host (--engine-port)
  const SecretSealer* secrets = nullptr;
  // Stores driver_state now, mid-create, so a killed create leaves a record
  // that `berth rm` can clean up from (cloud ids as soon as they exist).
  std::function<void(const nlohmann::json& driver_state)> checkpoint = {};
  bool quiet = false;   // no progress output
  // Names the step a long operation has reached ("" ends it); create shows each
  // from its start while it runs, then its time (cli::Steps).
  std::function<void(std::string_view)> step = {};
  // Set when the machine joins a cluster: a driver that makes VMs gives them
  // a second NIC on the segment; others ignore it (their hosts already reach
  // each other).
  std::optional<ClusterLink> cluster_link = std::nullopt;
};

// One machine's backend. Contracts:
// - create() makes the machine and leaves it running; on failure it undoes what
//   it made before rethrowing. It may be called on a fresh Driver only.
// - remove() deletes everything the driver made; removing what is already gone succeeds.
// - state() never throws for an unreachable machine: it returns Error/Stopped/Timeout.
// - Methods are not thread-safe; one Driver per thread.
class Driver {
 public:
  virtual ~Driver() = default;
  virtual void pre_create_check() {}           // throws PreCreateCheckFailed
  virtual void create() = 0;
  virtual void start() = 0;
  virtual void stop() = 0;
  virtual void restart() = 0;
  virtual void kill() = 0;
  virtual void remove() = 0;
  virtual MachineState state(std::chrono::milliseconds timeout) = 0;
  virtual std::optional<SshEndpoint> ssh_endpoint() const = 0;
  virtual std::string ip() const = 0;          // host or IP the agent is reached at
  // The docker endpoint; for agent-provisioned drivers tcp://ip:port.
  virtual std::string url(int agent_port) const = 0;
  virtual nlohmann::json save_state() const = 0;   // stored as driver_state
  // Optional: 127.0.0.1:port on this computer forwarded natively (a QEMU
  // hostfwd, a VirtualBox NAT rule) to the same port on the machine's own
  // address, which is cheaper than SSH. Returns "" once it is in place, else why not; the port forwarder
  // then carries the port over SSH.
  virtual std::string add_port_forward(int port) {
    (void)port;
    return "the driver has no native port forwarding";
  }
  virtual void remove_port_forward(int port) { (void)port; }
};

class DriverFactory {
 public:
  virtual ~DriverFactory() = default;
  virtual std::string name() const = 0;
  virtual std::string description() const = 0;
  virtual std::vector<FlagSpec> flags() const = 0;
  virtual Capabilities capabilities() const = 0;
  // A new machine from the flags; throws UserError for bad flags.
  virtual std::unique_ptr<Driver> make(const FlagValues& flags, const DriverContext& ctx) const = 0;
  // An existing machine from its stored driver_state.
  virtual std::unique_ptr<Driver> load(const nlohmann::json& state, const DriverContext& ctx) const = 0;
};

class DriverRegistry {
 public:
  void add(std::unique_ptr<DriverFactory> factory);
  const DriverFactory* find(const std::string& name) const;
  const DriverFactory& get(const std::string& name) const;  // throws UserError listing the known ones
  std::vector<const DriverFactory*> all() const;

 private:
  std::vector<std::unique_ptr<DriverFactory>> factories_;
};

// Runs a pre_create_check() body: a berth::Error it throws (but Interrupted)
// becomes PreCreateCheckFailed, so the CLI exits 3.
void run_pre_create_check(const std::function<void()>& body);

// Every driver this build has. The composition root calls it once.
DriverRegistry make_default_registry();

}  // namespace berth
