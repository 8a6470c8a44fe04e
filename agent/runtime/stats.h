#pragma once
// docker stats: one sample of a container's resource use in dockerd's shape
// (its statsV2 for cgroup v2), read from the container's cgroup directory,
// the host's /proc/stat and the container's own network namespace
// (/proc/<pid>/net/dev). Every path is a parameter, so tests use fixtures.
#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

namespace berth::agent::runtime {

// The host's CPU time as dockerd's getSystemCPUUsage reads it: the "cpu"
// line's first seven fields (user..softirq) in nanoseconds at USER_HZ, and
// the number of "cpuN" lines. nullopt when the file cannot be read.
struct SystemCpu {
  std::uint64_t usage_ns = 0;
  std::uint32_t online = 0;
};
std::optional<SystemCpu> read_system_cpu(const std::filesystem::path& proc_stat = "/proc/stat");

// MemTotal from /proc/meminfo in bytes (0 when unknown): the memory limit
// dockerd reports for a container without one.
std::uint64_t read_machine_memory(const std::filesystem::path& meminfo = "/proc/meminfo");

// What one sample of a running container reads.
struct StatsSource {
  std::string id;
  std::string name;                  // "/x"
  std::filesystem::path cgroup_dir;  // <cgroup root>/berth/<id>
  std::filesystem::path net_dev;     // /proc/<pid>/net/dev; empty: no network of its own
};

// One sample: read, pids_stats, blkio_stats (io.stat as
// io_service_bytes_recursive), num_procs, storage_stats, cpu_stats (cpu.stat
// plus the host's usage and CPUs), memory_stats (memory.current as usage, the
// memory.stat fields dockerd reports, memory.max capped at the machine's
// memory as limit, the OOM count as failcnt), name, id and networks (per
// interface but lo). The client subtracts stats.inactive_file from usage.
// precpu_stats and preread are empty; StatsChain fills them.
nlohmann::json read_stats(const StatsSource& source, const SystemCpu& system,
                          std::uint64_t machine_memory, std::int64_t read_nanos);

// dockerd's sample of a container that is not running: zeros, name and id.
nlohmann::json empty_stats(const std::string& id, const std::string& name);

// Links samples as dockerd's stream does: each one's precpu_stats and preread
// are the previous sample's cpu_stats and read (empty for the first).
class StatsChain {
 public:
  nlohmann::json link(nlohmann::json sample);

 private:
  std::optional<nlohmann::json> previous_cpu_;
  std::string previous_read_;
};

// dockerd's value for an unlimited cgroup file ("max").
inline constexpr std::uint64_t kUnlimited = ~std::uint64_t{0};

}  // namespace berth::agent::runtime
