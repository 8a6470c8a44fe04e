// berth mount NAME:/remote/dir LOCALDIR  |  berth mount -u LOCALDIR
// sshfs with OpenSSH given only the machine's pinned host key. sshfs (and the
// ssh it runs) go into a session of their own, so the mount outlives the shell
// job, terminal or process group that ran `berth mount`.
#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "cli/commands/commands.h"
#include "cli/host.h"
#include "core/error.h"
#include "core/fs.h"

namespace berth::cli {
namespace {

struct MountOptions {
  std::string source;   // NAME:/remote/dir, or LOCALDIR with -u
  std::string local;
  bool unmount = false;
};

std::optional<fs::path> find_program(const std::string& name) {
  const char* path = std::getenv("PATH");
  std::string dirs = path ? path : "/usr/bin:/bin";
  size_t start = 0;
  while (start <= dirs.size()) {
    size_t end = dirs.find(':', start);
    if (end == std::string::npos) end = dirs.size();
    fs::path candidate = fs::path(dirs.substr(start, end - start)) / name;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
    start = end + 1;
  }
  return std::nullopt;
}

// Runs argv in a new session, its stderr going to ours; returns its exit status.
int run_program(const std::vector<std::string>& argv) {
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = ::fork();
  if (pid < 0) throw Error("cannot start " + argv[0]);
  if (pid == 0) {
    ::setsid();
    ::execv(args[0], args.data());
    _exit(127);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// The directory as an absolute, normalized path, found without touching it (a
// dead FUSE mount would block a stat).
std::string plain_path(const std::string& dir) {
  std::string p = fs::absolute(dir).lexically_normal().string();
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  return p;
}

// /proc/self/mountinfo escapes space, tab, newline and backslash as \ooo.
std::string unescape_mount_path(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size() && std::isdigit(static_cast<unsigned char>(s[i + 1]))) {
      out += static_cast<char>(std::stoi(s.substr(i + 1, 3), nullptr, 8));
      i += 3;
    } else {
      out += s[i];
    }
  }
  return out;
}

// The filesystem type mounted at `dir` ("fuse.sshfs", ...), if anything is.
std::optional<std::string> mounted_type(const std::string& dir) {
  std::ifstream in("/proc/self/mountinfo");
  std::optional<std::string> type;
  for (std::string line; std::getline(in, line);) {
    // ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER
    std::istringstream f(line);
    std::string id, parent, dev, root, point;
    if (!(f >> id >> parent >> dev >> root >> point)) continue;
    if (unescape_mount_path(point) != dir) continue;
    std::string field;
    while (f >> field && field != "-") {
    }
    std::string fstype;
    if (f >> fstype) type = fstype;  // the last one listed is on top
  }
  return type;
}

void unmount(const std::string& local) {
  const std::string dir = plain_path(local);
  const auto type = mounted_type(dir);
  if (!type) throw UserError(fmt::format("mount -u: nothing is mounted on {}", dir));
  if (*type != "fuse.sshfs")
    throw UserError(fmt::format("mount -u: {} is a {} mount, not one 'berth mount' made; leaving it alone", dir, *type));
  auto prog = find_program("fusermount3");
  if (!prog) prog = find_program("fusermount");
  if (!prog) throw Error("cannot unmount " + dir + ": fusermount is not installed (apt-get install fuse3)");
  if (run_program({prog->string(), "-u", dir}) != 0)
    throw Error(fmt::format("cannot unmount {}: it is in use; close what uses it (fuser -vm {}) and try again, "
                            "or detach it now with 'fusermount -uz {}'",
                            dir, dir, dir));
}

void mount(Context& ctx, const MountOptions& o) {
  const auto colon = o.source.find(':');
  if (colon == std::string::npos || colon == 0)
    throw UsageError("mount: give the machine's folder as NAME:/remote/dir, e.g. 'berth mount dev:/var/lib ./lib'");
  const std::string name = o.source.substr(0, colon);
  std::string remote = o.source.substr(colon + 1);
  if (o.local.empty()) throw UsageError("mount: give the local folder to mount on: 'berth mount NAME:/dir LOCALDIR'");
  auto sshfs = find_program("sshfs");
  if (!sshfs)
    throw Error("'berth mount' needs sshfs, which is not installed; install it (apt-get install sshfs) and try again");
  const std::string dir = plain_path(o.local);
  // Checked before anything touches the folder: a stale mount there could block.
  if (auto type = mounted_type(dir))
    throw UserError(fmt::format("mount: {} is already a mount point ({}); unmount it first with 'berth mount -u {}'",
                                dir, *type, o.local));
  std::error_code ec;
  if (!fs::is_directory(dir, ec))
    throw UserError(fmt::format("mount: local folder '{}' does not exist; create it first", o.local));
  if (!fs::is_empty(dir, ec) || ec)
    throw UserError(fmt::format("mount: local folder '{}' is not empty; mount on an empty folder so no files get hidden",
                                o.local));

  MachineRecord record = ctx.store().load(name);
  // Connecting checks the pinned host key; OpenSSH then gets exactly that key.
  auto session = connect_ssh(ctx, record, std::chrono::seconds(30));
  const std::string host_key = session->host_public_key();
  if (host_key.empty()) throw Error(fmt::format("machine '{}': cannot read its SSH host key", name));
  if (remote.empty()) remote = ".";
  session.reset();

  const fs::path known_hosts = ctx.store().machine_dir(name) / "known_hosts";
  const std::string host = record.ssh.host.find(':') != std::string::npos ? "[" + record.ssh.host + "]" : record.ssh.host;
  // OpenSSH names hosts on port 22 bare and others as [host]:port.
  const std::string known_name =
      record.ssh.port == 22 ? record.ssh.host : fmt::format("[{}]:{}", record.ssh.host, record.ssh.port);
  write_file_atomic(known_hosts, fmt::format("{} {}\n", known_name, host_key), 0600);
  const std::string target = fmt::format("{}@{}:{}", record.ssh.user, host, remote);
  std::vector<std::string> argv = {
      sshfs->string(), target, dir,
      "-o", "IdentityFile=" + record.ssh.key_path,
      "-o", "IdentitiesOnly=yes",
      "-o", "UserKnownHostsFile=" + known_hosts.string(),
      "-o", "GlobalKnownHostsFile=/dev/null",
      "-o", "StrictHostKeyChecking=yes",
      "-o", "BatchMode=yes",
      "-o", "ConnectTimeout=15",
      "-o", "Port=" + std::to_string(record.ssh.port),
      "-o", "reconnect,ServerAliveInterval=15,ServerAliveCountMax=3",
      // Both sides change the files: listings are not cached, so a file made on
      // the machine shows up here at once.
      "-o", "dir_cache=no",
  };
  if (run_program(argv) != 0)
    throw Error(fmt::format("machine '{}': sshfs could not mount {} on {} (see its message above)", name, remote, o.local));
}

}  // namespace

void setup_mount(CLI::App& app, Context& ctx) {
  auto o = std::make_shared<MountOptions>();
  auto* cmd = app.add_subcommand(
      "mount", "Mount a machine's folder on an empty local folder with sshfs (-u to unmount)");
  cmd->footer(
      "Needs sshfs (apt-get install sshfs); without it berth mount exits 1 and says so.\n"
      "Only the machine's pinned SSH host key is trusted.\n"
      "Exit codes: 0 ok, 1 error, 2 usage error, 3 pre-create check failed, 4 machine not found, 130 interrupted.");
  cmd->add_option("source", o->source, "NAME:/remote/dir (with -u: the local folder)")->required();
  cmd->add_option("local", o->local, "Local folder to mount on (empty)");
  cmd->add_flag("-u,--unmount", o->unmount, "Unmount the local folder");
  cmd->callback([&ctx, o] {
    if (o->unmount)
      unmount(o->local.empty() ? o->source : o->local);
    else
      mount(ctx, *o);
  });
}

}  // namespace berth::cli
