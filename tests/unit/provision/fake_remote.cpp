#include "tests/unit/provision/fake_remote.h"

#include <fmt/format.h>

#include <fstream>
#include <sstream>

#include "core/error.h"
#include "provision/common.h"

namespace berth::testing {
namespace {

std::vector<std::string> split(const std::string& s) {
  std::istringstream in(s);
  std::vector<std::string> out;
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

std::string parent_of(const std::string& path) {
  auto slash = path.rfind('/');
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

ExecResult ok(std::string out = {}) { return {0, std::move(out), {}}; }
ExecResult fail(int code, std::string err) { return {code, {}, std::move(err)}; }

}  // namespace

FakeRemote::FakeRemote() {
  for (const char* d : {"/", "/etc", "/usr", "/usr/local", "/usr/local/bin", "/var", "/var/lib", "/var/log", "/run",
                        "/tmp", "/home", "/home/deploy", "/proc", "/proc/self", "/sbin", "/bin", "/usr/bin", "/usr/sbin"})
    dirs[d] = 0755;
  dirs["/tmp"] = 01777;
}

void FakeRemote::add_dir(const std::string& path, int mode) {
  for (std::string p = path; p != "/" && !p.empty(); p = parent_of(p))
    if (!dirs.count(p)) dirs[p] = 0755;
  dirs[path] = mode;
}

void FakeRemote::add_file(const std::string& path, const std::string& content, int mode) {
  add_dir(parent_of(path));
  files[path] = File{content, mode, "root"};
}

std::vector<std::string> FakeRemote::commands() const {
  std::vector<std::string> out;
  for (const auto& e : events)
    if (e.rfind("run: ", 0) == 0) out.push_back(e.substr(5));
  return out;
}

int FakeRemote::index_of(const std::string& event) const {
  for (size_t i = 0; i < events.size(); ++i)
    if (events[i] == event) return static_cast<int>(i);
  return -1;
}

void FakeRemote::on(const std::string& regex, Handler handler) {
  scripts_.insert(scripts_.begin(), {std::regex(regex), std::move(handler)});
}

void FakeRemote::on(const std::string& regex, int exit_code, std::string out, std::string err) {
  on(regex, [=](const std::smatch&, std::string_view) { return ExecResult{exit_code, out, err}; });
}

bool FakeRemote::writable(const std::string& path, bool elevated) const {
  if (elevated) return true;
  return path.rfind("/tmp/", 0) == 0 || path.rfind("/home/", 0) == 0;
}

void FakeRemote::store(const std::string& path, std::string content, int mode) {
  files[path] = File{std::move(content), mode, user()};
}

ExecResult FakeRemote::run(const std::string& command, std::string_view stdin_data) {
  events.push_back("run: " + command);
  for (auto& [re, handler] : scripts_) {
    std::smatch m;
    if (std::regex_match(command, m, re)) return handler(m, stdin_data);
  }
  if (command == "sudo -n true") return sudo_allowed ? ok() : fail(1, "sudo: a password is required\n");
  std::string cmd = command;
  bool elevated = root;
  if (cmd.rfind("sudo -n ", 0) == 0) {
    if (!sudo_allowed) return fail(1, "sudo: a password is required\n");
    cmd = cmd.substr(8);
    elevated = true;
  }
  bool handled = false;
  ExecResult r = builtin(cmd, elevated, handled);
  if (handled) return r;
  return fail(127, "fake_remote: no script for: " + command + "\n");
}

ExecResult FakeRemote::builtin(const std::string& cmd, bool elevated, bool& handled) {
  auto args = split(cmd);
  handled = true;
  if (args.empty()) return ok();
  const std::string& prog = args[0];
  auto denied = [&](const std::string& p) { return fail(1, prog + ": " + p + ": Permission denied\n"); };

  if (prog == "cat" && args.size() == 2) {
    auto it = files.find(args[1]);
    if (it == files.end()) return fail(1, "cat: " + args[1] + ": No such file or directory\n");
    return ok(it->second.content);
  }
  if (prog == "test" && args.size() == 3) {
    const std::string& p = args[2];
    bool f = files.count(p) != 0, d = dirs.count(p) != 0;
    bool r = args[1] == "-e" ? (f || d) : args[1] == "-f" ? f : args[1] == "-d" ? d
           : args[1] == "-x" ? (f && (files[p].mode & 0111)) : false;
    return {r ? 0 : 1, {}, {}};
  }
  if (cmd == "id -u") return ok(root ? "0\n" : "1000\n");
  if (cmd == "id -un") return ok(user() + "\n");
  if (cmd == "uname -n") return ok(hostname + "\n");
  if (prog == "hostname" && args.size() == 2) {
    if (!elevated) return fail(1, "hostname: you must be root to change the host name\n");
    hostname = args[1];
    return ok();
  }
  if (prog == "command" && args.size() == 3 && args[1] == "-v") {
    for (const char* d : {"/usr/sbin/", "/usr/bin/", "/sbin/", "/bin/"})
      if (files.count(d + args[2])) return ok(d + args[2] + "\n");
    return fail(1, "");
  }
  if (cmd == "mktemp -d") {
    std::string d = fmt::format("/tmp/tmp.fake{}", ++mktemp_count_);
    dirs[d] = 0700;
    return ok(d + "\n");
  }
  if (prog == "mkdir" && args.size() >= 3 && args[1] == "-p") {
    for (size_t i = 2; i < args.size(); ++i) {
      if (dirs.count(args[i])) continue;
      if (!writable(args[i], elevated)) return denied(args[i]);
      add_dir(args[i]);
    }
    return ok();
  }
  if (prog == "chmod" && args.size() >= 3) {
    int mode = std::stoi(args[1], nullptr, 8);
    for (size_t i = 2; i < args.size(); ++i) {
      if (!writable(args[i], elevated)) return denied(args[i]);
      if (dirs.count(args[i])) dirs[args[i]] = mode;
      else if (files.count(args[i])) files[args[i]].mode = mode;
      else return fail(1, "chmod: " + args[i] + ": No such file or directory\n");
    }
    return ok();
  }
  if (prog == "rm" && args.size() >= 3 && (args[1] == "-f" || args[1] == "-rf")) {
    for (size_t i = 2; i < args.size(); ++i) {
      const std::string& p = args[i];
      if ((files.count(p) || dirs.count(p)) && !writable(p, elevated)) return denied(p);
      if (dirs.count(p)) {
        if (args[1] != "-rf") return fail(1, "rm: cannot remove '" + p + "': Is a directory\n");
        for (auto it = files.begin(); it != files.end();) it = it->first.rfind(p + "/", 0) == 0 ? files.erase(it) : std::next(it);
        for (auto it = dirs.begin(); it != dirs.end();) it = it->first.rfind(p + "/", 0) == 0 ? dirs.erase(it) : std::next(it);
        dirs.erase(p);
      } else {
        files.erase(p);
      }
    }
    return ok();
  }
  if (prog == "mv" && args.size() == 4 && args[1] == "-f") {
    const std::string &from = args[2], &to = args[3];
    if (!files.count(from)) return fail(1, "mv: cannot stat '" + from + "': No such file or directory\n");
    if (!writable(from, elevated) || !writable(to, elevated)) return denied(to);
    if (!dirs.count(parent_of(to))) return fail(1, "mv: cannot move to '" + to + "': No such file or directory\n");
    files[to] = files[from];
    files.erase(from);
    return ok();
  }
  if (prog == "install" && args.size() == 9 && args[1] == "-o" && args[3] == "-g" && args[5] == "-m") {
    const std::string &from = args[7], &to = args[8];
    if (!files.count(from)) return fail(1, "install: cannot stat '" + from + "'\n");
    if (!writable(to, elevated)) return denied(to);
    if (!dirs.count(parent_of(to))) return fail(1, "install: cannot create '" + to + "'\n");
    files[to] = File{files[from].content, std::stoi(args[6], nullptr, 8), args[2]};
    return ok();
  }
  if (prog == "sha256sum" && args.size() == 2) {
    auto it = files.find(args[1]);
    if (it == files.end()) return fail(1, "sha256sum: " + args[1] + ": No such file or directory\n");
    return ok(provision::detail::sha256_hex(it->second.content) + "  " + args[1] + "\n");
  }
  handled = false;
  return {};
}

void FakeRemote::put(const std::string& remote_path, std::string_view content, int mode) {
  events.push_back(fmt::format("put: {} {:04o}", remote_path, mode));
  if (!writable(remote_path, root)) throw SshError("cannot create " + remote_path + ": permission denied");
  if (!dirs.count(parent_of(remote_path))) throw SshError("cannot create " + remote_path + ": no such file or directory");
  store(remote_path, std::string(content), mode);
}

void FakeRemote::put_file(const std::filesystem::path& local, const std::string& remote_path, int mode) {
  events.push_back(fmt::format("put_file: {} {:04o}", remote_path, mode));
  if (!writable(remote_path, root)) throw SshError("cannot create " + remote_path + ": permission denied");
  if (!dirs.count(parent_of(remote_path))) throw SshError("cannot create " + remote_path + ": no such file or directory");
  std::ifstream in(local, std::ios::binary);
  if (!in) throw Error("cannot read " + local.string());
  std::ostringstream ss;
  ss << in.rdbuf();
  store(remote_path, ss.str(), mode);
}

std::string FakeRemote::get(const std::string& remote_path) {
  events.push_back("get: " + remote_path);
  auto it = files.find(remote_path);
  if (it == files.end()) throw SshError("cannot open " + remote_path + ": no such file or directory");
  return it->second.content;
}

}  // namespace berth::testing
