#pragma once
// What provisioning needs from a host: run a command, put and get files.
// SshSession is the real one; tests use a fake.
#include <filesystem>
#include <string>
#include <string_view>

namespace berth {

struct ExecResult {
  int exit_code = 0;
  std::string out;
  std::string err;
};

class Remote {
 public:
  virtual ~Remote() = default;
  virtual ExecResult run(const std::string& command, std::string_view stdin_data = {}) = 0;
  virtual void put(const std::string& remote_path, std::string_view content, int mode) = 0;
  virtual void put_file(const std::filesystem::path& local, const std::string& remote_path, int mode) = 0;
  virtual std::string get(const std::string& remote_path) = 0;

  // run() that throws SshError (with the command's stderr) on a non-zero exit.
  std::string check(const std::string& command, std::string_view stdin_data = {});
};

}  // namespace berth
