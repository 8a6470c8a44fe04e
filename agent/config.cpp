#include "agent/config.h"

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
