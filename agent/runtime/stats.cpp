#include "agent/runtime/stats.h"

#include <unistd.h>

#include <charconv>
#include <map>
#include <sstream>

#include "agent/runtime/fd.h"
#include "agent/runtime/json_log.h"

namespace berth::agent::runtime {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

std::uint64_t to_u64(std::string_view s) {
  std::uint64_t v = 0;
  std::from_chars(s.data(), s.data() + s.size(), v);
  return v;
}

// A single-value cgroup file: a number, or "max" (kUnlimited); 0 when absent.
std::uint64_t read_value(const fs::path& file) {
  auto text = read_file(file);
  if (!text) return 0;
  std::string s = *text;
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s == "max" ? kUnlimited : to_u64(s);
}

// "key value" lines (cpu.stat, memory.stat, memory.events).
std::map<std::string, std::uint64_t> read_flat_keyed(const fs::path& file) {
  std::map<std::string, std::uint64_t> out;
  auto text = read_file(file);
  if (!text) return out;
  std::istringstream in(*text);
  std::string key, value;
  while (in >> key >> value) out[key] = to_u64(value);
  return out;
}

std::uint64_t get(const std::map<std::string, std::uint64_t>& m, const std::string& key) {
  auto it = m.find(key);
  return it == m.end() ? 0 : it->second;
}

json zero_cpu_stats() {
  return {{"cpu_usage", {{"total_usage", 0}, {"usage_in_kernelmode", 0}, {"usage_in_usermode", 0}}},
          {"throttling_data", {{"periods", 0}, {"throttled_periods", 0}, {"throttled_time", 0}}}};
}

json empty_blkio() {
  json b = json::object();
  for (const char* k : {"io_service_bytes_recursive", "io_serviced_recursive", "io_queue_recursive",
                        "io_service_time_recursive", "io_wait_time_recursive", "io_merged_recursive",
                        "io_time_recursive", "sectors_recursive"})
    b[k] = nullptr;
  return b;
}

// io.stat: "8:0 rbytes=1 wbytes=2 rios=3 ..." -> read and write entries per device.
json io_service_bytes(const fs::path& file) {
  auto text = read_file(file);
  json out = json::array();
  if (!text) return nullptr;
  std::istringstream lines(*text);
  std::string line;
  while (std::getline(lines, line)) {
    std::istringstream fields(line);
    std::string device, kv;
    if (!(fields >> device)) continue;
    auto colon = device.find(':');
    if (colon == std::string::npos) continue;
    std::uint64_t major = to_u64(device.substr(0, colon)), minor = to_u64(device.substr(colon + 1));
    std::uint64_t rbytes = 0, wbytes = 0;
    while (fields >> kv) {
      auto eq = kv.find('=');
      if (eq == std::string::npos) continue;
      if (kv.compare(0, eq, "rbytes") == 0) rbytes = to_u64(kv.substr(eq + 1));
      if (kv.compare(0, eq, "wbytes") == 0) wbytes = to_u64(kv.substr(eq + 1));
    }
    out.push_back({{"major", major}, {"minor", minor}, {"op", "read"}, {"value", rbytes}});
    out.push_back({{"major", major}, {"minor", minor}, {"op", "write"}, {"value", wbytes}});
  }
  return out.empty() ? json(nullptr) : out;
}

// /proc/<pid>/net/dev: counters per interface, lo left out as dockerd does.
json network_stats(const fs::path& net_dev) {
  json out = json::object();
  auto text = read_file(net_dev);
  if (!text) return out;
  std::istringstream lines(*text);
  std::string line;
  while (std::getline(lines, line)) {
    auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string name = line.substr(0, colon);
    name.erase(0, name.find_first_not_of(' '));
    if (name.empty() || name == "lo" || name.find('|') != std::string::npos) continue;
    std::istringstream fields(line.substr(colon + 1));
    std::uint64_t f[16] = {};
    for (auto& v : f) fields >> v;
    out[name] = {{"rx_bytes", f[0]},  {"rx_packets", f[1]}, {"rx_errors", f[2]},
                 {"rx_dropped", f[3]}, {"tx_bytes", f[8]},   {"tx_packets", f[9]},
                 {"tx_errors", f[10]}, {"tx_dropped", f[11]}};
  }
  return out;
}

// The memory.stat fields dockerd's statsV2 reports.
constexpr const char* kMemoryStatKeys[] = {
    "anon",           "file",          "kernel_stack",       "slab",
    "sock",           "shmem",         "file_mapped",        "file_dirty",
    "file_writeback", "anon_thp",      "inactive_anon",      "active_anon",
    "inactive_file",  "active_file",   "unevictable",        "slab_reclaimable",
    "slab_unreclaimable", "pgfault",   "pgmajfault",         "workingset_refault",
    "workingset_activate", "workingset_nodereclaim", "pgrefill", "pgscan",
    "pgsteal",        "pgactivate",    "pgdeactivate",       "pglazyfree",
    "pglazyfreed",    "thp_fault_alloc", "thp_collapse_alloc"};

}  // namespace

std::optional<SystemCpu> read_system_cpu(const fs::path& proc_stat) {
  auto text = read_file(proc_stat);
  if (!text) return std::nullopt;
  static const long ticks = [] {
    long t = ::sysconf(_SC_CLK_TCK);
    return t > 0 ? t : 100;
  }();
  SystemCpu cpu;
  std::istringstream lines(*text);
  std::string line;
  bool found = false;
  while (std::getline(lines, line)) {
    if (line.size() < 4 || line.compare(0, 3, "cpu") != 0) break;  // the cpu lines come first
    if (line[3] == ' ') {
      std::istringstream fields(line.substr(3));
      std::uint64_t total = 0, v;
      for (int i = 0; i < 7 && fields >> v; ++i) total += v;
      cpu.usage_ns = total * 1'000'000'000ULL / static_cast<std::uint64_t>(ticks);
      found = true;
    } else if (line[3] >= '0' && line[3] <= '9') {
      ++cpu.online;
    }
  }
  if (!found) return std::nullopt;
  return cpu;
}

std::uint64_t read_machine_memory(const fs::path& meminfo) {
  auto text = read_file(meminfo);
  if (!text) return 0;
  auto pos = text->find("MemTotal:");
  if (pos == std::string::npos) return 0;
  std::istringstream in(text->substr(pos + 9));
  std::uint64_t kib = 0;
  in >> kib;
  return kib * 1024;
}

json read_stats(const StatsSource& s, const SystemCpu& system, std::uint64_t machine_memory,
                std::int64_t read_nanos) {
  std::error_code ec;
  if (!fs::is_directory(s.cgroup_dir, ec)) return empty_stats(s.id, s.name);
  json out = empty_stats(s.id, s.name);
  out["read"] = rfc3339_nano(read_nanos);

  json pids = json::object();
  if (std::uint64_t current = read_value(s.cgroup_dir / "pids.current")) pids["current"] = current;
  if (std::uint64_t limit = read_value(s.cgroup_dir / "pids.max")) pids["limit"] = limit;
  out["pids_stats"] = pids;

  out["blkio_stats"]["io_service_bytes_recursive"] = io_service_bytes(s.cgroup_dir / "io.stat");

  auto cpu = read_flat_keyed(s.cgroup_dir / "cpu.stat");
  json cpu_stats = zero_cpu_stats();
  cpu_stats["cpu_usage"] = {{"total_usage", get(cpu, "usage_usec") * 1000},
                            {"usage_in_kernelmode", get(cpu, "system_usec") * 1000},
                            {"usage_in_usermode", get(cpu, "user_usec") * 1000}};
  cpu_stats["throttling_data"] = {{"periods", get(cpu, "nr_periods")},
                                  {"throttled_periods", get(cpu, "nr_throttled")},
                                  {"throttled_time", get(cpu, "throttled_usec") * 1000}};
  if (system.usage_ns) cpu_stats["system_cpu_usage"] = system.usage_ns;
  if (system.online) cpu_stats["online_cpus"] = system.online;
  out["cpu_stats"] = cpu_stats;

  json memory = json::object();
  auto stat = read_flat_keyed(s.cgroup_dir / "memory.stat");
  json fields = json::object();
  for (const char* key : kMemoryStatKeys) fields[key] = get(stat, key);
  memory["stats"] = fields;
  if (std::uint64_t usage = read_value(s.cgroup_dir / "memory.current")) memory["usage"] = usage;
  std::uint64_t limit = read_value(s.cgroup_dir / "memory.max");
  if (machine_memory > 0 && limit > machine_memory) limit = machine_memory;
  if (limit) memory["limit"] = limit;
  if (std::uint64_t oom = get(read_flat_keyed(s.cgroup_dir / "memory.events"), "oom"))
    memory["failcnt"] = oom;
  out["memory_stats"] = memory;

  if (!s.net_dev.empty()) {
    json networks = network_stats(s.net_dev);
    if (!networks.empty()) out["networks"] = networks;
  }
  return out;
}

json empty_stats(const std::string& id, const std::string& name) {
  return {{"read", kZeroTime},
          {"preread", kZeroTime},
          {"pids_stats", json::object()},
          {"blkio_stats", empty_blkio()},
          {"num_procs", 0},
          {"storage_stats", json::object()},
          {"cpu_stats", zero_cpu_stats()},
          {"precpu_stats", zero_cpu_stats()},
          {"memory_stats", json::object()},
          {"name", name},
          {"id", id}};
}

json StatsChain::link(json sample) {
  sample["precpu_stats"] = previous_cpu_ ? *previous_cpu_ : zero_cpu_stats();
  sample["preread"] = previous_read_.empty() ? std::string(kZeroTime) : previous_read_;
  previous_cpu_ = sample["cpu_stats"];
  previous_read_ = sample.value("read", std::string(kZeroTime));
  return sample;
}

}  // namespace berth::agent::runtime
