#include "agent/runtime/exec_relay.h"
#include "agent/api/detach_keys.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <thread>

#include "agent/api/http.h"
#include "agent/process.h"
#include "agent/runtime/json_log.h"

namespace berth::agent::runtime {
namespace {

std::pair<UniqueFd, UniqueFd> make_pipe() {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error(std::string("pipe: ") + std::strerror(errno));
  return {UniqueFd(fds[0]), UniqueFd(fds[1])};
}

}  // namespace

ExecProcess spawn_exec(const ExecRequest& req) {
  ExecProcess p;
  std::vector<std::string> argv = req.argv;
  UniqueFd devnull(::open("/dev/null", O_RDWR | O_CLOEXEC));
  if (req.tty) {
    unsigned int r = 0;
    (void)!::getrandom(&r, sizeof r, 0);
    char name[32];
    std::snprintf(name, sizeof name, "exec-%08x.sock", r);
    std::filesystem::path sock = req.console_dir / name;
    UniqueFd listener = listen_unix(sock, 1);
    argv.push_back("--tty");
    argv.push_back("--console-socket");
    argv.push_back(sock.string());
    argv.push_back(req.container_id);
    p.pid = spawn_process(argv, devnull.get(), devnull.get(), devnull.get());
    for (;;) {
      pollfd pf{listener.get(), POLLIN, 0};
      if (::poll(&pf, 1, 100) > 0) {
        UniqueFd conn(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
        if (conn) p.master = std::make_shared<UniqueFd>(receive_fd(conn.get()));
        break;
      }
      int status;
      if (::waitpid(p.pid, &status, WNOHANG) == p.pid) {
        p.exit_code = exit_code_of(status);
        break;
      }
    }
    std::filesystem::remove(sock);
    if (!p.master || !*p.master) {
      if (!p.exit_code) p.exit_code = wait_exec(p);
      p.master.reset();
    }
    return p;
  }
  argv.push_back(req.container_id);
  UniqueFd in_r, out_w, err_w;
  if (req.attach_stdin) std::tie(in_r, p.stdin_w) = make_pipe();
  if (req.attach_stdout) std::tie(p.stdout_r, out_w) = make_pipe();
  if (req.attach_stderr) std::tie(p.stderr_r, err_w) = make_pipe();
  p.pid = spawn_process(argv, in_r ? in_r.get() : devnull.get(), out_w ? out_w.get() : devnull.get(),
                err_w ? err_w.get() : devnull.get());
  return p;
}

void relay_exec_io(ExecProcess& p, bool tty, int sock) {
  char buf[32768];
  bool sock_open = true;
  int in_fd = tty ? (p.master ? p.master->get() : -1) : p.stdin_w.get();
  struct Out {
    int fd;
    StreamType type;
    bool open;
  };
  std::vector<Out> outs;
  if (tty) {
    if (p.master) outs.push_back({p.master->get(), StreamType::Stdout, true});
  } else {
    if (p.stdout_r) outs.push_back({p.stdout_r.get(), StreamType::Stdout, true});
    if (p.stderr_r) outs.push_back({p.stderr_r.get(), StreamType::Stderr, true});
  }
  auto send_all = [&](std::string_view data) {
    while (!data.empty()) {
      ssize_t n = ::send(sock, data.data(), data.size(), MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return;  // the client is gone; keep draining the process
      data.remove_prefix(static_cast<std::size_t>(n));
    }
  };
  for (;;) {
    std::vector<pollfd> fds;
    std::vector<int> which;  // -1: sock, else index into outs
    if (sock_open) {
      fds.push_back({sock, POLLIN, 0});
      which.push_back(-1);
    }
    for (std::size_t i = 0; i < outs.size(); ++i)
      if (outs[i].open) {
        fds.push_back({outs[i].fd, POLLIN, 0});
        which.push_back(static_cast<int>(i));
      }
    if (which.empty() || (which.size() == 1 && which[0] == -1 && !outs.empty())) break;
    if (outs.empty()) {
      // Nothing to read (no output attached): wait for the process to end.
      break;
    }
    int r = ::poll(fds.data(), fds.size(), -1);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) break;
    for (std::size_t i = 0; i < fds.size(); ++i) {
      if (!fds[i].revents) continue;
      if (which[i] == -1) {
        ssize_t n = ::read(sock, buf, sizeof buf);
        if (n > 0) {
          if (in_fd >= 0 && !write_all(in_fd, std::string_view(buf, static_cast<std::size_t>(n))) && !tty) {
            p.stdin_w.reset();
            in_fd = -1;
          }
        } else if (n == 0 || errno != EINTR) {
          sock_open = false;
          if (!tty) {
            p.stdin_w.reset();
            in_fd = -1;
          }
        }
        continue;
      }
      Out& o = outs[static_cast<std::size_t>(which[i])];
      ssize_t n = ::read(o.fd, buf, sizeof buf);
      if (n > 0) {
        std::string_view data(buf, static_cast<std::size_t>(n));
        if (tty)
          send_all(data);
        else
          send_all(frame(o.type, data));
      } else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
        o.open = false;  // EOF, or EIO once a pty's last slave is closed
      }
    }
  }
  ::shutdown(sock, SHUT_WR);
}

std::optional<int> run_exec_session(ExecProcess& p, const ExecRequest& req, api::Connection& conn) {
  if (p.exit_code) return *p.exit_code;
  int sp[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) != 0)
    throw std::runtime_error(std::string("socketpair: ") + std::strerror(errno));
  UniqueFd ours(sp[0]), theirs(sp[1]);
  std::thread relay([&p, tty = req.tty, sock = ours.get()] { relay_exec_io(p, tty, sock); });
  bool detached = false;
  if (req.tty && req.attach_stdin) {
    api::DetachFilter detach(api::parse_detach_keys(req.detach_keys.empty() ? api::kDefaultDetachKeys
                                                                            : req.detach_keys));
    conn.pump(theirs.get(), theirs.get(), [&](std::string_view in, std::string& out) {
      detached = !detach.feed(in, out);
      return !detached;
    });
  } else {
    conn.pump(theirs.get(), theirs.get());
  }
  ::shutdown(theirs.get(), SHUT_RDWR);
  if (detached) {
    p.relay = std::move(relay);
    p.relay_sock = std::move(ours);
    return std::nullopt;
  }
  relay.join();
  return wait_exec(p);
}

int wait_exec(ExecProcess& p) {
  if (!p.exit_code) {
    int status = 0;
    while (::waitpid(p.pid, &status, 0) < 0) {
      if (errno != EINTR) {
        status = -1;
        break;
      }
    }
    p.exit_code = status == -1 ? 126 : exit_code_of(status);
  }
  if (p.relay.joinable()) p.relay.join();  // the terminal is at EOF once the process is gone
  return *p.exit_code;
}

ExecProcess::~ExecProcess() {
  if (relay.joinable()) relay.join();
}

void resize_terminal(int fd, int height, int width) {
  winsize ws{};
  ws.ws_row = static_cast<unsigned short>(height);
  ws.ws_col = static_cast<unsigned short>(width);
  ::ioctl(fd, TIOCSWINSZ, &ws);
}

}  // namespace berth::agent::runtime
