#pragma once
// The machine record: everything berth knows about one machine, stored as
// machines/NAME/config.json (versioned JSON; see core/migrations.cpp).
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace berth {

inline constexpr int kMachineSchemaVersion = 1;

struct EngineOptions {
  std::vector<std::string> labels;               // key=value
  std::vector<std::string> env;                  // KEY=value
  std::vector<std::string> opts;                 // flag=value, passed to the agent
  std::vector<std::string> insecure_registries;
  std::vector<std::string> registry_mirrors;
  int port = 2376;
};

struct TlsConfig {
  std::string key_type = "ecdsa";                // ecdsa | rsa
  std::vector<std::string> extra_sans;           // --tls-san
  // Absolute paths. ca/client live in machines/NAME/ as copies for DOCKER_CERT_PATH.
  std::string ca_cert;
  std::string client_cert;
  std::string client_key;
  std::string server_cert;
  std::string server_key;
  std::vector<std::string> server_sans;          // what the current server cert covers
};

struct SshConfig {
  std::string host;
  int port = 22;
  std::string user;
  std::string key_path;                          // private key, 0600
  std::string host_key_fingerprint;              // "SHA256:..." pinned at first contact
};

// Who serves the Engine API on the machine.
inline constexpr const char* kEngineBerthAgent = "berth-agent";   // berth installed its agent
inline constexpr const char* kEngineDockerd = "dockerd";          // a host taken over from docker-machine

// Where an engine host came from, and what differs from its driver's defaults.
struct ImportOrigin {
  std::string tool;        // "docker-machine"; empty: not imported
  std::string path;        // its machines/NAME directory
  std::string driver;      // its DriverName
  std::string ssh_user;    // when set, used instead of the driver's SSH user
  int ssh_port = 0;        // when set, used instead of the driver's SSH port
  std::string ssh_key;     // when set (absolute), used instead of the driver's SSH key
  std::string docker_url;  // when set, the engine URL instead of the driver's url()
};

struct MachineRecord {
  int schema_version = kMachineSchemaVersion;
  std::string name;
  std::string driver;
  nlohmann::json driver_state = nlohmann::json::object();
  EngineOptions engine;
  TlsConfig tls;
  SshConfig ssh;
  std::string created_at;                        // RFC 3339 UTC
  // "creating" until create finishes; "ready" after. A "creating" record that no
  // process holds the lock for is the remains of an interrupted create.
  std::string phase = "creating";
  std::string agent_host;                        // host/IP the agent is reached at
  std::string agent_version;
  // "berth-agent" (a missing field too) or "dockerd": berth never installs,
  // upgrades or uninstalls its agent on a dockerd engine host.
  std::string engine_kind = kEngineBerthAgent;
  ImportOrigin imported_from;
  // The berth cluster the machine belongs to ("" for none) and the agent.json
  // "cluster" section installed for it.
  std::string cluster;
  nlohmann::json cluster_agent_config = nullptr;
};

inline bool is_engine_host(const MachineRecord& r) { return r.engine_kind == kEngineDockerd; }

void to_json(nlohmann::json& j, const EngineOptions& v);
void from_json(const nlohmann::json& j, EngineOptions& v);
void to_json(nlohmann::json& j, const TlsConfig& v);
void from_json(const nlohmann::json& j, TlsConfig& v);
void to_json(nlohmann::json& j, const SshConfig& v);
void from_json(const nlohmann::json& j, SshConfig& v);
void to_json(nlohmann::json& j, const ImportOrigin& v);
void from_json(const nlohmann::json& j, ImportOrigin& v);
void to_json(nlohmann::json& j, const MachineRecord& v);
void from_json(const nlohmann::json& j, MachineRecord& v);

// Upgrades an older config.json document in place to kMachineSchemaVersion.
// Throws berth::Error for a version newer than this berth knows.
void migrate_machine_json(nlohmann::json& j);

// A machine name is the common name of its server certificate, which X.509 caps at 64.
constexpr size_t kMaxMachineNameLength = 64;
bool is_valid_machine_name(const std::string& name);
// Why `name` is not a valid machine name; empty when it is.
std::string machine_name_problem(const std::string& name);

std::string now_rfc3339();

}  // namespace berth
