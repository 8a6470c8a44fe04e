#pragma once
// fake_remote: an in-memory host for provisioning tests. Files and directories
// live in maps; common shell commands (cat, test, mkdir, chmod, mv, rm, install,
// sha256sum, mktemp, id, uname, hostname, command -v) act on them; anything else
// must be scripted with on(). Every run/put is recorded in `events`.
//
// Permissions: the login user is root, or "deploy" with passwordless sudo. As
// deploy, only /tmp and /home may be written without a "sudo -n " prefix, and
// put() outside them fails like SFTP would.
#include <functional>
#include <map>
#include <regex>
#include <string>
#include <vector>

#include "core/remote.h"

namespace berth::testing {

class FakeRemote final : public Remote {
 public:
  struct File {
    std::string content;
    int mode = 0644;
    std::string owner = "root";
  };
  using Handler = std::function<ExecResult(const std::smatch& match, std::string_view stdin_data)>;

  FakeRemote();

  std::map<std::string, File> files;
  std::map<std::string, int> dirs;  // path -> mode
  std::string hostname = "localhost";
  bool root = true;
  bool sudo_allowed = true;
  // "run: CMD", "put: PATH 0MODE", "put_file: PATH 0MODE", in order.
  std::vector<std::string> events;

  void add_file(const std::string& path, const std::string& content, int mode = 0644);
  void add_dir(const std::string& path, int mode = 0755);
  bool has_file(const std::string& path) const { return files.count(path) != 0; }
  bool has_dir(const std::string& path) const { return dirs.count(path) != 0; }
  std::vector<std::string> commands() const;  // the run commands only
  // Index of the first event equal to `event` (or -1).
  int index_of(const std::string& event) const;

  // A scripted answer for commands matching `regex` (whole command, sudo prefix
  // included). Checked before the built-ins; the latest registration wins.
  void on(const std::string& regex, Handler handler);
  void on(const std::string& regex, int exit_code, std::string out = {}, std::string err = {});

  ExecResult run(const std::string& command, std::string_view stdin_data = {}) override;
  void put(const std::string& remote_path, std::string_view content, int mode) override;
  void put_file(const std::filesystem::path& local, const std::string& remote_path, int mode) override;
  std::string get(const std::string& remote_path) override;

 private:
  ExecResult builtin(const std::string& command, bool elevated, bool& handled);
  bool writable(const std::string& path, bool elevated) const;
  std::string user() const { return root ? "root" : "deploy"; }
  void store(const std::string& path, std::string content, int mode);

  std::vector<std::pair<std::regex, Handler>> scripts_;
  int mktemp_count_ = 0;
};

}  // namespace berth::testing
