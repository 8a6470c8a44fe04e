#include "core/machine.h"

#include <ctime>
#include <algorithm>

#include "core/error.h"

namespace berth {

using nlohmann::json;

namespace {
template <typename T>
void get_opt(const json& j, const char* key, T& out) {
  if (auto it = j.find(key); it != j.end() && !it->is_null()) it->get_to(out);
}
}  // namespace

void to_json(json& j, const EngineOptions& v) {
  j = json{{"labels", v.labels},
           {"env", v.env},
           {"opts", v.opts},
           {"insecure_registries", v.insecure_registries},
           {"registry_mirrors", v.registry_mirrors},
           {"port", v.port}};
}
void from_json(const json& j, EngineOptions& v) {
  get_opt(j, "labels", v.labels);
  get_opt(j, "env", v.env);
  get_opt(j, "opts", v.opts);
  get_opt(j, "insecure_registries", v.insecure_registries);
  get_opt(j, "registry_mirrors", v.registry_mirrors);
  get_opt(j, "port", v.port);
}

void to_json(json& j, const TlsConfig& v) {
  j = json{{"key_type", v.key_type},       {"extra_sans", v.extra_sans},
           {"ca_cert", v.ca_cert},         {"client_cert", v.client_cert},
           {"client_key", v.client_key},   {"server_cert", v.server_cert},
           {"server_key", v.server_key},   {"server_sans", v.server_sans}};
}
void from_json(const json& j, TlsConfig& v) {
  get_opt(j, "key_type", v.key_type);
  get_opt(j, "extra_sans", v.extra_sans);
  get_opt(j, "ca_cert", v.ca_cert);
  get_opt(j, "client_cert", v.client_cert);
  get_opt(j, "client_key", v.client_key);
  get_opt(j, "server_cert", v.server_cert);
  get_opt(j, "server_key", v.server_key);
  get_opt(j, "server_sans", v.server_sans);
}

void to_json(json& j, const SshConfig& v) {
  j = json{{"host", v.host},
           {"port", v.port},
           {"user", v.user},
           {"key_path", v.key_path},
           {"host_key_fingerprint", v.host_key_fingerprint}};
}
void from_json(const json& j, SshConfig& v) {
  get_opt(j, "host", v.host);
  get_opt(j, "port", v.port);
  get_opt(j, "user", v.user);
  get_opt(j, "key_path", v.key_path);
  get_opt(j, "host_key_fingerprint", v.host_key_fingerprint);
}

void to_json(json& j, const ImportOrigin& v) {
  j = json{{"tool", v.tool},         {"path", v.path},       {"driver", v.driver},
           {"ssh_user", v.ssh_user}, {"ssh_port", v.ssh_port}, {"ssh_key", v.ssh_key},
           {"docker_url", v.docker_url}};
}
void from_json(const json& j, ImportOrigin& v) {
  get_opt(j, "tool", v.tool);
  get_opt(j, "path", v.path);
  get_opt(j, "driver", v.driver);
  get_opt(j, "ssh_user", v.ssh_user);
  get_opt(j, "ssh_port", v.ssh_port);
  get_opt(j, "ssh_key", v.ssh_key);
  get_opt(j, "docker_url", v.docker_url);
}

void to_json(json& j, const MachineRecord& v) {
  j = json{{"schema_version", v.schema_version},
           {"name", v.name},
           {"driver", v.driver},
           {"driver_state", v.driver_state},
           {"engine", v.engine},
           {"tls", v.tls},
           {"ssh", v.ssh},
           {"created_at", v.created_at},
           {"phase", v.phase},
           {"agent_host", v.agent_host},
           {"agent_version", v.agent_version},
           {"engine_kind", v.engine_kind}};
  if (!v.imported_from.tool.empty()) j["imported_from"] = v.imported_from;
  if (!v.cluster.empty()) {
    j["cluster"] = v.cluster;
    j["cluster_agent_config"] = v.cluster_agent_config;
  }
}
void from_json(const json& j, MachineRecord& v) {
  get_opt(j, "schema_version", v.schema_version);
  get_opt(j, "name", v.name);
  get_opt(j, "driver", v.driver);
  get_opt(j, "driver_state", v.driver_state);
  get_opt(j, "engine", v.engine);
  get_opt(j, "tls", v.tls);
  get_opt(j, "ssh", v.ssh);
  get_opt(j, "created_at", v.created_at);
  get_opt(j, "phase", v.phase);
  get_opt(j, "agent_host", v.agent_host);
  get_opt(j, "agent_version", v.agent_version);
  get_opt(j, "engine_kind", v.engine_kind);   // missing: a berth-agent machine (older records)
  get_opt(j, "imported_from", v.imported_from);
  get_opt(j, "cluster", v.cluster);
  if (auto it = j.find("cluster_agent_config"); it != j.end()) v.cluster_agent_config = *it;
}

void migrate_machine_json(json& j) {
  if (!j.is_object()) throw Error("not a JSON object");
  int version = j.value("schema_version", 0);
  if (version > kMachineSchemaVersion)
    throw Error("schema_version " + std::to_string(version) +
                " is newer than this berth understands (" +
                std::to_string(kMachineSchemaVersion) + "); upgrade berth");
  // Version 0 (no field) is the pre-release layout: identical apart from the field.
  j["schema_version"] = kMachineSchemaVersion;
}

std::string machine_name_problem(const std::string& name) {
  if (name.empty()) return "a machine name can't be empty";
  if (name.size() > kMaxMachineNameLength)
    return "a machine name can have at most " + std::to_string(kMaxMachineNameLength) + " characters, this one has " +
           std::to_string(name.size());
  auto alnum = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'); };
  // [a-zA-Z0-9][a-zA-Z0-9.-]*, without std::regex (compiling one costs every command ~0.3 ms).
  const bool ok = alnum(name[0]) && std::all_of(name.begin() + 1, name.end(),
                                                 [&](char c) { return alnum(c) || c == '.' || c == '-'; });
  if (!ok) return "use letters, digits, '.' and '-', starting with a letter or digit";
  return "";
}

bool is_valid_machine_name(const std::string& name) { return machine_name_problem(name).empty(); }

std::string now_rfc3339() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

}  // namespace berth
