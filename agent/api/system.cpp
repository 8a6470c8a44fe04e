#include "agent/api/system.h"

#include <arpa/inet.h>

#include <charconv>

namespace berth::agent::api {
namespace {

using nlohmann::json;

json registry_config(const EngineSettings& engine) {
  json cidrs = json::array();
  json indexes = json::object();
  indexes["docker.io"] = {{"Name", "docker.io"},
                          {"Mirrors", engine.registry_mirrors},
                          {"Secure", true},
                          {"Official", true}};
  for (const std::string& r : engine.insecure_registries) {
    if (is_cidr(r)) {
      cidrs.push_back(r);
    } else {
      indexes[r] = {
          {"Name", r}, {"Mirrors", json::array()}, {"Secure", false}, {"Official", false}};
    }
  }
  return {{"AllowNondistributableArtifactsCIDRs", nullptr},
          {"AllowNondistributableArtifactsHostnames", nullptr},
          {"InsecureRegistryCIDRs", cidrs},
          {"IndexConfigs", indexes},
          {"Mirrors", engine.registry_mirrors}};
}

// The warnings dockerd gives for missing cgroup features.
json cgroup_warnings(const HostFacts& host) {
  const CgroupSupport& c = host.cgroups;
  bool v1 = host.cgroup_version == "1";
  json w = json::array();
  if (!c.memory_limit) w.push_back("WARNING: No memory limit support");
  if (!c.swap_limit) w.push_back("WARNING: No swap limit support");
  if (v1 && !c.kernel_memory_tcp) w.push_back("WARNING: No kernel memory TCP limit support");
  if (v1 && !c.oom_kill_disable) w.push_back("WARNING: No oom kill disable support");
  if (!c.cpu_cfs_quota) w.push_back("WARNING: No cpu cfs quota support");
  if (!c.cpu_cfs_period) w.push_back("WARNING: No cpu cfs period support");
  if (!c.cpu_shares) w.push_back("WARNING: No cpu shares support");
  if (!c.cpuset) w.push_back("WARNING: No cpuset support");
  return w;
}

}  // namespace

bool is_cidr(const std::string& text) {
  auto slash = text.find('/');
  if (slash == std::string::npos) return false;
  std::string ip = text.substr(0, slash);
  std::string_view bits = std::string_view(text).substr(slash + 1);
  unsigned char buf[16];
  int max_bits = 0;
  if (::inet_pton(AF_INET, ip.c_str(), buf) == 1)
    max_bits = 32;
  else if (::inet_pton(AF_INET6, ip.c_str(), buf) == 1)
    max_bits = 128;
  else
    return false;
  int n = -1;
  auto [end, ec] = std::from_chars(bits.data(), bits.data() + bits.size(), n);
  return ec == std::errc() && end == bits.data() + bits.size() && !bits.empty() && n >= 0 &&
         n <= max_bits;
}

Response ping(const Request& request) {
  Response r = Response::text(200, request.method == "HEAD" ? "" : "OK");
  r.headers.set("Builder-Version", "1");
  r.headers.set("Cache-Control", "no-cache, no-store, must-revalidate");
  r.headers.set("Pragma", "no-cache");
  r.headers.set("Swarm", "inactive");
  return r;
}

json version_json(const HostFacts& host, const BuildInfo& build) {
  const std::string arch = goarch(host.machine);
  const std::string go_version = "n/a (C++, " + build.compiler + ")";
  json details = {{"ApiVersion", kApiVersion},
                  {"Arch", arch},
                  {"BuildTime", build.build_time},
                  {"Experimental", "false"},
                  {"GitCommit", build.git_commit},
                  {"GoVersion", go_version},
                  {"KernelVersion", host.kernel_version},
                  {"MinAPIVersion", kMinApiVersion},
                  {"Os", "linux"}};
  return {{"Platform", {{"Name", "berth-agent"}}},
          {"Components",
           json::array({{{"Name", "Engine"}, {"Version", build.version}, {"Details", details}}})},
          {"Version", build.version},
          {"ApiVersion", kApiVersion},
          {"MinAPIVersion", kMinApiVersion},
          {"GitCommit", build.git_commit},
          {"GoVersion", go_version},
          {"Os", "linux"},
          {"Arch", arch},
          {"KernelVersion", host.kernel_version},
          {"BuildTime", build.build_time}};
}

json info_json(const HostFacts& host, const EngineSettings& engine) {
  const CgroupSupport& c = host.cgroups;
  json j;
  j["ID"] = host.engine_id;
  const EngineCounts n = engine.counts ? engine.counts() : EngineCounts{};
  j["Containers"] = n.running + n.paused + n.stopped;
  j["ContainersRunning"] = n.running;
  j["ContainersPaused"] = n.paused;
  j["ContainersStopped"] = n.stopped;
  j["Images"] = n.images;
  j["Driver"] = "overlay2";
  j["DriverStatus"] = json::array();
  j["Plugins"] = {{"Volume", {"local"}},
                  {"Network", {"bridge", "host", "none"}},
                  {"Authorization", nullptr},
                  {"Log", {"json-file"}}};
  j["MemoryLimit"] = c.memory_limit;
  j["SwapLimit"] = c.swap_limit;
  j["KernelMemoryTCP"] = c.kernel_memory_tcp;
  j["CpuCfsPeriod"] = c.cpu_cfs_period;
  j["CpuCfsQuota"] = c.cpu_cfs_quota;
  j["CPUShares"] = c.cpu_shares;
  j["CPUSet"] = c.cpuset;
  j["PidsLimit"] = c.pids_limit;
  j["OomKillDisable"] = c.oom_kill_disable;
  j["IPv4Forwarding"] = host.ipv4_forwarding;
  j["BridgeNfIptables"] = host.bridge_nf_iptables;
  j["BridgeNfIp6tables"] = host.bridge_nf_ip6tables;
  j["Debug"] = false;
  j["NFd"] = host.open_fds;
  j["NGoroutines"] = 0;
  j["SystemTime"] = host.system_time;
  j["LoggingDriver"] = "json-file";
  j["CgroupDriver"] = "cgroupfs";
  j["CgroupVersion"] = host.cgroup_version;
  j["NEventsListener"] = 0;
  j["KernelVersion"] = host.kernel_version;
  j["OperatingSystem"] = host.operating_system;
  j["OSVersion"] = host.os_version;
  j["OSType"] = "linux";
  j["Architecture"] = host.machine;
  j["IndexServerAddress"] = "https://index.docker.io/v1/";
  j["RegistryConfig"] = registry_config(engine);
  j["NCPU"] = host.ncpu;
  j["MemTotal"] = host.mem_total;
  j["GenericResources"] = nullptr;
  j["DockerRootDir"] = engine.data_root;
  j["HttpProxy"] = host.http_proxy;
  j["HttpsProxy"] = host.https_proxy;
  j["NoProxy"] = host.no_proxy;
  j["Name"] = host.hostname;
  j["Labels"] = engine.labels;
  j["ExperimentalBuild"] = false;
  j["ServerVersion"] = kAgentVersion;
  j["Runtimes"] = {{"crun", {{"path", "crun"}}}};
  j["DefaultRuntime"] = "crun";
  j["Swarm"] = {{"NodeID", ""},
                {"NodeAddr", ""},
                {"LocalNodeState", "inactive"},
                {"ControlAvailable", false},
                {"Error", ""},
                {"RemoteManagers", nullptr}};
  j["LiveRestoreEnabled"] = false;
  j["Isolation"] = "";
  j["InitBinary"] = "";
  j["ContainerdCommit"] = {{"ID", ""}};
  j["RuncCommit"] = {{"ID", ""}};
  j["InitCommit"] = {{"ID", ""}};
  j["SecurityOptions"] = engine.security_options;
  j["CDISpecDirs"] = json::array();
  j["Warnings"] = cgroup_warnings(host);
  return j;
}

void add_system_routes(Router& router, std::shared_ptr<const SystemInfoProvider> host,
                       EngineSettings engine) {
  router.add("GET", "/_ping", ping);
  router.add("HEAD", "/_ping", ping);
  router.add("GET", "/version", [host](const Request&) {
    return Response::json(200, version_json(host->facts(), build_info()));
  });
  router.add("GET", "/info", [host, engine = std::move(engine)](const Request&) {
    return Response::json(200, info_json(host->facts(), engine));
  });
}

}  // namespace berth::agent::api
