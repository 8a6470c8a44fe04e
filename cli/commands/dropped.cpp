// docker-machine flags berth does not have: each is a hidden option whose use
// is a usage error saying why it was dropped and what to do instead.
#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <string_view>

#include "cli/commands/commands.h"
#include "core/error.h"

namespace berth::cli {
namespace {

struct Dropped {
  const char* flag;
  bool takes_value;
  const char* why;
};

constexpr const char* kInstall = "berth installs its own berth-agent instead of Docker's install script";
constexpr const char* kSwarm =
    "Docker Swarm classic is gone; 'berth create --cluster NAME' joins machines into a berth cluster";

const Dropped kCreateFlags[] = {
    {"--engine-install-url", true, kInstall},
    {"--engine-storage-driver", true,
     "berth-agent keeps images on overlayfs and has no storage drivers to choose from"},
    {"--swarm", false, kSwarm},
    {"--swarm-master", false, kSwarm},
    {"--swarm-experimental", false, kSwarm},
    {"--swarm-addr", true, kSwarm},
    {"--swarm-discovery", true, kSwarm},
    {"--swarm-host", true, kSwarm},
    {"--swarm-image", true, kSwarm},
    {"--swarm-join-opt", true, kSwarm},
    {"--swarm-opt", true, kSwarm},
    {"--swarm-strategy", true, kSwarm},
};

constexpr const char* kCerts =
    "berth keeps its CA and client certificate in the store (STORE/certs); "
    "'berth regenerate-certs --client-certs NAME' renews them";

const Dropped kGlobalFlags[] = {
    {"--native-ssh", false, "berth always uses its built-in SSH client"},
    {"--tls-ca-cert", true, kCerts},
    {"--tls-ca-key", true, kCerts},
    {"--tls-client-cert", true, kCerts},
    {"--tls-client-key", true, kCerts},
    {"--github-api-token", true, kInstall},
    {"--bugsnag-api-token", true, "berth sends no crash reports"},
};

const Dropped kScpFlags[] = {
    {"-d,--delta", false,
     "berth copies over SFTP with the pinned host key, not rsync; 'berth mount' gives rsync a local path"},
};

template <size_t N>
void add_dropped(CLI::App& cmd, const Dropped (&flags)[N]) {
  for (const Dropped& d : flags) {
    auto fail = [d] {
      const std::string_view names = d.flag;
      throw UsageError(fmt::format("{} was dropped because {}", names.substr(names.rfind(',') + 1), d.why));
    };
    CLI::Option* opt = d.takes_value
                           ? cmd.add_option_function<std::string>(d.flag, [fail](const std::string&) { fail(); })
                           : cmd.add_flag_callback(d.flag, fail);
    opt->group("");  // hidden from help and completion
  }
}

}  // namespace

void setup_dropped_global_flags(CLI::App& app) { add_dropped(app, kGlobalFlags); }
void setup_dropped_create_flags(CLI::App& create) { add_dropped(create, kCreateFlags); }
void setup_dropped_scp_flags(CLI::App& scp) { add_dropped(scp, kScpFlags); }

}  // namespace berth::cli
