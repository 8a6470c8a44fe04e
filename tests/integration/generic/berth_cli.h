#pragma once
// The real berth binary with its own storage, HOME and DOCKER_CONFIG, so a
// test never touches ~/.berth or ~/.docker.
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tests/integration/support/run.h"
#include "tests/integration/support/testhost.h"

namespace berth::it {

class BerthCli {
 public:
  BerthCli();
  // The store and HOME under `root`, which outlives this object (a shared fixture's).
  explicit BerthCli(const fs::path& root);

  RunResult operator()(const std::vector<std::string>& args, std::chrono::milliseconds timeout = 180s) const;
  Process start(const std::vector<std::string>& args) const;
  // bash -c SCRIPT with this environment; `berth` and `docker` are on PATH.
  RunResult bash(const std::string& script, std::chrono::milliseconds timeout = 120s) const;

  // create -d generic ... NAME against `host`, plus `extra` flags.
  std::vector<std::string> create_args(const TestHost& host, const std::string& name,
                                       const std::vector<std::string>& extra = {}) const;
  RunResult create(const TestHost& host, const std::string& name,
                   const std::vector<std::string>& extra = {}) const;

  // `berth ls --format json`, one object per machine, by name.
  std::map<std::string, nlohmann::json> ls_json() const;

  const Env& env() const { return env_; }
  fs::path store() const { return dir_.path() / "store"; }
  fs::path machine_dir(const std::string& name) const { return store() / "machines" / name; }
  fs::path home() const { return dir_.path() / "home"; }
  fs::path scratch() const { return dir_.path() / "scratch"; }

 private:
  explicit BerthCli(TempDir dir);
  TempDir dir_;
  Env env_;
};

// Lines of `text`, without their newline; empty lines dropped.
std::vector<std::string> lines(const std::string& text);
std::string trim(const std::string& text);
bool contains_icase(const std::string& haystack, const std::string& needle);
// Regular files under `root`, recursively (relative paths).
std::vector<std::string> regular_files(const fs::path& root);

}  // namespace berth::it
