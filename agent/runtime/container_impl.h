#pragma once
// Internal to agent/runtime: ContainerManager's state, shared by the files
// that implement it along its seams: container_manager.cpp (lifecycle:
// create, start, stop, remove, restore, the shim watcher), container_setup.cpp
// (what a container needs before crun runs it: rootfs, mounts, network,
// confinement), container_query.cpp (inspect, list, prune, wait, logs,
// attach, top) and container_exec.cpp.
#include "agent/runtime/container_manager.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <map>
#include <mutex>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include "agent/api/http.h"
#include "agent/engine.h"
#include "agent/process.h"
#include "agent/runtime/container_format.h"
#include "agent/runtime/devices.h"
#include "agent/runtime/exec_lookup.h"
#include "agent/runtime/exec_relay.h"
#include "agent/runtime/fd.h"
#include "agent/runtime/health_scheduler.h"
#include "agent/runtime/host_config_defaults.h"
#include "agent/runtime/in_root.h"
#include "agent/runtime/init_process.h"
#include "agent/runtime/json_log.h"
#include "agent/runtime/log_rotate.h"
#include "agent/runtime/oci_spec.h"
#include "agent/runtime/probe_runner.h"
#include "agent/runtime/restart_policy.h"
#include "agent/runtime/security.h"
#include "agent/runtime/shim.h"
#include "agent/runtime/stats_collector.h"

namespace berth::agent::runtime {

namespace fs = std::filesystem;
using nlohmann::json;
using api::HttpError;

namespace detail {

inline constexpr const char* kRecord = "config.json";

inline std::string now_text() { return rfc3339_nano(to_unix_nanos(Clock::now())); }

inline bool starts_with(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }

inline std::string short_id(const std::string& id) { return id.substr(0, 12); }

inline UniqueFd pidfd_open(pid_t pid) {
  return UniqueFd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
}

// A shim is ours when its cmdline is "<agent> shim <dir>".
inline bool shim_alive(pid_t pid, const fs::path& dir) {
  if (pid <= 0) return false;
  auto cmdline = read_file("/proc/" + std::to_string(pid) + "/cmdline");
  if (!cmdline) return false;
  std::vector<std::string> args;
  std::size_t start = 0;
  while (start < cmdline->size()) {
    auto nul = cmdline->find('\0', start);
    if (nul == std::string::npos) nul = cmdline->size();
    args.push_back(cmdline->substr(start, nul - start));
    start = nul + 1;
  }
  return args.size() >= 3 && args[1] == "shim" && fs::path(args[2]) == dir;
}

inline json default_state() {
  return {{"Status", "created"}, {"Running", false},  {"Paused", false},
          {"Restarting", false}, {"OOMKilled", false}, {"Dead", false},
          {"Pid", 0},            {"ExitCode", 0},      {"Error", ""},
          {"StartedAt", kZeroTime}, {"FinishedAt", kZeroTime}};
}

inline json empty_endpoint(const json& request) {
  json e = {{"IPAMConfig", nullptr}, {"Links", nullptr},    {"Aliases", nullptr},
            {"MacAddress", ""},      {"DriverOpts", nullptr}, {"NetworkID", ""},
            {"EndpointID", ""},      {"Gateway", ""},       {"IPAddress", ""},
            {"IPPrefixLen", 0},      {"IPv6Gateway", ""},   {"GlobalIPv6Address", ""},
            {"GlobalIPv6PrefixLen", 0}, {"DNSNames", nullptr}};
  if (request.is_object()) {
    for (const char* k : {"IPAMConfig", "Aliases", "Links", "DriverOpts"})
      if (request.contains(k)) e[k] = request[k];
    if (request.contains("MacAddress")) e["MacAddress"] = request["MacAddress"];
  }
  return e;
}

inline std::uint64_t dir_size(const fs::path& p) {
  std::uint64_t total = 0;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(p, fs::directory_options::skip_permission_denied, ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    std::error_code e2;
    if (it->is_regular_file(e2) && !it->is_symlink(e2)) total += it->file_size(e2);
  }
  return total;
}

inline std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ' || s.back() == '\r')) s.pop_back();
  return s;
}

inline std::string host_hostname() {
  char buf[256] = {};
  ::gethostname(buf, sizeof buf - 1);
  return buf;
}

// State after the container's process ended.
inline void mark_exited(json& state, const ExitStatus& st) {
  state["Status"] = "exited";
  state["Running"] = false;
  state["Paused"] = false;
  state["Restarting"] = false;
  state["Pid"] = 0;
  state["ExitCode"] = st.exit_code;
  state["FinishedAt"] = st.finished_at.empty() ? now_text() : st.finished_at;
  state["OOMKilled"] = st.oom_killed;
}

// Seccomp, AppArmor and no_new_privileges as HostConfig.SecurityOpt and the
// daemon's defaults ask. Throws api::HttpError(400) for options that cannot apply.
void confine(SpecInput& in, const json& hc, const EngineOptions& daemon);
// The user as the container's own /etc/passwd and /etc/group name it.
ResolvedUser resolve_user_in(const fs::path& rootfs, const std::string& spec);

}  // namespace detail
using namespace detail;


struct Container {
  std::string id;
  fs::path dir;
  json doc;             // the persisted record; guarded by Impl::mu
  std::mutex op;        // serializes start/stop/remove
  pid_t shim_pid = -1;
  std::uint64_t exits = 0;
  std::uint64_t starts = 0;
  bool shim_ready = false;
  int pending_attaches = 0;
  std::uint64_t failed_starts = 0;
  bool removed = false;
  bool restart_pending = false;

  json& berth() { return doc["Berth"]; }
  // A name reserved by a create still in progress: Id, Name and State only.
  bool reserved() const { return !doc.contains("Config"); }
  std::string name() const { return doc.value("Name", ""); }
  std::string status() const { return doc["State"].value("Status", "created"); }
  bool running() const {
    std::string s = status();
    return s == "running" || s == "paused";
  }
  fs::path rootfs() const { return dir / "rootfs"; }
};
using ContainerPtr = std::shared_ptr<Container>;

struct Exec {
  std::string id, container_id;
  json config;
  bool running = false, started = false;
  std::optional<int> exit_code;
  int pid = 0;
  std::shared_ptr<UniqueFd> master;  // TTY execs
};
using ExecPtr = std::shared_ptr<Exec>;

struct ContainerManager::Impl {
  Options opt;
  Engine* engine = nullptr;
  fs::path root;
  mutable std::mutex mu;
  std::condition_variable cv;
  std::map<std::string, ContainerPtr> containers;
  std::map<std::string, ExecPtr> execs;

  // Shim exits: one thread polls every shim's pidfd.
  std::thread watcher;
  UniqueFd wake{::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)};
  std::map<int, std::pair<std::string, std::shared_ptr<UniqueFd>>> watched;  // fd -> id
  bool stopping = false;
  std::mutex workers_mu;
  std::vector<std::thread> workers;

  explicit Impl(Options o) : opt(std::move(o)) {}

  Logger& log() { return engine->log; }
  std::string runtime() const { return engine->options.runtime_path; }
  std::vector<std::string> rt(std::vector<std::string> args) const {
    return runtime_argv(runtime(), "", std::move(args));
  }

  void save(Container& c) {  // mu held
    write_file_atomic(c.dir / kRecord, c.doc.dump());
  }
  void save_locked(Container& c) {
    std::lock_guard l(mu);
    save(c);
  }

  ContainerPtr find(const std::string& ref) const {  // mu held
    if (ref.empty()) return nullptr;
    if (auto it = containers.find(ref); it != containers.end()) return it->second;
    std::string name = ref[0] == '/' ? ref : "/" + ref;
    for (const auto& [id, c] : containers)
      if (c->name() == name) return c;
    ContainerPtr match;
    for (const auto& [id, c] : containers) {
      if (starts_with(id, ref)) {
        if (match) throw HttpError(400, "multiple IDs found with provided prefix: " + ref);
        match = c;
      }
    }
    return match;
  }
  ContainerPtr get(const std::string& ref) const {
    std::lock_guard l(mu);
    ContainerPtr c = find(ref);
    if (!c) throw HttpError(404, "No such container: " + ref);
    return c;
  }

  void spawn_worker(std::function<void()> fn) {
    std::lock_guard l(workers_mu);
    if (stopping) return;
    workers.emplace_back([fn = std::move(fn)] {
      try {
        fn();
      } catch (...) {
      }
    });
  }

  // --- events (GET /events) ---
  // dockerd's container event: Actor.ID the id; image, name (no "/") and the
  // labels as attributes, plus `extra`. mu held.
  void emit(const Container& c, const std::string& action, events::Attributes extra = {}) const {
    if (!engine || !engine->events) return;
    events::Attributes a;
    const json& config = c.doc.contains("Config") ? c.doc["Config"] : json::object();
    if (auto labels = config.find("Labels"); labels != config.end() && labels->is_object())
      for (const auto& [k, v] : labels->items())
        if (v.is_string()) a[k] = v.get<std::string>();
    a["image"] = config.value("Image", "");
    std::string name = c.name();
    a["name"] = starts_with(name, "/") ? name.substr(1) : name;
    for (auto& [k, v] : extra) a[k] = std::move(v);
    engine->events->emit("container", action, c.id, std::move(a));
  }
  void emit_locked(const Container& c, const std::string& action, events::Attributes extra = {}) {
    std::lock_guard l(mu);
    emit(c, action, std::move(extra));
  }
  // "mount"/"unmount" of every named volume the container uses. mu held.
  void emit_volumes(const Container& c, const char* action) const {
    if (!engine || !engine->events) return;
    for (const json& m : c.doc.value("Mounts", json::array())) {
      if (m.value("Type", "") != "volume") continue;
      events::Attributes a{{"container", c.id}, {"driver", m.value("Driver", "local")}};
      if (std::string(action) == "mount") {
        a["destination"] = m.value("Destination", "");
        a["propagation"] = m.value("Propagation", "");
        a["read/write"] = m.value("RW", true) ? "true" : "false";
      }
      engine->events->emit("volume", action, m.value("Name", ""), std::move(a));
    }
  }
  // "exec_create: sh -c date" as dockerd names exec events.
  static std::string exec_action(const char* what, const json& config) {
    std::string action = what;
    action += ":";
    for (const json& a : config.value("Cmd", json::array()))
      if (a.is_string()) action += " " + a.get<std::string>();
    return action;
  }
  void emit_exec(const Exec& e, const std::string& action, events::Attributes extra = {}) {  // mu held
    auto it = containers.find(e.container_id);
    if (it == containers.end()) return;
    extra["execID"] = e.id;
    emit(*it->second, action, std::move(extra));
  }

  std::optional<image::ResolvedImage> resolve_image(std::string_view ref) const {
    if (opt.resolve_image) return opt.resolve_image(ref);
    return engine->images.resolve(ref);
  }

  // --- watcher ---
  void watch(const std::string& id, UniqueFd pidfd) {  // mu held
    int fd = pidfd.get();
    watched[fd] = {id, std::make_shared<UniqueFd>(std::move(pidfd))};
    std::uint64_t one = 1;
    (void)!::write(wake.get(), &one, sizeof one);
  }
  void watch_loop();
  void on_shim_exit(const std::string& id);

  // --- lifecycle ---
  bool start_locked(const ContainerPtr& c, bool by_policy);
  void prepare_rootfs(Container& c, const json& doc);
  fs::path init_layer();
  void teardown(Container& c);
  std::vector<OciMount> setup_mounts(Container& c, const json& doc);
  std::optional<std::string> setup_network(Container& c, json& doc, std::vector<OciMount>& mounts,
                                           std::string& hostname);
  json build_mounts_record(const json& config, const json& hc, std::vector<std::string>& anon);
  bool stop_locked(const ContainerPtr& c, std::optional<int> timeout, const std::string& signal);
  void remove_locked(const ContainerPtr& c, bool force, bool volumes);
  void wait_exit(const ContainerPtr& c, std::uint64_t exits_before,
                 std::optional<std::chrono::milliseconds> timeout);
  void restore_one(const ContainerPtr& c, bool first_boot, std::vector<ContainerPtr>& to_start);

  // ---- health checks, docker stats, docker update ----
  // container_health.cpp: every container's probes from one scheduler thread,
  // run and reaped by one ProbeRunner thread.
  std::unique_ptr<ProbeRunner> probe_runner;
  std::unique_ptr<HealthScheduler> health;
  // probe in flight -> its container and the execID of its events; mu held
  std::map<std::uint64_t, std::pair<std::string, std::string>> probe_execs;
  void start_monitors();  // restore(): the scheduler, and the running containers' probes
  void stop_monitors();   // shutdown(); idempotent
  // Start probing (start, restore: `fresh` resets to "starting"; unpause).
  // False when the container has no health check. mu held; the caller saves.
  bool health_begin(Container& c, bool fresh);
  // Stop probing (stop, exit, pause, remove); dockerd then says "unhealthy". mu held.
  void health_end(Container& c);
  void health_report(const std::string& id, std::uint64_t generation, const HealthRecord& record,
                     bool status_changed);
  void probe_started(const std::string& id, std::uint64_t probe, const std::vector<std::string>& command);
  void probe_finished(std::uint64_t probe, int exit_code, std::string output);
  // container_stats.cpp: the samples behind every stats stream.
  std::once_flag stats_once;
  std::unique_ptr<StatsCollector> stats;
  StatsCollector& stats_collector();
  // A container's sample (empty_stats when not running); nullopt when it is gone.
  std::optional<json> stats_sample(const std::string& id, const SystemCpu& system) const;
};

}  // namespace berth::agent::runtime
