#include "agent/runtime/exec_lookup.h"

#include <sys/stat.h>

#include <cerrno>

#include "agent/runtime/in_root.h"

namespace berth::agent::runtime {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

enum class Found { Yes, Missing, Denied };

// Go's findExecutable: a file with any x bit; a directory or no x bit is EACCES.
Found find_executable(const fs::path& rootfs, const std::string& path) {
  UniqueFd fd = open_in_root(rootfs, path);
  if (!fd) return Found::Missing;
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return Found::Missing;
  if (!S_ISDIR(st.st_mode) && (st.st_mode & 0111) != 0) return Found::Yes;
  return Found::Denied;
}

bool under(const std::string& path, const std::string& dir) {
  if (dir == "/") return true;
  return path == dir || (path.size() > dir.size() && path.compare(0, dir.size(), dir) == 0 &&
                         path[dir.size()] == '/');
}

// A path the runtime sees through a mount we cannot look into from rootfs.
bool on_mount(const std::string& path, const json& mounts) {
  if (!mounts.is_array()) return false;
  for (const json& m : mounts) {
    std::string dest = m.value("destination", "");
    if (dest.empty() || dest == "/etc/hosts" || dest == "/etc/resolv.conf" ||
        dest == "/etc/hostname")
      continue;
    if (under(path, dest)) return true;
  }
  return false;
}

ExecFailure failure(int code, const std::string& what) {
  return {code, "OCI runtime exec failed: exec failed: unable to start container process: " + what +
                    ": unknown"};
}

}  // namespace

std::optional<ExecFailure> check_exec_command(const fs::path& rootfs, const json& process,
                                              const json& mounts) {
  if (!process.contains("args") || !process["args"].is_array() || process["args"].empty() ||
      !process["args"][0].is_string())
    return std::nullopt;
  const std::string cmd = process["args"][0].get<std::string>();
  if (cmd.empty()) return failure(127, "exec: \"\": executable file not found in $PATH");
  std::string cwd = process.value("cwd", "/");
  if (cwd.empty() || cwd[0] != '/') cwd = "/" + cwd;

  if (cmd.find('/') != std::string::npos) {
    std::string path = cmd[0] == '/' ? cmd : (fs::path(cwd) / cmd).lexically_normal().string();
    if (on_mount(path, mounts)) return std::nullopt;
    switch (find_executable(rootfs, path)) {
      case Found::Yes: return std::nullopt;
      case Found::Missing:
        return failure(127, "exec: \"" + cmd + "\": stat " + cmd + ": no such file or directory");
      case Found::Denied: return failure(126, "exec: \"" + cmd + "\": permission denied");
    }
  }
  std::string path_var;
  if (process.contains("env") && process["env"].is_array())
    for (const json& e : process["env"])
      if (e.is_string() && e.get<std::string>().rfind("PATH=", 0) == 0)
        path_var = e.get<std::string>().substr(5);
  std::size_t start = 0;
  for (;;) {
    auto colon = path_var.find(':', start);
    const fs::path dir(path_var.substr(start, colon == std::string::npos ? std::string::npos : colon - start));
    // An empty element is the working directory, as Go's LookPath.
    std::string full = (dir.is_absolute() ? dir : fs::path(cwd) / dir).lexically_normal().string();
    std::string candidate = (fs::path(full) / cmd).string();
    if (on_mount(candidate, mounts)) return std::nullopt;
    if (find_executable(rootfs, candidate) == Found::Yes) return std::nullopt;
    if (colon == std::string::npos) break;
    start = colon + 1;
  }
  return failure(127, "exec: \"" + cmd + "\": executable file not found in $PATH");
}

}  // namespace berth::agent::runtime
