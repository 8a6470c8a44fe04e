#include "agent/runtime/container_impl.h"
#include "agent/api/detach_keys.h"

namespace berth::agent::runtime {

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

namespace {
// dockerd's SizeRootFs: the writable layer plus the image's layers. Called
// without m.mu (the image store calls back into the manager under its lock).
std::int64_t size_root_fs(const ContainerManager::Impl& m, const json& doc, std::int64_t rw) {
  if (!m.engine) return rw;
  auto rec = m.engine->images.image(doc.value("Image", ""));
  return rec ? rw + static_cast<std::int64_t>(rec->size) : rw;
}
}  // namespace

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
    doc["SizeRootFs"] = size_root_fs(m, doc, rw);
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
    for (const auto& [id, c] : m.containers)
      if (!c->reserved()) docs.push_back(c->doc);
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
  // health: State.Health.Status, "none" without a health check.
  for (const std::string& h : f["health"])
    if (h != "starting" && h != "healthy" && h != "unhealthy" && h != "none")
      throw HttpError(400, "Unrecognized filter value for health: " + h);
  auto health_of = [](const json& d) -> std::string {
    auto h = d["State"].find("Health");
    if (h == d["State"].end() || !h->is_object()) return "none";
    std::string status = h->value("Status", "");
    return status.empty() ? "unhealthy" : status;
  };
  // No swarm tasks: "is-task=false" matches everything.
  const bool task_excludes = std::any_of(f["is-task"].begin(), f["is-task"].end(),
                                         [](const std::string& t) { return t == "true" || t == "1"; });
  if (task_excludes) return json::array();

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
    if (!f["health"].empty() &&
        std::find(f["health"].begin(), f["health"].end(), health_of(d)) == f["health"].end())
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
      s["SizeRootFs"] = size_root_fs(m, d, rw);
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
      if (c->reserved()) continue;
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
  std::string pending;
  // --log-opt max-size: the rotated files first, oldest first.
  for (const fs::path& old : rotated_log_files(path))
    if (old != path) pending += read_file(old).value_or("");
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  auto read_new = [&]() {
    if (!fd) fd.reset(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) return;
    char buf[65536];
    ssize_t n;
    while ((n = ::read(fd.get(), buf, sizeof buf)) > 0) pending.append(buf, static_cast<std::size_t>(n));
    // Rotated meanwhile: the rest is in a new file of the same name.
    struct stat ours {}, now {};
    if (::fstat(fd.get(), &ours) == 0 && ::stat(path.c_str(), &now) == 0 &&
        (ours.st_ino != now.st_ino || ours.st_dev != now.st_dev)) {
      fd.reset(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
      while (fd && (n = ::read(fd.get(), buf, sizeof buf)) > 0)
        pending.append(buf, static_cast<std::size_t>(n));
    }
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

std::string ContainerManager::prepare_attach(const std::string& ref, const AttachOptions& o) {
  Impl& m = *impl_;
  if (!o.detach_keys.empty()) {
    try {
      api::parse_detach_keys(o.detach_keys);
    } catch (const std::invalid_argument&) {
      throw HttpError(400, "Invalid detach keys (" + o.detach_keys + ") provided");
    }
  }
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
  bool tty = false;
  {
    std::lock_guard l(m.mu);
    tty = c->doc["Config"].value("Tty", false);
  }
  if (!(o.in && tty)) return conn.pump(fd.get(), fd.get());
  // With a TTY, the detach keys end the attach and leave the container running.
  auto detach = std::make_shared<api::DetachFilter>(
      api::parse_detach_keys(o.detach_keys.empty() ? api::kDefaultDetachKeys : o.detach_keys));
  bool detached = false;
  conn.pump(fd.get(), fd.get(), [&](std::string_view in, std::string& out) {
    detached = !detach->feed(in, out);
    return !detached;
  });
  if (detached) m.emit(*c, "detach");
}

fs::path ContainerManager::changes_dir(const std::string& ref) const { return impl_->get(ref)->dir / "diff"; }

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

}  // namespace berth::agent::runtime
