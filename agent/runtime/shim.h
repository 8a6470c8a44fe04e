#pragma once
// The per-container supervisor ("berth-agent shim DIR"). It runs
// `crun create` + `crun start`, owns the container's stdio, writes the
// json-file log, serves attach/resize on DIR/shim.sock, and when the
// container exits writes DIR/exit.json, runs `crun delete` and exits.
//
// Start handshake on fd 3 (a socketpair with the agent), one line each:
//   shim -> agent  "created <container pid> <shim pid>" | "error <message>"
//   agent -> shim  "start"            (EOF instead: the shim kills the container)
//   shim -> agent  "started" | "error <message>"
// Clients of shim.sock send one JSON line first:
//   {"attach":{"stdin":true,"stdout":true,"stderr":true}}  -> "ok\n", then the
//       output stream (multiplexed frames without a TTY, raw with one) and
//       anything the client sends goes to the container's stdin; or
//   {"resize":{"h":24,"w":80}}  -> "ok\n" and the shim closes it.
#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "agent/runtime/fd.h"

namespace berth::agent::runtime {

struct ShimConfig {
  std::string id;
  std::string runtime = "crun";  // the OCI runtime binary
  std::string runtime_root;      // crun --root; empty: the runtime's default
  std::filesystem::path bundle;  // holds config.json
  std::filesystem::path dir;     // the container's directory (shim.sock, exit.json, logs)
  std::filesystem::path log_path;
  std::int64_t log_max_size = -1;  // --log-opt max-size in bytes; -1: unlimited
  int log_max_file = 1;            // --log-opt max-file
  std::filesystem::path cgroup_dir;  // for OOM detection; may be empty
  bool tty = false;
  bool open_stdin = false;
  bool stdin_once = false;

  nlohmann::json to_json() const;
  static ShimConfig from_json(const nlohmann::json& j);

  std::filesystem::path socket_path() const { return dir / "shim.sock"; }
  std::filesystem::path exit_file() const { return dir / "exit.json"; }
  std::filesystem::path pid_file() const { return dir / "shim.pid"; }
  std::filesystem::path container_pid_file() const { return dir / "container.pid"; }
  std::filesystem::path runtime_log() const { return dir / "runtime.log"; }
};

// What exit.json holds.
struct ExitStatus {
  int exit_code = 0;
  std::string finished_at;  // RFC 3339 nano
  bool oom_killed = false;
  std::string error;
};
std::optional<ExitStatus> read_exit_status(const std::filesystem::path& file);

// The runtime's global options (--root) followed by `args`.
std::vector<std::string> runtime_argv(const std::string& runtime, const std::string& root,
                                      std::vector<std::string> args);

// Connects to a shim and registers an attach; returns the connected socket
// after the "ok" (invalid fd when the shim is gone).
UniqueFd shim_attach(const std::filesystem::path& socket, bool in, bool out, bool err);
bool shim_resize(const std::filesystem::path& socket, int h, int w);

}  // namespace berth::agent::runtime
