#pragma once
// docker update (POST /containers/{id}/update) as dockerd does it: the
// request's checks (verifyContainerSettings), its merge into the stored
// HostConfig (Container.UpdateContainer), and the cgroup v2 files that apply
// it to a running container (what runc/crun update write). Pure but for
// apply_cgroup_writes.
#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace berth::agent::runtime {

// What the host offers, for the range checks.
struct HostResources {
  int ncpu = 1;
  std::string cpus = "0";  // online CPUs, "0-3"
  std::string mems = "0";  // online memory nodes
  bool blkio_weight = true;
  // The machine's, from /sys (cpu and node "online" lists) and hardware_concurrency.
  static HostResources probe();
};

struct UpdatePlan {
  nlohmann::json host_config;         // the stored HostConfig with the update merged in
  std::vector<std::string> warnings;  // the response's Warnings
};

// Checks `request` (the Resources fields and RestartPolicy) and merges it into
// `host_config`. Throws api::HttpError: 400 for a malformed or out-of-range
// value (dockerd's words), 409 "Cannot update container ID: ..." for a
// conflict with what is set.
UpdatePlan plan_update(const std::string& id, const nlohmann::json& host_config,
                       const nlohmann::json& request, const HostResources& host);

struct CgroupWrite {
  std::string file;  // relative to the container's cgroup directory
  std::string value;
};
// The writes that apply the fields `request` sets, with their values from the
// merged `host_config`.
std::vector<CgroupWrite> cgroup_writes(const nlohmann::json& host_config, const nlohmann::json& request,
                                       const std::filesystem::path& cgroup_dir);
// Writes them in order; throws std::runtime_error naming the file that failed.
void apply_cgroup_writes(const std::filesystem::path& cgroup_dir, const std::vector<CgroupWrite>& writes);

// crun's and runc's CpuShares (2..262144) -> cgroup v2 cpu.weight (1..10000).
std::uint64_t cpu_shares_to_weight(std::uint64_t shares);
// BlkioWeight (10..1000) -> io.weight (1..10000), as runc converts it.
std::uint64_t blkio_weight_to_io_weight(std::uint64_t weight);
// "0-2,4" -> the listed numbers; nullopt when malformed.
std::optional<std::vector<int>> parse_cpu_list(const std::string& list);

}  // namespace berth::agent::runtime
