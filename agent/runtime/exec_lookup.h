#pragma once
// What runc's exec does before it runs a command (Go's exec.LookPath inside the
// container's root), so that a missing command fails as under dockerd: exit
// code 127 "executable file not found in $PATH" or "no such file or
// directory", 126 "permission denied" (a directory or a file without an x bit).
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

namespace berth::agent::runtime {

struct ExecFailure {
  int exit_code;        // 126 or 127
  std::string message;  // dockerd's "OCI runtime exec failed: ...: unknown"
};

// `process` is the OCI process of the exec (args, env PATH, cwd); `spec_mounts`
// the container's OCI mounts: a command that lives on a bind mount or volume
// cannot be seen from `rootfs`, and is left to the runtime (nullopt).
// nullopt when the command can be run (or cannot be judged).
std::optional<ExecFailure> check_exec_command(const std::filesystem::path& rootfs,
                                              const nlohmann::json& process,
                                              const nlohmann::json& spec_mounts);

}  // namespace berth::agent::runtime
