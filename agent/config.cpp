#include "agent/config.h"

#include <arpa/inet.h>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"

namespace berth::agent {
namespace {

using nlohmann::json;

[[noreturn]] void fail(const std::string& source, const std::string& what) {
  throw UserError("config " + source + ": " + what);
}

std::string get_string(const json& obj, const char* key, const std::string& fallback,
                       const std::string& source, const std::string& prefix = "") {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return fallback;
  if (!it->is_string()) fail(source, "\"" + prefix + key + "\" must be a string");
  std::string value = it->get<std::string>();
  if (value.empty()) fail(source, "\"" + prefix + key + "\" must not be empty");
  return value;
}

// `require_pair`: each item must look like key=value with a non-empty key.
std::vector<std::string> get_list(const json& obj, const char* key, const std::string& source,
                                  bool require_pair) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return {};
  if (!it->is_array()) fail(source, "\"" + std::string(key) + "\" must be an array of strings");
  std::vector<std::string> out;
  for (std::size_t i = 0; i < it->size(); ++i) {
    const json& item = (*it)[i];
    const std::string where = std::string(key) + "[" + std::to_string(i) + "]";
    if (!item.is_string()) fail(source, "\"" + where + "\" must be a string");
    std::string value = item.get<std::string>();
    if (require_pair && (value.find('=') == std::string::npos || value.front() == '=')) {
      fail(source, "\"" + where + "\" is \"" + value + "\"; expected key=value");
    }
    if (value.empty()) fail(source, "\"" + where + "\" must not be empty");
    out.push_back(std::move(value));
  }
  return out;
}

bool is_ipv4(const std::string& text) {
  in_addr a{};
  return ::inet_pton(AF_INET, text.c_str(), &a) == 1;
}

bool is_cluster_name(const std::string& name) {
  if (name.empty() || name.size() > 63 || !std::isalnum(static_cast<unsigned char>(name[0])))
    return false;
  for (char ch : name)
    if (!std::isalnum(static_cast<unsigned char>(ch)) && ch != '-' && ch != '_' && ch != '.')
      return false;
  return true;
}

// "cluster": {"name", "machine", "advertise", "etcd_endpoints", "tls", "etcd"}.
ClusterConfig parse_cluster(const json& obj, const std::string& source) {
  if (!obj.is_object()) fail(source, "\"cluster\" must be an object");
  ClusterConfig c;
  auto required = [&](const json& o, const char* key, const std::string& prefix) {
    std::string value = get_string(o, key, "", source, prefix);
    if (value.empty()) fail(source, "\"" + prefix + key + "\" is missing");
    return value;
  };
  c.name = required(obj, "name", "cluster.");
  if (!is_cluster_name(c.name))
    fail(source, "\"cluster.name\" is \"" + c.name +
                     "\"; use letters, digits, '-', '_' and '.', starting with a letter or digit");
  c.machine = required(obj, "machine", "cluster.");
  if (!is_cluster_name(c.machine))
    fail(source, "\"cluster.machine\" is \"" + c.machine +
                     "\"; use letters, digits, '-', '_' and '.', starting with a letter or digit");
  c.advertise = required(obj, "advertise", "cluster.");
  if (!is_ipv4(c.advertise))
    fail(source, "\"cluster.advertise\" is \"" + c.advertise + "\"; expected an IPv4 address");
  auto endpoints = obj.find("etcd_endpoints");
  if (endpoints == obj.end() || endpoints->is_null())
    fail(source, "\"cluster.etcd_endpoints\" is missing");
  if (!endpoints->is_array() || endpoints->empty())
    fail(source, "\"cluster.etcd_endpoints\" must be a non-empty array of https:// URLs");
  for (std::size_t i = 0; i < endpoints->size(); ++i) {
    const json& e = (*endpoints)[i];
    const std::string where = "cluster.etcd_endpoints[" + std::to_string(i) + "]";
    if (!e.is_string() || !e.get<std::string>().starts_with("https://") ||
        e.get<std::string>().size() <= 8)
      fail(source, "\"" + where + "\" must be an https:// URL (e.g. https://192.168.200.11:2379)");
    c.etcd_endpoints.push_back(e.get<std::string>());
  }
  auto tls = obj.find("tls");
  if (tls == obj.end() || tls->is_null()) fail(source, "\"cluster.tls\" is missing");
  if (!tls->is_object()) fail(source, "\"cluster.tls\" must be an object with ca, cert and key");
  c.tls.ca = required(*tls, "ca", "cluster.tls.");
  c.tls.cert = required(*tls, "cert", "cluster.tls.");
  c.tls.key = required(*tls, "key", "cluster.tls.");
  if (auto etcd = obj.find("etcd"); etcd != obj.end() && !etcd->is_null()) {
    if (!etcd->is_object()) fail(source, "\"cluster.etcd\" must be an object");
    EtcdMemberConfig m;
    m.binary = get_string(*etcd, "binary", m.binary, source, "cluster.etcd.");
    m.data_dir = get_string(*etcd, "data_dir", m.data_dir, source, "cluster.etcd.");
    m.initial_cluster = get_string(*etcd, "initial_cluster",
                                   c.machine + "=https://" + c.advertise + ":2380", source,
                                   "cluster.etcd.");
    bool named = false;
    std::size_t start = 0;
    while (start <= m.initial_cluster.size()) {
      std::size_t comma = m.initial_cluster.find(',', start);
      std::string entry = m.initial_cluster.substr(
          start, comma == std::string::npos ? std::string::npos : comma - start);
      auto eq = entry.find('=');
      if (eq == std::string::npos || eq == 0 || !entry.substr(eq + 1).starts_with("https://"))
        fail(source, "\"cluster.etcd.initial_cluster\" entry \"" + entry +
                         "\" must look like NAME=https://IP:2380");
      named = named || entry.substr(0, eq) == c.machine;
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
    if (!named)
      fail(source, "\"cluster.etcd.initial_cluster\" does not name this machine (\"" + c.machine +
                       "=https://...\")");
    m.initial_cluster_state =
        get_string(*etcd, "initial_cluster_state", m.initial_cluster_state, source, "cluster.etcd.");
    if (m.initial_cluster_state != "new" && m.initial_cluster_state != "existing")
      fail(source, "\"cluster.etcd.initial_cluster_state\" must be \"new\" or \"existing\"");
    c.etcd = std::move(m);
  }
  return c;
}

}  // namespace

AgentConfig parse_config(std::string_view text, const std::string& source) {
  json doc;
  try {
    doc = json::parse(text);
  } catch (const json::parse_error& e) {
    // "[json.exception.parse_error.101] parse error at line 1, column 2: ..." -> after "] ".
    std::string what = e.what();
    auto pos = what.find("] ");
    fail(source, "invalid JSON (" + (pos == std::string::npos ? what : what.substr(pos + 2)) + ")");
  }
  if (!doc.is_object()) fail(source, "must be a JSON object");

  AgentConfig c;
  c.listen = get_string(doc, "listen", c.listen, source);
  if (auto it = doc.find("port"); it != doc.end() && !it->is_null()) {
    if (!it->is_number_integer() || it->get<long long>() < 0 || it->get<long long>() > 65535) {
      fail(source, "\"port\" must be an integer between 0 and 65535");
    }
    c.port = static_cast<std::uint16_t>(it->get<long long>());
  }
  if (auto it = doc.find("tls"); it != doc.end() && !it->is_null()) {
    if (!it->is_object()) fail(source, "\"tls\" must be an object with ca, cert and key");
    c.tls.ca = get_string(*it, "ca", c.tls.ca, source, "tls.");
    c.tls.cert = get_string(*it, "cert", c.tls.cert, source, "tls.");
    c.tls.key = get_string(*it, "key", c.tls.key, source, "tls.");
  }
  c.log_file = get_string(doc, "log_file", c.log_file, source);
  c.pid_file = get_string(doc, "pid_file", c.pid_file, source);
  c.data_root = get_string(doc, "data_root", c.data_root, source);
  c.labels = get_list(doc, "labels", source, true);
  c.env = get_list(doc, "env", source, true);
  if (auto it = doc.find("security"); it != doc.end() && !it->is_null()) {
    if (!it->is_object()) fail(source, "\"security\" must be an object");
    if (auto n = it->find("no_new_privileges"); n != it->end() && !n->is_null()) {
      if (!n->is_boolean()) fail(source, "\"security.no_new_privileges\" must be true or false");
      c.security.no_new_privileges = n->get<bool>();
    }
    c.security.seccomp_profile =
        get_string(*it, "seccomp_profile", c.security.seccomp_profile, source, "security.");
  }
  if (auto it = doc.find("build"); it != doc.end() && !it->is_null()) {
    if (!it->is_object()) fail(source, "\"build\" must be an object");
    if (auto m = it->find("max_context_bytes"); m != it->end() && !m->is_null()) {
      if (!m->is_number_unsigned() || m->get<std::uint64_t>() == 0)
        fail(source, "\"build.max_context_bytes\" must be a positive number of bytes");
      c.build_max_context_bytes = m->get<std::uint64_t>();
    }
  }
  for (std::string& opt : get_list(doc, "opts", source, true)) {
    const std::string name = opt.substr(0, opt.find('=')), value = opt.substr(opt.find('=') + 1);
    if (name == "no-new-privileges") {
      if (value != "true" && value != "false")
        fail(source, "engine option \"" + opt + "\": no-new-privileges takes true or false");
      c.security.no_new_privileges = value == "true";
    } else if (name == "seccomp-profile") {
      if (value.empty()) fail(source, "engine option \"" + opt + "\" needs a value");
      c.security.seccomp_profile = value;
    } else {
      c.opts.push_back(std::move(opt));
    }
  }
  c.insecure_registries = get_list(doc, "insecure_registries", source, false);
  c.registry_mirrors = get_list(doc, "registry_mirrors", source, false);
  if (auto it = doc.find("manage_network"); it != doc.end() && !it->is_null()) {
    if (!it->is_boolean()) fail(source, "\"manage_network\" must be true or false");
    c.manage_network = it->get<bool>();
  }
  if (auto it = doc.find("cluster"); it != doc.end() && !it->is_null())
    c.cluster = parse_cluster(*it, source);
  return c;
}

AgentConfig load_config(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    throw UserError("cannot read config " + path.string() + ": " + std::strerror(errno) +
                    "; pass --config PATH or re-provision the host");
  }
  std::ostringstream text;
  text << in.rdbuf();
  return parse_config(text.str(), path.string());
}

}  // namespace berth::agent
