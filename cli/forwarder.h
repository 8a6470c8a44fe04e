#pragma once
// The per-machine port forwarder: a background `berth forward --foreground NAME`
// that follows the agent's /events over mutual TLS and forwards every published
// TCP port to the same port on this computer's 127.0.0.1, over SSH.
//
// Files in the machine dir: forward.lock (held while it runs), forward.pid,
// forward.json (what it forwards now), forward.log, forward.disabled (set by
// 'berth forward --off': then start_forwarder does nothing).
#include <set>
#include <string>
#include <vector>

#include "cli/context.h"
#include "core/ssh_forward.h"

namespace berth::cli {

struct ForwarderView {
  bool running = false;
  std::vector<int> ports;               // listening now
  std::vector<std::string> warnings;    // ports that could not be forwarded, connection trouble
};

ForwarderView read_forwarder(Context& ctx, const std::string& name);
bool forwarder_disabled(Context& ctx, const std::string& name);
void set_forwarder_disabled(Context& ctx, const std::string& name, bool disabled);

// Starts it in the background unless it runs already or is disabled; waits
// until it holds its lock. A failure to start is a warning, never an error.
void start_forwarder(Context& ctx, const std::string& name, bool quiet = false);
// Stops it (SIGTERM, then SIGKILL after 3 s); nothing when it does not run.
void stop_forwarder(Context& ctx, const std::string& name);

// The forwarder itself, in this process, until SIGTERM/SIGINT.
void run_forwarder(Context& ctx, const std::string& name);

// What /containers/json asks to forward: each running container's published
// TCP ports (PublicPort), to the address it is published on as the machine
// sees it (0.0.0.0/:: -> 127.0.0.1). One forward per port; the first wins.
// `gone` holds ids to leave out: containers whose die event came before the
// engine's list caught up.
std::vector<PortForward> forwards_from_containers(const std::string& containers_json,
                                                  const std::set<std::string>& gone = {});

}  // namespace berth::cli
