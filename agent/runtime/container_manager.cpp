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
#include "agent/runtime/exec_relay.h"
#include "agent/runtime/fd.h"
#include "agent/runtime/in_root.h"
#include "agent/runtime/json_log.h"
#include "agent/runtime/oci_spec.h"
#include "agent/runtime/restart_policy.h"
#include "agent/runtime/security.h"
#include "agent/runtime/shim.h"

namespace berth::agent::runtime {

namespace fs = std::filesystem;
using nlohmann::json;
using api::HttpError;

namespace {

constexpr const char* kRecord = "config.json";

std::string now_text() { return rfc3339_nano(to_unix_nanos(Clock::now())); }

bool starts_with(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }

std::string short_id(const std::string& id) { return id.substr(0, 12); }

UniqueFd pidfd_open(pid_t pid) {
  return UniqueFd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
}

// A shim is ours when its cmdline is "<agent> shim <dir>".
bool shim_alive(pid_t pid, const fs::path& dir) {
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

json default_state() {
  return {{"Status", "created"}, {"Running", false},  {"Paused", false},
          {"Restarting", false}, {"OOMKilled", false}, {"Dead", false},
          {"Pid", 0},            {"ExitCode", 0},      {"Error", ""},
          {"StartedAt", kZeroTime}, {"FinishedAt", kZeroTime}};
}

json empty_endpoint(const json& request) {
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

std::uint64_t dir_size(const fs::path& p) {
  std::uint64_t total = 0;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(p, fs::directory_options::skip_permission_denied, ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    std::error_code e2;
    if (it->is_regular_file(e2) && !it->is_symlink(e2)) total += it->file_size(e2);
  }
  return total;
}

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ' || s.back() == '\r')) s.pop_back();
  return s;
}

std::string host_hostname() {
  char buf[256] = {};
  ::gethostname(buf, sizeof buf - 1);
  return buf;
}

// State after the container's process ended.
void mark_exited(json& state, const ExitStatus& st) {
  state["Status"] = "exited";
  state["Running"] = false;
  state["Paused"] = false;
  state["Restarting"] = false;
  state["Pid"] = 0;
  state["ExitCode"] = st.exit_code;
  state["FinishedAt"] = st.finished_at.empty() ? now_text() : st.finished_at;
  state["OOMKilled"] = st.oom_killed;
}

}  // namespace

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
};

// ---------------------------------------------------------------- watcher

void ContainerManager::Impl::watch_loop() {
  for (;;) {
    std::vector<pollfd> fds;
    {
      std::lock_guard l(mu);
      if (stopping) return;
      fds.push_back({wake.get(), POLLIN, 0});
      for (const auto& [fd, _] : watched) fds.push_back({fd, POLLIN, 0});
    }
    int r = ::poll(fds.data(), fds.size(), -1);
    if (r < 0 && errno != EINTR) return;
    if (fds[0].revents) {
      std::uint64_t v;
      (void)!::read(wake.get(), &v, sizeof v);
    }
    for (std::size_t i = 1; i < fds.size(); ++i) {
      if (!fds[i].revents) continue;
      std::string id;
      {
        std::lock_guard l(mu);
        auto it = watched.find(fds[i].fd);
        if (it == watched.end()) continue;
        id = it->second.first;
        watched.erase(it);
      }
      spawn_worker([this, id] { on_shim_exit(id); });
    }
  }
}

void ContainerManager::Impl::on_shim_exit(const std::string& id) {
  ContainerPtr c;
  {
    std::lock_guard l(mu);
    auto it = containers.find(id);
    if (it == containers.end()) return;
    c = it->second;
  }
  ExitStatus st;
  if (auto s = read_exit_status(c->dir / "exit.json")) {
    st = *s;
  } else {
    st.exit_code = 255;
    st.finished_at = now_text();
    st.error = "container supervisor exited unexpectedly";
  }
  {
    std::lock_guard l(mu);
    if (!c->removed) {
      // dockerd's "die" comes first, then network disconnect (teardown).
      const json& state = c->doc["State"];
      auto started = events::parse_event_time(state.value("StartedAt", ""), 0);
      std::int64_t duration = started && *started > 0 ? (events::now_nano() - *started) / 1'000'000'000 : 0;
      emit(*c, "die", {{"exitCode", std::to_string(st.exit_code)},
                       {"execDuration", std::to_string(std::max<std::int64_t>(duration, 0))}});
      emit_volumes(*c, "unmount");
    }
  }
  teardown(*c);
  bool restart = false, auto_remove = false;
  std::chrono::milliseconds delay{0};
  {
    std::lock_guard l(mu);
    if (c->removed) return;
    json& s = c->doc["State"];
    mark_exited(s, st);
    s["Error"] = st.error;
    c->shim_pid = -1;
    c->shim_ready = false;
    c->berth()["ShimPid"] = 0;
    ++c->exits;
    const json& hc = c->doc["HostConfig"];
    RestartPolicy policy;
    try {
      policy = RestartPolicy::from_json(hc);
    } catch (...) {
    }
    ExitFacts facts{st.exit_code, c->doc.value("RestartCount", 0),
                    c->berth().value("StoppedByUser", false)};
    auto_remove = hc.value("AutoRemove", false);
    restart = !auto_remove && !stopping && should_restart(policy, facts);
    if (restart) {
      s["Status"] = "restarting";
      s["Restarting"] = true;
      c->restart_pending = true;
      delay = restart_delay(c->doc.value("RestartCount", 0));
    }
    save(*c);
  }
  cv.notify_all();
  log().info("container " + short_id(id) + " exited with " + std::to_string(st.exit_code) +
             (restart ? "; restarting" : ""));
  if (restart) {
    {
      std::unique_lock l(mu);
      cv.wait_for(l, delay, [&] { return stopping || !c->restart_pending || c->removed; });
      if (stopping || !c->restart_pending || c->removed) return;
    }
    std::lock_guard op(c->op);
    {
      std::lock_guard l(mu);
      if (!c->restart_pending || c->removed) return;
      c->restart_pending = false;
      c->doc["RestartCount"] = c->doc.value("RestartCount", 0) + 1;
    }
    try {
      start_locked(c, true);
    } catch (const std::exception& e) {
      log().warn("restart of " + short_id(id) + " failed: " + e.what());
      std::lock_guard l(mu);
      c->doc["State"]["Status"] = "exited";
      c->doc["State"]["Restarting"] = false;
      save(*c);
      cv.notify_all();
    }
  } else if (auto_remove) {
    std::lock_guard op(c->op);
    try {
      remove_locked(c, true, true);
    } catch (const std::exception& e) {
      log().warn("auto-remove of " + short_id(id) + " failed: " + e.what());
    }
  }
}

// ---------------------------------------------------------------- start

json ContainerManager::Impl::build_mounts_record(const json& config, const json& hc,
                                                 std::vector<std::string>& anon) {
  json out = json::array();
  for (const MountRequest& m : collect_mounts(config, hc)) {
    switch (m.kind) {
      case MountRequest::Kind::Bind: {
        std::error_code ec;
        if (!fs::exists(m.source, ec)) {
          bool from_binds = false;
          for (const json& b : hc.value("Binds", json::array()))
            if (b.is_string() && starts_with(b.get<std::string>(), m.source + ":")) from_binds = true;
          if (!from_binds)
            throw HttpError(400, "invalid mount config for type \"bind\": bind source path does not exist: " +
                                     m.source);
          fs::create_directories(m.source, ec);
        }
        out.push_back({{"Type", "bind"},
                       {"Source", m.source},
                       {"Destination", m.destination},
                       {"Mode", m.mode},
                       {"RW", !m.read_only},
                       {"Propagation", m.propagation}});
        break;
      }
      case MountRequest::Kind::Volume: {
        bool anonymous = m.source.empty();
        std::map<std::string, std::string> labels;
        if (anonymous) labels[volume::kAnonymousLabel] = "";
        volume::Volume v = engine->volumes.ensure(m.source, labels, anonymous);
        if (anonymous) anon.push_back(v.name);
        out.push_back({{"Type", "volume"},
                       {"Name", v.name},
                       {"Source", v.mountpoint.string()},
                       {"Destination", m.destination},
                       {"Driver", v.driver},
                       {"Mode", m.mode.empty() ? "z" : m.mode},
                       {"RW", !m.read_only},
                       {"Propagation", ""}});
        break;
      }
      case MountRequest::Kind::Tmpfs:
        out.push_back({{"Type", "tmpfs"},
                       {"Source", ""},
                       {"Destination", m.destination},
                       {"Mode", ""},
                       {"RW", !m.read_only},
                       {"Propagation", ""}});
        break;
    }
  }
  if (auto t = hc.find("Tmpfs"); t != hc.end() && t->is_object())
    for (auto& [dest, opts] : t->items())
      out.push_back({{"Type", "tmpfs"}, {"Source", ""}, {"Destination", dest},
                     {"Mode", opts.is_string() ? opts.get<std::string>() : ""},
                     {"RW", true}, {"Propagation", ""}});
  return out;
}

namespace {

// Seccomp, AppArmor and no_new_privileges as HostConfig.SecurityOpt and the
// daemon's defaults ask. Throws api::HttpError(400) for options that cannot apply.
void confine(SpecInput& in, const json& hc, const EngineOptions& daemon) {
  SecurityOptions sec = parse_security_opts(hc, apparmor_enabled());
  in.no_new_privileges = sec.no_new_privileges.value_or(daemon.no_new_privileges);
  in.writable_cgroups = sec.writable_cgroups;
  if (sec.apparmor && *sec.apparmor != "unconfined") in.apparmor_profile = sec.apparmor;
  if (hc.value("Privileged", false)) return;  // dockerd: privileged means unconfined
  const json* profile = &default_seccomp_profile();
  if (sec.seccomp == SecurityOptions::Seccomp::Unconfined) return;
  if (sec.seccomp == SecurityOptions::Seccomp::Custom) {
    profile = &sec.seccomp_profile;
  } else if (daemon.seccomp_profile) {
    if (daemon.seccomp_profile->is_null()) return;  // the daemon runs unconfined
    profile = daemon.seccomp_profile.get();
  }
  static const Platform platform = host_platform();
  in.seccomp = oci_seccomp(*profile, container_capabilities(hc), platform);
}

// The user as the container's own /etc/passwd and /etc/group name it: read
// inside its root (symlinks cannot leave it), regular files of bounded size only.
ResolvedUser resolve_user_in(const fs::path& rootfs, const std::string& spec) {
  constexpr std::size_t kLimit = 4 << 20;
  return resolve_user(spec, read_regular_file_in_root(rootfs, "/etc/passwd", kLimit).value_or(""),
                      read_regular_file_in_root(rootfs, "/etc/group", kLimit).value_or(""));
}

// Like dockerd: an empty volume mounted over a directory the image has gets a
// copy of that directory (modes, owners and links kept) before first use.
// `dest` is relative to `rootfs`; a path through a symlink is never followed
// (it could point out of the container's root).
void seed_volume(const fs::path& rootfs, const fs::path& dest, const fs::path& volume_dir) {
  std::error_code ec;
  fs::path image_dir = rootfs;
  for (const fs::path& part : dest) {
    if (part == "." || part.empty()) continue;
    if (part == "..") return;
    image_dir /= part;
    if (fs::is_symlink(image_dir, ec) || ec) return;
  }
  if (!fs::is_directory(image_dir, ec)) return;
  if (!fs::is_empty(volume_dir, ec) || ec) return;
  fs::copy(image_dir, volume_dir,
           fs::copy_options::recursive | fs::copy_options::copy_symlinks, ec);
  if (ec) return;  // a partial copy still leaves the container usable
  auto own = [](const fs::path& from, const fs::path& to) {
    struct stat st {};
    if (::lstat(from.c_str(), &st) == 0) {
      if (::lchown(to.c_str(), st.st_uid, st.st_gid) != 0) return;
    }
  };
  own(image_dir, volume_dir);
  for (auto it = fs::recursive_directory_iterator(image_dir, ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    own(it->path(), volume_dir / fs::relative(it->path(), image_dir));
  }
}

}  // namespace

std::vector<OciMount> ContainerManager::Impl::setup_mounts(Container& c, const json& doc) {
  std::vector<OciMount> out;
  for (const json& m : doc.value("Mounts", json::array())) {
    std::string type = m.value("Type", "");
    bool rw = m.value("RW", true);
    if (type == "tmpfs") {
      std::vector<std::string> o = {"nosuid", "nodev", "noexec"};
      std::string mode = m.value("Mode", "");
      if (!mode.empty() && mode != "ro" && mode != "rw")
        for (std::size_t s = 0, e; s < mode.size(); s = e + 1) {
          e = mode.find(',', s);
          if (e == std::string::npos) e = mode.size();
          o.push_back(mode.substr(s, e - s));
        }
      if (!rw) o.push_back("ro");
      out.push_back({m.value("Destination", ""), "tmpfs", "tmpfs", o});
      continue;
    }
    std::string prop = m.value("Propagation", "");
    if (prop.empty()) prop = "rprivate";
    std::vector<std::string> o = {"rbind", prop};
    if (!rw) o.push_back("ro");
    std::string source = m.value("Source", "");
    if (type == "volume") {
      // The volume may have been removed with -f meanwhile: ensure it again.
      source = engine->volumes.ensure(m.value("Name", "")).mountpoint.string();
      if (opt.mount_overlay) {
        fs::path dest = fs::path(m.value("Destination", "/")).relative_path();
        seed_volume(c.rootfs(), dest, source);
      }
    }
    out.push_back({m.value("Destination", ""), "bind", source, o});
  }
  return out;
}

void ContainerManager::Impl::prepare_rootfs(Container& c, const json& doc) {
  fs::path rootfs = c.rootfs();
  fs::create_directories(rootfs);
  if (!opt.mount_overlay) return;
  auto image = resolve_image(doc.value("Image", ""));
  if (!image) throw HttpError(404, "No such image: " + doc["Config"].value("Image", ""));
  fs::create_directories(c.dir / "diff");
  fs::create_directories(c.dir / "work");
  ::umount2(rootfs.c_str(), MNT_DETACH);  // a stale mount from a crash
  std::string lower;
  for (auto it = image->layers.rbegin(); it != image->layers.rend(); ++it)
    lower += (lower.empty() ? "" : ":") + it->string();
  if (lower.empty()) {
    fs::create_directories(c.dir / "empty");
    lower = (c.dir / "empty").string();
  }
  std::string data = "lowerdir=" + lower + ",upperdir=" + (c.dir / "diff").string() +
                     ",workdir=" + (c.dir / "work").string();
  if (::mount("overlay", rootfs.c_str(), "overlay", 0, data.c_str()) != 0)
    throw std::runtime_error("cannot mount the container's rootfs: " +
                             std::string(std::strerror(errno)));
}

std::optional<std::string> ContainerManager::Impl::setup_network(Container& c, json& doc,
                                                                  std::vector<OciMount>& mounts,
                                                                  std::string& hostname) {
  const json& hc = doc["HostConfig"];
  std::string mode = hc.value("NetworkMode", "bridge");
  json& ns = doc["NetworkSettings"];
  std::optional<std::string> netns;
  std::string hosts = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
                      "fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\n"
                      "ff02::2\tip6-allrouters\n";
  std::string resolv;
  std::string my_ip;
  const std::string name = doc.value("Name", "/").substr(1);
  hostname = doc["Config"].value("Hostname", "");

  auto bind_file = [&](const fs::path& src, const char* dest) {
    mounts.push_back({dest, "bind", src.string(), {"rbind", "rprivate"}});
  };

  if (mode == "host") {
    if (hostname.empty()) hostname = host_hostname();
    hosts = read_file("/etc/hosts").value_or(hosts);
    resolv = read_file("/etc/resolv.conf").value_or("");
  } else if (starts_with(mode, "container:")) {
    std::string other_ref = mode.substr(10);
    ContainerPtr other;
    {
      std::lock_guard l(mu);
      other = find(other_ref);
      if (!other) throw HttpError(404, "No such container: " + other_ref);
      if (!other->running())
        throw HttpError(409, "cannot join network namespace of a non running container: " +
                                 other->id);
      std::string key = other->doc["NetworkSettings"].value("SandboxKey", "");
      if (!key.empty()) netns = key;
      hostname = other->doc["Config"].value("Hostname", "");
    }
    bind_file(other->dir / "hosts", "/etc/hosts");
    bind_file(other->dir / "resolv.conf", "/etc/resolv.conf");
    bind_file(other->dir / "hostname", "/etc/hostname");
    ns["SandboxKey"] = netns.value_or("");
    write_file_atomic(c.dir / "hostname", hostname + "\n");
    return netns;
  } else {
    fs::path sandbox = engine->networks.create_sandbox(c.id);
    netns = sandbox.string();
    ns["SandboxKey"] = sandbox.string();
    ns["SandboxID"] = c.id;
    {
      std::lock_guard l(mu);
      c.berth()["Sandbox"] = true;  // teardown must undo it even if the rest fails
    }
    if (mode != "none") {
      std::vector<std::string> nets = {mode};
      json& eps = c.berth()["EndpointsConfig"];
      if (eps.is_object())
        for (auto& [n, _] : eps.items())
          if (n != mode) nets.push_back(n);
      json networks = json::object();
      bool first = true;
      for (const std::string& net : nets) {
        json req = eps.is_object() && eps.contains(net) ? eps[net] : json::object();
        network::EndpointRequest er;
        if (req.is_object()) {
          if (req.contains("Aliases") && req["Aliases"].is_array())
            for (const json& a : req["Aliases"])
              if (a.is_string()) er.aliases.push_back(a.get<std::string>());
          if (req.contains("IPAMConfig") && req["IPAMConfig"].is_object())
            er.ipv4 = req["IPAMConfig"].value("IPv4Address", "");
        }
        network::Endpoint ep = engine->networks.connect(net, c.id, name, sandbox, er);
        json ej = empty_endpoint(req);
        json ep_json = ep.to_json();
        for (auto& [k, v] : ep_json.items()) ej[k] = v;
        networks[net] = ej;
        if (first) {
          my_ip = ep.ip;
          if (net == "bridge") {
            ns["IPAddress"] = ep.ip;
            ns["IPPrefixLen"] = ep.prefix_len;
            ns["Gateway"] = ep.gateway;
            ns["MacAddress"] = ep.mac;
            ns["EndpointID"] = ep.endpoint_id;
          }
          first = false;
        }
      }
      ns["Networks"] = networks;
      auto wanted = wanted_port_bindings(doc["Config"], hc);
      std::vector<network::PortBinding> published;
      if (!wanted.empty()) published = engine->networks.publish(c.id, my_ip, wanted);
      ns["Ports"] = ports_map(doc["Config"], published);
      resolv = engine->networks.resolv_conf(mode);
    } else {
      resolv = read_file("/etc/resolv.conf").value_or("");
    }
  }
  if (hc.contains("Dns") && hc["Dns"].is_array() && !hc["Dns"].empty()) {
    std::string r;
    for (const json& d : hc["Dns"]) r += "nameserver " + d.get<std::string>() + "\n";
    resolv = r;
  }
  if (hc.contains("DnsSearch") && hc["DnsSearch"].is_array() && !hc["DnsSearch"].empty()) {
    std::string line = "search";
    for (const json& d : hc["DnsSearch"]) line += " " + d.get<std::string>();
    resolv += line + "\n";
  }
  if (hc.contains("DnsOptions") && hc["DnsOptions"].is_array() && !hc["DnsOptions"].empty()) {
    std::string line = "options";
    for (const json& d : hc["DnsOptions"]) line += " " + d.get<std::string>();
    resolv += line + "\n";
  }
  if (mode != "host") {
    std::string fqdn = hostname;
    std::string domain = doc["Config"].value("Domainname", "");
    if (!domain.empty()) fqdn += "." + domain;
    if (!my_ip.empty()) hosts += my_ip + "\t" + (fqdn != hostname ? fqdn + " " : "") + hostname + "\n";
  }
  if (hc.contains("ExtraHosts") && hc["ExtraHosts"].is_array())
    for (const json& e : hc["ExtraHosts"]) {
      std::string s = e.get<std::string>();
      auto colon = s.find(':');
      if (colon != std::string::npos) hosts += s.substr(colon + 1) + "\t" + s.substr(0, colon) + "\n";
    }
  write_file_atomic(c.dir / "hosts", hosts);
  write_file_atomic(c.dir / "resolv.conf", resolv);
  write_file_atomic(c.dir / "hostname", hostname + "\n");
  bind_file(c.dir / "hosts", "/etc/hosts");
  bind_file(c.dir / "resolv.conf", "/etc/resolv.conf");
  bind_file(c.dir / "hostname", "/etc/hostname");
  return netns;
}

void ContainerManager::Impl::teardown(Container& c) {
  bool sandbox;
  {
    std::lock_guard l(mu);
    sandbox = c.berth().value("Sandbox", false);
    c.berth()["Sandbox"] = false;
    json& ns = c.doc["NetworkSettings"];
    for (const char* k : {"IPAddress", "Gateway", "MacAddress", "EndpointID", "SandboxKey",
                          "SandboxID"})
      ns[k] = "";
    ns["IPPrefixLen"] = 0;
    ns["Ports"] = json::object();
    if (ns.contains("Networks") && ns["Networks"].is_object())
      for (auto& [n, ep] : ns["Networks"].items())
        for (const char* k : {"IPAddress", "Gateway", "MacAddress", "EndpointID", "NetworkID"})
          ep[k] = "";
  }
  if (sandbox) {
    try {
      engine->networks.destroy_sandbox(c.id);
    } catch (const std::exception& e) {
      log().warn("network teardown of " + short_id(c.id) + ": " + e.what());
    }
  }
  if (opt.mount_overlay) ::umount2(c.rootfs().c_str(), MNT_DETACH);
}

namespace {

// Forks "agent shim DIR" twice (setsid) so it is nobody's child here; fd 3 is `sync`.
void spawn_shim(const std::string& agent, const fs::path& dir, int sync) {
  std::string arg0 = agent, arg1 = "shim", arg2 = dir.string();
  char* argv[] = {arg0.data(), arg1.data(), arg2.data(), nullptr};
  pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
  if (pid == 0) {
    ::setsid();
    if (::fork() != 0) ::_exit(0);
    if (sync == 3) {
      ::fcntl(3, F_SETFD, 0);
    } else {
      ::dup2(sync, 3);
    }
    int null = ::open("/dev/null", O_RDWR);
    ::dup2(null, 0);
    ::dup2(null, 1);
    ::dup2(null, 2);
    ::close_range(4, ~0U, 0);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::signal(SIGPIPE, SIG_DFL);
    ::execv(arg0.c_str(), argv);
    ::_exit(127);
  }
  int status;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
}

HttpError start_error(std::string msg) {
  // crun says "executable file `x` not found in $PATH"; the docker CLI maps runc's
  // wording (exec: "x": executable file not found in $PATH) to exit code 127.
  static const std::regex crun_not_found("executable file `([^`]*)` not found in \\$PATH(: No such file or directory)?");
  std::smatch mm;
  if (std::regex_search(msg, mm, crun_not_found))
    msg = "exec: \"" + mm[1].str() + "\": executable file not found in $PATH";
  std::string full = "failed to create task for container: OCI runtime create failed: " + msg;
  bool not_found = msg.find("executable file not found") != std::string::npos ||
                   msg.find("No such file or directory") != std::string::npos;
  return HttpError(not_found ? 400 : 500, full + ": unknown");
}

}  // namespace

bool ContainerManager::Impl::start_locked(const ContainerPtr& c, bool by_policy) {
  json doc;
  {
    std::lock_guard l(mu);
    if (c->removed) throw HttpError(404, "No such container: " + c->id);
    std::string s = c->status();
    if (s == "paused") throw HttpError(409, "cannot start a paused container, try unpause instead");
    if (s == "running") return false;
    c->restart_pending = false;
    c->berth()["StoppedByUser"] = false;
    if (!by_policy) c->doc["RestartCount"] = 0;
    doc = c->doc;
  }
  const json& config = doc["Config"];
  const json& hc = doc["HostConfig"];
  UniqueFd agent_end;
  bool handed_over = false;
  try {
    prepare_rootfs(*c, doc);
    ResolvedUser user = resolve_user_in(c->rootfs(), config.value("User", ""));
    std::vector<OciMount> mounts;
    std::string hostname;
    std::optional<std::string> netns = setup_network(*c, doc, mounts, hostname);
    {
      std::lock_guard l(mu);
      c->doc["NetworkSettings"] = doc["NetworkSettings"];
    }
    for (OciMount& m : setup_mounts(*c, doc)) mounts.push_back(std::move(m));
    SpecInput in;
    in.id = c->id;
    in.config = config;
    in.host_config = hc;
    in.rootfs = c->rootfs();
    in.hostname = hostname;
    in.user = user;
    in.netns_path = netns;
    in.extra_mounts = mounts;
    in.cgroups_path = "/berth/" + c->id;
    confine(in, hc, engine->options);
    json spec = build_oci_spec(in);
    if (hc.value("NetworkMode", "") == "host") {
      // Like dockerd: the host's network, and sysfs bound from the host.
      for (json& m : spec["mounts"])
        if (m["destination"] == "/sys")
          m = {{"destination", "/sys"}, {"type", "bind"}, {"source", "/sys"},
               {"options", {"rbind", "nosuid", "noexec", "nodev", "ro"}}};
    }
    fs::create_directories(c->dir / "bundle");
    write_file_atomic(c->dir / "bundle" / "config.json", spec.dump(2));

    ShimConfig sc;
    sc.id = c->id;
    sc.runtime = runtime();
    sc.bundle = c->dir / "bundle";
    sc.dir = c->dir;
    sc.log_path = doc.value("LogPath", "");
    sc.cgroup_dir = fs::path(opt.cgroup_root) / "berth" / c->id;
    sc.tty = config.value("Tty", false);
    sc.open_stdin = config.value("OpenStdin", false);
    sc.stdin_once = config.value("StdinOnce", false);
    write_file_atomic(c->dir / "shim.json", sc.to_json().dump());

    int sp[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) != 0)
      throw std::runtime_error(std::string("socketpair: ") + std::strerror(errno));
    agent_end.reset(sp[0]);
    UniqueFd shim_end(sp[1]);
    spawn_shim(engine->options.agent_path, c->dir, shim_end.get());
    shim_end.reset();
    timeval tv{120, 0};
    ::setsockopt(agent_end.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    auto created = read_line(agent_end.get(), 65536);
    if (!created) throw std::runtime_error("the container supervisor did not start");
    if (starts_with(*created, "error ")) throw start_error(created->substr(6));
    int container_pid = 0, shim_pid = 0;
    if (std::sscanf(created->c_str(), "created %d %d", &container_pid, &shim_pid) != 2)
      throw std::runtime_error("unexpected supervisor reply: " + *created);
    UniqueFd pidfd = pidfd_open(shim_pid);
    {
      // Attach requests that came before start connect now, so no output is lost.
      std::unique_lock l(mu);
      c->shim_pid = shim_pid;
      c->shim_ready = true;
      ++c->starts;
      cv.notify_all();
      cv.wait_for(l, std::chrono::seconds(5), [&] { return c->pending_attaches == 0; });
    }
    if (!write_all(agent_end.get(), "start\n"))
      throw std::runtime_error("the container supervisor went away");
    auto started = read_line(agent_end.get(), 65536);
    handed_over = true;  // from here on the shim cleans up after itself
    if (!started || *started != "started") {
      std::string msg = started && starts_with(*started, "error ") ? started->substr(6)
                                                                   : "the container did not start";
      // The shim exits on its own; wait for it so the runtime state is gone.
      if (pidfd) {
        pollfd p{pidfd.get(), POLLIN, 0};
        ::poll(&p, 1, 10000);
      }
      throw start_error(msg);
    }
    {
      std::lock_guard l(mu);
      json& s = c->doc["State"];
      s["Status"] = "running";
      s["Running"] = true;
      s["Paused"] = false;
      s["Restarting"] = false;
      s["OOMKilled"] = false;
      s["Dead"] = false;
      s["Pid"] = container_pid;
      s["ExitCode"] = 0;
      s["Error"] = "";
      s["StartedAt"] = now_text();
      s["FinishedAt"] = kZeroTime;
      c->berth()["ShimPid"] = shim_pid;
      c->doc["Config"]["Hostname"] = hostname.empty() ? c->doc["Config"]["Hostname"] : json(hostname);
      save(*c);
      emit_volumes(*c, "mount");
      emit(*c, "start");
      if (pidfd) {
        watch(c->id, std::move(pidfd));
      } else {
        spawn_worker([this, id = c->id] { on_shim_exit(id); });
      }
    }
    cv.notify_all();
    log().info("started container " + short_id(c->id));
    return true;
  } catch (const std::exception& e) {
    (void)handed_over;
    teardown(*c);
    {
      std::lock_guard l(mu);
      c->shim_ready = false;
      c->shim_pid = -1;
      ++c->failed_starts;
      json& s = c->doc["State"];
      s["Error"] = e.what();
      std::string msg = e.what();
      if (msg.find("executable file not found") != std::string::npos) s["ExitCode"] = 127;
      else s["ExitCode"] = 128;
      if (s.value("Status", "") == "restarting") s["Status"] = "exited";
      s["Restarting"] = false;
      save(*c);
    }
    cv.notify_all();
    log().warn("start of container " + short_id(c->id) + " failed: " + e.what());
    if (hc.value("AutoRemove", false)) {
      // Like dockerd: a --rm container that cannot start is removed (docker run waits for it).
      try {
        remove_locked(c, true, true);
      } catch (const std::exception& re) {
        log().warn("auto-remove of " + short_id(c->id) + " failed: " + re.what());
      }
    }
    if (dynamic_cast<const HttpError*>(&e)) throw;
    throw HttpError(500, e.what());
  }
}

// ---------------------------------------------------------------- stop / remove

void ContainerManager::Impl::wait_exit(const ContainerPtr& c, std::uint64_t exits_before,
                                       std::optional<std::chrono::milliseconds> timeout) {
  std::unique_lock l(mu);
  auto done = [&] { return c->exits != exits_before || !c->running() || c->removed; };
  if (timeout)
    cv.wait_for(l, *timeout, done);
  else
    cv.wait(l, done);
}

bool ContainerManager::Impl::stop_locked(const ContainerPtr& c, std::optional<int> timeout,
                                         const std::string& signal) {
  std::uint64_t exits;
  int stop_signal = SIGTERM;
  bool paused;
  {
    std::lock_guard l(mu);
    std::string s = c->status();
    if (c->restart_pending || s == "restarting") {
      c->restart_pending = false;
      c->berth()["StoppedByUser"] = true;
      c->doc["State"]["Status"] = "exited";
      c->doc["State"]["Restarting"] = false;
      save(*c);
      emit(*c, "stop");
      cv.notify_all();
      return true;
    }
    if (!c->running()) return false;
    c->berth()["StoppedByUser"] = true;
    save(*c);
    exits = c->exits;
    paused = s == "paused";
    std::string sig = signal.empty() ? c->doc["Config"].value("StopSignal", "") : signal;
    if (!sig.empty()) {
      auto n = parse_signal(sig);
      if (!n) throw HttpError(400, "Invalid signal: " + sig);
      stop_signal = *n;
    }
    if (!timeout) {
      auto st = c->doc["Config"].find("StopTimeout");
      timeout = st != c->doc["Config"].end() && st->is_number_integer() ? st->get<int>() : 10;
    }
  }
  emit_locked(*c, "kill", {{"signal", std::to_string(stop_signal)}});
  run_process(rt({"kill", c->id, std::to_string(stop_signal)}));
  if (paused) run_process(rt({"resume", c->id}));
  if (*timeout < 0) {
    wait_exit(c, exits, std::nullopt);
  } else {
    wait_exit(c, exits, std::chrono::seconds(*timeout));
  }
  {
    std::lock_guard l(mu);
    if (c->exits != exits || !c->running()) {
      emit(*c, "stop");
      return true;
    }
  }
  emit_locked(*c, "kill", {{"signal", std::to_string(SIGKILL)}});
  run_process(rt({"kill", c->id, "KILL"}));
  wait_exit(c, exits, std::chrono::seconds(30));
  emit_locked(*c, "stop");
  return true;
}

void ContainerManager::Impl::remove_locked(const ContainerPtr& c, bool force, bool volumes) {
  {
    std::lock_guard l(mu);
    if (c->removed) return;
    if (c->running() && !force)
      throw HttpError(409, "cannot remove container \"" + c->name() +
                               "\": container is running: stop the container before removing or "
                               "force remove");
    if (c->running() || c->restart_pending) {
      c->berth()["StoppedByUser"] = true;
      c->restart_pending = false;
    }
  }
  bool running;
  std::uint64_t exits;
  {
    std::lock_guard l(mu);
    running = c->running();
    exits = c->exits;
  }
  if (running) {
    emit_locked(*c, "kill", {{"signal", std::to_string(SIGKILL)}});
    run_process(rt({"kill", c->id, "KILL"}));
    if (c->status() == "paused") run_process(rt({"resume", c->id}));
    wait_exit(c, exits, std::chrono::seconds(30));
  }
  std::vector<std::string> anon;
  {
    std::lock_guard l(mu);
    c->removed = true;
    containers.erase(c->id);
    for (const json& v : c->berth().value("AnonymousVolumes", json::array())) anon.push_back(v);
    std::erase_if(execs, [&](const auto& e) { return e.second->container_id == c->id; });
  }
  cv.notify_all();
  teardown(*c);
  std::error_code ec;
  run_process(rt({"delete", "--force", c->id}));
  fs::remove_all(c->dir, ec);
  if (ec) log().warn("cannot remove " + c->dir.string() + ": " + ec.message());
  emit_locked(*c, "destroy");
  if (volumes) {
    for (const std::string& v : anon) {
      try {
        engine->volumes.remove(v, true);
      } catch (const std::exception& e) {
        log().warn("cannot remove volume " + v + ": " + e.what());
      }
    }
  }
  log().info("removed container " + short_id(c->id));
}

// ---------------------------------------------------------------- restore

void ContainerManager::Impl::restore_one(const ContainerPtr& c, bool first_boot,
                                         std::vector<ContainerPtr>& to_start) {
  std::string status = c->status();
  bool was_up = status == "running" || status == "paused" || status == "restarting";
  pid_t shim = c->berth().value("ShimPid", 0);
  if (was_up && !first_boot && shim_alive(shim, c->dir)) {
    UniqueFd pidfd = pidfd_open(shim);
    if (pidfd) {
      std::lock_guard l(mu);
      c->shim_pid = shim;
      c->shim_ready = true;
      watch(c->id, std::move(pidfd));
      return;
    }
  }
  if (was_up) {
    // The shim is gone (agent crash, or a reboot): record the exit.
    ExitStatus st;
    if (auto s = read_exit_status(c->dir / "exit.json"); s && !first_boot) {
      st = *s;
    } else {
      st.exit_code = 255;
      st.finished_at = now_text();
    }
    teardown(*c);
    std::lock_guard l(mu);
    mark_exited(c->doc["State"], st);
    c->berth()["ShimPid"] = 0;
    save(*c);
  } else if (!first_boot) {
    return;
  }
  RestartPolicy p;
  try {
    p = RestartPolicy::from_json(c->doc["HostConfig"]);
  } catch (...) {
  }
  std::lock_guard l(mu);
  ExitFacts f{c->doc["State"].value("ExitCode", 0), c->doc.value("RestartCount", 0),
              c->berth().value("StoppedByUser", false)};
  // Like dockerd at its start: every container that ever ran and whose policy
  // asks for it (the exit may have come from the host shutting down).
  bool started_before = c->doc["State"].value("StartedAt", std::string(kZeroTime)) != kZeroTime;
  if (first_boot ? started_before && should_start_on_boot(p, f) : should_restart(p, f))
    to_start.push_back(c);
}

// ================================================================ public

ContainerManager::ContainerManager() : ContainerManager(Options{}) {}
ContainerManager::ContainerManager(Options options)
    : impl_(std::make_unique<Impl>(std::move(options))) {}
ContainerManager::~ContainerManager() { shutdown(); }

void ContainerManager::restore(Engine& engine) {
  Impl& m = *impl_;
  m.engine = &engine;
  m.root = fs::path(engine.options.data_root) / "containers";
  fs::create_directories(m.root);
  bool first_boot = !fs::exists(m.opt.boot_marker);
  {
    std::error_code ec;
    fs::create_directories(fs::path(m.opt.boot_marker).parent_path(), ec);
    write_file_atomic(m.opt.boot_marker, "");
  }
  std::vector<ContainerPtr> loaded;
  for (const auto& entry : fs::directory_iterator(m.root)) {
    auto text = read_file(entry.path() / kRecord);
    if (!text) continue;
    json doc = json::parse(*text, nullptr, false);
    if (!doc.is_object() || !doc.contains("Id")) continue;
    auto c = std::make_shared<Container>();
    c->id = doc["Id"];
    c->dir = entry.path();
    c->doc = std::move(doc);
    std::lock_guard l(m.mu);
    m.containers[c->id] = c;
    loaded.push_back(c);
  }
  std::vector<ContainerPtr> to_start;
  for (const ContainerPtr& c : loaded) {
    try {
      m.restore_one(c, first_boot, to_start);
    } catch (const std::exception& e) {
      m.log().warn("restore of container " + short_id(c->id) + ": " + e.what());
    }
  }
  // The image in-use lookup and the volume users query are wired by agent.cpp.
  network::ContainerHooks hooks;
  hooks.resolve = [this](const std::string& ref) -> std::optional<network::ContainerInfo> {
    std::lock_guard l(impl_->mu);
    ContainerPtr c;
    try {
      c = impl_->find(ref);
    } catch (...) {
    }
    if (!c) return std::nullopt;
    network::ContainerInfo info;
    info.id = c->id;
    info.name = c->name().substr(1);
    info.running = c->running();
    info.sandbox = c->doc["NetworkSettings"].value("SandboxKey", "");
    info.network_mode = c->doc["HostConfig"].value("NetworkMode", "bridge");
    return info;
  };
  hooks.attached = [this](const std::string& id, const std::string& net,
                          const network::EndpointRequest& req,
                          const std::optional<network::Endpoint>& ep) {
    std::lock_guard l(impl_->mu);
    auto it = impl_->containers.find(id);
    if (it == impl_->containers.end()) throw HttpError(404, "No such container: " + id);
    Container& c = *it->second;
    json r = json::object();
    if (!req.aliases.empty()) r["Aliases"] = req.aliases;
    if (!req.ipv4.empty()) r["IPAMConfig"] = {{"IPv4Address", req.ipv4}};
    json& eps = c.berth()["EndpointsConfig"];
    if (!eps.is_object()) eps = json::object();
    eps[net] = r;
    json e = empty_endpoint(r);
    if (ep) {
      json ep_json = ep->to_json();
      for (auto& [k, v] : ep_json.items()) e[k] = v;
    }
    c.doc["NetworkSettings"]["Networks"][net] = e;
    impl_->save(c);
  };
  hooks.detached = [this](const std::string& id, const std::string& net) {
    std::lock_guard l(impl_->mu);
    auto it = impl_->containers.find(id);
    if (it == impl_->containers.end()) throw HttpError(404, "No such container: " + id);
    Container& c = *it->second;
    json& nets = c.doc["NetworkSettings"]["Networks"];
    if (!nets.is_object() || !nets.contains(net))
      throw HttpError(403, "container " + id + " is not connected to network " + net);
    nets.erase(net);
    if (c.berth()["EndpointsConfig"].is_object()) c.berth()["EndpointsConfig"].erase(net);
    impl_->save(c);
  };
  engine.networks.set_container_hooks(hooks);

  m.watcher = std::thread([&m] { m.watch_loop(); });
  for (const ContainerPtr& c : to_start) {
    m.spawn_worker([&m, c] {
      std::lock_guard op(c->op);
      try {
        m.start_locked(c, true);
      } catch (const std::exception& e) {
        m.log().warn("restart of " + short_id(c->id) + " at agent start failed: " + e.what());
      }
    });
  }
  m.log().info("restored " + std::to_string(loaded.size()) + " containers" +
               (first_boot ? " (first start since boot)" : ""));
}

void ContainerManager::shutdown() {
  Impl& m = *impl_;
  {
    std::lock_guard l(m.mu);
    std::lock_guard w(m.workers_mu);
    m.stopping = true;
  }
  m.cv.notify_all();
  std::uint64_t one = 1;
  (void)!::write(m.wake.get(), &one, sizeof one);
  if (m.watcher.joinable()) m.watcher.join();
  std::vector<std::thread> workers;
  {
    std::lock_guard w(m.workers_mu);
    workers.swap(m.workers);
  }
  for (std::thread& t : workers)
    if (t.joinable()) t.join();
}

ContainerManager::Counts ContainerManager::counts() const {
  std::lock_guard l(impl_->mu);
  Counts n;
  for (const auto& [id, c] : impl_->containers) {
    std::string s = c->status();
    if (s == "running" || s == "restarting") ++n.running;
    else if (s == "paused") ++n.paused;
    else ++n.stopped;
  }
  return n;
}

std::vector<std::string> ContainerManager::users_of_image(const std::string& image_id) const {
  std::lock_guard l(impl_->mu);
  std::vector<std::string> out;
  for (const auto& [id, c] : impl_->containers)
    if (c->doc.value("Image", "") == image_id) out.push_back(id);
  return out;
}

std::vector<std::string> ContainerManager::users_of_volume(const std::string& volume) const {
  std::lock_guard l(impl_->mu);
  std::vector<std::string> out;
  for (const auto& [id, c] : impl_->containers)
    for (const json& m : c->doc.value("Mounts", json::array()))
      if (m.value("Type", "") == "volume" && m.value("Name", "") == volume) {
        out.push_back(id);
        break;
      }
  return out;
}

std::string ContainerManager::resolve(const std::string& ref) const {
  return impl_->get(ref)->id;
}

ContainerManager::Created ContainerManager::create(const std::string& name_in, const json& body) {
  Impl& m = *impl_;
  if (!body.is_object()) throw HttpError(400, "config cannot be empty in order to create a container");
  std::string name = name_in;
  if (!name.empty() && !valid_container_name(name))
    throw HttpError(400, "Invalid container name (" + name +
                             "), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed");
  if (!name.empty() && name[0] == '/') name = name.substr(1);
  json config = body;
  config.erase("HostConfig");
  config.erase("NetworkingConfig");
  json hc = body.contains("HostConfig") && body["HostConfig"].is_object() ? body["HostConfig"]
                                                                           : json::object();
  json nc = body.contains("NetworkingConfig") && body["NetworkingConfig"].is_object()
                ? body["NetworkingConfig"]
                : json::object();
  std::string image_ref = config.value("Image", "");
  if (image_ref.empty()) throw HttpError(400, "No image specified");
  auto image = m.resolve_image(image_ref);
  if (!image) throw HttpError(404, "No such image: " + familiar_reference(image_ref));
  json image_config = image->config.is_object() && image->config.contains("config")
                          ? image->config["config"]
                          : json::object();
  json merged = merge_image_config(config, image_config);
  std::vector<std::string> args;
  for (const char* k : {"Entrypoint", "Cmd"})
    if (merged[k].is_array())
      for (const json& a : merged[k]) args.push_back(a.get<std::string>());
  if (args.empty()) throw HttpError(400, "no command specified");
  validate_ports(merged, hc);
  validate_resources(hc, static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
  RestartPolicy policy = RestartPolicy::from_json(hc);
  if (hc.value("AutoRemove", false) && !policy.is_none())
    throw HttpError(400, "can't create 'AutoRemove' container with restart policy");
  collect_mounts(merged, hc);  // 400 for bad specs before anything is made
  {
    SpecInput dry_run;
    confine(dry_run, hc, m.engine->options);  // 400 for security options that cannot apply
  }

  std::string mode = hc.value("NetworkMode", "");
  if (mode.empty() || mode == "default") mode = "bridge";
  if (starts_with(mode, "container:")) {
    std::string other = resolve(mode.substr(10));
    mode = "container:" + other;
  } else if (mode != "host" && mode != "none") {
    m.engine->networks.network_id(mode);  // 404 "network x not found"
  }
  json eps = nc.contains("EndpointsConfig") && nc["EndpointsConfig"].is_object()
                 ? nc["EndpointsConfig"]
                 : json::object();
  if (eps.contains("default")) {  // the CLI names the default network "default"
    if (!eps.contains(mode)) eps[mode] = eps["default"];
    eps.erase("default");
  }
  for (auto& [net, _] : eps.items())
    if (net != mode && net != "bridge" && net != "host" && net != "none")
      m.engine->networks.network_id(net);
  hc["NetworkMode"] = mode;
  if (!hc.contains("RestartPolicy") || !hc["RestartPolicy"].is_object())
    hc["RestartPolicy"] = {{"Name", "no"}, {"MaximumRetryCount", 0}};
  if (hc["RestartPolicy"].value("Name", "") == "") hc["RestartPolicy"]["Name"] = "no";
  if (!hc.contains("LogConfig")) hc["LogConfig"] = {{"Type", "json-file"}, {"Config", json::object()}};
  for (const char* k : {"Binds", "Links", "CapAdd", "CapDrop", "Dns", "DnsOptions", "DnsSearch",
                        "ExtraHosts"})
    if (!hc.contains(k)) hc[k] = nullptr;
  for (const char* k : {"Privileged", "PublishAllPorts", "ReadonlyRootfs", "AutoRemove"})
    if (!hc.contains(k)) hc[k] = false;
  for (const char* k : {"Memory", "NanoCpus", "CpuShares", "CpuQuota", "CpuPeriod", "MemorySwap"})
    if (!hc.contains(k)) hc[k] = 0;
  if (!hc.contains("PortBindings") || hc["PortBindings"].is_null()) hc["PortBindings"] = json::object();

  std::string id = new_container_id();
  fs::path dir = m.root / id;
  json networks = json::object();
  if (mode == "host" || mode == "none" || !starts_with(mode, "container:")) {
    if (!starts_with(mode, "container:"))
      networks[mode] = empty_endpoint(eps.contains(mode) ? eps[mode] : json::object());
    if (mode != "host" && mode != "none")
      for (auto& [net, req] : eps.items())
        if (!networks.contains(net)) networks[net] = empty_endpoint(req);
  }
  if (merged.value("Hostname", "").empty() && mode != "host" && !starts_with(mode, "container:"))
    merged["Hostname"] = short_id(id);
  merged["Image"] = image_ref;

  auto c = std::make_shared<Container>();
  c->id = id;
  c->dir = dir;
  {
    std::lock_guard l(m.mu);
    if (name.empty()) {
      do {
        name = random_container_name();
      } while (m.find(name) && m.find(name)->name() == "/" + name);
    } else {
      for (const auto& [other_id, other] : m.containers)
        if (other->name() == "/" + name)
          throw HttpError(409, "Conflict. The container name \"/" + name +
                                   "\" is already in use by container \"" + other_id +
                                   "\". You have to remove (or rename) that container to be able "
                                   "to reuse that name.");
    }
    // Reserve the name while volumes are made.
    c->doc = {{"Id", id}, {"Name", "/" + name}, {"State", default_state()}};
    m.containers[id] = c;
  }
  try {
    fs::create_directories(dir);
    std::vector<std::string> anon;
    json mounts = m.build_mounts_record(merged, hc, anon);
    std::string path = args[0];
    json rest = json(std::vector<std::string>(args.begin() + 1, args.end()));
    json doc = {
        {"Id", id},
        {"Created", now_text()},
        {"Path", path},
        {"Args", rest},
        {"State", default_state()},
        {"Image", image->id},
        {"ResolvConfPath", (dir / "resolv.conf").string()},
        {"HostnamePath", (dir / "hostname").string()},
        {"HostsPath", (dir / "hosts").string()},
        {"LogPath", (dir / (id + "-json.log")).string()},
        {"Name", "/" + name},
        {"RestartCount", 0},
        {"Driver", "overlay2"},
        {"Platform", "linux"},
        {"MountLabel", ""},
        {"ProcessLabel", ""},
        {"AppArmorProfile", ""},
        {"ExecIDs", nullptr},
        {"HostConfig", hc},
        {"GraphDriver",
         {{"Name", "overlay2"},
          {"Data",
           {{"MergedDir", (dir / "rootfs").string()},
            {"UpperDir", (dir / "diff").string()},
            {"WorkDir", (dir / "work").string()}}}}},
        {"Mounts", mounts},
        {"Config", merged},
        {"NetworkSettings",
         {{"Bridge", ""}, {"SandboxID", ""}, {"SandboxKey", ""}, {"Ports", json::object()},
          {"HairpinMode", false}, {"LinkLocalIPv6Address", ""}, {"LinkLocalIPv6PrefixLen", 0},
          {"SecondaryIPAddresses", nullptr}, {"SecondaryIPv6Addresses", nullptr},
          {"EndpointID", ""}, {"Gateway", ""}, {"GlobalIPv6Address", ""},
          {"GlobalIPv6PrefixLen", 0}, {"IPAddress", ""}, {"IPPrefixLen", 0},
          {"IPv6Gateway", ""}, {"MacAddress", ""}, {"Networks", networks}}},
        {"Berth",
         {{"AnonymousVolumes", anon},
          {"EndpointsConfig", eps},
          {"StoppedByUser", false},
          {"ShimPid", 0}}}};
    std::string lower;
    for (auto it = image->layers.rbegin(); it != image->layers.rend(); ++it)
      lower += (lower.empty() ? "" : ":") + it->string();
    doc["GraphDriver"]["Data"]["LowerDir"] = lower;
    std::lock_guard l(m.mu);
    c->doc = std::move(doc);
    m.save(*c);
    m.emit(*c, "create");
  } catch (...) {
    std::lock_guard l(m.mu);
    m.containers.erase(id);
    std::error_code ec;
    fs::remove_all(dir, ec);
    throw;
  }
  m.log().info("created container " + short_id(id) + " /" + name);
  return {id, {}};
}

bool ContainerManager::start(const std::string& ref) {
  ContainerPtr c = impl_->get(ref);
  std::lock_guard op(c->op);
  return impl_->start_locked(c, false);
}

bool ContainerManager::stop(const std::string& ref, std::optional<int> timeout,
                            const std::string& signal) {
  ContainerPtr c = impl_->get(ref);
  std::lock_guard op(c->op);
  return impl_->stop_locked(c, timeout, signal);
}

void ContainerManager::kill(const std::string& ref, const std::string& signal) {
  Impl& m = *impl_;
  ContainerPtr c = m.get(ref);
  int sig = SIGKILL;
  if (!signal.empty()) {
    auto n = parse_signal(signal);
    if (!n) throw HttpError(400, "Invalid signal: " + signal);
    sig = *n;
  }
  std::uint64_t exits;
  {
    std::lock_guard l(m.mu);
    if (!c->running())
      throw HttpError(409, "Cannot kill container: " + ref + ": Container " + c->id +
                               " is not running");
    if (sig == SIGKILL || sig == SIGTERM || sig == SIGINT || sig == SIGQUIT) {
      c->berth()["StoppedByUser"] = true;
      m.save(*c);
    }
    exits = c->exits;
  }
  m.emit_locked(*c, "kill", {{"signal", std::to_string(sig)}});
  ProcessResult r = run_process(m.rt({"kill", c->id, std::to_string(sig)}));
  if (!r.ok()) throw HttpError(500, "Cannot kill container: " + ref + ": " + trim(r.err));
  if (sig == SIGKILL) m.wait_exit(c, exits, std::chrono::seconds(10));
}

void ContainerManager::restart(const std::string& ref, std::optional<int> timeout,
                               const std::string& signal) {
  ContainerPtr c = impl_->get(ref);
  std::lock_guard op(c->op);
  impl_->stop_locked(c, timeout, signal);
  impl_->start_locked(c, false);
  impl_->emit_locked(*c, "restart");
}

void ContainerManager::pause(const std::string& ref) {
  Impl& m = *impl_;
  ContainerPtr c = m.get(ref);
  std::lock_guard op(c->op);
  {
    std::lock_guard l(m.mu);
    std::string s = c->status();
    if (s == "paused") throw HttpError(409, "Container " + c->id + " is already paused");
    if (s != "running") throw HttpError(409, "Container " + c->id + " is not running");
  }
  ProcessResult r = run_process(m.rt({"pause", c->id}));
  if (!r.ok()) throw HttpError(500, "Cannot pause container " + c->id + ": " + trim(r.err));
  std::lock_guard l(m.mu);
  c->doc["State"]["Status"] = "paused";
  c->doc["State"]["Paused"] = true;
  m.save(*c);
  m.emit(*c, "pause");
}

void ContainerManager::unpause(const std::string& ref) {
  Impl& m = *impl_;
  ContainerPtr c = m.get(ref);
  std::lock_guard op(c->op);
  {
    std::lock_guard l(m.mu);
    if (c->status() != "paused") throw HttpError(409, "Container " + c->id + " is not paused");
  }
  ProcessResult r = run_process(m.rt({"resume", c->id}));
  if (!r.ok()) throw HttpError(500, "Cannot unpause container " + c->id + ": " + trim(r.err));
  std::lock_guard l(m.mu);
  c->doc["State"]["Status"] = "running";
  c->doc["State"]["Paused"] = false;
  m.save(*c);
  m.emit(*c, "unpause");
}

void ContainerManager::remove(const std::string& ref, bool force, bool remove_volumes) {
  ContainerPtr c = impl_->get(ref);
  std::lock_guard op(c->op);
  impl_->remove_locked(c, force, remove_volumes);
}

void ContainerManager::rename(const std::string& ref, const std::string& new_name_in) {
  Impl& m = *impl_;
  ContainerPtr c = m.get(ref);
  if (new_name_in.empty() || !valid_container_name(new_name_in))
    throw HttpError(400, "Invalid container name (" + new_name_in +
                             "), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed");
  std::string new_name = new_name_in[0] == '/' ? new_name_in : "/" + new_name_in;
  std::lock_guard l(m.mu);
  if (c->name() == new_name)
    throw HttpError(400, "Renaming a container with the same name as its current name");
  for (const auto& [id, other] : m.containers)
    if (other->name() == new_name)
      throw HttpError(409, "Conflict. The container name \"" + new_name +
                               "\" is already in use by container \"" + id +
                               "\". You have to remove (or rename) that container to be able to "
                               "reuse that name.");
  std::string old_name = c->name();
  c->doc["Name"] = new_name;
  m.save(*c);
  m.emit(*c, "rename", {{"oldName", old_name}});
}

void ContainerManager::resize(const std::string& ref, int h, int w) {
  Impl& m = *impl_;
  ContainerPtr c = m.get(ref);
  {
    std::lock_guard l(m.mu);
    if (!c->running()) throw HttpError(409, "Container " + c->id + " is not running");
  }
  shim_resize(c->dir / "shim.sock", h, w);
}

json ContainerManager::inspect(const std::string& ref, bool size) const {
  Impl& m = *impl_;
  ContainerPtr c = m.get(ref);
  json doc;
  {
    std::lock_guard l(m.mu);
    doc = c->doc;
    json ids = json::array();
    for (const auto& [id, e] : m.execs)
      if (e->container_id == c->id) ids.push_back(id);
    doc["ExecIDs"] = ids.empty() ? json(nullptr) : ids;
  }
  doc.erase("Berth");
  if (size) {
    auto rw = static_cast<std::int64_t>(dir_size(c->dir / "diff"));
    doc["SizeRw"] = rw;
    doc["SizeRootFs"] = rw;
  }
  return doc;
}

json ContainerManager::list(const ListOptions& o) const {
  Impl& m = *impl_;
  auto f = parse_filters(o.filters);
  check_filter_keys(f, {"ancestor", "before", "expose", "exited", "health", "id", "isolation",
                        "is-task", "label", "name", "network", "publish", "since", "status",
                        "volume"});
  for (const std::string& s : f["status"])
    if (s != "created" && s != "restarting" && s != "running" && s != "removing" &&
        s != "paused" && s != "exited" && s != "dead")
      throw HttpError(400, "invalid filter 'status=" + s + "'");
  std::vector<json> docs;
  {
    std::lock_guard l(m.mu);
    for (const auto& [id, c] : m.containers) docs.push_back(c->doc);
  }
  // Newest first. Created is RFC 3339 with trailing zeros trimmed, so compare times, not text.
  auto created_nanos = [](const json& d) {
    return parse_rfc3339(d.value("Created", "")).value_or(0);
  };
  std::stable_sort(docs.begin(), docs.end(), [&](const json& a, const json& b) {
    return created_nanos(a) > created_nanos(b);
  });
  // ancestor: image references resolve to ids.
  std::vector<std::string> ancestor_ids;
  for (const std::string& a : f["ancestor"]) {
    if (auto img = m.resolve_image(a)) ancestor_ids.push_back(img->id);
    ancestor_ids.push_back(a);
  }
  // before/since: relative to another container's creation time.
  auto created_of = [&](const std::string& ref) {
    for (const json& d : docs) {
      const std::string id = d.value("Id", "");
      if (id == ref || d.value("Name", "") == "/" + ref || (ref.size() >= 3 && starts_with(id, ref)))
        return created_nanos(d);
    }
    throw HttpError(404, "No such container: " + ref);
  };
  std::optional<std::int64_t> before, since;
  for (const std::string& r : f["before"]) before = created_of(r);
  for (const std::string& r : f["since"]) since = created_of(r);
  // publish/expose: "80", "80/udp", "8000-8010/tcp", as nat.Port keys.
  auto port_keys = [](const std::vector<std::string>& specs) {
    std::set<std::string> keys;
    for (const std::string& spec : specs) {
      auto slash = spec.find('/');
      std::string proto = slash == std::string::npos ? "tcp" : spec.substr(slash + 1);
      std::string range = spec.substr(0, slash);
      auto dash = range.find('-');
      int first = 0, last = 0;
      try {
        first = std::stoi(range.substr(0, dash));
        last = dash == std::string::npos ? first : std::stoi(range.substr(dash + 1));
      } catch (const std::exception&) {
        throw HttpError(400, "invalid port specification: \"" + spec + "\"");
      }
      if (first < 1 || last > 65535 || last < first || last - first > 65535)
        throw HttpError(400, "invalid port specification: \"" + spec + "\"");
      for (int p = first; p <= last; ++p) keys.insert(std::to_string(p) + "/" + proto);
    }
    return keys;
  };
  const std::set<std::string> publish = port_keys(f["publish"]);
  const std::set<std::string> expose = port_keys(f["expose"]);
  auto has_any_key = [](const json& obj, const std::set<std::string>& keys) {
    if (!obj.is_object()) return false;
    return std::any_of(keys.begin(), keys.end(), [&](const std::string& k) { return obj.contains(k); });
  };
  // No healthchecks and no swarm tasks: "health=none" and "is-task=false" match everything.
  const bool health_excludes = std::any_of(f["health"].begin(), f["health"].end(),
                                           [](const std::string& h) { return h != "none"; });
  const bool task_excludes = std::any_of(f["is-task"].begin(), f["is-task"].end(),
                                         [](const std::string& t) { return t == "true" || t == "1"; });
  if (health_excludes || task_excludes) return json::array();

  bool all = o.all || o.limit > 0 || !f["status"].empty() || !f["exited"].empty();
  json out = json::array();
  for (const json& d : docs) {
    const std::int64_t created = created_nanos(d);
    if (before && created >= *before) continue;
    if (since && created <= *since) continue;
    if (!publish.empty() && !has_any_key(d["HostConfig"].value("PortBindings", json::object()), publish))
      continue;
    if (!expose.empty() && !has_any_key(d["Config"].value("ExposedPorts", json::object()), expose))
      continue;
    const std::string status = d["State"].value("Status", "");
    if (!all && status != "running" && status != "paused" && status != "restarting") continue;
    if (!f["status"].empty() &&
        std::find(f["status"].begin(), f["status"].end(), status) == f["status"].end())
      continue;
    const std::string id = d.value("Id", "");
    const std::string name = d.value("Name", "").substr(1);
    if (!f["id"].empty() && std::none_of(f["id"].begin(), f["id"].end(),
                                         [&](const auto& p) { return starts_with(id, p); }))
      continue;
    if (!f["name"].empty() && std::none_of(f["name"].begin(), f["name"].end(), [&](const auto& p) {
          try {
            return std::regex_search(name, std::regex(p));
          } catch (...) {
            return name.find(p) != std::string::npos;
          }
        }))
      continue;
    if (!f["label"].empty() && !labels_match(d["Config"].value("Labels", json::object()), f["label"]))
      continue;
    if (!f["exited"].empty()) {
      if (status != "exited") continue;
      std::string code = std::to_string(d["State"].value("ExitCode", 0));
      if (std::find(f["exited"].begin(), f["exited"].end(), code) == f["exited"].end()) continue;
    }
    if (!f["ancestor"].empty()) {
      std::string image_id = d.value("Image", "");
      std::string ref = d["Config"].value("Image", "");
      bool hit = false;
      for (const std::string& a : ancestor_ids)
        if (a == image_id || a == ref || familiar_reference(a) == familiar_reference(ref) ||
            (a.size() >= 4 && (starts_with(image_id, a) || starts_with(image_id, "sha256:" + a))))
          hit = true;
      if (!hit) continue;
    }
    if (!f["network"].empty()) {
      json nets = d["NetworkSettings"].value("Networks", json::object());
      bool hit = false;
      for (const std::string& n : f["network"])
        if (nets.contains(n) || d["HostConfig"].value("NetworkMode", "") == n) hit = true;
      if (!hit) continue;
    }
    if (!f["volume"].empty()) {
      bool hit = false;
      for (const json& mnt : d.value("Mounts", json::array()))
        for (const std::string& v : f["volume"])
          if (mnt.value("Name", "") == v || mnt.value("Destination", "") == v) hit = true;
      if (!hit) continue;
    }
    json s = container_summary(d);
    if (o.size) {
      auto rw = static_cast<std::int64_t>(dir_size(m.root / id / "diff"));
      s["SizeRw"] = rw;
      s["SizeRootFs"] = rw;
    }
    out.push_back(std::move(s));
    if (o.limit > 0 && static_cast<int>(out.size()) >= o.limit) break;
  }
  return out;
}

json ContainerManager::prune(const json& filters) {
  Impl& m = *impl_;
  auto f = parse_filters(filters);
  check_filter_keys(f, {"until", "label", "label!"});
  std::optional<std::int64_t> until;
  for (const std::string& u : f["until"]) until = parse_log_time(u);
  std::vector<ContainerPtr> victims;
  {
    std::lock_guard l(m.mu);
    for (const auto& [id, c] : m.containers) {
      std::string s = c->status();
      if (s != "exited" && s != "created" && s != "dead") continue;
      if (until) {
        auto created = parse_rfc3339(c->doc.value("Created", ""));
        if (created && *created >= *until) continue;
      }
      json labels = c->doc["Config"].value("Labels", json::object());
      if (!f["label"].empty() && !labels_match(labels, f["label"])) continue;
      if (!f["label!"].empty() && labels_match(labels, f["label!"])) continue;
      victims.push_back(c);
    }
  }
  json deleted = json::array();
  std::int64_t reclaimed = 0;
  for (const ContainerPtr& c : victims) {
    std::lock_guard op(c->op);
    try {
      auto size = static_cast<std::int64_t>(dir_size(c->dir / "diff"));
      m.remove_locked(c, false, false);
      deleted.push_back(c->id);
      reclaimed += size;
    } catch (const std::exception&) {
    }
  }
  return {{"ContainersDeleted", deleted.empty() ? json(nullptr) : deleted},
          {"SpaceReclaimed", reclaimed}};
}

ContainerManager::Waiter ContainerManager::prepare_wait(const std::string& ref,
                                                       const std::string& condition) {
  Impl* m = impl_.get();
  if (!condition.empty() && condition != "not-running" && condition != "next-exit" &&
      condition != "removed")
    throw HttpError(400, "invalid condition: \"" + condition + "\"");
  ContainerPtr c = m->get(ref);
  std::uint64_t exits;
  {
    std::lock_guard l(m->mu);
    exits = c->exits;
  }
  return [m, c, exits, condition](const std::function<bool()>& gone) -> std::optional<json> {
    std::unique_lock l(m->mu);
    for (;;) {
      bool done;
      if (condition == "removed") {
        done = c->removed;
      } else if (condition == "next-exit") {
        done = c->exits != exits || c->removed;
      } else {
        done = !c->running() && !c->restart_pending;
      }
      if (done) {
        const json& s = c->doc["State"];
        std::string err = s.value("Error", "");
        return json{{"StatusCode", s.value("ExitCode", 0)},
                    {"Error", err.empty() ? json(nullptr) : json{{"Message", err}}}};
      }
      if (m->stopping) return std::nullopt;
      m->cv.wait_for(l, std::chrono::milliseconds(500));
      if (gone && gone()) return std::nullopt;
    }
  };
}

bool ContainerManager::is_tty(const std::string& ref) const {
  Impl& m = *impl_;
  ContainerPtr c = m.get(ref);
  std::lock_guard l(m.mu);
  return c->doc["Config"].value("Tty", false);
}

void ContainerManager::logs(const std::string& ref, const LogOptions& o,
                            const std::function<bool(std::string_view)>& sink) {
  Impl& m = *impl_;
  ContainerPtr c = m.get(ref);
  bool tty;
  fs::path path;
  {
    std::lock_guard l(m.mu);
    tty = c->doc["Config"].value("Tty", false);
    path = c->doc.value("LogPath", "");
  }
  LogFilter filter{o.stdout_stream, o.stderr_stream, o.since, o.until, o.tail};
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  std::string pending;
  auto read_new = [&]() {
    if (!fd) fd.reset(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) return;
    char buf[65536];
    ssize_t n;
    while ((n = ::read(fd.get(), buf, sizeof buf)) > 0) pending.append(buf, static_cast<std::size_t>(n));
  };
  read_new();
  auto cut = pending.rfind('\n');
  std::string complete = cut == std::string::npos ? "" : pending.substr(0, cut + 1);
  pending.erase(0, complete.size());
  for (const LogEntry& e : select_logs(complete, filter))
    if (!sink(render_log_entry(e, o.timestamps, tty))) return;
  if (!o.follow) return;
  if (o.until && *o.until > 0 && *o.until <= to_unix_nanos(Clock::now())) return;
  filter.tail.reset();
  for (;;) {
    bool running;
    {
      std::unique_lock l(m.mu);
      running = (c->running() || c->restart_pending) && !c->removed && !m.stopping;
    }
    read_new();
    auto nl = pending.rfind('\n');
    if (nl != std::string::npos) {
      std::string chunk = pending.substr(0, nl + 1);
      pending.erase(0, nl + 1);
      for (const LogEntry& e : select_logs(chunk, filter))
        if (!sink(render_log_entry(e, o.timestamps, tty))) return;
    } else if (!sink("")) {
      return;  // the client went away
    }
    if (!running) return;
    if (o.until && *o.until > 0 && *o.until <= to_unix_nanos(Clock::now())) return;
    std::unique_lock l(m.mu);
    m.cv.wait_for(l, std::chrono::milliseconds(200));
  }
}

std::string ContainerManager::prepare_attach(const std::string& ref, const AttachOptions&) {
  Impl& m = *impl_;
  ContainerPtr c = m.get(ref);
  std::lock_guard l(m.mu);
  if (c->status() == "paused")
    throw HttpError(409, "You cannot attach to a paused container, unpause it first");
  if (c->status() == "restarting")
    throw HttpError(409, "You cannot attach to a restarting container, wait until it is running");
  return c->id;
}

void ContainerManager::attach(const std::string& id, const AttachOptions& o,
                              api::Connection& conn) {
  Impl& m = *impl_;
  ContainerPtr c = m.get(id);
  if (o.logs) {
    LogOptions lo;
    lo.stdout_stream = o.out;
    lo.stderr_stream = o.err;
    logs(id, lo, [&](std::string_view s) { return s.empty() || conn.write(s); });
  }
  if (!o.stream) return;
  fs::path sock = c->dir / "shim.sock";
  bool waited = false;
  {
    std::unique_lock l(m.mu);
    if (!(c->running() && c->shim_ready)) {
      // Not started yet (docker run: attach, then start): wait for the shim.
      waited = true;
      ++c->pending_attaches;
      std::uint64_t starts = c->starts, failed = c->failed_starts;
      m.cv.wait(l, [&] {
        return c->removed || m.stopping || c->failed_starts != failed ||
               (c->starts != starts && c->shim_ready);
      });
      if (c->removed || m.stopping || !c->shim_ready) {
        --c->pending_attaches;
        m.cv.notify_all();
        return;
      }
    }
  }
  UniqueFd fd = shim_attach(sock, o.in, o.out, o.err);
  if (waited) {
    std::lock_guard l(m.mu);
    --c->pending_attaches;
  }
  m.cv.notify_all();
  if (!fd) return;
  conn.pump(fd.get(), fd.get());
}

json ContainerManager::top(const std::string& ref) const {
  Impl& m = *impl_;
  ContainerPtr c = m.get(ref);
  {
    std::lock_guard l(m.mu);
    if (!c->running()) throw HttpError(409, "Container " + c->id + " is not running");
  }
  json procs = json::array();
  auto pids = read_file(fs::path(m.opt.cgroup_root) / "berth" / c->id / "cgroup.procs");
  if (pids) {
    std::istringstream in(*pids);
    std::string pid;
    while (in >> pid) {
      auto stat = read_file("/proc/" + pid + "/stat");
      auto cmdline = read_file("/proc/" + pid + "/cmdline");
      auto status = read_file("/proc/" + pid + "/status");
      if (!stat) continue;
      std::string cmd = cmdline.value_or("");
      std::replace(cmd.begin(), cmd.end(), '\0', ' ');
      cmd = trim(cmd);
      std::string ppid = "0", uid = "0";
      auto close = stat->rfind(')');
      if (close != std::string::npos) {
        std::istringstream rest(stat->substr(close + 2));
        std::string state;
        rest >> state >> ppid;
        if (cmd.empty()) cmd = "[" + stat->substr(stat->find('(') + 1, close - stat->find('(') - 1) + "]";
      }
      if (status) {
        auto pos = status->find("Uid:");
        if (pos != std::string::npos) {
          std::istringstream u(status->substr(pos + 4));
          u >> uid;
        }
      }
      procs.push_back({uid, pid, ppid, "0", "", "?", "00:00:00", cmd});
    }
  }
  return {{"Titles", {"UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"}},
          {"Processes", procs}};
}

// ---------------------------------------------------------------- exec

std::string ContainerManager::exec_create(const std::string& ref, const json& body) {
  Impl& m = *impl_;
  ContainerPtr c = m.get(ref);
  if (!body.is_object()) throw HttpError(400, "invalid exec config");
  auto cmd = body.find("Cmd");
  if (cmd == body.end() || !cmd->is_array() || cmd->empty())
    throw HttpError(400, "No exec command specified");
  std::lock_guard l(m.mu);
  if (c->status() == "paused")
    throw HttpError(409, "Container " + c->id + " is paused, unpause the container before exec");
  if (!c->running()) throw HttpError(409, "Container " + c->id + " is not running");
  auto e = std::make_shared<Exec>();
  e->id = new_container_id();
  e->container_id = c->id;
  e->config = body;
  m.execs[e->id] = e;
  m.emit_exec(*e, Impl::exec_action("exec_create", body));
  return e->id;
}

bool ContainerManager::exec_prepare(const std::string& exec_id) {
  Impl& m = *impl_;
  std::lock_guard l(m.mu);
  auto it = m.execs.find(exec_id);
  if (it == m.execs.end()) throw HttpError(404, "No such exec instance: " + exec_id);
  Exec& e = *it->second;
  if (e.started) throw HttpError(409, "Exec command " + exec_id + " has already run");
  auto c = m.containers.find(e.container_id);
  if (c == m.containers.end() || !c->second->running())
    throw HttpError(409, "Container " + e.container_id + " is not running");
  return e.config.value("Tty", false);
}

void ContainerManager::exec_start(const std::string& exec_id, api::Connection* conn,
                                  std::optional<std::pair<int, int>> size) {
  Impl& m = *impl_;
  ExecPtr e;
  ContainerPtr c;
  {
    std::lock_guard l(m.mu);
    auto it = m.execs.find(exec_id);
    if (it == m.execs.end()) throw HttpError(404, "No such exec instance: " + exec_id);
    e = it->second;
    if (e->started) throw HttpError(409, "Exec command " + exec_id + " has already run");
    auto ci = m.containers.find(e->container_id);
    if (ci == m.containers.end()) throw HttpError(404, "No such container: " + e->container_id);
    c = ci->second;
    e->started = true;
    e->running = true;
    m.emit_exec(*e, Impl::exec_action("exec_start", e->config));
  }
  auto finish = [&](int code) {
    {
      std::lock_guard l(m.mu);
      e->running = false;
      e->exit_code = code;
      m.emit_exec(*e, "exec_die", {{"exitCode", std::to_string(code)}});
    }
    m.cv.notify_all();
  };
  try {
    auto spec_text = read_file(c->dir / "bundle" / "config.json");
    if (!spec_text) throw HttpError(409, "Container " + c->id + " is not running");
    json spec = json::parse(*spec_text);
    std::optional<ResolvedUser> user;
    std::string user_spec = e->config.value("User", "");
    if (!user_spec.empty())
      user = resolve_user_in(c->rootfs(), user_spec);
    json process = build_exec_process(spec, e->config, user ? &*user : nullptr);
    fs::path process_file = c->dir / ("exec-" + short_id(exec_id) + ".json");
    write_file_atomic(process_file, process.dump());
    ExecRequest req;
    req.argv = m.rt({"exec", "--process", process_file.string(), "--pid-file",
                     (c->dir / ("exec-" + short_id(exec_id) + ".pid")).string()});
    req.container_id = c->id;
    req.tty = e->config.value("Tty", false);
    req.attach_stdin = e->config.value("AttachStdin", false) && conn;
    req.attach_stdout = e->config.value("AttachStdout", false) && conn;
    req.attach_stderr = e->config.value("AttachStderr", false) && conn;
    req.console_dir = m.opt.run_dir;
    fs::create_directories(req.console_dir);
    ExecProcess proc = spawn_exec(req);
    {
      std::lock_guard l(m.mu);
      e->master = proc.master;
    }
    if (size && proc.master && *proc.master)
      resize_terminal(proc.master->get(), size->first, size->second);
    auto record_pid = [&] {
      auto pid_text = read_file(c->dir / ("exec-" + short_id(exec_id) + ".pid"));
      std::lock_guard l(m.mu);
      if (pid_text) e->pid = std::atoi(pid_text->c_str());
    };
    if (conn) {
      record_pid();
      int code = run_exec_session(proc, req, *conn);
      fs::remove(process_file);
      finish(code);
    } else {
      auto shared = std::make_shared<ExecProcess>(std::move(proc));
      m.spawn_worker([&m, e, shared, process_file, finish_code = [&m, e](int code) {
                        {
                          std::lock_guard l(m.mu);
                          e->running = false;
                          e->exit_code = code;
                          m.emit_exec(*e, "exec_die", {{"exitCode", std::to_string(code)}});
                        }
                        m.cv.notify_all();
                      }] {
        int code = wait_exec(*shared);
        std::error_code ec;
        fs::remove(process_file, ec);
        finish_code(code);
      });
      record_pid();
    }
  } catch (const std::exception& ex) {
    m.log().warn("exec " + short_id(exec_id) + " failed: " + ex.what());
    finish(126);
    throw;
  }
}

void ContainerManager::exec_resize(const std::string& exec_id, int h, int w) {
  Impl& m = *impl_;
  std::shared_ptr<UniqueFd> master;
  {
    std::lock_guard l(m.mu);
    auto it = m.execs.find(exec_id);
    if (it == m.execs.end()) throw HttpError(404, "No such exec instance: " + exec_id);
    master = it->second->master;
    if (!it->second->running) throw HttpError(409, "Exec " + exec_id + " is not running");
  }
  if (master && *master) resize_terminal(master->get(), h, w);
}

json ContainerManager::exec_inspect(const std::string& exec_id) const {
  Impl& m = *impl_;
  std::lock_guard l(m.mu);
  auto it = m.execs.find(exec_id);
  if (it == m.execs.end()) throw HttpError(404, "No such exec instance: " + exec_id);
  const Exec& e = *it->second;
  const json& cfg = e.config;
  std::vector<std::string> cmd = cfg.value("Cmd", std::vector<std::string>{});
  json args = json::array();
  for (std::size_t i = 1; i < cmd.size(); ++i) args.push_back(cmd[i]);
  return {{"ID", e.id},
          {"Running", e.running},
          {"ExitCode", e.exit_code ? json(*e.exit_code) : json(nullptr)},
          {"ProcessConfig",
           {{"tty", cfg.value("Tty", false)},
            {"entrypoint", cmd.empty() ? "" : cmd[0]},
            {"arguments", args},
            {"privileged", cfg.value("Privileged", false)},
            {"user", cfg.value("User", "")}}},
          {"OpenStdin", cfg.value("AttachStdin", false)},
          {"OpenStderr", cfg.value("AttachStderr", false)},
          {"OpenStdout", cfg.value("AttachStdout", false)},
          {"CanRemove", false},
          {"ContainerID", e.container_id},
          {"DetachKeys", cfg.value("DetachKeys", "")},
          {"Pid", e.pid}};
}

}  // namespace berth::agent::runtime
