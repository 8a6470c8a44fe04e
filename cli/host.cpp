#include "cli/host.h"

#include "cli/cluster.h"

#include <fmt/format.h>

#include <pthread.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <optional>
#include <thread>

#include "cli/forwarder.h"
#include "core/docker_context.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/live_line.h"
#include "core/log.h"
#include "core/net.h"
#include "core/tls.h"
#include "provision/provision.h"

namespace berth::cli {

namespace {
constexpr auto kAgentDeadline = std::chrono::seconds(30);
constexpr auto kSshDeadline = std::chrono::seconds(120);

using Clock = std::chrono::steady_clock;
constexpr std::string_view kSpinner = "|/-\\";

// `line` cut to the terminal's width, so that it never wraps (a redraw in place
// would then start on the wrong row); UTF-8 sequences stay whole.
std::string fit_terminal(std::string line, std::FILE* out) {
  winsize ws{};
  if (::ioctl(::fileno(out), TIOCGWINSZ, &ws) != 0 || ws.ws_col < 2) return line;
  size_t cut = ws.ws_col - 1u;
  if (line.size() <= cut) return line;
  while (cut > 0 && (static_cast<unsigned char>(line[cut]) & 0xC0) == 0x80) --cut;
  line.resize(cut);
  return line;
}

}  // namespace

// One step while it runs. A thread redraws the spinner (terminal) or says the
// step is still running (lines) until the step ends; then its time is printed.
class Steps::Running {
 public:
  Running(const Steps& steps, std::string step) : s_(steps), step_(std::move(step)), started_(Clock::now()) {
    if (s_.terminal_) {
      line_.emplace([this] { print("\r\033[K"); });
      draw(0);
    } else {
      print(fmt::format("{}: {}...\n", s_.machine_, step_));
    }
    // Signals stay with the thread that waits for them (install_interrupt_handler).
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    thread_ = std::thread([this] { run(); });
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
  }

  ~Running() {
    {
      std::lock_guard lock(mu_);
      done_ = true;
    }
    cv_.notify_one();
    thread_.join();
    const std::string last = fmt::format("{}: {} ({:.1f}s)", s_.machine_, step_,
                                         std::chrono::duration<double>(Clock::now() - started_).count());
    if (line_)
      line_->last([&] { print("\r\033[K" + last + "\n"); });
    else
      print(last + "\n");
  }

  Running(const Running&) = delete;
  Running& operator=(const Running&) = delete;

 private:
  void run() {
    const auto every =
        std::max(s_.terminal_ ? s_.output_.redraw_every : s_.output_.still_every, std::chrono::milliseconds(1));
    std::unique_lock lock(mu_);
    while (true) {
      // The next multiple of `every`: no burst of catching up after a stall.
      const auto ticks = (Clock::now() - started_) / every + 1;
      if (cv_.wait_until(lock, started_ + ticks * every, [this] { return done_; })) return;
      lock.unlock();
      if (s_.terminal_)
        draw(ticks);
      else
        print(fmt::format("{}: still {} ({}s)\n", s_.machine_, step_, seconds()));
      lock.lock();
    }
  }

  void draw(long long tick) {
    const std::string text =
        fmt::format("{} {}: {} ({}s)", kSpinner[tick % kSpinner.size()], s_.machine_, step_, seconds());
    line_->draw([&] { print("\r\033[K" + fit_terminal(text, s_.output_.out)); });
  }

  long seconds() const {
    return static_cast<long>(std::chrono::duration_cast<std::chrono::seconds>(Clock::now() - started_).count());
  }

  void print(const std::string& text) const {
    std::fputs(text.c_str(), s_.output_.out);
    std::fflush(s_.output_.out);
  }

  const Steps& s_;
  const std::string step_;
  const Clock::time_point started_;
  std::optional<LiveLine> line_;  // terminal
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;  // under mu_
  std::thread thread_;
};

Steps::Steps(std::string machine, bool quiet, StepsOutput output)
    : machine_(std::move(machine)), quiet_(quiet), output_(output) {
  const char* term = std::getenv("TERM");
  terminal_ = !quiet_ && output_.out &&
              (output_.mode == StepsOutput::Mode::Terminal ||
               (output_.mode == StepsOutput::Mode::Auto && ::isatty(::fileno(output_.out)) == 1 &&
                !(term && std::string_view(term) == "dumb")));
}

Steps::~Steps() = default;

void Steps::operator()(std::string_view step) {
  current_.reset();
  if (quiet_ || !output_.out || step.empty()) return;
  current_ = std::make_unique<Running>(*this, std::string(step));
}

DriverContext driver_context(Context& ctx, const std::string& name, int engine_port) {
  DriverContext dc;
  dc.machine_name = name;
  dc.machine_dir = ctx.store().machine_dir(name);
  dc.cancel = ctx.cancel();
  dc.engine_port = engine_port;
  dc.secrets = &ctx.secrets();
  dc.checkpoint = [&ctx, name](const nlohmann::json& state) {
    MachineRecord record = ctx.store().load(name);
    record.driver_state = state;
    ctx.store().save(record);
  };
  return dc;
}

const DriverFactory& driver_factory(Context& ctx, const MachineRecord& record) {
  const DriverFactory* f = ctx.drivers.find(record.driver);
  if (!f)
    throw Error("machine '" + record.name + "' uses driver '" + record.driver +
                "', which this berth does not have; use the berth that created it");
  return *f;
}

namespace {

// A host imported from docker-machine: its driver as berth has it, with what
// docker-machine did differently (boot2docker's SSH user and key, dockerd on
// the VM's host-only IP) laid over it.
class ImportedEngineDriver final : public Driver {
 public:
  ImportedEngineDriver(std::unique_ptr<Driver> inner, ImportOrigin origin)
      : inner_(std::move(inner)), o_(std::move(origin)) {}

  void pre_create_check() override { inner_->pre_create_check(); }
  void create() override { inner_->create(); }
  void start() override { inner_->start(); }
  void stop() override { inner_->stop(); }
  void restart() override { inner_->restart(); }
  void kill() override { inner_->kill(); }
  void remove() override { inner_->remove(); }
  MachineState state(std::chrono::milliseconds timeout) override { return inner_->state(timeout); }
  std::optional<SshEndpoint> ssh_endpoint() const override {
    auto ep = inner_->ssh_endpoint();
    if (!ep) return ep;
    if (!o_.ssh_user.empty()) ep->user = o_.ssh_user;
    if (o_.ssh_port > 0) ep->port = o_.ssh_port;
    if (!o_.ssh_key.empty()) ep->key_path = o_.ssh_key;
    return ep;
  }
  std::string ip() const override {
    if (o_.docker_url.empty()) return inner_->ip();
    std::string host = o_.docker_url.substr(o_.docker_url.find("://") + 3);
    host = host.substr(0, host.rfind(':'));
    if (host.size() > 1 && host.front() == '[') host = host.substr(1, host.size() - 2);
    return host;
  }
  std::string url(int agent_port) const override {
    return o_.docker_url.empty() ? inner_->url(agent_port) : o_.docker_url;
  }
  nlohmann::json save_state() const override { return inner_->save_state(); }

 private:
  std::unique_ptr<Driver> inner_;
  ImportOrigin o_;
};

}  // namespace

std::unique_ptr<Driver> load_driver(Context& ctx, const MachineRecord& record) {
  auto driver = driver_factory(ctx, record).load(record.driver_state,
                                                 driver_context(ctx, record.name, record.engine.port));
  if (!is_engine_host(record)) return driver;
  return std::make_unique<ImportedEngineDriver>(std::move(driver), record.imported_from);
}

void refuse_on_engine_host(const MachineRecord& record, const std::string& what) {
  if (!is_engine_host(record)) return;
  std::string how = "'berth rm " + record.name + "', then 'berth create -d " + record.driver + " ... " +
                    record.name + "'";
  if (record.driver == "none")  // no SSH: berth can't install its agent there
    throw UserError("machine '" + record.name + "' is a docker-machine engine host (dockerd, imported from " +
                    record.imported_from.path + ") on the none driver; berth cannot " + what +
                    " it: without SSH it can only point docker at its dockerd, as it does now");
  if (record.driver == "generic") {
    const auto& s = record.driver_state;
    how = "'berth rm " + record.name + "' (the host and its dockerd stay), then 'berth create -d generic " +
          "--generic-ip-address " + s.value("ip_address", std::string("IP")) + " --generic-ssh-user " +
          s.value("ssh_user", std::string("root")) + " --generic-ssh-key KEY " + record.name + "'";
  }
  throw UserError("machine '" + record.name + "' is a docker-machine engine host (dockerd, imported from " +
                  record.imported_from.path + "); berth cannot " + what + " it; to make it a berth-agent machine: " +
                  how);
}

std::string machine_url(Context& ctx, const MachineRecord& record) {
  return load_driver(ctx, record)->url(record.engine.port);
}

AgentEndpoint agent_endpoint(Context& ctx, const MachineRecord& record) {
  return AgentEndpoint{machine_url(ctx, record), record.tls.ca_cert, record.tls.client_cert,
                       record.tls.client_key};
}

std::unique_ptr<SshSession> connect_ssh(Context& ctx, MachineRecord& record, std::chrono::milliseconds deadline) {
  auto driver = load_driver(ctx, record);
  auto ep = driver->ssh_endpoint();
  if (!ep)
    throw UserError("machine '" + record.name + "' uses the " + record.driver +
                    " driver, which has no SSH access");
  record.ssh.host = ep->host;
  record.ssh.port = ep->port;
  record.ssh.user = ep->user;
  record.ssh.key_path = ep->key_path.string();
  SshTarget target{ep->host, ep->port, ep->user, ep->key_path, record.ssh.host_key_fingerprint, record.name};
  auto cancel = ctx.cancel();
  auto session = wait_for_ssh(target, deadline, [cancel] { return cancel.cancelled(); });
  if (record.ssh.host_key_fingerprint.empty()) {
    record.ssh.host_key_fingerprint = session->host_key_fingerprint();
    ctx.store().save(record);
    log::debug("ssh", "pinned host key {} for {}", record.ssh.host_key_fingerprint, record.name);
  }
  return session;
}

namespace {

std::vector<std::string> wanted_sans(const Driver& driver, const MachineRecord& record) {
  std::vector<std::string> sans{driver.ip(), "localhost", "127.0.0.1", record.name};
  for (const auto& s : record.tls.extra_sans) sans.push_back(s);
  std::vector<std::string> unique;
  for (auto& s : sans)
    if (!s.empty() && std::find(unique.begin(), unique.end(), s) == unique.end()) unique.push_back(s);
  return unique;
}

provision::TlsMaterial machine_tls(const MachineRecord& record) {
  return {read_file(record.tls.ca_cert), read_file(record.tls.server_cert), read_file(record.tls.server_key)};
}

}  // namespace

void issue_machine_certs(Context& ctx, MachineRecord& record) {
  refuse_on_engine_host(record, "issue certificates for");
  const auto type = tls::parse_key_type(record.tls.key_type);
  auto store_certs = tls::ensure_store_certs(ctx.store().certs_dir(), type);
  auto driver = load_driver(ctx, record);
  const fs::path dir = ctx.store().machine_dir(record.name);
  const auto sans = wanted_sans(*driver, record);
  auto server = tls::make_server_cert(store_certs.ca, record.name, sans, type);
  write_file_atomic(dir / "server.pem", server.cert_pem, 0600);
  write_file_atomic(dir / "server-key.pem", server.key_pem, 0600);
  write_file_atomic(dir / "ca.pem", store_certs.ca.cert_pem, 0600);
  write_file_atomic(dir / "cert.pem", store_certs.client.cert_pem, 0600);
  write_file_atomic(dir / "key.pem", store_certs.client.key_pem, 0600);
  record.tls.ca_cert = (dir / "ca.pem").string();
  record.tls.client_cert = (dir / "cert.pem").string();
  record.tls.client_key = (dir / "key.pem").string();
  record.tls.server_cert = (dir / "server.pem").string();
  record.tls.server_key = (dir / "server-key.pem").string();
  record.tls.server_sans = sans;
  record.agent_host = driver->ip();
}

void provision_machine(Context& ctx, MachineRecord& record, const StepReporter& step) {
  refuse_on_engine_host(record, "provision");
  auto cancel = ctx.cancel();
  step("waiting for SSH");
  std::unique_ptr<SshSession> ssh;
  try {
    ssh = connect_ssh(ctx, record, kSshDeadline);
  } catch (const SshError& e) {
    std::error_code ec;
    if (!fs::exists(ctx.store().machine_dir(record.name) / "console.log", ec)) throw;
    throw SshError(std::string(e.what()) + "; the machine's console is in 'berth logs " + record.name + "'");
  }
  cancel.throw_if_cancelled();
  step("detecting the host's OS");
  auto prov = provision::detect(*ssh);
  cancel.throw_if_cancelled();
  provision::AgentInstall spec{record.name, ctx.agent_binary(), machine_tls(record), record.engine,
                               cluster_install(ctx, record)};
  prov->install(spec, [&](std::string_view s) {
    cancel.throw_if_cancelled();
    step(s);
  });
  cancel.throw_if_cancelled();
  step("waiting for the agent over TLS");
  wait_for_agent(agent_endpoint(ctx, record), kAgentDeadline);
  std::string err;
  record.agent_version = agent_docker_version(agent_endpoint(ctx, record), std::chrono::seconds(5), &err);
}

bool refresh_certs_if_address_changed(Context& ctx, MachineRecord& record, const StepReporter& step) {
  if (is_engine_host(record)) return false;   // dockerd keeps docker-machine's certificate
  auto driver = load_driver(ctx, record);
  if (wanted_sans(*driver, record) == record.tls.server_sans) return false;
  step("re-issuing the server certificate for the new address");
  issue_machine_certs(ctx, record);
  auto ssh = connect_ssh(ctx, record, kSshDeadline);
  provision::detect(*ssh)->install_certs(machine_tls(record));
  ctx.store().save(record);
  return true;
}

void remove_machine(Context& ctx, const std::string& name, bool force) {
  Store& store = ctx.store();
  auto lock = store.lock(name);
  std::optional<MachineRecord> record;
  try {
    record = store.load(name);
  } catch (const NotFound&) {
    throw;
  } catch (const Error& e) {
    if (!force) throw;
    log::warn("rm", "{}", e.what());
  }
  destroy_machine(ctx, name, record, force);
}

void destroy_machine(Context& ctx, const std::string& name, const std::optional<MachineRecord>& stored, bool force) {
  auto attempt = [&](const char* what, const std::function<void()>& fn) {
    try {
      fn();
    } catch (const Error& e) {
      if (!force)
        throw Error(fmt::format("machine '{}': cannot {}: {}; use 'berth rm -f {}' to remove it anyway",
                                name, what, e.what(), name));
      log::warn("rm", "machine '{}': could not {}: {}", name, what, e.what());
    }
  };
  stop_forwarder(ctx, name);
  if (stored) {
    MachineRecord record = *stored;
    if (!record.cluster.empty()) attempt("leave its cluster", [&] { leave_cluster(ctx, record); });
    const DriverFactory* factory = ctx.drivers.find(record.driver);
    if (!factory) {
      attempt("load its driver", [&] { driver_factory(ctx, record); });
    } else {
      auto caps = factory->capabilities();
      // Without a pinned host key the create never got as far as installing anything.
      // An engine host keeps its dockerd: there is no berth-agent to remove.
      if (caps.has_ssh && !caps.remove_destroys_host && !record.ssh.host_key_fingerprint.empty() &&
          !is_engine_host(record)) {
        attempt("remove the agent from the host", [&] {
          auto ssh = connect_ssh(ctx, record, std::chrono::seconds(force ? 10 : 30));
          provision::detect(*ssh)->uninstall();
        });
      }
      attempt("remove its driver resources", [&] { load_driver(ctx, record)->remove(); });
    }
  }
  ctx.store().remove_machine_dir(name);
}

std::string error_state_reason(Context& ctx, const MachineRecord& record, const Driver& driver,
                               std::chrono::milliseconds timeout) {
  std::string err;
  if (auto ssh = driver.ssh_endpoint(); ssh && !tcp_port_open(ssh->host, ssh->port, timeout, &err))
    return fmt::format("SSH at {}:{}: {}", ssh->host, ssh->port, err);
  const AgentEndpoint ep = agent_endpoint(ctx, record);
  if (agent_docker_version(ep, timeout, &err).empty()) return fmt::format("agent at {}: {}", ep.url, err);
  return "";
}

std::optional<std::string> active_machine(Context& ctx) {
  const char* host = std::getenv("DOCKER_HOST");
  Store& store = ctx.store();
  if (host && *host) {
    // Two machines may share a URL: the one `env` named (or docker-machine's variable) wins.
    for (const char* var : {"BERTH_MACHINE_NAME", "DOCKER_MACHINE_NAME"}) {
      const char* named = std::getenv(var);
      if (!named || !store.exists(named)) continue;
      try {
        if (machine_url(ctx, store.load(named)) == host) return std::string(named);
      } catch (const Error&) {
      }
    }
    for (const auto& m : store.list()) {
      if (!m.record) continue;
      try {
        if (machine_url(ctx, *m.record) == host) return m.name;
      } catch (const Error&) {
      }
    }
    return std::nullopt;
  }
  if (const char* ctxname = std::getenv("DOCKER_CONTEXT"); ctxname && *ctxname) {
    std::string c = ctxname;
    if (c.rfind("berth-", 0) == 0 && store.exists(c.substr(6))) return c.substr(6);
    return std::nullopt;
  }
  std::string current = current_docker_context();
  if (current.rfind("berth-", 0) == 0 && store.exists(current.substr(6))) return current.substr(6);
  return std::nullopt;
}

void change_power(Context& ctx, const std::string& name, PowerOp op, bool quiet) {
  static const char* const verbs[] = {"start", "stop", "restart", "kill"};
  const char* verb = verbs[static_cast<int>(op)];
  auto lock = ctx.store().lock(name);
  MachineRecord record = ctx.store().load(name);
  auto caps = driver_factory(ctx, record).capabilities();
  const bool able[] = {caps.can_start, caps.can_stop, caps.can_restart || (caps.can_start && caps.can_stop),
                       caps.can_kill};
  if (!able[static_cast<int>(op)])
    throw UserError(fmt::format("machine '{}': the {} driver can't {} machines; {} the host yourself", name,
                                record.driver, verb, verb));
  auto driver = load_driver(ctx, record);
  Steps step(name, quiet);
  static const char* const doing[] = {"starting", "stopping", "restarting", "killing"};
  if (op != PowerOp::Start) stop_forwarder(ctx, name);
  if (op == PowerOp::Start || op == PowerOp::Restart) ensure_cluster_segment(ctx, record);
  step(doing[static_cast<int>(op)]);
  switch (op) {
    case PowerOp::Start: driver->start(); break;
    case PowerOp::Stop: driver->stop(); break;
    case PowerOp::Kill: driver->kill(); break;
    case PowerOp::Restart:
      if (caps.can_restart) {
        driver->restart();
      } else {
        driver->stop();
        driver->start();
      }
      break;
  }
  record.driver_state = driver->save_state();
  ctx.store().save(record);
  if ((op == PowerOp::Start || op == PowerOp::Restart) && caps.has_ssh) {
    refresh_certs_if_address_changed(ctx, record, step.reporter());
    step("waiting for the agent over TLS");
    wait_for_agent(agent_endpoint(ctx, record), kAgentDeadline);
    step("");
    start_forwarder(ctx, name, quiet);
  }
  step("");
}

std::string machine_name_or_active(Context& ctx, const std::string& name) {
  if (!name.empty()) return name;
  if (auto active = active_machine(ctx)) return *active;
  throw UsageError("no machine name given and no machine is active; name one (see 'berth ls')");
}

}  // namespace berth::cli
