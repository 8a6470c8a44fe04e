#pragma once
// Forwards TCP ports on this host's 127.0.0.1 to addresses as the SSH server
// sees them, through direct-tcpip channels of ONE libssh session. run() owns
// the session and every socket; other threads only call set_forwards(),
// status() and stop().
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "core/ssh.h"

namespace berth {

struct PortForward {
  int local_port = 0;         // on 127.0.0.1 here
  std::string remote_host;    // as the SSH server resolves it, e.g. "127.0.0.1"
  int remote_port = 0;
  std::string label;          // who wants it, e.g. the container's name
  bool any_address = false;   // published on all the machine's addresses (not only remote_host)
  bool operator==(const PortForward&) const = default;
};

struct ForwardStatus {
  PortForward forward;
  bool listening = false;
  std::string error;          // why it is not listening, e.g. the port is in use
  std::uint64_t connections = 0;
  std::uint64_t bytes_in = 0;   // laptop -> machine
  std::uint64_t bytes_out = 0;  // machine -> laptop
};

class SshPortForwarder {
 public:
  explicit SshPortForwarder(std::unique_ptr<SshSession> session);
  ~SshPortForwarder();
  SshPortForwarder(const SshPortForwarder&) = delete;
  SshPortForwarder& operator=(const SshPortForwarder&) = delete;

  // The wanted set; run() opens and closes listeners to match within ~50 ms.
  // Ports that could not be bound are retried every few seconds.
  void set_forwards(std::vector<PortForward> wanted);
  std::vector<ForwardStatus> status() const;
  // Serves until stop(); throws SshError when the session dies (the caller
  // reconnects with a new forwarder). Listeners close when run() returns.
  void run();
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace berth
