#pragma once
// docker run --device, --privileged (the host's devices) and --group-add, as
// dockerd puts them in the OCI spec: linux.devices nodes with the cgroup rules
// that allow them, and process.user.additionalGids.
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

namespace berth::agent::runtime {

// Adds HostConfig.Devices ({PathOnHost, PathInContainer, CgroupPermissions};
// a directory on the host adds every device under it) and, when Privileged,
// every device of `host_dev` (dockerd's HostDevices) to `spec`.
// Throws api::HttpError(400) as dockerd words it for a missing path or bad permissions.
void apply_devices(nlohmann::json& spec, const nlohmann::json& host_config,
                   const std::filesystem::path& host_dev = "/dev");

// Adds HostConfig.GroupAdd (names resolved in the container's /etc/group text,
// or numbers) to process.user.additionalGids. Throws api::HttpError(400)
// "Unable to find group NAME: no matching entries in group file".
void apply_group_add(nlohmann::json& spec, const nlohmann::json& host_config,
                     const std::string& group_file_text);

}  // namespace berth::agent::runtime
