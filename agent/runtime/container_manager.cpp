#include "agent/runtime/container_impl.h"

namespace berth::agent::runtime {

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
    health_end(*c);
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

namespace {

// "412 ms (rootfs 3, network 120, ...)": where a start spent its time, for the log.
class StepTimer {
 public:
  void mark(const char* step) {
    const auto now = std::chrono::steady_clock::now();
    parts_ += std::string(parts_.empty() ? "" : ", ") + step + " " + std::to_string(ms(now - last_));
    last_ = now;
  }
  std::string summary() const {
    return std::to_string(ms(std::chrono::steady_clock::now() - first_)) + " ms (" + parts_ + ")";
  }

 private:
  static long long ms(std::chrono::steady_clock::duration d) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
  }
  std::chrono::steady_clock::time_point first_ = std::chrono::steady_clock::now(), last_ = first_;
  std::string parts_;
};

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
  StepTimer steps;
  try {
    prepare_rootfs(*c, doc);
    steps.mark("rootfs");
    ResolvedUser user = resolve_user_in(c->rootfs(), config.value("User", ""));
    std::vector<OciMount> mounts;
    std::string hostname;
    std::optional<std::string> netns = setup_network(*c, doc, mounts, hostname);
    steps.mark("network");
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
    apply_devices(spec, hc);
    apply_init(spec, hc, find_init_binary());
    apply_group_add(spec, hc, read_regular_file_in_root(c->rootfs(), "/etc/group", 4 << 20).value_or(""));
    if (hc.value("NetworkMode", "") == "host") {
      // Like dockerd: the host's network, and sysfs bound from the host.
      for (json& m : spec["mounts"])
        if (m["destination"] == "/sys")
          m = {{"destination", "/sys"}, {"type", "bind"}, {"source", "/sys"},
               {"options", {"rbind", "nosuid", "noexec", "nodev", "ro"}}};
    }
    fs::create_directories(c->dir / "bundle");
    write_file_atomic(c->dir / "bundle" / "config.json", spec.dump(2));
    steps.mark("spec");

    ShimConfig sc;
    sc.id = c->id;
    sc.runtime = runtime();
    sc.bundle = c->dir / "bundle";
    sc.dir = c->dir;
    sc.log_path = doc.value("LogPath", "");
    LogRotation rotation = parse_log_rotation(hc.value("LogConfig", json::object()));
    sc.log_max_size = rotation.max_size;
    sc.log_max_file = rotation.max_file;
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
    steps.mark(container_pid == 0 ? "supervisor" : "runtime create");
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
    steps.mark(container_pid == 0 ? "runtime run" : "runtime start");
    handed_over = true;  // from here on the shim cleans up after itself
    // "started", or "started PID" when the shim made the container only now.
    if (started && starts_with(*started, "started ")) std::sscanf(started->c_str(), "started %d", &container_pid);
    if (!started || (*started != "started" && !starts_with(*started, "started ")) || container_pid <= 0) {
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
      health_begin(*c, true);
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
    steps.mark("record");
    log().info("started container " + short_id(c->id) + " in " + steps.summary());
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
    health_end(*c);
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
    health_end(*c);
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
    json r = req.to_json();
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
  m.start_monitors();
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
  m.stop_monitors();
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
  validate_healthcheck(merged);
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
  fill_run_defaults(hc);  // LogConfig json-file (its options checked), Runtime
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
  m.health_end(*c);
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
  m.health_begin(*c, false);
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

}  // namespace berth::agent::runtime
