#pragma once
// Facts about the host that /version and /info report. SystemInfoProvider is
// the seam: HostSystemInfo reads the real machine, tests inject fixed facts.
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

namespace berth::agent {

struct CgroupSupport {
  bool memory_limit = false;
  bool swap_limit = false;
  bool kernel_memory_tcp = false;
  bool cpu_cfs_period = false;
  bool cpu_cfs_quota = false;
  bool cpu_shares = false;
  bool cpuset = false;
  bool pids_limit = false;
  bool oom_kill_disable = false;
};

struct HostFacts {
  std::string engine_id;  // stable across restarts (data_root/engine-id)
  std::string hostname;
  std::string kernel_version;    // uname -r
  std::string machine;           // uname -m: x86_64, aarch64, ...
  std::string operating_system;  // PRETTY_NAME from os-release
  std::string os_version;        // VERSION_ID from os-release
  int ncpu = 0;
  std::int64_t mem_total = 0;  // bytes
  std::string cgroup_version;  // "1" | "2"
  CgroupSupport cgroups;
  bool ipv4_forwarding = false;
  bool bridge_nf_iptables = false;
  bool bridge_nf_ip6tables = false;
  int open_fds = 0;         // of this process
  std::string system_time;  // RFC 3339 with nanoseconds, local offset
  std::string http_proxy;   // from the environment, user:password masked
  std::string https_proxy;
  std::string no_proxy;
};

class SystemInfoProvider {
 public:
  virtual ~SystemInfoProvider() = default;
  // Called per request; cheap enough for that (a few small /proc reads).
  virtual HostFacts facts() const = 0;
};

class HostSystemInfo : public SystemInfoProvider {
 public:
  // Creates data_root (0700) and the engine ID file when missing; throws
  // berth::UserError naming the path when it cannot. `root` prefixes the
  // /etc, /proc and /sys paths read (tests point it at a fake tree).
  explicit HostSystemInfo(const std::filesystem::path& data_root, std::filesystem::path root = "/");
  HostFacts facts() const override;

 private:
  std::filesystem::path root_;
  std::string engine_id_;
};

// The engine ID in data_root/engine-id, a random UUID made on first use.
std::string load_or_create_engine_id(const std::filesystem::path& data_root);

// (PRETTY_NAME, VERSION_ID) from os-release text; unquotes values.
std::pair<std::string, std::string> parse_os_release(std::string_view text);

// MemTotal in bytes from /proc/meminfo text; 0 when absent.
std::int64_t parse_meminfo_total(std::string_view text);

// Go's GOARCH for a uname machine name: x86_64 -> amd64, aarch64 -> arm64, ...
std::string goarch(std::string_view machine);

// "http://user:pw@proxy:3128" -> "http://xxxxx:xxxxx@proxy:3128" (as dockerd shows it).
std::string mask_proxy_credentials(std::string_view url);

}  // namespace berth::agent
