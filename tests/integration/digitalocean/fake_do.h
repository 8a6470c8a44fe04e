#pragma once
// The fake DigitalOcean API (tests/fakes/digitalocean/fake_do.py, a test
// double) as a process owned by a test: started on a free 127.0.0.1 port,
// driven through its /_fake/ control API, stopped with SIGTERM so it tears
// down the SSH hosts behind its droplets.
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "tests/integration/support/run.h"

namespace berth::it {

// Why the fake cannot run here ("" when it can): no python3 with the spec
// validators, no spec, not root.
std::string fake_do_unavailable_reason();

class FakeDo {
 public:
  static constexpr const char* kToken = "dop_v1_fake0123456789abcdef";

  // Throws std::runtime_error when it does not come up.
  FakeDo();
  FakeDo(const FakeDo&) = delete;
  FakeDo& operator=(const FakeDo&) = delete;
  ~FakeDo();   // SIGTERM, then waits for the hosts to go down

  const std::string& url() const { return url_; }   // http://127.0.0.1:PORT
  int port() const { return port_; }

  nlohmann::json state() const;         // GET /_fake/state
  nlohmann::json violations() const;    // GET /_fake/violations
  void faults(const nlohmann::json& list) const;   // POST /_fake/faults
  void clear_faults() const;
  void reset() const;                   // POST /_fake/reset
  void config(const nlohmann::json& values) const;
  // Calls the DO API itself (with the token), for test setup: returns the parsed body.
  nlohmann::json api(const std::string& method, const std::string& path,
                     const std::optional<nlohmann::json>& body = std::nullopt) const;
  // The fake's stderr so far (its log), for failure messages.
  std::string log() const;

  // Request count for "METHOD /template" since the last reset.
  int count(const std::string& operation) const;

 private:
  nlohmann::json control(const std::string& method, const std::string& path,
                         const std::optional<nlohmann::json>& body = std::nullopt) const;

  TempDir dir_;
  std::optional<Process> process_;
  int port_ = 0;
  std::string url_;
};

fs::path python3_binary();   // the python3 on PATH ("" when none)
fs::path fake_do_script();   // $BERTH_SOURCE_DIR/tests/fakes/digitalocean/fake_do.py

}  // namespace berth::it
