#pragma once
// One error hierarchy for the whole of berth. The CLI catches berth::Error once,
// prints "berth: error: <what()>" on one line and exits with exit_code().
#include <stdexcept>
#include <string>

namespace berth {

enum ExitCode : int {
  kExitOk = 0,
  kExitError = 1,
  kExitUsage = 2,
  kExitPreCreateCheck = 3,
  kExitNotFound = 4,
  kExitInterrupted = 130,
};

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message, int exit_code = kExitError)
      : std::runtime_error(message), exit_code_(exit_code) {}
  int exit_code() const noexcept { return exit_code_; }

 private:
  int exit_code_;
};

// Bad input from the user: a flag, a name, a file.
class UserError : public Error {
 public:
  explicit UserError(const std::string& m) : Error(m, kExitError) {}
};

class UsageError : public Error {
 public:
  explicit UsageError(const std::string& m) : Error(m, kExitUsage) {}
};

class NotFound : public Error {
 public:
  explicit NotFound(const std::string& m) : Error(m, kExitNotFound) {}
};

class PreCreateCheckFailed : public Error {
 public:
  explicit PreCreateCheckFailed(const std::string& m) : Error(m, kExitPreCreateCheck) {}
};

class DriverError : public Error {
 public:
  explicit DriverError(const std::string& m) : Error(m, kExitError) {}
};

class TlsError : public Error {
 public:
  explicit TlsError(const std::string& m) : Error(m, kExitError) {}
};

class SshError : public Error {
 public:
  explicit SshError(const std::string& m, int remote_exit_code = -1)
      : Error(m, kExitError), remote_exit_code_(remote_exit_code) {}
  int remote_exit_code() const noexcept { return remote_exit_code_; }

 private:
  int remote_exit_code_;
};

class Interrupted : public Error {
 public:
  explicit Interrupted(const std::string& m) : Error(m, kExitInterrupted) {}
};

}  // namespace berth
