#pragma once
// Provisioning a host over one Remote (one SSH connection): detect the OS and
// init system, install berth-agent with its config and TLS material, run it as
// a service, and undo all of it. Every step is idempotent.
#include <filesystem>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "core/machine.h"
#include "core/remote.h"

namespace berth::provision {

// Fixed locations on the host.
inline constexpr const char* kAgentBinary = "/usr/local/bin/berth-agent";
inline constexpr const char* kConfigDir = "/etc/berth";
inline constexpr const char* kAgentConfig = "/etc/berth/agent.json";
inline constexpr const char* kCaCert = "/etc/berth/ca.pem";
inline constexpr const char* kServerCert = "/etc/berth/server.pem";
inline constexpr const char* kServerKey = "/etc/berth/server-key.pem";
inline constexpr const char* kDataRoot = "/var/lib/berth";
inline constexpr const char* kLogFile = "/var/log/berth-agent.log";
inline constexpr const char* kPidFile = "/run/berth-agent.pid";

struct OsInfo {
  std::string id;            // "debian", "ubuntu", "alpine", ...
  std::string id_like;
  std::string version_id;
  std::string pretty_name;
};
OsInfo parse_os_release(std::string_view text);

enum class InitSystem { Systemd, OpenRC, Supervisor };
std::string to_string(InitSystem s);

struct TlsMaterial {
  std::string ca_pem;
  std::string server_cert_pem;
  std::string server_key_pem;
};

struct AgentInstall {
  std::string hostname;
  std::filesystem::path agent_binary;   // local berth-agent to upload
  TlsMaterial tls;
  EngineOptions engine;
};

// The agent's /etc/berth/agent.json for these engine options.
nlohmann::json make_agent_config(const EngineOptions& engine);

using Progress = std::function<void(std::string_view step)>;

class Provisioner {
 public:
  virtual ~Provisioner() = default;
  virtual OsInfo os() const = 0;
  virtual InitSystem init_system() const = 0;
  // hostname, upload, config, certs, service install + (re)start.
  virtual void install(const AgentInstall& spec, const Progress& progress) = 0;
  // Replace the TLS files and make the running agent reload them (SIGHUP).
  virtual void install_certs(const TlsMaterial& tls) = 0;
  // Upload a new agent binary and restart it.
  virtual void replace_agent(const std::filesystem::path& agent_binary) = 0;
  // berth upgrade: the new agent binary (renamed into place, so shims running
  // the old file keep it), the agent config and service definition this berth
  // writes, then a restart of the agent alone: containers keep running under
  // their shims. The hostname and certificates are left as they are.
  virtual void upgrade_agent(const AgentInstall& spec, const Progress& progress) = 0;
  virtual void start_agent() = 0;
  virtual void stop_agent() = 0;
  // Stop the service and remove the binary, config, certs, service files and pidfile.
  virtual void uninstall() = 0;
};

// Reads /etc/os-release and probes the init system. Throws berth::Error for an
// OS berth does not support, naming it and listing the supported ones.
std::unique_ptr<Provisioner> detect(Remote& remote);

}  // namespace berth::provision
