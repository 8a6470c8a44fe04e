#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>

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

// Runs argv, its stderr going to ours; returns its exit status.
int run_program(const std::vector<std::string>& argv) {
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = ::fork();
  if (pid < 0) throw Error("cannot start " + argv[0]);
  if (pid == 0) {
    ::execv(args[0], args.data());
    _exit(127);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

void unmount(const std::string& local) {
  auto prog = find_program("fusermount3");
  if (!prog) prog = find_program("fusermount");
  if (!prog) throw Error("cannot unmount " + local + ": fusermount is not installed (apt-get install fuse3)");
  if (run_program({prog->string(), "-u", local}) != 0)
    throw Error("cannot unmount " + local + "; is it a 'berth mount' mount point, and is nothing using it?");
}

void mount(Context& ctx, const MountOptions& o) {
  const auto colon = o.source.find(':');
  if (colon == std::string::npos || colon == 0)
    throw UsageError("mount: give the machine's folder as NAME:/remote/dir, e.g. 'berth mount dev:/var/lib ./lib'");
  const std::string name = o.source.substr(0, colon);
  std::string remote = o.source.substr(colon + 1);
  if (o.local.empty()) throw UsageError("mount: give the local folder to mount on: 'berth mount NAME:/dir LOCALDIR'");
  std::error_code ec;
  if (!fs::is_directory(o.local, ec))
    throw UserError(fmt::format("mount: local folder '{}' does not exist; create it first", o.local));
  auto sshfs = find_program("sshfs");
  if (!sshfs)
    throw Error("'berth mount' needs sshfs, which is not installed; install it (apt-get install sshfs) and try again");

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
      sshfs->string(), target, fs::absolute(o.local).string(),
      "-o", "IdentityFile=" + record.ssh.key_path,
      "-o", "IdentitiesOnly=yes",
      "-o", "UserKnownHostsFile=" + known_hosts.string(),
      "-o", "GlobalKnownHostsFile=/dev/null",
      "-o", "StrictHostKeyChecking=yes",
      "-o", "BatchMode=yes",
      "-o", "Port=" + std::to_string(record.ssh.port),
      "-o", "reconnect,ServerAliveInterval=15,ServerAliveCountMax=3",
  };
  if (run_program(argv) != 0)
    throw Error(fmt::format("machine '{}': sshfs could not mount {} on {} (see its message above)", name, remote, o.local));
}

}  // namespace

void setup_mount(CLI::App& app, Context& ctx) {
  auto o = std::make_shared<MountOptions>();
  auto* cmd = app.add_subcommand("mount", "Mount a machine's folder on this computer with sshfs (-u to unmount)");
  cmd->add_option("source", o->source, "NAME:/remote/dir (with -u: the local folder)")->required();
  cmd->add_option("local", o->local, "Local folder to mount on");
  cmd->add_flag("-u,--unmount", o->unmount, "Unmount the local folder");
  cmd->callback([&ctx, o] {
    if (o->unmount)
      unmount(o->local.empty() ? o->source : o->local);
    else
      mount(ctx, *o);
  });
}

}  // namespace berth::cli
