#pragma once
// Legacy container links (docker run --link NAME[:ALIAS]) on the default
// bridge, as dockerd's daemon/links: /etc/hosts entries and the environment
// variables ALIAS_PORT, ALIAS_PORT_<port>_<PROTO>[_ADDR|_PORT|_PROTO],
// ALIAS_NAME and ALIAS_ENV_<var>.
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

namespace berth::agent::runtime {

// "db:alias" -> {"db","alias"}; "db" -> {"db","db"}; a leading '/' is dropped
// from both ("/db:/web/alias" as dockerd stores it -> {"db","alias"}).
std::pair<std::string, std::string> parse_link(const std::string& link);

struct LinkTarget {
  std::string name;      // the linked container's name, without '/'
  std::string hostname;  // its Config.Hostname
  std::string ip;        // its address on the default bridge
  nlohmann::json exposed_ports;   // its Config.ExposedPorts {"80/tcp":{}}
  std::vector<std::string> env;   // its Config.Env
};

// The variables a container named `parent` (without '/') gets for `alias`.
std::vector<std::string> link_env(const std::string& parent, const std::string& alias,
                                  const LinkTarget& target);
// "IP\talias hostname name" (the name only when it differs from the alias).
std::string link_hosts_line(const std::string& alias, const LinkTarget& target);

}  // namespace berth::agent::runtime
