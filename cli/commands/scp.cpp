#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <sys/stat.h>

#include <fstream>
#include <map>
#include <regex>

#include "cli/commands/commands.h"
#include "cli/host.h"
#include "core/error.h"

namespace berth::cli {
namespace {

struct Location {
  std::string machine;   // empty: this computer
  std::string path;
};

struct ScpOptions {
  std::string source;
  std::string destination;
  bool recursive = false;
};

// [USER@]NAME:PATH, or a local path. USER, as in docker-machine, must be the
// machine's SSH user: berth holds that user's key only.
Location parse_location(Context& ctx, const std::string& arg) {
  static const std::regex re("^(?:([^@/:]+)@)?([a-zA-Z0-9][a-zA-Z0-9.-]*):(.*)$");
  std::smatch m;
  if (std::regex_match(arg, m, re)) {
    const std::string name = m[2];
    if (!ctx.store().exists(name)) throw NotFound("machine '" + name + "' in '" + arg + "' does not exist");
    if (m[1].matched) {
      const std::string user = ctx.store().load(name).ssh.user;
      if (!user.empty() && user != m[1].str())
        throw UsageError("machine '" + name + "': berth connects as its SSH user '" + user + "' (the key it holds), not '" +
                         m[1].str() + "'; write " + name + ":" + m[3].str());
    }
    return {name, m[3].str().empty() ? "." : m[3].str()};
  }
  return {"", arg};
}

std::string base_name(const std::string& p) {
  std::string s = p;
  while (s.size() > 1 && s.back() == '/') s.pop_back();
  auto slash = s.rfind('/');
  return slash == std::string::npos ? s : s.substr(slash + 1);
}

// Both ends speak through one interface; a local end is the filesystem.
class End {
 public:
  End(Context& ctx, const Location& loc) : loc_(loc) {
    if (!loc.machine.empty()) {
      record_ = ctx.store().load(loc.machine);
      ssh_ = connect_ssh(ctx, *record_, std::chrono::seconds(30));
    }
  }
  bool remote() const { return ssh_ != nullptr; }
  bool is_dir(const std::string& p) {
    if (remote()) return ssh_->is_remote_dir(p);
    std::error_code ec;
    return fs::is_directory(p, ec);
  }
  bool exists(const std::string& p) {
    if (remote()) return ssh_->run("test -e " + quote(p)).exit_code == 0;
    std::error_code ec;
    return fs::exists(p, ec);
  }
  std::vector<std::string> list(const std::string& p) {
    if (remote()) return ssh_->list_remote_dir(p);
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(p)) out.push_back(e.path().filename().string());
    return out;
  }
  void mkdir(const std::string& p) {
    if (remote()) {
      if (!ssh_->is_remote_dir(p)) ssh_->make_remote_dir(p, 0755);
      return;
    }
    fs::create_directories(p);
  }
  int mode(const std::string& p) {
    if (remote()) {
      auto r = ssh_->run("stat -c %a " + quote(p));
      return r.exit_code == 0 ? std::stoi(r.out, nullptr, 8) : 0644;
    }
    struct stat st{};
    return ::stat(p.c_str(), &st) == 0 ? static_cast<int>(st.st_mode & 07777) : 0644;
  }
  std::string read(const std::string& p) {
    if (remote()) return ssh_->get(p);
    return read_local(p);
  }
  void write(const std::string& p, const std::string& data, int mode) {
    if (remote()) return ssh_->put(p, data, mode);
    write_local(p, data, mode);
  }
  // Fast paths when the other end is this computer.
  void put_from_local(const std::string& local, const std::string& p, int mode) { ssh_->put_file(local, p, mode); }
  void get_to_local(const std::string& p, const std::string& local) { ssh_->get_file(p, local); }
  const std::string& machine() const { return loc_.machine; }

 private:
  static std::string quote(const std::string& s) {
    std::string out = "'";
    for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
    return out + "'";
  }
  static std::string read_local(const std::string& p);
  static void write_local(const std::string& p, const std::string& data, int mode);

  Location loc_;
  std::optional<MachineRecord> record_;
  std::unique_ptr<SshSession> ssh_;
};

std::string End::read_local(const std::string& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) throw UserError("cannot read " + p);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void End::write_local(const std::string& p, const std::string& data, int mode) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  if (!out || !out.write(data.data(), static_cast<std::streamsize>(data.size())))
    throw UserError("cannot write " + p);
  out.close();
  fs::permissions(p, static_cast<fs::perms>(mode));
}

void copy_file(End& from, const std::string& src, End& to, const std::string& dst) {
  const int mode = from.mode(src);
  if (!from.remote() && to.remote()) return to.put_from_local(src, dst, mode);
  if (from.remote() && !to.remote()) {
    from.get_to_local(src, dst);
    fs::permissions(dst, static_cast<fs::perms>(mode));
    return;
  }
  to.write(dst, from.read(src), mode);
}

void copy_tree(End& from, const std::string& src, End& to, const std::string& dst, bool recursive) {
  if (!from.is_dir(src)) return copy_file(from, src, to, dst);
  if (!recursive) throw UserError("'" + src + "' is a directory; add -r to copy it");
  to.mkdir(dst);
  for (const auto& child : from.list(src)) copy_tree(from, src + "/" + child, to, dst + "/" + child, true);
}

void run_scp(Context& ctx, const ScpOptions& o) {
  Location src = parse_location(ctx, o.source);
  Location dst = parse_location(ctx, o.destination);
  if (src.machine.empty() && dst.machine.empty())
    throw UsageError("scp copies to or from a machine: write one side as NAME:PATH");
  End from(ctx, src);
  End to(ctx, dst);
  if (!from.exists(src.path))
    throw UserError(fmt::format("'{}' does not exist{}", src.path, src.machine.empty() ? "" : " on machine '" + src.machine + "'"));
  std::string target = dst.path;
  if (to.is_dir(target)) target += "/" + base_name(src.path);
  copy_tree(from, src.path, to, target, o.recursive);
}

}  // namespace

void setup_scp(CLI::App& app, Context& ctx) {
  auto o = std::make_shared<ScpOptions>();
  auto* cmd = app.add_subcommand("scp", "Copy files between this computer and machines, or between machines");
  cmd->add_option("source", o->source, "[[USER@]NAME:]PATH")->required();
  cmd->add_option("destination", o->destination, "[[USER@]NAME:]PATH")->required();
  cmd->add_flag("-r,--recursive", o->recursive, "Copy directories recursively");
  cmd->add_flag("-q,--quiet")->description("Accepted for docker-machine's scripts: berth scp prints no progress");
  setup_dropped_scp_flags(*cmd);
  cmd->callback([&ctx, o] { run_scp(ctx, *o); });
}

}  // namespace berth::cli
