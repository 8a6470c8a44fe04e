#pragma once
// /etc/berth/agent.json: where berth-agent listens, its TLS files, and the
// engine options `berth create --engine-*` passed through. Every field is optional.
#include <cstdint>
#include <filesystem>
#include <nlohmann/json_fwd.hpp>
#include <optional>
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

// "cluster" in agent.json: this machine is a member of a berth cluster
// (overlay networks; berth create --cluster NAME writes it). The same
// certificate and key (serverAuth and clientAuth, the advertise IP as a SAN)
// serve etcd's client and peer TLS and the agent as an etcd client.
struct EtcdMemberConfig {
  std::string binary = "/usr/local/lib/berth/etcd";
  std::string data_dir = "/var/lib/berth/etcd";
  // "a=https://192.168.200.11:2380,b=https://192.168.200.12:2380"; must name
  // this machine. Default: this machine alone.
  std::string initial_cluster;
  std::string initial_cluster_state = "new";  // or "existing" (a member added later)
};

struct ClusterConfig {
  std::string name;       // the cluster ("lab"); also etcd's --initial-cluster-token
  std::string machine;    // this member's name (etcd's --name)
  std::string advertise;  // IPv4 on the cluster segment: VXLAN underlay, etcd peer/client address
  std::vector<std::string> etcd_endpoints;  // "https://IP:2379", tried in turn
  TlsPaths tls;                             // ca, cert, key: all required
  std::optional<EtcdMemberConfig> etcd;     // set on machines that run an etcd member
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
  std::optional<ClusterConfig> cluster;  // none: not a cluster member
};

inline constexpr const char* kDefaultConfigPath = "/etc/berth/agent.json";

// Parses agent.json text; `source` names the file in error messages.
// Throws berth::UserError (one line: file, field, what to fix).
AgentConfig parse_config(std::string_view text, const std::string& source);

// Reads and parses the file; a missing or unreadable file is a UserError too.
AgentConfig load_config(const std::filesystem::path& path);

}  // namespace berth::agent
