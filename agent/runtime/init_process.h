#pragma once
// docker run --init: dockerd's docker-init (tini, static, from Debian's tini
// package in berth-os) bound read-only at /sbin/docker-init and run as PID 1
// in front of the container's command: ["/sbin/docker-init", "--", args...].
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <vector>

namespace berth::agent::runtime {

inline constexpr const char* kInitPath = "/sbin/docker-init";

// The first of `candidates` that is an executable file (default: berth-os's
// /usr/bin/docker-init, then Debian's /usr/bin/tini-static and /usr/bin/tini).
std::optional<std::filesystem::path> find_init_binary(
    const std::vector<std::filesystem::path>& candidates = {"/usr/bin/docker-init",
                                                            "/usr/libexec/docker/docker-init",
                                                            "/usr/bin/tini-static",
                                                            "/usr/bin/tini"});

// When HostConfig.Init is true: the mount and the args. Throws
// api::HttpError(500) as dockerd when there is no init binary.
void apply_init(nlohmann::json& spec, const nlohmann::json& host_config,
                const std::optional<std::filesystem::path>& init_binary);

}  // namespace berth::agent::runtime
