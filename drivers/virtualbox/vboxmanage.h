#pragma once
// Running VBoxManage: argv only (never a shell), one call at a time across berth
// processes (flock), and retries on VirtualBox's transient "object is not ready".
#include <chrono>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace berth::vbox {

struct ProcessResult {
  int exit_code = -1;  // 128+N when killed by signal N
  std::string out;
  std::string err;
  bool timed_out = false;
};

// Runs argv[0] (looked up on PATH when it has no slash) with stdin from /dev/null,
// collecting stdout and stderr; kills it after `timeout`. Throws Error when it
// cannot be started at all (the message names the program).
ProcessResult run_process(const std::vector<std::string>& argv, std::chrono::milliseconds timeout);

// $BERTH_VBOXMANAGE, else $VBOX_MSI_INSTALL_PATH/VBoxManage(.exe), else "VBoxManage" on PATH.
// Returns the path when it exists (an absolute path, or the PATH match); nullopt when none does.
std::optional<std::filesystem::path> find_vboxmanage();

// The VBoxManage error line worth showing: the first "error:" line without its
// "VBoxManage: error: " prefix, else the last non-empty line of stderr (or stdout).
std::string error_summary(const ProcessResult& r);

// True for VirtualBox's transient failures (the object is not ready, E_ACCESSDENIED,
// a session lock held by another process) that a retry a moment later fixes.
bool is_transient(const ProcessResult& r);

// True when the failure says the VM is not registered (VBOX_E_OBJECT_NOT_FOUND).
bool is_vm_not_found(const ProcessResult& r);

struct VBoxManageOptions {
  std::filesystem::path program;    // VBoxManage
  std::filesystem::path lock_file;  // flock'd around every call; empty: no lock
  std::chrono::milliseconds lock_timeout{std::chrono::minutes(5)};
  std::chrono::milliseconds timeout{std::chrono::minutes(5)};  // one call
  int attempts = 5;                                            // for transient failures
  std::chrono::milliseconds retry_delay{std::chrono::seconds(1)};
  std::string machine;  // for messages
};

class VBoxManage {
 public:
  explicit VBoxManage(VBoxManageOptions options) : o_(std::move(options)) {}

  // One command (args without the program), retried while is_transient(). Never throws
  // for a failed command; throws DriverError when the program cannot run or the lock
  // cannot be had.
  ProcessResult run(const std::vector<std::string>& args) const;

  // run(), throwing DriverError("machine 'M': VBoxManage <cmd> failed: <summary>") on exit != 0.
  std::string check(const std::vector<std::string>& args) const;

  const VBoxManageOptions& options() const { return o_; }

 private:
  VBoxManageOptions o_;
};

}  // namespace berth::vbox
