#pragma once
// The one error the Dockerfile front end throws.
#include <stdexcept>
#include <string>

namespace berth::agent::build {

// A user-facing build error. what() is the message in dockerd's words, ready
// for the API (e.g. "dockerfile parse error on line 3: unknown instruction:
// FOO"); line() is the 1-based Dockerfile line it refers to, 0 when unknown.
class BuildError : public std::runtime_error {
 public:
  explicit BuildError(const std::string& message, int line = 0)
      : std::runtime_error(message), line_(line) {}
  int line() const noexcept { return line_; }

 private:
  int line_;
};

// A RUN whose command exited non-zero: the code goes in the stream's
// errorDetail as dockerd's does.
class RunFailed : public BuildError {
 public:
  RunFailed(const std::string& message, int exit_code) : BuildError(message), exit_code_(exit_code) {}
  int exit_code() const noexcept { return exit_code_; }

 private:
  int exit_code_;
};

}  // namespace berth::agent::build
