#include "agent/runtime/update.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>
#include <set>
#include <stdexcept>
#include <thread>

#include "agent/api/http.h"
#include "agent/runtime/fd.h"
#include "agent/runtime/restart_policy.h"

namespace berth::agent::runtime {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using api::HttpError;

constexpr std::int64_t kMinMemory = 6 * 1024 * 1024;

const char* json_type(const json& v) {
  if (v.is_string()) return "string";
  if (v.is_boolean()) return "bool";
  if (v.is_array()) return "array";
  if (v.is_object()) return "object";
  return "number";
}

HttpError type_error(const std::string& key, const json& v, const char* go_type) {
  std::string what = json_type(v);
  if (v.is_number()) what += " " + v.dump();
  return HttpError(400, "invalid JSON: json: cannot unmarshal " + what +
                            " into Go struct field UpdateConfig." + key + " of type " + go_type);
}

// The request's fields with Go's types, as dockerd's decoder checks them.
void check_types(const json& req) {
  for (const char* key : {"CpuShares", "Memory", "NanoCpus", "CpuPeriod", "CpuQuota",
                          "CpuRealtimePeriod", "CpuRealtimeRuntime", "KernelMemory",
                          "KernelMemoryTCP", "MemoryReservation", "MemorySwap", "CpuCount",
                          "CpuPercent", "PidsLimit", "MemorySwappiness"}) {
    auto it = req.find(key);
    if (it != req.end() && !it->is_null() && !it->is_number_integer()) throw type_error(key, *it, "int64");
  }
  auto unsigned_up_to = [](const json& v, std::uint64_t max) {
    if (v.is_number_unsigned()) return v.get<std::uint64_t>() <= max;
    return v.is_number_integer() && v.get<std::int64_t>() >= 0 &&
           static_cast<std::uint64_t>(v.get<std::int64_t>()) <= max;
  };
  for (const char* key : {"IOMaximumIOps", "IOMaximumBandwidth"}) {
    auto it = req.find(key);
    if (it != req.end() && !it->is_null() && !unsigned_up_to(*it, ~std::uint64_t{0}))
      throw type_error(key, *it, "uint64");
  }
  if (auto it = req.find("BlkioWeight"); it != req.end() && !it->is_null() && !unsigned_up_to(*it, 65535))
    throw type_error("BlkioWeight", *it, "uint16");
  for (const char* key : {"CgroupParent", "CpusetCpus", "CpusetMems"}) {
    auto it = req.find(key);
    if (it != req.end() && !it->is_null() && !it->is_string()) throw type_error(key, *it, "string");
  }
  for (const char* key : {"OomKillDisable", "Init"}) {
    auto it = req.find(key);
    if (it != req.end() && !it->is_null() && !it->is_boolean()) throw type_error(key, *it, "bool");
  }
  if (auto rp = req.find("RestartPolicy"); rp != req.end() && !rp->is_null()) {
    if (!rp->is_object()) throw type_error("RestartPolicy", *rp, "container.RestartPolicy");
    if (auto n = rp->find("Name"); n != rp->end() && !n->is_null() && !n->is_string())
      throw type_error("RestartPolicy.Name", *n, "container.RestartPolicyMode");
    if (auto m = rp->find("MaximumRetryCount"); m != rp->end() && !m->is_null() && !m->is_number_integer())
      throw type_error("RestartPolicy.MaximumRetryCount", *m, "int");
  }
}

std::int64_t int_of(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_number_integer() ? it->get<std::int64_t>() : 0;
}

std::string string_of(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : "";
}

// A /sys list file ("0-3\n"), or `fallback`.
std::string sys_list(const fs::path& file, const std::string& fallback) {
  auto text = read_file(file);
  if (!text) return fallback;
  std::string s = *text;
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s.empty() ? fallback : s;
}

// Checks a cpuset list against what the host has, in dockerd's words.
void check_cpuset(const std::string& requested, const std::string& available, const char* what,
                  const char* plural) {
  if (requested.empty()) return;
  auto want = parse_cpu_list(requested);
  if (!want)
    throw HttpError(400, std::string("Invalid value ") + requested + " for cpuset " + what +
                             ": invalid format: " + requested);
  auto have = parse_cpu_list(available).value_or(std::vector<int>{});
  std::set<int> have_set(have.begin(), have.end());
  for (int n : *want)
    if (!have_set.count(n))
      throw HttpError(400, std::string("Requested ") + plural + " are not available - requested " +
                               requested + ", available: " + available);
}

HttpError conflict(const std::string& id, const std::string& msg) {
  return HttpError(409, "Cannot update container " + id + ": " + msg);
}

}  // namespace

HostResources HostResources::probe() {
  HostResources h;
  h.ncpu = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  h.cpus = sys_list("/sys/devices/system/cpu/online", "0-" + std::to_string(h.ncpu - 1));
  h.mems = sys_list("/sys/devices/system/node/online", "0");
  return h;
}

std::optional<std::vector<int>> parse_cpu_list(const std::string& list) {
  std::vector<int> out;
  if (list.empty()) return out;
  std::size_t start = 0;
  for (;;) {
    auto comma = list.find(',', start);
    std::string part = list.substr(start, comma - start);
    auto dash = part.find('-');
    auto number = [](const std::string& s) -> std::optional<int> {
      if (s.empty() || s.size() > 6 || s.find_first_not_of("0123456789") != std::string::npos)
        return std::nullopt;
      return std::stoi(s);
    };
    auto first = number(part.substr(0, dash));
    auto last = dash == std::string::npos ? first : number(part.substr(dash + 1));
    if (!first || !last || *last < *first) return std::nullopt;
    for (int n = *first; n <= *last; ++n) out.push_back(n);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

UpdatePlan plan_update(const std::string& id, const json& stored, const json& req_in,
                       const HostResources& host) {
  if (!req_in.is_object() && !req_in.is_null()) throw HttpError(400, "invalid JSON: expected an object");
  const json req = req_in.is_object() ? req_in : json::object();
  check_types(req);
  UpdatePlan plan;
  plan.host_config = stored.is_object() ? stored : json::object();
  json& hc = plan.host_config;

  // --- the request on its own (verifyPlatformContainerResources, update=true) ---
  const std::int64_t memory = int_of(req, "Memory"), swap = int_of(req, "MemorySwap");
  const std::int64_t reservation = int_of(req, "MemoryReservation");
  const std::int64_t nano = int_of(req, "NanoCpus"), period = int_of(req, "CpuPeriod");
  const std::int64_t quota = int_of(req, "CpuQuota"), shares = int_of(req, "CpuShares");
  std::int64_t blkio = int_of(req, "BlkioWeight");
  const std::string cpus = string_of(req, "CpusetCpus"), mems = string_of(req, "CpusetMems");
  if (memory != 0 && memory < kMinMemory) throw HttpError(400, "Minimum memory limit allowed is 6MB");
  if (memory > 0 && swap > 0 && swap < memory)
    throw HttpError(400, "Minimum memoryswap limit should be larger than memory limit, see usage");
  if (reservation > 0 && reservation < kMinMemory)
    throw HttpError(400, "Minimum memory reservation allowed is 6MB");
  if (memory > 0 && reservation > 0 && memory < reservation)
    throw HttpError(400, "Minimum memory limit can not be less than memory reservation limit, see usage");
  if (auto s = req.find("MemorySwappiness"); s != req.end() && s->is_number_integer() && s->get<int>() != -1)
    plan.warnings.push_back(
        "Your kernel does not support memory swappiness capabilities or the cgroup is not mounted. "
        "Memory swappiness discarded.");
  if (nano > 0 && period > 0)
    throw HttpError(400, "Conflicting options: Nano CPUs and CPU Period cannot both be set");
  if (nano > 0 && quota > 0)
    throw HttpError(400, "Conflicting options: Nano CPUs and CPU Quota cannot both be set");
  if (nano < 0 || nano > static_cast<std::int64_t>(host.ncpu) * 1'000'000'000)
    throw HttpError(400, "Range of CPUs is from 0.01 to " + std::to_string(host.ncpu) +
                             ".00, as there are only " + std::to_string(host.ncpu) + " CPUs available");
  if (period != 0 && (period < 1000 || period > 1'000'000))
    throw HttpError(400, "CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)");
  if (quota > 0 && quota < 1000) throw HttpError(400, "CPU cfs quota can not be less than 1ms (i.e. 1000)");
  check_cpuset(cpus, host.cpus, "cpus", "CPUs");
  check_cpuset(mems, host.mems, "mems", "memory nodes");
  if (blkio > 0 && !host.blkio_weight) {
    plan.warnings.push_back(
        "Your kernel does not support Block I/O weight or the cgroup is not mounted. Weight discarded.");
    blkio = 0;
  }
  if (blkio > 0 && (blkio < 10 || blkio > 1000)) throw HttpError(400, "Range of blkio weight is from 10 to 1000");
  RestartPolicy policy = RestartPolicy::from_json(req);  // 400 for an invalid one

  // --- against what is set (Container.UpdateContainer) ---
  if (nano > 0 && int_of(hc, "CpuPeriod") > 0)
    throw conflict(id, "Conflicting options: Nano CPUs cannot be updated as CPU Period has already been set");
  if (nano > 0 && int_of(hc, "CpuQuota") > 0)
    throw conflict(id, "Conflicting options: Nano CPUs cannot be updated as CPU Quota has already been set");
  if (period > 0 && int_of(hc, "NanoCpus") > 0)
    throw conflict(id, "Conflicting options: CPU Period cannot be updated as NanoCPUs has already been set");
  if (quota > 0 && int_of(hc, "NanoCpus") > 0)
    throw conflict(id, "Conflicting options: CPU Quota cannot be updated as NanoCPUs has already been set");
  // dockerd stores twice the memory as MemorySwap when only -m was given.
  if (int_of(hc, "Memory") > 0 && int_of(hc, "MemorySwap") == 0) hc["MemorySwap"] = 2 * int_of(hc, "Memory");
  if (blkio != 0) hc["BlkioWeight"] = blkio;
  if (shares != 0) hc["CpuShares"] = shares;
  if (nano != 0) hc["NanoCpus"] = nano;
  if (period != 0) hc["CpuPeriod"] = period;
  if (quota != 0) hc["CpuQuota"] = quota;
  if (!cpus.empty()) hc["CpusetCpus"] = cpus;
  if (!mems.empty()) hc["CpusetMems"] = mems;
  if (memory != 0) {
    if (memory > int_of(hc, "MemorySwap") && swap == 0)
      throw conflict(id, "Memory limit should be smaller than already set memoryswap limit, update the "
                         "memoryswap at the same time");
    hc["Memory"] = memory;
  }
  if (swap != 0) hc["MemorySwap"] = swap;
  if (reservation != 0) hc["MemoryReservation"] = reservation;
  for (const char* key : {"CpuRealtimePeriod", "CpuRealtimeRuntime"})
    if (int_of(req, key) != 0) hc[key] = int_of(req, key);
  if (auto p = req.find("PidsLimit"); p != req.end() && p->is_number_integer())
    hc["PidsLimit"] = std::max<std::int64_t>(p->get<std::int64_t>(), 0);  // 0 and -1: unlimited
  if (!policy.name.empty()) {
    if (hc.value("AutoRemove", false) && !policy.is_none())
      throw conflict(id, "Restart policy cannot be updated because AutoRemove is enabled for the container");
    hc["RestartPolicy"] = {{"Name", policy.name}, {"MaximumRetryCount", policy.max_retries}};
  }
  return plan;
}

std::vector<CgroupWrite> cgroup_writes(const json& hc, const json& req, const fs::path& dir) {
  std::vector<CgroupWrite> out;
  auto set = [&](const char* key) { return int_of(req, key) != 0; };
  if (set("Memory") || set("MemorySwap")) {
    const std::int64_t memory = int_of(hc, "Memory"), swap = int_of(hc, "MemorySwap");
    out.push_back({"memory.max", memory > 0 ? std::to_string(memory) : "max"});
    if (swap == -1) out.push_back({"memory.swap.max", "max"});
    else if (swap > 0 && memory > 0) out.push_back({"memory.swap.max", std::to_string(swap - memory)});
  }
  if (set("MemoryReservation"))
    out.push_back({"memory.low", std::to_string(int_of(hc, "MemoryReservation"))});
  if (set("NanoCpus") || set("CpuQuota") || set("CpuPeriod")) {
    std::string quota = "max";
    std::int64_t period = 100000;
    if (std::int64_t nano = int_of(hc, "NanoCpus"); nano > 0) {
      quota = std::to_string(nano / 10000);  // nano * period / 1e9
    } else {
      if (std::int64_t q = int_of(hc, "CpuQuota"); q > 0) quota = std::to_string(q);
      if (std::int64_t p = int_of(hc, "CpuPeriod"); p > 0) period = p;
    }
    out.push_back({"cpu.max", quota + " " + std::to_string(period)});
  }
  if (set("CpuShares"))
    out.push_back({"cpu.weight", std::to_string(cpu_shares_to_weight(
                                     static_cast<std::uint64_t>(std::max<std::int64_t>(int_of(hc, "CpuShares"), 0))))});
  if (!string_of(req, "CpusetCpus").empty()) out.push_back({"cpuset.cpus", string_of(hc, "CpusetCpus")});
  if (!string_of(req, "CpusetMems").empty()) out.push_back({"cpuset.mems", string_of(hc, "CpusetMems")});
  if (auto p = req.find("PidsLimit"); p != req.end() && p->is_number_integer()) {
    std::int64_t limit = int_of(hc, "PidsLimit");
    out.push_back({"pids.max", limit > 0 ? std::to_string(limit) : "max"});
  }
  if (std::int64_t w = int_of(hc, "BlkioWeight"); set("BlkioWeight") && w > 0) {
    std::error_code ec;
    if (fs::exists(dir / "io.bfq.weight", ec))
      out.push_back({"io.bfq.weight", std::to_string(w)});
    else
      out.push_back({"io.weight", std::to_string(blkio_weight_to_io_weight(static_cast<std::uint64_t>(w)))});
  }
  return out;
}

void apply_cgroup_writes(const fs::path& dir, const std::vector<CgroupWrite>& writes) {
  for (const CgroupWrite& w : writes) {
    const fs::path file = dir / w.file;
    UniqueFd fd(::open(file.c_str(), O_WRONLY | O_TRUNC | O_CLOEXEC));
    if (!fd || !write_all(fd.get(), w.value))
      throw std::runtime_error("failed to write " + w.value + " to " + file.string() + ": " +
                               std::strerror(errno));
  }
}

std::uint64_t cpu_shares_to_weight(std::uint64_t shares) {
  if (shares == 0) return 0;
  shares = std::clamp<std::uint64_t>(shares, 2, 262144);
  return 1 + ((shares - 2) * 9999) / 262142;
}

std::uint64_t blkio_weight_to_io_weight(std::uint64_t weight) {
  if (weight == 0) return 0;
  weight = std::clamp<std::uint64_t>(weight, 10, 1000);
  return 1 + (weight - 10) * 9999 / 990;
}

}  // namespace berth::agent::runtime
