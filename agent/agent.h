#pragma once
// berth-agent's composition root: builds the config, TLS context, logger,
// host facts, routes and server, then runs until SIGTERM/SIGINT.
#include <string>

namespace berth::agent {

struct RunOptions {
  std::string config_path;
  std::string pid_file;  // overrides the config's pid_file when set
  bool daemon = false;
};

// Returns the process exit code. Startup errors are printed to stderr as one
// "berth-agent: error: ..." line (in daemon mode by the launching process).
int run_agent(const RunOptions& options);

}  // namespace berth::agent
