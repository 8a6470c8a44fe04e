#include "agent/runtime/container_impl.h"
#include "agent/api/detach_keys.h"

namespace berth::agent::runtime {

// ---------------------------------------------------------------- exec

std::string ContainerManager::exec_create(const std::string& ref, const json& body) {
  Impl& m = *impl_;
  ContainerPtr c = m.get(ref);
  if (!body.is_object()) throw HttpError(400, "invalid exec config");
  auto cmd = body.find("Cmd");
  if (cmd == body.end() || !cmd->is_array() || cmd->empty())
    throw HttpError(400, "No exec command specified");
  if (std::string keys = body.value("DetachKeys", ""); !keys.empty()) {
    try {
      api::parse_detach_keys(keys);
    } catch (const std::invalid_argument&) {
      throw HttpError(400, "Invalid detach keys (" + keys + ") provided");
    }
  }
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
  auto finish = [&m, e](int code) {
    {
      std::lock_guard l(m.mu);
      e->running = false;
      e->exit_code = code;
      m.emit_exec(*e, "exec_die", {{"exitCode", std::to_string(code)}});
    }
    m.cv.notify_all();
  };
  bool finished = false;
  try {
    auto spec_text = read_file(c->dir / "bundle" / "config.json");
    if (!spec_text) throw HttpError(409, "Container " + c->id + " is not running");
    json spec = json::parse(*spec_text);
    std::optional<ResolvedUser> user;
    std::string user_spec = e->config.value("User", "");
    try {
      if (!user_spec.empty()) user = resolve_user_in(c->rootfs(), user_spec);
    } catch (const HttpError& unknown) {
      // As dockerd: 126, and the reason in the stream when there is one.
      finished = true;
      finish(126);
      if (!conn) throw;
      std::string text = std::string(unknown.what()) + "\r\n";
      conn->write(e->config.value("Tty", false) ? text : frame(StreamType::Stdout, text));
      return;
    }
    json process = build_exec_process(spec, e->config, user ? &*user : nullptr);
    // A missing or unrunnable command: 127/126 and runc's words, as with dockerd
    // (only with the real overlay rootfs, the one crun runs the exec in).
    if (auto bad = m.opt.mount_overlay
                       ? check_exec_command(c->rootfs(), process, spec.value("mounts", json::array()))
                       : std::nullopt) {
      finished = true;
      finish(bad->exit_code);
      if (!conn) throw HttpError(400, bad->message);
      std::string text = bad->message + "\r\n";
      conn->write(e->config.value("Tty", false) ? text : frame(StreamType::Stdout, text));
      return;
    }
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
    req.detach_keys = e->config.value("DetachKeys", "");
    fs::create_directories(req.console_dir);
    auto proc = std::make_shared<ExecProcess>(spawn_exec(req));
    {
      std::lock_guard l(m.mu);
      e->master = proc->master;
    }
    if (size && proc->master && *proc->master)
      resize_terminal(proc->master->get(), size->first, size->second);
    auto record_pid = [&] {
      auto pid_text = read_file(c->dir / ("exec-" + short_id(exec_id) + ".pid"));
      std::lock_guard l(m.mu);
      if (pid_text) e->pid = std::atoi(pid_text->c_str());
    };
    // The process runs on without a client (detached, or the client used the
    // detach keys): a worker waits for it, not the connection's thread.
    auto wait_in_background = [&] {
      m.spawn_worker([finish, proc, process_file] {
        int code = wait_exec(*proc);
        std::error_code ec;
        fs::remove(process_file, ec);
        finish(code);
      });
    };
    if (conn) {
      record_pid();
      std::optional<int> code = run_exec_session(*proc, req, *conn);
      if (code) {
        fs::remove(process_file);
        finish(*code);
      } else {
        wait_in_background();
      }
    } else {
      wait_in_background();
      record_pid();
    }
  } catch (const std::exception& ex) {
    m.log().warn("exec " + short_id(exec_id) + " failed: " + ex.what());
    if (!finished) finish(126);
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
