#pragma once
// Pure helpers behind the container API: names, port specs, the ps status
// text, summaries and filters, as dockerd words and shapes them.
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "agent/network/network_manager.h"

namespace berth::agent::runtime {

// [a-zA-Z0-9][a-zA-Z0-9_.-]+ with an optional leading "/".
bool valid_container_name(const std::string& name);
// "adjective_surname", like dockerd's generator.
std::string random_container_name();
// A new 64-hex id.
std::string new_container_id();
// "busybox" -> "busybox:latest", "docker.io/library/x" -> "x:latest" (for error messages).
std::string familiar_reference(const std::string& ref);

// Checks ExposedPorts and HostConfig.PortBindings; throws api::HttpError(400)
// "invalid port specification: ..." / "invalid proto: ...".
void validate_ports(const nlohmann::json& config, const nlohmann::json& host_config);
// dockerd's resource checks (HostConfig Memory, NanoCpus, CpuQuota, CpuPeriod)
// against a host with `ncpu` CPUs; throws api::HttpError(400) with its words.
void validate_resources(const nlohmann::json& host_config, int ncpu);
// The bindings to publish: PortBindings, plus every ExposedPort with an empty
// host port when PublishAllPorts.
std::vector<network::PortBinding> wanted_port_bindings(const nlohmann::json& config,
                                                       const nlohmann::json& host_config);
// NetworkSettings.Ports: every exposed port, published ones with their bindings.
nlohmann::json ports_map(const nlohmann::json& config,
                         const std::vector<network::PortBinding>& published);
// ContainerSummary.Ports from NetworkSettings.Ports.
nlohmann::json summary_ports(const nlohmann::json& ports_map);

// Go's units.HumanDuration: "Less than a second", "About a minute", "3 hours".
std::string human_duration(std::int64_t seconds);
// "Up 3 minutes", "Up 3 minutes (Paused)", "Exited (1) 2 seconds ago", "Created", ...
std::string status_text(const nlohmann::json& state, std::int64_t now_unix_nanos);
// "sh -c 'echo hi'" as ps shows Path + Args.
std::string command_text(const nlohmann::json& doc);

// ContainerSummary for GET /containers/json from an inspect document.
nlohmann::json container_summary(const nlohmann::json& doc);
// Normalizes {"status":["running"]} and the old {"status":{"running":true}}.
std::map<std::string, std::vector<std::string>> parse_filters(const nlohmann::json& filters);
// Throws api::HttpError(400) "invalid filter 'x'" for an unknown key.
void check_filter_keys(const std::map<std::string, std::vector<std::string>>& f,
                       const std::vector<std::string>& allowed);
// label filters: "key" or "key=value".
bool labels_match(const nlohmann::json& labels, const std::vector<std::string>& wanted);

}  // namespace berth::agent::runtime
