#include "agent/host_info.h"

#include <fcntl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <array>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <sstream>
#include <system_error>

#include "core/error.h"

namespace berth::agent {
namespace fs = std::filesystem;
namespace {

std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return {};
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

std::string trim(std::string_view s) {
  auto begin = s.find_first_not_of(" \t\r\n");
  if (begin == std::string_view::npos) return {};
  auto end = s.find_last_not_of(" \t\r\n");
  return std::string(s.substr(begin, end - begin + 1));
}

std::string random_uuid() {
  std::array<unsigned char, 16> b{};
  if (getrandom(b.data(), b.size(), 0) != static_cast<ssize_t>(b.size())) {
    throw Error(std::string("cannot read random bytes for the engine ID: ") + std::strerror(errno));
  }
  b[6] = static_cast<unsigned char>((b[6] & 0x0f) | 0x40);  // version 4
  b[8] = static_cast<unsigned char>((b[8] & 0x3f) | 0x80);  // RFC 4122 variant
  char out[37];
  std::snprintf(out, sizeof out,
                "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
                b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
                b[15]);
  return out;
}

bool looks_like_uuid(const std::string& s) {
  if (s.size() != 36) return false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash ? s[i] != '-' : !std::isxdigit(static_cast<unsigned char>(s[i]))) return false;
  }
  return true;
}

void make_private_dirs(const fs::path& dir) {
  if (dir.empty() || fs::is_directory(dir)) return;
  make_private_dirs(dir.parent_path());
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    throw UserError("cannot create data_root directory " + dir.string() + ": " +
                    std::strerror(errno) + "; fix \"data_root\" in the config");
  }
}

// temp file + fsync + rename, so a crash never leaves a half-written ID.
void write_atomic(const fs::path& path, const std::string& content) {
  fs::path tmp = path;
  tmp += ".tmp." + std::to_string(::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    throw UserError("cannot write " + tmp.string() + ": " + std::strerror(errno) +
                    "; fix \"data_root\" in the config");
  }
  bool ok = ::write(fd, content.data(), content.size()) == static_cast<ssize_t>(content.size()) &&
            ::fsync(fd) == 0;
  int saved = errno;
  ::close(fd);
  if (!ok || ::rename(tmp.c_str(), path.c_str()) != 0) {
    if (ok) saved = errno;
    ::unlink(tmp.c_str());
    throw UserError("cannot write " + path.string() + ": " + std::strerror(saved));
  }
}

std::string rfc3339_now() {
  using namespace std::chrono;
  auto now = system_clock::now();
  std::time_t secs = system_clock::to_time_t(now);
  long nanos =
      static_cast<long>(duration_cast<nanoseconds>(now.time_since_epoch()).count() % 1000000000);
  std::tm tm{};
  localtime_r(&secs, &tm);
  long off = tm.tm_gmtoff;
  char sign = off < 0 ? '-' : '+';
  off = off < 0 ? -off : off;
  char buf[128];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%09ld%c%02ld:%02ld",
                tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                nanos, sign, off / 3600, (off % 3600) / 60);
  return buf;
}

int count_open_fds() {
  std::error_code ec;
  int n = 0;
  for (fs::directory_iterator it("/proc/self/fd", ec), end; !ec && it != end; it.increment(ec)) ++n;
  return n;
}

std::string env_proxy(const char* upper, const char* lower) {
  const char* v = std::getenv(upper);
  if (v == nullptr || *v == '\0') v = std::getenv(lower);
  return v == nullptr ? "" : mask_proxy_credentials(v);
}

bool file_is_one(const fs::path& path) { return trim(read_text(path)) == "1"; }

}  // namespace

std::string load_or_create_engine_id(const fs::path& data_root) {
  make_private_dirs(data_root);
  fs::path file = data_root / "engine-id";
  std::string id = trim(read_text(file));
  if (looks_like_uuid(id)) return id;
  id = random_uuid();
  write_atomic(file, id + "\n");
  return id;
}

std::pair<std::string, std::string> parse_os_release(std::string_view text) {
  std::string pretty, version;
  std::istringstream in{std::string(text)};
  for (std::string line; std::getline(in, line);) {
    auto eq = line.find('=');
    if (eq == std::string::npos || line.starts_with('#')) continue;
    std::string key = trim(line.substr(0, eq));
    std::string value = trim(line.substr(eq + 1));
    if (value.size() >= 2 && (value.front() == '"' || value.front() == '\'') &&
        value.back() == value.front()) {
      value = value.substr(1, value.size() - 2);
    }
    if (key == "PRETTY_NAME") pretty = value;
    if (key == "VERSION_ID") version = value;
  }
  return {pretty, version};
}

std::int64_t parse_meminfo_total(std::string_view text) {
  std::istringstream in{std::string(text)};
  for (std::string line; std::getline(in, line);) {
    if (!line.starts_with("MemTotal:")) continue;
    long long kib = std::atoll(line.c_str() + std::strlen("MemTotal:"));
    return static_cast<std::int64_t>(kib) * 1024;
  }
  return 0;
}

std::string goarch(std::string_view machine) {
  if (machine == "x86_64") return "amd64";
  if (machine == "aarch64" || machine == "arm64") return "arm64";
  if (machine.starts_with("armv") || machine == "arm") return "arm";
  if (machine == "i386" || machine == "i686") return "386";
  if (machine == "ppc64le") return "ppc64le";
  if (machine == "riscv64") return "riscv64";
  if (machine == "s390x") return "s390x";
  return std::string(machine);
}

std::string mask_proxy_credentials(std::string_view url) {
  auto scheme = url.find("://");
  std::size_t start = scheme == std::string_view::npos ? 0 : scheme + 3;
  auto at = url.find('@', start);
  auto slash = url.find('/', start);
  if (at == std::string_view::npos || (slash != std::string_view::npos && slash < at)) {
    return std::string(url);
  }
  std::string_view userinfo = url.substr(start, at - start);
  std::string masked = userinfo.find(':') == std::string_view::npos ? "xxxxx" : "xxxxx:xxxxx";
  return std::string(url.substr(0, start)) + masked + std::string(url.substr(at));
}

HostSystemInfo::HostSystemInfo(const fs::path& data_root, fs::path root)
    : root_(std::move(root)), engine_id_(load_or_create_engine_id(data_root)) {}

HostFacts HostSystemInfo::facts() const {
  HostFacts f;
  f.engine_id = engine_id_;

  struct utsname u {};
  if (::uname(&u) == 0) {
    f.kernel_version = u.release;
    f.machine = u.machine;
  }
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) == 0) f.hostname = host;

  std::string os_release = read_text(root_ / "etc/os-release");
  if (os_release.empty()) os_release = read_text(root_ / "usr/lib/os-release");
  auto [pretty, version] = parse_os_release(os_release);
  f.operating_system = pretty.empty() ? "<unknown>" : pretty;
  f.os_version = version;

  long cpus = ::sysconf(_SC_NPROCESSORS_ONLN);
  f.ncpu = cpus > 0 ? static_cast<int>(cpus) : 1;
  f.mem_total = parse_meminfo_total(read_text(root_ / "proc/meminfo"));

  const fs::path cg = root_ / "sys/fs/cgroup";
  std::error_code ec;
  if (fs::exists(cg / "cgroup.controllers", ec)) {
    f.cgroup_version = "2";
    std::istringstream in(read_text(cg / "cgroup.controllers"));
    for (std::string c; in >> c;) {
      if (c == "memory") f.cgroups.memory_limit = f.cgroups.swap_limit = true;
      if (c == "cpu")
        f.cgroups.cpu_cfs_period = f.cgroups.cpu_cfs_quota = f.cgroups.cpu_shares = true;
      if (c == "cpuset") f.cgroups.cpuset = true;
      if (c == "pids") f.cgroups.pids_limit = true;
    }
  } else {
    f.cgroup_version = "1";
    auto has = [&](const char* rel) { return fs::exists(cg / rel, ec); };
    f.cgroups.memory_limit = has("memory/memory.limit_in_bytes");
    f.cgroups.swap_limit = has("memory/memory.memsw.limit_in_bytes");
    f.cgroups.kernel_memory_tcp = has("memory/memory.kmem.tcp.limit_in_bytes");
    f.cgroups.oom_kill_disable = has("memory/memory.oom_control");
    f.cgroups.cpu_cfs_period = has("cpu/cpu.cfs_period_us");
    f.cgroups.cpu_cfs_quota = has("cpu/cpu.cfs_quota_us");
    f.cgroups.cpu_shares = has("cpu/cpu.shares");
    f.cgroups.cpuset = has("cpuset/cpuset.cpus");
    f.cgroups.pids_limit = has("pids/pids.max");
  }
  f.ipv4_forwarding = file_is_one(root_ / "proc/sys/net/ipv4/ip_forward");
  f.bridge_nf_iptables = file_is_one(root_ / "proc/sys/net/bridge/bridge-nf-call-iptables");
  f.bridge_nf_ip6tables = file_is_one(root_ / "proc/sys/net/bridge/bridge-nf-call-ip6tables");

  f.open_fds = count_open_fds();
  f.system_time = rfc3339_now();
  f.http_proxy = env_proxy("HTTP_PROXY", "http_proxy");
  f.https_proxy = env_proxy("HTTPS_PROXY", "https_proxy");
  f.no_proxy = env_proxy("NO_PROXY", "no_proxy");
  return f;
}

}  // namespace berth::agent
