#pragma once
// Helpers for the agent integration tests: a temp dir, shell commands, and a
// test PKI made with the openssl command line.
#include <chrono>
#include <filesystem>
#include <functional>
#include <string>

namespace berth::agent::testing {

namespace fs = std::filesystem;

struct TempDir {
  fs::path path;
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
};

struct CommandResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr together
};
// Runs `command` with /bin/sh; throws std::runtime_error if it cannot start.
CommandResult run(const std::string& command);

std::string shell_quote(const std::string& s);
std::string read_text(const fs::path& path);
void write_text(const fs::path& path, const std::string& text);

// Polls `condition` every 10 ms until it holds or `timeout` passes.
bool wait_until(const std::function<bool()>& condition, std::chrono::milliseconds timeout);

// ECDSA P-256 material in `dir`: NAME.pem and NAME-key.pem (key 0600).
class TestPki {
 public:
  explicit TestPki(fs::path dir) : dir_(std::move(dir)) {}
  void make_ca(const std::string& name, const std::string& cn);
  // SAN 127.0.0.1 + localhost, extendedKeyUsage serverAuth.
  void make_server_cert(const std::string& ca, const std::string& name, const std::string& cn);
  // extendedKeyUsage clientAuth.
  void make_client_cert(const std::string& ca, const std::string& name, const std::string& cn);
  fs::path cert(const std::string& name) const { return dir_ / (name + ".pem"); }
  fs::path key(const std::string& name) const { return dir_ / (name + "-key.pem"); }
  // "AB:CD:..." SHA-256 fingerprint of NAME.pem.
  std::string fingerprint(const std::string& name) const;

 private:
  void sign(const std::string& ca, const std::string& name, const std::string& cn,
            const std::string& extensions);
  fs::path dir_;
};

}  // namespace berth::agent::testing
