#include "agent/runtime/container_format.h"

#include <sys/random.h>

#include <charconv>
#include <cmath>
#include <regex>
#include <set>

#include "agent/api/http.h"
#include "agent/runtime/json_log.h"

namespace berth::agent::runtime {
namespace {

using nlohmann::json;

bool parse_port_number(std::string_view s, int& out) {
  if (s.empty()) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && p == s.data() + s.size() && out >= 0 && out <= 65535;
}

// "80", "80-90": true when valid.
bool valid_port_range(std::string_view s, bool allow_zero) {
  auto dash = s.find('-');
  int a = 0, b = 0;
  if (dash == std::string_view::npos) return parse_port_number(s, a) && (allow_zero || a > 0);
  return parse_port_number(s.substr(0, dash), a) && parse_port_number(s.substr(dash + 1), b) &&
         a > 0 && b >= a;
}

void check_container_port(const std::string& key) {
  auto slash = key.find('/');
  std::string port = key.substr(0, slash);
  std::string proto = slash == std::string::npos ? "tcp" : key.substr(slash + 1);
  if (proto != "tcp" && proto != "udp" && proto != "sctp")
    throw api::HttpError(400, "invalid proto: " + proto);
  if (!valid_port_range(port, false))
    throw api::HttpError(400, "invalid port specification: \"" + port + "\"");
}

std::string with_proto(const std::string& key) {
  return key.find('/') == std::string::npos ? key + "/tcp" : key;
}

}  // namespace

bool valid_container_name(const std::string& name) {
  static const std::regex re("^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$");
  return std::regex_match(name, re);
}

std::string new_container_id() {
  unsigned char bytes[32];
  std::size_t got = 0;
  while (got < sizeof bytes) {
    ssize_t n = ::getrandom(bytes + got, sizeof bytes - got, 0);
    if (n > 0) got += static_cast<std::size_t>(n);
  }
  static const char* hex = "0123456789abcdef";
  std::string id;
  for (unsigned char b : bytes) {
    id += hex[b >> 4];
    id += hex[b & 15];
  }
  // dockerd avoids all-numeric short ids (they look like numbers to the CLI).
  if (id.substr(0, 12).find_first_not_of("0123456789") == std::string::npos) id[0] = 'a';
  return id;
}

std::string random_container_name() {
  static const char* left[] = {"admiring", "brave",   "clever",  "dreamy",  "eager",
                               "focused",  "gallant", "happy",   "jolly",   "keen",
                               "lucid",    "modest",  "nifty",   "optimistic", "peaceful",
                               "quirky",   "relaxed", "serene",  "tender",  "upbeat",
                               "vibrant",  "wizardly", "youthful", "zealous"};
  static const char* right[] = {"albattani", "babbage", "curie",   "darwin",  "einstein",
                                "feynman",   "galileo", "hopper",  "hypatia", "kepler",
                                "lovelace",  "meitner", "newton",  "noether", "pasteur",
                                "ritchie",   "shannon", "tesla",   "turing",  "wozniak"};
  unsigned int r[2];
  while (::getrandom(r, sizeof r, 0) != sizeof r) {
  }
  return std::string(left[r[0] % std::size(left)]) + "_" + right[r[1] % std::size(right)];
}

std::string familiar_reference(const std::string& ref) {
  std::string r = ref;
  for (const char* prefix : {"docker.io/library/", "index.docker.io/library/", "docker.io/"}) {
    if (r.rfind(prefix, 0) == 0) {
      r = r.substr(std::string(prefix).size());
      break;
    }
  }
  if (r.find('@') != std::string::npos) return r;
  auto slash = r.rfind('/');
  auto colon = r.rfind(':');
  if (colon == std::string::npos || (slash != std::string::npos && colon < slash)) r += ":latest";
  return r;
}

void validate_ports(const json& config, const json& hc) {
  if (config.is_object())
    if (auto it = config.find("ExposedPorts"); it != config.end() && it->is_object())
      for (auto& [key, _] : it->items()) check_container_port(key);
  if (!hc.is_object()) return;
  auto pb = hc.find("PortBindings");
  if (pb == hc.end() || !pb->is_object()) return;
  for (auto& [key, bindings] : pb->items()) {
    check_container_port(key);
    if (!bindings.is_array()) continue;
    for (const json& b : bindings) {
      if (!b.is_object()) throw api::HttpError(400, "invalid port binding for " + key);
      std::string host_port = b.value("HostPort", "");
      if (!host_port.empty() && !valid_port_range(host_port, true))
        throw api::HttpError(400, "invalid port specification: \"" + host_port + "\"");
      std::string ip = b.value("HostIp", "");
      if (!ip.empty()) {
        static const std::regex v4("^[0-9]{1,3}(\\.[0-9]{1,3}){3}$");
        if (!std::regex_match(ip, v4) && ip.find(':') == std::string::npos)
          throw api::HttpError(400, "invalid IP address: " + ip);
      }
    }
  }
}

void validate_resources(const json& hc, int ncpu) {
  auto num = [&](const char* key) -> std::int64_t {
    auto it = hc.find(key);
    if (it == hc.end() || it->is_null()) return 0;
    if (!it->is_number_integer()) throw api::HttpError(400, std::string("invalid ") + key);
    return it->get<std::int64_t>();
  };
  const std::int64_t memory = num("Memory"), nano = num("NanoCpus");
  const std::int64_t quota = num("CpuQuota"), period = num("CpuPeriod");
  if (memory != 0 && memory < 6 * 1024 * 1024)
    throw api::HttpError(400, "Minimum memory limit allowed is 6MB");
  if (nano < 0 || nano > static_cast<std::int64_t>(ncpu) * 1000000000)
    throw api::HttpError(400, "Range of CPUs is from 0.01 to " + std::to_string(ncpu) +
                                  ".00, as there are only " + std::to_string(ncpu) +
                                  " CPUs available");
  if (nano > 0 && (quota > 0 || period > 0))
    throw api::HttpError(400, "Conflicting options: Nano CPUs and CPU Period cannot both be set");
  if (quota > 0 && quota < 1000)
    throw api::HttpError(400, "CPU cfs quota can not be less than 1ms (i.e. 1000)");
  if (period != 0 && (period < 1000 || period > 1000000))
    throw api::HttpError(400, "CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)");
}

std::vector<network::PortBinding> wanted_port_bindings(const json& config, const json& hc) {
  std::vector<network::PortBinding> out;
  std::set<std::string> bound;
  if (hc.is_object()) {
    if (auto pb = hc.find("PortBindings"); pb != hc.end() && pb->is_object()) {
      for (auto& [key, bindings] : pb->items()) {
        std::string port = with_proto(key);
        bound.insert(port);
        if (!bindings.is_array() || bindings.empty()) {
          out.push_back({port, "", ""});
          continue;
        }
        for (const json& b : bindings)
          out.push_back({port, b.value("HostIp", ""), b.value("HostPort", "")});
      }
    }
  }
  if (hc.is_object() && hc.value("PublishAllPorts", false) && config.is_object()) {
    if (auto it = config.find("ExposedPorts"); it != config.end() && it->is_object())
      for (auto& [key, _] : it->items())
        if (!bound.count(with_proto(key))) out.push_back({with_proto(key), "", ""});
  }
  return out;
}

json ports_map(const json& config, const std::vector<network::PortBinding>& published) {
  json ports = json::object();
  if (config.is_object())
    if (auto it = config.find("ExposedPorts"); it != config.end() && it->is_object())
      for (auto& [key, _] : it->items()) ports[with_proto(key)] = nullptr;
  for (const network::PortBinding& b : published) {
    json& list = ports[b.container_port];
    if (!list.is_array()) list = json::array();
    list.push_back({{"HostIp", b.host_ip.empty() ? "0.0.0.0" : b.host_ip},
                    {"HostPort", b.host_port}});
  }
  return ports;
}

json summary_ports(const json& ports) {
  json out = json::array();
  if (!ports.is_object()) return out;
  for (auto& [key, bindings] : ports.items()) {
    auto slash = key.find('/');
    int private_port = 0;
    parse_port_number(std::string_view(key).substr(0, slash), private_port);
    std::string type = slash == std::string::npos ? "tcp" : key.substr(slash + 1);
    if (!bindings.is_array() || bindings.empty()) {
      out.push_back({{"PrivatePort", private_port}, {"Type", type}});
      continue;
    }
    for (const json& b : bindings) {
      int public_port = 0;
      parse_port_number(b.value("HostPort", ""), public_port);
      out.push_back({{"IP", b.value("HostIp", "")},
                     {"PrivatePort", private_port},
                     {"PublicPort", public_port},
                     {"Type", type}});
    }
  }
  return out;
}

std::string human_duration(std::int64_t seconds) {
  if (seconds < 1) return "Less than a second";
  if (seconds == 1) return "1 second";
  if (seconds < 60) return std::to_string(seconds) + " seconds";
  std::int64_t minutes = seconds / 60;
  if (minutes == 1) return "About a minute";
  if (minutes < 60) return std::to_string(minutes) + " minutes";
  auto hours = static_cast<std::int64_t>(std::llround(static_cast<double>(seconds) / 3600.0));
  if (hours == 1) return "About an hour";
  if (hours < 48) return std::to_string(hours) + " hours";
  if (hours < 24 * 7 * 2) return std::to_string(hours / 24) + " days";
  if (hours < 24 * 30 * 2) return std::to_string(hours / 24 / 7) + " weeks";
  if (hours < 24 * 365 * 2) return std::to_string(hours / 24 / 30) + " months";
  return std::to_string(hours / 24 / 365) + " years";
}

std::string status_text(const json& state, std::int64_t now) {
  std::string status = state.value("Status", "created");
  auto since = [&](const char* key) -> std::int64_t {
    auto t = parse_rfc3339(state.value(key, std::string(kZeroTime)));
    if (!t) return 0;
    return (now - *t) / 1'000'000'000;
  };
  if (status == "running") {
    std::string up = "Up " + human_duration(since("StartedAt"));
    // dockerd's Health.String(): "(health: starting)", "(healthy)", "(unhealthy)".
    if (auto h = state.find("Health"); h != state.end() && h->is_object()) {
      std::string health = h->value("Status", "");
      if (health.empty()) health = "unhealthy";
      up += health == "starting" ? " (health: starting)" : " (" + health + ")";
    }
    return up;
  }
  if (status == "paused") return "Up " + human_duration(since("StartedAt")) + " (Paused)";
  if (status == "restarting")
    return "Restarting (" + std::to_string(state.value("ExitCode", 0)) + ") " +
           human_duration(since("FinishedAt")) + " ago";
  if (status == "exited") {
    if (state.value("FinishedAt", std::string(kZeroTime)) == kZeroTime) return "Created";
    return "Exited (" + std::to_string(state.value("ExitCode", 0)) + ") " +
           human_duration(since("FinishedAt")) + " ago";
  }
  if (status == "removing") return "Removal In Progress";
  if (status == "dead") return "Dead";
  return "Created";
}

std::string command_text(const json& doc) {
  std::string out = doc.value("Path", "");
  if (auto it = doc.find("Args"); it != doc.end() && it->is_array())
    for (const json& a : *it) out += " " + a.get<std::string>();
  return out;
}

json container_summary(const json& doc) {
  const json& config = doc.at("Config");
  const json& state = doc.at("State");
  json networks = json::object();
  if (auto ns = doc.find("NetworkSettings"); ns != doc.end() && ns->contains("Networks"))
    networks = (*ns)["Networks"];
  json ports = json::object();
  if (auto ns = doc.find("NetworkSettings"); ns != doc.end() && ns->contains("Ports"))
    ports = (*ns)["Ports"];
  json mounts = json::array();
  if (auto m = doc.find("Mounts"); m != doc.end() && m->is_array()) mounts = *m;
  auto created = parse_rfc3339(doc.value("Created", std::string(kZeroTime))).value_or(0);
  return {{"Id", doc.at("Id")},
          {"Names", json::array({doc.at("Name")})},
          {"Image", config.value("Image", "")},
          {"ImageID", doc.value("Image", "")},
          {"Command", command_text(doc)},
          {"Created", created / 1'000'000'000},
          {"Ports", summary_ports(ports)},
          {"Labels", config.contains("Labels") && config["Labels"].is_object() ? config["Labels"]
                                                                             : json::object()},
          {"State", state.value("Status", "created")},
          {"Status", status_text(state, to_unix_nanos(Clock::now()))},
          {"HostConfig", {{"NetworkMode", doc.at("HostConfig").value("NetworkMode", "bridge")}}},
          {"NetworkSettings", {{"Networks", networks}}},
          {"Mounts", mounts}};
}

std::map<std::string, std::vector<std::string>> parse_filters(const json& filters) {
  std::map<std::string, std::vector<std::string>> out;
  if (!filters.is_object()) return out;
  for (auto& [key, value] : filters.items()) {
    auto& list = out[key];
    if (value.is_array()) {
      for (const json& v : value)
        if (v.is_string()) list.push_back(v.get<std::string>());
    } else if (value.is_object()) {
      for (auto& [v, on] : value.items())
        if (!on.is_boolean() || on.get<bool>()) list.push_back(v);
    } else if (value.is_string()) {
      list.push_back(value.get<std::string>());
    }
  }
  return out;
}

void check_filter_keys(const std::map<std::string, std::vector<std::string>>& f,
                       const std::vector<std::string>& allowed) {
  for (const auto& [key, _] : f)
    if (std::find(allowed.begin(), allowed.end(), key) == allowed.end())
      throw api::HttpError(400, "invalid filter '" + key + "'");
}

bool labels_match(const json& labels, const std::vector<std::string>& wanted) {
  for (const std::string& w : wanted) {
    auto eq = w.find('=');
    std::string key = w.substr(0, eq);
    if (!labels.is_object() || !labels.contains(key)) return false;
    if (eq != std::string::npos && labels[key] != w.substr(eq + 1)) return false;
  }
  return true;
}

}  // namespace berth::agent::runtime
