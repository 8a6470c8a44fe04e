#include "agent/runtime/shim.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <chrono>
#include <cstring>
#include <list>
#include <stdexcept>

#include "agent/process.h"
#include "agent/runtime/container_manager.h"
#include "agent/runtime/json_log.h"
#include "agent/runtime/log_rotate.h"


namespace berth::agent::runtime {

using nlohmann::json;

json ShimConfig::to_json() const {
  return {{"id", id},
          {"runtime", runtime},
          {"runtime_root", runtime_root},
          {"bundle", bundle.string()},
          {"dir", dir.string()},
          {"log_path", log_path.string()},
          {"log_max_size", log_max_size},
          {"log_max_file", log_max_file},
          {"cgroup_dir", cgroup_dir.string()},
          {"tty", tty},
          {"open_stdin", open_stdin},
          {"stdin_once", stdin_once}};
}

ShimConfig ShimConfig::from_json(const json& j) {
  ShimConfig c;
  c.id = j.at("id").get<std::string>();
  c.runtime = j.value("runtime", "crun");
  c.runtime_root = j.value("runtime_root", "");
  c.bundle = j.at("bundle").get<std::string>();
  c.dir = j.at("dir").get<std::string>();
  c.log_path = j.at("log_path").get<std::string>();
  c.log_max_size = j.value("log_max_size", std::int64_t{-1});
  c.log_max_file = j.value("log_max_file", 1);
  c.cgroup_dir = j.value("cgroup_dir", "");
  c.tty = j.value("tty", false);
  c.open_stdin = j.value("open_stdin", false);
  c.stdin_once = j.value("stdin_once", false);
  return c;
}

std::optional<ExitStatus> read_exit_status(const std::filesystem::path& file) {
  auto text = read_file(file);
  if (!text) return std::nullopt;
  json j = json::parse(*text, nullptr, false);
  if (!j.is_object()) return std::nullopt;
  ExitStatus s;
  s.exit_code = j.value("ExitCode", 255);
  s.finished_at = j.value("FinishedAt", "");
  s.oom_killed = j.value("OOMKilled", false);
  s.error = j.value("Error", "");
  return s;
}

std::vector<std::string> runtime_argv(const std::string& runtime, const std::string& root,
                                      std::vector<std::string> args) {
  std::vector<std::string> argv = {runtime};
  if (!root.empty()) argv.push_back("--root=" + root);
  argv.insert(argv.end(), args.begin(), args.end());
  return argv;
}

UniqueFd shim_attach(const std::filesystem::path& socket, bool in, bool out, bool err) {
  UniqueFd fd = connect_unix(socket);
  if (!fd) return fd;
  json hello = {{"attach", {{"stdin", in}, {"stdout", out}, {"stderr", err}}}};
  if (!write_all(fd.get(), hello.dump() + "\n")) return UniqueFd();
  auto reply = read_line(fd.get(), 64);
  if (!reply || *reply != "ok") return UniqueFd();
  return fd;
}

bool shim_resize(const std::filesystem::path& socket, int h, int w) {
  UniqueFd fd = connect_unix(socket);
  if (!fd) return false;
  json hello = {{"resize", {{"h", h}, {"w", w}}}};
  if (!write_all(fd.get(), hello.dump() + "\n")) return false;
  auto reply = read_line(fd.get(), 64);
  return reply && *reply == "ok";
}

namespace {

// The shim's own diagnostics go to DIR/shim.log.
class ShimLog {
 public:
  explicit ShimLog(const std::filesystem::path& path)
      : fd_(::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644)) {}
  void line(const std::string& msg) {
    if (fd_) write_all(fd_.get(), rfc3339_nano(to_unix_nanos(Clock::now())) + " " + msg + "\n");
  }

 private:
  UniqueFd fd_;
};

int wait_exit_code(pid_t pid) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return -1;
  }
  return exit_code_of(status);
}

std::pair<UniqueFd, UniqueFd> make_pipe() {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error(std::string("pipe: ") + std::strerror(errno));
  return {UniqueFd(fds[0]), UniqueFd(fds[1])};
}

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
  return s;
}

// crun --log=file:... writes JSON or "level: msg" lines; the last error line is the message.
std::string runtime_error_text(const std::filesystem::path& log, const std::string& fallback) {
  auto text = read_file(log);
  if (!text || text->empty()) return fallback;
  std::string t = trim(*text);
  auto nl = t.rfind('\n');
  std::string last = nl == std::string::npos ? t : t.substr(nl + 1);
  json j = json::parse(last, nullptr, false);
  if (j.is_object() && j.contains("msg") && j["msg"].is_string()) return j["msg"].get<std::string>();
  return last.empty() ? fallback : last;
}

struct Client {
  UniqueFd fd;
  bool stdin_ = false, stdout_ = false, stderr_ = false;
};

class Shim {
 public:
  Shim(ShimConfig config, UniqueFd sync) : c_(std::move(config)), sync_(std::move(sync)), log_(c_.dir / "shim.log") {}

  int run();

 private:
  void reply(const std::string& line) {
    if (sync_) write_all(sync_.get(), line + "\n");
  }
  // TTY containers: `crun create` now (the pty master comes back during it),
  // `crun start` on the agent's word. The others: pipes now, and one
  // `crun run --detach` on the agent's word (one runtime process fewer).
  void create();
  void start();
  void prepare_pipes();
  void run_detached();
  void read_container_pid();  // and makes the output ends non-blocking
  void end_without_container();  // deferred, and no container was made: the loop ends
  void loop();
  void finish();
  void on_output(StreamType type, std::string_view data);
  void accept_client();
  void close_stdin();
  void reap();

  ShimConfig c_;
  UniqueFd sync_;
  ShimLog log_;
  UniqueFd sigfd_, listen_;
  UniqueFd stdin_w_, stdout_r_, stderr_r_, master_;
  RotatingLogFile log_file_;
  LineSplitter out_lines_, err_lines_;
  std::list<Client> clients_;
  pid_t container_pid_ = -1;
  bool exited_ = false;
  int exit_status_ = 0;
  bool started_ = false;
  bool deferred_ = false;  // created by run_detached() at start
  UniqueFd child_in_, child_out_, child_err_;  // the pipes' container ends, until run_detached()
  bool sync_closed_ = false;
  std::chrono::steady_clock::time_point exited_at_;
};

void Shim::create() {
  std::filesystem::path console_path = c_.dir / "console.sock";
  UniqueFd console_listen = listen_unix(console_path, 1);
  std::vector<std::string> args = {"--log=file:" + c_.runtime_log().string(), "create",
                                   "--bundle", c_.bundle.string(), "--pid-file",
                                   c_.container_pid_file().string(), "--console-socket",
                                   console_path.string(), c_.id};
  std::filesystem::remove(c_.container_pid_file());
  std::filesystem::remove(c_.runtime_log());
  UniqueFd devnull(::open("/dev/null", O_RDWR | O_CLOEXEC));
  pid_t crun = spawn_process(runtime_argv(c_.runtime, c_.runtime_root, args), devnull.get(), devnull.get(),
                             devnull.get());
  // The runtime sends the pty master over the console socket during create.
  for (;;) {
    pollfd p{console_listen.get(), POLLIN, 0};
    int r = ::poll(&p, 1, 100);
    if (r > 0) {
      UniqueFd conn(::accept4(console_listen.get(), nullptr, nullptr, SOCK_CLOEXEC));
      if (conn) master_ = receive_fd(conn.get());
      break;
    }
    int status;
    pid_t done = ::waitpid(crun, &status, WNOHANG);
    if (done == crun) {
      int code = exit_code_of(status);
      std::filesystem::remove(console_path);
      throw std::runtime_error(runtime_error_text(
          c_.runtime_log(), "runtime create failed (exit " + std::to_string(code) + ")"));
    }
  }
  std::filesystem::remove(console_path);
  int code = wait_exit_code(crun);
  if (code != 0)
    throw std::runtime_error(runtime_error_text(
        c_.runtime_log(), "runtime create failed (exit " + std::to_string(code) + ")"));
  if (!master_) throw std::runtime_error("the runtime sent no terminal");
  read_container_pid();
}

void Shim::read_container_pid() {
  auto pid_text = read_file(c_.container_pid_file());
  if (!pid_text) throw std::runtime_error("the runtime wrote no pid file");
  container_pid_ = std::stoi(trim(*pid_text));
  for (UniqueFd* fd : {&stdout_r_, &stderr_r_, &master_})
    if (*fd) ::fcntl(fd->get(), F_SETFL, ::fcntl(fd->get(), F_GETFL) | O_NONBLOCK);
  // stdin writes stay blocking: a slow reader inside must not lose input.
}

void Shim::prepare_pipes() {
  auto [out_r, out_w] = make_pipe();
  auto [err_r, err_w] = make_pipe();
  stdout_r_ = std::move(out_r);
  stderr_r_ = std::move(err_r);
  child_out_ = std::move(out_w);
  child_err_ = std::move(err_w);
  if (c_.open_stdin) {
    auto [in_r, in_w] = make_pipe();
    child_in_ = std::move(in_r);
    stdin_w_ = std::move(in_w);
  }
  deferred_ = true;
}

void Shim::run_detached() {
  std::vector<std::string> args = {"--log=file:" + c_.runtime_log().string(), "run", "--detach",
                                   "--bundle", c_.bundle.string(), "--pid-file",
                                   c_.container_pid_file().string(), c_.id};
  std::filesystem::remove(c_.container_pid_file());
  std::filesystem::remove(c_.runtime_log());
  UniqueFd devnull(::open("/dev/null", O_RDWR | O_CLOEXEC));
  pid_t crun = spawn_process(runtime_argv(c_.runtime, c_.runtime_root, args),
                             child_in_ ? child_in_.get() : devnull.get(), child_out_.get(), child_err_.get());
  // Only the container holds the write ends now: its exit is our EOF.
  child_in_.reset();
  child_out_.reset();
  child_err_.reset();
  int code = wait_exit_code(crun);
  if (code != 0)
    throw std::runtime_error(runtime_error_text(c_.runtime_log(), "runtime run failed (exit " + std::to_string(code) + ")"));
  read_container_pid();
  started_ = true;
}

void Shim::end_without_container() {
  // As a container that exited at once: finish() deletes what the runtime left.
  child_in_.reset();
  child_out_.reset();
  child_err_.reset();
  exited_ = true;
  exit_status_ = 128;
  exited_at_ = std::chrono::steady_clock::now();
}

void Shim::start() {
  ProcessResult r = run_process(runtime_argv(c_.runtime, c_.runtime_root,
                                             {"--log=file:" + c_.runtime_log().string(),
                                              "start", c_.id}));
  if (!r.ok()) {
    std::string msg = trim(r.err);
    if (msg.empty()) msg = runtime_error_text(c_.runtime_log(), "runtime start failed");
    throw std::runtime_error(msg);
  }
  started_ = true;
}

void Shim::on_output(StreamType type, std::string_view data) {
  LineSplitter& lines = type == StreamType::Stderr ? err_lines_ : out_lines_;
  const char* stream = type == StreamType::Stderr ? "stderr" : "stdout";
  std::int64_t now = to_unix_nanos(Clock::now());
  std::string buf;
  for (const std::string& l : lines.feed(data)) {
    if (log_file_.rotates())
      log_file_.write(format_log_line(l, stream, now));
    else
      buf += format_log_line(l, stream, now);
  }
  if (!buf.empty()) log_file_.write(buf);
  std::string framed;
  if (!c_.tty) framed = frame(type, data);
  for (auto it = clients_.begin(); it != clients_.end();) {
    bool wants = c_.tty || (type == StreamType::Stderr ? it->stderr_ : it->stdout_);
    std::string_view payload = c_.tty ? data : std::string_view(framed);
    bool ok = true;
    if (wants) {
      std::string_view rest = payload;
      while (!rest.empty()) {
        ssize_t n = ::send(it->fd.get(), rest.data(), rest.size(), MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
          ok = false;
          break;
        }
        rest.remove_prefix(static_cast<std::size_t>(n));
      }
    }
    it = ok ? std::next(it) : clients_.erase(it);
  }
}

void Shim::close_stdin() {
  stdin_w_.reset();
}

void Shim::accept_client() {
  UniqueFd fd(::accept4(listen_.get(), nullptr, nullptr, SOCK_CLOEXEC));
  if (!fd) return;
  timeval tv{2, 0};
  ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  auto line = read_line(fd.get(), 4096);
  if (!line) return;
  json j = json::parse(*line, nullptr, false);
  if (!j.is_object()) return;
  if (auto r = j.find("resize"); r != j.end() && r->is_object()) {
    winsize ws{};
    ws.ws_row = static_cast<unsigned short>(r->value("h", 0));
    ws.ws_col = static_cast<unsigned short>(r->value("w", 0));
    bool ok = master_ && ::ioctl(master_.get(), TIOCSWINSZ, &ws) == 0;
    write_all(fd.get(), ok ? "ok\n" : "error\n");
    return;
  }
  auto a = j.find("attach");
  if (a == j.end() || !a->is_object()) return;
  tv = {0, 0};
  ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  Client client;
  client.stdin_ = a->value("stdin", false) && (c_.open_stdin || c_.tty);
  client.stdout_ = a->value("stdout", false);
  client.stderr_ = a->value("stderr", false);
  if (!write_all(fd.get(), "ok\n")) return;
  if (exited_ && !stdout_r_ && !stderr_r_ && !master_) return;  // nothing more will come
  if (!client.stdin_) ::shutdown(fd.get(), SHUT_RD);
  client.fd = std::move(fd);
  clients_.push_back(std::move(client));
}

void Shim::reap() {
  for (;;) {
    int status = 0;
    pid_t pid = ::waitpid(-1, &status, WNOHANG);
    if (pid <= 0) break;
    if (pid == container_pid_) {
      exited_ = true;
      exit_status_ = exit_code_of(status);
      exited_at_ = std::chrono::steady_clock::now();
      log_.line("container exited with " + std::to_string(exit_status_));
    }
  }
}

void Shim::loop() {
  char buf[32768];
  for (;;) {
    bool outputs_open = stdout_r_ || stderr_r_ || master_;
    if (exited_ && (!outputs_open ||
                    std::chrono::steady_clock::now() - exited_at_ > std::chrono::seconds(2)))
      return;
    std::vector<pollfd> fds;
    enum Kind { Sig, Sync, Listen, Out, Err, Master, ClientIn };
    std::vector<std::pair<Kind, std::list<Client>::iterator>> kinds;
    auto add = [&](int fd, Kind k, std::list<Client>::iterator it = {}) {
      fds.push_back({fd, POLLIN, 0});
      kinds.push_back({k, it});
    };
    add(sigfd_.get(), Sig);
    if (sync_ && !sync_closed_) add(sync_.get(), Sync);
    add(listen_.get(), Listen);
    if (stdout_r_) add(stdout_r_.get(), Out);
    if (stderr_r_) add(stderr_r_.get(), Err);
    if (master_) add(master_.get(), Master);
    for (auto it = clients_.begin(); it != clients_.end(); ++it)
      if (it->stdin_) add(it->fd.get(), ClientIn, it);
    int r = ::poll(fds.data(), fds.size(), exited_ ? 100 : 1000);
    if (r < 0 && errno != EINTR) throw std::runtime_error(std::string("poll: ") + std::strerror(errno));
    if (r <= 0) continue;
    std::vector<std::list<Client>::iterator> drop;
    for (std::size_t i = 0; i < fds.size(); ++i) {
      if (fds[i].revents == 0) continue;
      auto [kind, it] = kinds[i];
      switch (kind) {
        case Sig: {
          signalfd_siginfo info;
          while (::read(sigfd_.get(), &info, sizeof info) > 0) {
          }
          reap();
          break;
        }
        case Sync: {
          auto line = read_line(sync_.get(), 256);
          if (line && *line == "start" && !started_ && deferred_) {
            try {
              run_detached();
              reply("started " + std::to_string(container_pid_));
              log_.line("started container pid " + std::to_string(container_pid_));
            } catch (const std::exception& e) {
              log_.line(std::string("start failed: ") + e.what());
              reply(std::string("error ") + e.what());
              end_without_container();
            }
          } else if (line && *line == "start" && !started_) {
            try {
              start();
              reply("started");
            } catch (const std::exception& e) {
              log_.line(std::string("start failed: ") + e.what());
              reply(std::string("error ") + e.what());
              run_process(runtime_argv(c_.runtime, c_.runtime_root, {"kill", c_.id, "KILL"}));
            }
          } else if (!line) {
            sync_closed_ = true;
            if (!started_ && deferred_) {
              log_.line("agent went away before start; no container was made");
              end_without_container();
            } else if (!started_) {
              log_.line("agent went away before start; killing the container");
              run_process(runtime_argv(c_.runtime, c_.runtime_root, {"kill", c_.id, "KILL"}));
            }
          }
          break;
        }
        case Listen:
          accept_client();
          break;
        case Out:
        case Err:
        case Master: {
          UniqueFd& fd = kind == Out ? stdout_r_ : kind == Err ? stderr_r_ : master_;
          ssize_t n = ::read(fd.get(), buf, sizeof buf);
          if (n > 0) {
            on_output(kind == Err ? StreamType::Stderr : StreamType::Stdout,
                      std::string_view(buf, static_cast<std::size_t>(n)));
          } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
            fd.reset();  // EOF, or EIO from a pty whose slave side is gone
          }
          break;
        }
        case ClientIn: {
          ssize_t n = ::read(it->fd.get(), buf, sizeof buf);
          if (n > 0) {
            int target = c_.tty ? master_.get() : stdin_w_.get();
            if (target >= 0) {
              if (c_.tty) {
                // The master is non-blocking: wait for room instead of dropping input.
                std::string_view rest(buf, static_cast<std::size_t>(n));
                while (!rest.empty()) {
                  ssize_t w = ::write(target, rest.data(), rest.size());
                  if (w > 0) {
                    rest.remove_prefix(static_cast<std::size_t>(w));
                  } else if (w < 0 && errno == EAGAIN) {
                    pollfd p{target, POLLOUT, 0};
                    ::poll(&p, 1, 100);
                  } else if (!(w < 0 && errno == EINTR)) {
                    break;
                  }
                }
              } else if (!write_all(target, std::string_view(buf, static_cast<std::size_t>(n)))) {
                close_stdin();
              }
            }
          } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
            // The client closed its input: with StdinOnce the container's stdin closes too.
            it->stdin_ = false;
            if (n == 0 && c_.stdin_once && !c_.tty) close_stdin();
            if (!it->stdout_ && !it->stderr_) drop.push_back(it);
          }
          break;
        }
      }
    }
    for (auto it : drop) clients_.erase(it);
  }
}

void Shim::finish() {
  for (LineSplitter* s : {&out_lines_, &err_lines_}) {
    if (auto rest = s->flush(); rest && log_file_) {
      std::string stream = s == &err_lines_ ? "stderr" : "stdout";
      log_file_.write(format_log_line(*rest, stream, to_unix_nanos(Clock::now())));
    }
  }
  bool oom = false;
  if (!c_.cgroup_dir.empty()) {
    if (auto events = read_file(c_.cgroup_dir / "memory.events")) {
      auto pos = events->find("oom_kill ");
      if (pos != std::string::npos) oom = std::atol(events->c_str() + pos + 9) > 0;
    }
  }
  json status = {{"ExitCode", exit_status_},
                 {"FinishedAt", rfc3339_nano(to_unix_nanos(Clock::now()))},
                 {"OOMKilled", oom}};
  write_file_atomic(c_.exit_file(), status.dump());
  try {
    ProcessResult r = run_process(
        runtime_argv(c_.runtime, c_.runtime_root, {"delete", "--force", c_.id}), "",
        std::chrono::seconds(30));
    if (!r.ok()) log_.line("runtime delete failed: " + trim(r.err));
  } catch (const std::exception& e) {
    log_.line(std::string("runtime delete failed: ") + e.what());
  }
  clients_.clear();
  listen_.reset();
  std::filesystem::remove(c_.socket_path());
}

int Shim::run() {
  ::prctl(PR_SET_CHILD_SUBREAPER, 1);
  std::signal(SIGPIPE, SIG_IGN);
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGCHLD);
  ::sigprocmask(SIG_BLOCK, &mask, nullptr);
  sigfd_.reset(::signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK));
  write_file_atomic(c_.pid_file(), std::to_string(::getpid()));
  std::filesystem::remove(c_.exit_file());
  try {
    try {
      log_file_ = RotatingLogFile(c_.log_path, {c_.log_max_size, c_.log_max_file});
    } catch (const std::exception& e) {
      log_.line(std::string("no container log: ") + e.what());
    }
    if (c_.tty) {
      create();
    } else {
      prepare_pipes();
    }
    listen_ = listen_unix(c_.socket_path());
  } catch (const std::exception& e) {
    log_.line(std::string("create failed: ") + e.what());
    reply(std::string("error ") + e.what());
    std::filesystem::remove(c_.pid_file());
    run_process(runtime_argv(c_.runtime, c_.runtime_root, {"delete", "--force", c_.id}));
    return 1;
  }
  // "created 0 SHIM" when the container is made at start (run_detached).
  reply("created " + std::to_string(deferred_ ? 0 : container_pid_) + " " + std::to_string(::getpid()));
  if (!deferred_) log_.line("created container pid " + std::to_string(container_pid_));
  try {
    loop();
  } catch (const std::exception& e) {
    log_.line(std::string("shim error: ") + e.what());
  }
  if (!exited_) {
    // Only when the loop failed: do not leave an unsupervised container behind.
    run_process(runtime_argv(c_.runtime, c_.runtime_root, {"kill", c_.id, "KILL"}));
    exit_status_ = 137;
  }
  finish();
  return 0;
}

}  // namespace

int shim_main(int argc, char** argv) {
  if (argc < 1) return 2;
  std::filesystem::path dir = argv[0];
  try {
    auto text = read_file(dir / "shim.json");
    if (!text) return 2;
    ShimConfig config = ShimConfig::from_json(json::parse(*text));
    UniqueFd sync(::fcntl(3, F_GETFD) >= 0 ? 3 : -1);
    if (sync) ::fcntl(3, F_SETFD, FD_CLOEXEC);
    Shim shim(std::move(config), std::move(sync));
    return shim.run();
  } catch (const std::exception& e) {
    ShimLog(dir / "shim.log").line(std::string("shim failed: ") + e.what());
    return 1;
  }
}

}  // namespace berth::agent::runtime
