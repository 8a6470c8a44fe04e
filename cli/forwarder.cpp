#include "cli/forwarder.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <condition_variable>
#include <cstdlib>
#include <fstream>
#include <map>
#include <set>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/host.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/lock.h"
#include "core/log.h"
#include "core/ssh_forward.h"

namespace berth::cli {
namespace {

constexpr const char* kLog = "forward";
constexpr auto kStartWait = std::chrono::seconds(3);
constexpr auto kStopWait = std::chrono::seconds(3);
constexpr std::uintmax_t kMaxLogBytes = 1024 * 1024;
// Container events after which the published ports may differ.
const std::set<std::string> kPortEvents = {"start", "restart", "die", "stop", "kill", "destroy", "pause", "unpause"};

struct Paths {
  fs::path lock, pid, status, log, disabled;
};

Paths paths_of(Context& ctx, const std::string& name) {
  const fs::path dir = ctx.store().machine_dir(name);
  return {dir / "forward.lock", dir / "forward.pid", dir / "forward.json", dir / "forward.log",
          dir / "forward.disabled"};
}

bool lock_held(const fs::path& lock) {
  std::error_code ec;
  if (!fs::exists(lock, ec)) return false;
  return !FileLock::try_acquire(lock).has_value();
}

pid_t read_pid(const fs::path& file) {
  std::ifstream in(file);
  long pid = 0;
  in >> pid;
  return pid > 1 ? static_cast<pid_t>(pid) : 0;
}

bool wait_for(const std::function<bool()>& done, std::chrono::milliseconds limit) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < end) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return done();
}

void rotate_log(const fs::path& log) {
  std::error_code ec;
  if (fs::file_size(log, ec) > kMaxLogBytes) fs::rename(log, fs::path(log.string() + ".1"), ec);
}

// fork, setsid, fork: the forwarder outlives this command and its terminal.
void spawn_detached(const std::vector<std::string>& args, const fs::path& log) {
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  const std::string log_path = log.string();
  const pid_t child = ::fork();
  if (child < 0) throw Error(std::string("cannot fork the port forwarder: ") + std::strerror(errno));
  if (child == 0) {
    ::setsid();
    if (::fork() != 0) ::_exit(0);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    if (::chdir("/") != 0) ::_exit(126);
    const int in = ::open("/dev/null", O_RDONLY);
    const int out = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
    if (in < 0 || out < 0) ::_exit(126);
    ::dup2(in, 0);
    ::dup2(out, 1);
    ::dup2(out, 2);
    ::close_range(3, ~0U, 0);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  int status = 0;
  ::waitpid(child, &status, 0);
}

// Writes forward.json atomically (0600), only when it changed.
class StatusFile {
 public:
  explicit StatusFile(fs::path path) : path_(std::move(path)) {}
  void write(const nlohmann::json& doc) {
    const std::string text = doc.dump(2) + "\n";
    if (text == last_) return;
    write_file_atomic(path_, text);
    last_ = text;
  }

 private:
  fs::path path_;
  std::string last_;
};

std::string where_published(const nlohmann::json& ip) {
  const std::string s = ip.is_string() ? ip.get<std::string>() : "";
  if (s.empty() || s == "0.0.0.0" || s == "::") return "127.0.0.1";
  return s;
}

// Splits a chunked stream into lines (the agent sends one JSON event a line).
class LineSplitter {
 public:
  template <typename F>
  void feed(std::string_view data, F&& on_line) {
    buffer_.append(data);
    for (size_t nl; (nl = buffer_.find('\n')) != std::string::npos;) {
      on_line(std::string_view(buffer_).substr(0, nl));
      buffer_.erase(0, nl + 1);
    }
    if (buffer_.size() > 1024 * 1024) buffer_.clear();  // a runaway line is not an event
  }

 private:
  std::string buffer_;
};

// The forwarder's state shared by its threads.
class Forwarder {
 public:
  Forwarder(Context& ctx, MachineRecord record)
      : ctx_(ctx), record_(std::move(record)), endpoint_(agent_endpoint(ctx_, record_)),
        status_(paths_of(ctx_, record_.name).status), driver_(load_driver(ctx_, record_)),
        native_file_(ctx_.store().machine_dir(record_.name) / "forward.native") {
    const char* env = std::getenv("BERTH_FORWARD_NATIVE");
    native_allowed_ = !(env && std::string(env) == "0");
  }

  void run() {
    drop_native_left_behind();
    std::thread events([this] { follow_events(); });
    std::thread reporter([this] { report(); });
    serve_ssh();
    stopping_ = true;
    cv_.notify_all();
    events.join();
    reporter.join();
    drop_native();
  }

 private:
  bool stopping() const { return stopping_ || ctx_.interrupted; }

  void sleep_unless_stopping(std::chrono::milliseconds d) {
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, d, [this] { return stopping(); });
  }

  // Ports published on every address go through the driver's native forward
  // when it has one (a QEMU hostfwd, a VirtualBox NAT rule); the rest, and any the
  // driver refuses, over SSH.
  void set_wanted(std::vector<PortForward> wanted) {
    std::lock_guard lock(mu_);
    std::map<int, PortForward> want;
    for (auto& f : wanted) want.emplace(f.local_port, f);
    for (auto it = native_.begin(); it != native_.end();) {
      auto w = want.find(it->first);
      if (w != want.end() && w->second == it->second) {
        ++it;
        continue;
      }
      driver_->remove_port_forward(it->first);
      log::info(kLog, "stop forwarding 127.0.0.1:{} ({})", it->first, native_via());
      it = native_.erase(it);
    }
    wanted_.clear();
    for (auto& [port, f] : want) {
      if (native_.count(port)) continue;
      if (f.any_address && native_allowed_) {
        std::string why;
        try {
          why = driver_->add_port_forward(port);
        } catch (const Error& e) {
          why = e.what();
        }
        if (why.empty()) {
          log::info(kLog, "forwarding 127.0.0.1:{} natively ({})", port, f.label);
          native_.emplace(port, f);
          continue;
        }
        log::debug(kLog, "no native forward for 127.0.0.1:{}: {}", port, why);
      }
      wanted_.push_back(f);
    }
    remember_native();
    if (current_) current_->set_forwards(wanted_);
  }

  // forward.native lists the native forwards, so a forwarder that was killed
  // has its forwards removed by the next one.
  void remember_native() {
    std::string text;
    for (const auto& [port, f] : native_) text += std::to_string(port) + "\n";
    try {
      write_file_atomic(native_file_, text);
    } catch (const Error& e) {
      log::warn(kLog, "{}", e.what());
    }
  }

  void drop_native_left_behind() {
    std::ifstream in(native_file_);
    for (int port; in >> port;) driver_->remove_port_forward(port);
  }

  void drop_native() {
    std::lock_guard lock(mu_);
    for (const auto& [port, f] : native_) driver_->remove_port_forward(port);
    native_.clear();
    std::error_code ec;
    fs::remove(native_file_, ec);
  }

  // Asks the agent which ports are published now. False when it did not answer.
  bool reconcile() {
    const auto r = agent_get(endpoint_, "/containers/json", std::chrono::seconds(10));
    if (!r.error.empty() || r.status != 200) {
      set_agent_problem(r.error.empty() ? fmt::format("GET /containers/json answered HTTP {}", r.status) : r.error);
      return false;
    }
    try {
      std::set<std::string> gone;
      {
        std::lock_guard lock(mu_);
        gone = gone_;
      }
      set_wanted(forwards_from_containers(r.body, gone));
    } catch (const Error& e) {
      set_agent_problem(e.what());
      return false;
    }
    return true;
  }

  void set_agent_problem(std::string problem) {
    std::lock_guard lock(mu_);
    if (problem != agent_problem_ && !problem.empty()) log::warn(kLog, "machine '{}': agent: {}", record_.name, problem);
    agent_problem_ = std::move(problem);
  }

  void follow_events() {
    const std::string path =
        "/events?filters=" + std::string("%7B%22type%22%3A%5B%22container%22%5D%7D");  // {"type":["container"]}
    auto backoff = std::chrono::milliseconds(500);
    while (!stopping()) {
      if (!reconcile()) {
        sleep_unless_stopping(backoff);
        backoff = std::min(backoff * 2, std::chrono::milliseconds(5000));
        continue;
      }
      LineSplitter lines;
      bool got_events = false;
      const auto r = agent_stream(
          endpoint_, path,
          [&](std::string_view data) {
            if (!got_events) set_agent_problem("");
            got_events = true;
            lines.feed(data, [&](std::string_view line) {
              auto ev = nlohmann::json::parse(line, nullptr, false);
              if (!ev.is_object()) return;
              const std::string action = ev.value("Action", ev.value("status", ""));
              if (!kPortEvents.count(action)) return;
              // The engine may list a container as running for a moment after
              // its die event: trust the event.
              const std::string id = ev.contains("Actor") && ev["Actor"].is_object()
                                         ? ev["Actor"].value("ID", ev.value("id", ""))
                                         : ev.value("id", "");
              if (!id.empty()) {
                std::lock_guard lock(mu_);
                if (gone_.size() > 4096) gone_.clear();
                if (action == "die" || action == "destroy" || action == "stop")
                  gone_.insert(id);
                else if (action == "start" || action == "restart" || action == "unpause")
                  gone_.erase(id);
              }
              reconcile();
            });
            return !stopping();
          },
          [this] { return stopping(); }, std::chrono::seconds(10));
      if (stopping()) break;
      if (r.status == 404 || r.status == 501) {
        // An engine without /events: ask every second instead.
        set_agent_problem("");
        while (!stopping() && reconcile()) sleep_unless_stopping(std::chrono::seconds(1));
        continue;
      }
      if (r.status == 200 && !got_events) set_agent_problem("");
      if (!r.error.empty() || r.status != 200)
        set_agent_problem(r.error.empty() ? fmt::format("GET /events answered HTTP {}", r.status)
                                          : "events stream: " + r.error);
      else
        backoff = std::chrono::milliseconds(500);
      sleep_unless_stopping(backoff);
      backoff = std::min(backoff * 2, std::chrono::milliseconds(5000));
    }
  }

  void serve_ssh() {
    auto backoff = std::chrono::milliseconds(500);
    while (!stopping()) {
      try {
        auto session = connect_ssh(ctx_, record_, std::chrono::seconds(30));
        SshPortForwarder forwarder(std::move(session));
        {
          std::lock_guard lock(mu_);
          current_ = &forwarder;
          ssh_problem_.clear();
          forwarder.set_forwards(wanted_);
        }
        log::info(kLog, "machine '{}': SSH connected", record_.name);
        backoff = std::chrono::milliseconds(500);
        try {
          forwarder.run();
        } catch (...) {
          std::lock_guard lock(mu_);
          current_ = nullptr;
          throw;
        }
        std::lock_guard lock(mu_);
        current_ = nullptr;
      } catch (const Error& e) {
        if (stopping()) break;
        {
          std::lock_guard lock(mu_);
          ssh_problem_ = e.what();
        }
        log::warn(kLog, "machine '{}': {}; reconnecting", record_.name, e.what());
        sleep_unless_stopping(backoff);
        backoff = std::min(backoff * 2, std::chrono::milliseconds(10000));
      }
    }
  }

  // Writes forward.json ten times a second (when it changed) and stops the SSH loop on a signal.
  void report() {
    while (true) {
      {
        std::unique_lock lock(mu_);
        cv_.wait_for(lock, std::chrono::milliseconds(100), [this] { return stopping_.load(); });
        if (!machine_exists()) {
          log::warn(kLog, "machine '{}' is gone from the store; stopping", record_.name);
          ctx_.interrupted = true;
        }
        if (ctx_.interrupted) {
          if (current_) current_->stop();
          cv_.notify_all();
        }
        if (stopping_) return;
      }
      try {
        status_.write(snapshot());
      } catch (const Error& e) {
        log::warn(kLog, "{}", e.what());
      }
    }
  }

  // How `forward --status` names a native forward.
  std::string native_via() const { return record_.driver == "libvirt" ? "qemu" : record_.driver; }

  bool machine_exists() const {
    std::error_code ec;
    return fs::exists(ctx_.store().config_path(record_.name), ec);
  }

  nlohmann::json snapshot() {
    std::lock_guard lock(mu_);
    nlohmann::json forwards = nlohmann::json::array();
    for (const auto& [port, f] : native_)
      forwards.push_back({{"port", port},
                          {"target", fmt::format("machine:{}", f.remote_port)},
                          {"container", f.label},
                          {"via", native_via()},
                          {"listening", true},
                          {"error", ""}});
    if (current_) {
      for (const auto& s : current_->status())
        forwards.push_back({{"port", s.forward.local_port},
                            {"target", fmt::format("{}:{}", s.forward.remote_host, s.forward.remote_port)},
                            {"container", s.forward.label},
                            {"listening", s.listening},
                            {"error", s.error},
                            {"via", "ssh"},
                            {"connections", s.connections},
                            {"bytes_in", s.bytes_in},
                            {"bytes_out", s.bytes_out}});
    }
    return {{"pid", ::getpid()}, {"ssh", current_ ? "connected" : ssh_problem_.empty() ? "connecting" : ssh_problem_},
            {"agent", agent_problem_}, {"forwards", forwards}};
  }

  Context& ctx_;
  MachineRecord record_;
  AgentEndpoint endpoint_;
  StatusFile status_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::atomic<bool> stopping_{false};
  std::set<std::string> gone_;       // ids that died (events), until they start again
  std::vector<PortForward> wanted_;  // over SSH
  std::map<int, PortForward> native_;  // through the driver
  std::unique_ptr<Driver> driver_;
  fs::path native_file_;
  bool native_allowed_ = true;
  SshPortForwarder* current_ = nullptr;
  std::string ssh_problem_, agent_problem_;
};

}  // namespace

std::vector<PortForward> forwards_from_containers(const std::string& containers_json,
                                                  const std::set<std::string>& gone) {
  const auto doc = nlohmann::json::parse(containers_json, nullptr, false);
  if (!doc.is_array()) throw Error("GET /containers/json did not answer a JSON array");
  std::map<int, PortForward> by_port;
  for (const auto& c : doc) {
    if (!c.is_object()) continue;
    if (c.contains("State") && c["State"].is_string() && c["State"] != "running") continue;
    if (c.contains("Id") && c["Id"].is_string() && gone.count(c["Id"].get<std::string>())) continue;
    std::string name = c.contains("Id") && c["Id"].is_string() ? c["Id"].get<std::string>().substr(0, 12) : "";
    if (c.contains("Names") && c["Names"].is_array() && !c["Names"].empty() && c["Names"][0].is_string()) {
      name = c["Names"][0].get<std::string>();
      if (!name.empty() && name.front() == '/') name.erase(0, 1);
    }
    if (!c.contains("Ports") || !c["Ports"].is_array()) continue;
    for (const auto& p : c["Ports"]) {
      if (!p.is_object() || p.value("Type", "tcp") != "tcp") continue;
      const auto pub = p.find("PublicPort");
      if (pub == p.end() || !pub->is_number_integer()) continue;
      const int port = pub->get<int>();
      if (port < 1 || port > 65535 || by_port.count(port)) continue;
      const auto ip = p.value("IP", nlohmann::json());
      const std::string host = where_published(ip);
      const bool any = !ip.is_string() || ip == "" || ip == "0.0.0.0" || ip == "::";
      by_port[port] = PortForward{port, host, port, name, any};
    }
  }
  std::vector<PortForward> out;
  for (auto& [port, f] : by_port) out.push_back(std::move(f));
  return out;
}

ForwarderView read_forwarder(Context& ctx, const std::string& name) {
  const Paths p = paths_of(ctx, name);
  ForwarderView v;
  v.running = lock_held(p.lock);
  if (!v.running) return v;
  std::ifstream in(p.status);
  const auto doc = nlohmann::json::parse(in, nullptr, false);
  if (!doc.is_object()) return v;
  if (doc.contains("forwards") && doc["forwards"].is_array()) {
    for (const auto& f : doc["forwards"]) {
      if (!f.is_object()) continue;
      if (f.value("listening", false))
        v.ports.push_back(f.value("port", 0));
      else
        v.warnings.push_back(fmt::format("port {} not forwarded: {}", f.value("port", 0), f.value("error", "")));
    }
  }
  const std::string ssh = doc.value("ssh", "");
  if (ssh != "connected" && ssh != "connecting") v.warnings.push_back("forwarder: " + ssh);
  if (const std::string agent = doc.value("agent", ""); !agent.empty()) v.warnings.push_back("forwarder: " + agent);
  return v;
}

bool forwarder_disabled(Context& ctx, const std::string& name) {
  std::error_code ec;
  return fs::exists(paths_of(ctx, name).disabled, ec);
}

void set_forwarder_disabled(Context& ctx, const std::string& name, bool disabled) {
  const fs::path marker = paths_of(ctx, name).disabled;
  if (disabled) {
    write_file_atomic(marker, "port forwarding turned off with 'berth forward --off'\n");
  } else {
    std::error_code ec;
    fs::remove(marker, ec);
  }
}

void start_forwarder(Context& ctx, const std::string& name, bool quiet) {
  const Paths p = paths_of(ctx, name);
  if (forwarder_disabled(ctx, name) || lock_held(p.lock)) return;
  std::error_code ec;
  const fs::path self = fs::read_symlink("/proc/self/exe", ec);
  if (ec) {
    log::warn(kLog, "machine '{}': cannot start the port forwarder: cannot find this program: {}", name, ec.message());
    return;
  }
  rotate_log(p.log);
  std::vector<std::string> args = {self.string(), "--storage-path", ctx.store().root().string()};
  if (ctx.debug) args.push_back("--debug");
  args.insert(args.end(), {"forward", "--foreground", name});
  try {
    spawn_detached(args, p.log);
  } catch (const Error& e) {
    log::warn(kLog, "machine '{}': {}", name, e.what());
    return;
  }
  if (!wait_for([&] { return lock_held(p.lock); }, kStartWait))
    log::warn(kLog, "machine '{}': the port forwarder did not start; see {}", name, p.log.string());
  else if (!quiet)
    fmt::print(stderr, "{}: forwarding published ports to 127.0.0.1 (berth ls shows them)\n", name);
}

void stop_forwarder(Context& ctx, const std::string& name) {
  const Paths p = paths_of(ctx, name);
  if (!lock_held(p.lock)) return;
  const pid_t pid = read_pid(p.pid);
  if (pid > 0) ::kill(pid, SIGTERM);
  if (!wait_for([&] { return !lock_held(p.lock); }, kStopWait) && pid > 0) {
    ::kill(pid, SIGKILL);
    wait_for([&] { return !lock_held(p.lock); }, std::chrono::seconds(1));
  }
  std::error_code ec;
  fs::remove(p.status, ec);
}

void run_forwarder(Context& ctx, const std::string& name) {
  const Paths p = paths_of(ctx, name);
  MachineRecord record = ctx.store().load(name);
  if (record.phase != "ready")
    throw UserError(fmt::format("machine '{}' is not ready (its create did not finish); nothing to forward", name));
  if (!driver_factory(ctx, record).capabilities().has_ssh)
    throw UserError(fmt::format("machine '{}': the {} driver has no SSH, so berth cannot forward its ports", name,
                                record.driver));
  auto lock = FileLock::try_acquire(p.lock);
  if (!lock) throw UserError(fmt::format("machine '{}': a port forwarder already runs (see {})", name, p.log.string()));
  write_file_atomic(p.pid, std::to_string(::getpid()) + "\n");
  install_interrupt_handler(ctx);
  log::set_timestamps(true);
  log::info(kLog, "machine '{}': port forwarder started (pid {})", name, ::getpid());
  Forwarder(ctx, std::move(record)).run();
  std::error_code ec;
  fs::remove(p.status, ec);
  fs::remove(p.pid, ec);
  log::info(kLog, "machine '{}': port forwarder stopped", name);
}

}  // namespace berth::cli
