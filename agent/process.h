#pragma once
// Runs a program with an argv (never through a shell) and collects its output.
#include <sys/types.h>

#include <chrono>
#include <string>
#include <vector>

namespace berth::agent {

struct ProcessResult {
  int exit_code = -1;  // 128+N when killed by signal N
  std::string out;
  std::string err;
  bool ok() const { return exit_code == 0; }
};

// Starts argv (argv[0] looked up in PATH) with in/out/err as its fds 0/1/2, an
// empty signal mask and SIGPIPE at its default. Throws std::runtime_error.
pid_t spawn_process(const std::vector<std::string>& argv, int in, int out, int err);

// A waitpid() status as a shell reports it: the exit code, or 128+signal.
int exit_code_of(int wait_status);

// argv[0] is looked up in PATH. `input` goes to its stdin. Throws
// std::runtime_error when it cannot start or outlives `timeout` (then it is killed).
ProcessResult run_process(const std::vector<std::string>& argv, const std::string& input = "",
                          std::chrono::milliseconds timeout = std::chrono::seconds(60));

// run_process, and throws std::runtime_error "<argv0> failed (exit N): <stderr>" unless ok().
std::string run_checked(const std::vector<std::string>& argv, const std::string& input = "",
                        std::chrono::milliseconds timeout = std::chrono::seconds(60));

}  // namespace berth::agent
