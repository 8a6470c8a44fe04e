#include "agent/runtime/links.h"

#include <algorithm>
#include <cctype>

namespace berth::agent::runtime {

using nlohmann::json;

namespace {

std::string strip_slash(std::string s) {
  auto slash = s.rfind('/');
  return slash == std::string::npos ? s : s.substr(slash + 1);
}

struct Port {
  int number;
  std::string proto;
};

}  // namespace

std::pair<std::string, std::string> parse_link(const std::string& link) {
  auto colon = link.find(':');
  std::string name = link.substr(0, colon);
  std::string alias = colon == std::string::npos ? name : link.substr(colon + 1);
  if (!name.empty() && name[0] == '/') name.erase(0, 1);
  return {name, strip_slash(alias)};
}

std::vector<std::string> link_env(const std::string& parent, const std::string& alias_name,
                                  const LinkTarget& t) {
  std::string alias;
  for (char c : alias_name) alias += c == '-' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  std::vector<Port> ports;
  if (t.exposed_ports.is_object())
    for (auto& [key, _] : t.exposed_ports.items()) {
      auto slash = key.find('/');
      std::string proto = slash == std::string::npos ? "tcp" : key.substr(slash + 1);
      try {
        ports.push_back({std::stoi(key.substr(0, slash)), proto});
      } catch (const std::exception&) {
      }
    }
  std::stable_sort(ports.begin(), ports.end(), [](const Port& a, const Port& b) {
    return a.number < b.number || (a.number == b.number && a.proto == "tcp" && b.proto != "tcp");
  });
  std::vector<std::string> env;
  if (!ports.empty())
    env.push_back(alias + "_PORT=" + ports[0].proto + "://" + t.ip + ":" + std::to_string(ports[0].number));
  for (const Port& p : ports) {
    std::string proto_up;
    for (char c : p.proto) proto_up += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    std::string base = alias + "_PORT_" + std::to_string(p.number) + "_" + proto_up;
    env.push_back(base + "=" + p.proto + "://" + t.ip + ":" + std::to_string(p.number));
    env.push_back(base + "_ADDR=" + t.ip);
    env.push_back(base + "_PORT=" + std::to_string(p.number));
    env.push_back(base + "_PROTO=" + p.proto);
  }
  env.push_back(alias + "_NAME=/" + parent + "/" + alias_name);
  for (const std::string& kv : t.env) {
    auto eq = kv.find('=');
    if (eq == std::string::npos) continue;
    std::string name = kv.substr(0, eq);
    if (name == "HOME" || name == "PATH") continue;
    env.push_back(alias + "_ENV_" + name + "=" + kv.substr(eq + 1));
  }
  return env;
}

std::string link_hosts_line(const std::string& alias, const LinkTarget& t) {
  std::string line = t.ip + "\t" + alias;
  if (!t.hostname.empty()) line += " " + t.hostname;
  if (alias != t.name) line += " " + t.name;
  return line + "\n";
}

}  // namespace berth::agent::runtime
