#pragma once
// Provisioning a host over one Remote (one SSH connection): detect the OS and
// init system, install berth-agent with its config and TLS material, run it as
// a service, and undo all of it. Every step is idempotent.
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
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

// A cluster member's part (berth create --cluster): the address of its NIC on
// the cluster's segment, the cluster's TLS material, the etcd binary (for the
// members that run an etcd voter) and the agent.json "cluster" section.
struct ClusterInstall {
  std::string interface;               // "eth1 192.168.200.11/24"; "" when the host has its address
  TlsMaterial tls;                     // the cluster CA and this member's certificate and key
  std::filesystem::path etcd_binary;   // "" unless the machine runs an etcd voter
  nlohmann::json agent_config;         // agent.json's "cluster" section
};

inline constexpr const char* kClusterDir = "/etc/berth/cluster";
inline constexpr const char* kInterfaces = "/etc/berth/interfaces";
inline constexpr const char* kEtcdBinary = "/usr/local/bin/berth-etcd";

struct AgentInstall {
  std::string hostname;
  std::filesystem::path agent_binary;   // local berth-agent to upload
  TlsMaterial tls;
  EngineOptions engine;
  std::optional<ClusterInstall> cluster = std::nullopt;
};

// The agent's /etc/berth/agent.json for these engine options (and cluster section).
nlohmann::json make_agent_config(const EngineOptions& engine, const nlohmann::json& cluster = nullptr);

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
