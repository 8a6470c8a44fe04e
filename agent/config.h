#pragma once
// /etc/berth/agent.json: where berth-agent listens, its TLS files, and the
// engine options `berth create --engine-*` passed through. Every field is optional.
#include <cstdint>
#include <filesystem>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace berth::agent {

struct TlsPaths {
  std::string ca = "/etc/berth/ca.pem";
  std::string cert = "/etc/berth/server.pem";
  std::string key = "/etc/berth/server-key.pem";
};

// Containers' confinement defaults: "security" in agent.json, or the engine
// options no-new-privileges=BOOL and seccomp-profile=builtin|unconfined|PATH.
struct SecurityDefaults {
  bool no_new_privileges = false;
  std::string seccomp_profile = "builtin";  // or "unconfined", or a profile file (dockerd's format)
};

struct AgentConfig {
  std::string listen = "0.0.0.0";  // an IP address (v4 or v6)
  std::uint16_t port = 2376;       // 0 picks a free port (tests)
  TlsPaths tls;
  std::string log_file = "/var/log/berth-agent.log";
  std::string pid_file = "/run/berth-agent.pid";
  std::string data_root = "/var/lib/berth";
  std::vector<std::string> labels;  // key=value
  std::vector<std::string> env;     // KEY=value, set in the agent's environment
  std::vector<std::string> opts;    // name=value engine options berth-agent does not know
  SecurityDefaults security;
  // "build": {"max_context_bytes": N}: the largest context POST /build takes.
  std::uint64_t build_max_context_bytes = std::uint64_t{4} << 30;
  std::vector<std::string> insecure_registries;
  std::vector<std::string> registry_mirrors;
  // False: the agent makes no bridges, iptables rules, sysctls or DNS servers
  // (containers then only get "host" and "none"). For tests on a build host.
  bool manage_network = true;
};

inline constexpr const char* kDefaultConfigPath = "/etc/berth/agent.json";

// Parses agent.json text; `source` names the file in error messages.
// Throws berth::UserError (one line: file, field, what to fix).
AgentConfig parse_config(std::string_view text, const std::string& source);

// Reads and parses the file; a missing or unreadable file is a UserError too.
AgentConfig load_config(const std::filesystem::path& path);

}  // namespace berth::agent
