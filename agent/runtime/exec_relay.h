#pragma once
// `crun exec` for the exec API: spawns it with pipes (or a console socket for
// a TTY) and relays its stdio to a hijacked connection, multiplexed without a
// TTY, raw with one.
#include <sys/types.h>

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "agent/runtime/fd.h"

namespace berth::agent::api {
class Connection;
}

namespace berth::agent::runtime {

struct ExecRequest {
  std::vector<std::string> argv;  // runtime + "exec" + options, without --tty/console and the id
  std::string container_id;
  bool tty = false;
  bool attach_stdin = false, attach_stdout = false, attach_stderr = false;
  std::filesystem::path console_dir;  // where the console socket is made
  std::string detach_keys;            // dockerd's notation; empty: ctrl-p,ctrl-q (TTY only)
};

struct ExecProcess {
  pid_t pid = -1;
  UniqueFd stdin_w, stdout_r, stderr_r;
  std::shared_ptr<UniqueFd> master;  // with a TTY
  std::optional<int> exit_code;      // when it ended before the session began
  std::thread relay;                 // left draining output after a detach
  UniqueFd relay_sock;
  ExecProcess() = default;
  ExecProcess(ExecProcess&&) = default;
  ExecProcess& operator=(ExecProcess&&) = default;
  ~ExecProcess();
};

// Throws std::runtime_error when the runtime cannot start.
ExecProcess spawn_exec(const ExecRequest& req);
// Relays between the process and conn until its output ends; returns the
// exit code. nullopt when the client detached (the detach keys, TTY with
// stdin): the process runs on, its output still drained, and wait_exec
// (from another thread: this one serves the connection) gives its code.
// `proc` must not move while it runs.
std::optional<int> run_exec_session(ExecProcess& proc, const ExecRequest& req,
                                    api::Connection& conn);
// Relays between the process and `sock` (a socket) until its output ends,
// then shuts down sock's write side. Used by run_exec_session.
void relay_exec_io(ExecProcess& proc, bool tty, int sock);
int wait_exec(ExecProcess& proc);  // also ends a relay left by a detach
void resize_terminal(int fd, int height, int width);

}  // namespace berth::agent::runtime
