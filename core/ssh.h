#pragma once
// libssh behind RAII: one SshSession per connection, exec, SFTP, PTY shells,
// host-key pinning and ed25519 key generation.
#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/remote.h"

struct ssh_session_struct;

namespace berth {

struct SshTarget {
  std::string host;
  int port = 22;
  std::string user;
  std::filesystem::path key_path;
  // "SHA256:<base64>" as ssh-keygen prints it. Empty: accept and report the key
  // (first contact). Non-empty: any other key is refused with SshError that
  // explains the risk (possible man-in-the-middle) and how to re-pin.
  std::string pinned_fingerprint;
  std::string machine_name;       // for error messages
};

class SshSession final : public Remote {
 public:
  // Connects and authenticates with the key; throws SshError naming host:port and
  // how far it got (connection refused, no route, no answer, no SSH banner).
  // `should_stop` is polled every 100 ms while connecting (then Interrupted).
  static std::unique_ptr<SshSession> connect(const SshTarget& target, std::chrono::milliseconds timeout,
                                             const std::function<bool()>& should_stop = {});
  ~SshSession() override;

  std::string host_key_fingerprint() const;
  // The host key as a known_hosts line's "TYPE BASE64" part (for OpenSSH tools).
  std::string host_public_key() const;

  ExecResult run(const std::string& command, std::string_view stdin_data = {}) override;
  void put(const std::string& remote_path, std::string_view content, int mode) override;
  void put_file(const std::filesystem::path& local, const std::string& remote_path, int mode) override;
  std::string get(const std::string& remote_path) override;
  void get_file(const std::string& remote_path, const std::filesystem::path& local);

  // Interactive: a PTY (when stdin is a terminal) bridged to this process's
  // stdin/stdout; with an empty command, a login shell. Returns the exit status.
  int interactive(const std::string& command);

  // The libssh session, for SshPortForwarder (which then owns all traffic on it).
  ssh_session_struct* native_handle() const;
  const SshTarget& target() const;

  // SFTP directory helpers for scp -r.
  bool is_remote_dir(const std::string& remote_path);
  std::vector<std::string> list_remote_dir(const std::string& remote_path);  // names, no . / ..
  void make_remote_dir(const std::string& remote_path, int mode);

 private:
  struct Impl;
  explicit SshSession(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Retries connect() until it succeeds or `deadline` passes; the timeout error
// names host:port and the last underlying error. `should_stop` is polled every
// 100 ms, during attempts too, and ends the wait with Interrupted.
std::unique_ptr<SshSession> wait_for_ssh(const SshTarget& target, std::chrono::milliseconds deadline,
                                         const std::function<bool()>& should_stop = {});

// Writes an ed25519 key pair: `private_key` (OpenSSH format, 0600) and
// `private_key`.pub ("ssh-ed25519 AAAA... comment").
void generate_ed25519_key(const std::filesystem::path& private_key, const std::string& comment);
std::string read_public_key(const std::filesystem::path& private_key);  // the .pub line

}  // namespace berth
