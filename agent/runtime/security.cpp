#include "agent/runtime/security.h"

#include <sys/utsname.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <fstream>

#include "agent/api/http.h"

namespace berth::agent::runtime {

extern const char kDefaultSeccompProfile[];  // generated from seccomp_default.json

namespace {

using nlohmann::json;
using api::HttpError;

bool non_negative(const json& j) {
  return j.is_number_unsigned() || (j.is_number_integer() && j.get<std::int64_t>() >= 0);
}

bool contains(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

std::vector<std::string> strings_at(const json& obj, const char* key, const std::string& where) {
  std::vector<std::string> out;
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return out;
  if (!it->is_array()) throw HttpError(400, "invalid seccomp profile: " + where + "." + key + " must be a list of strings");
  for (const json& v : *it) {
    if (!v.is_string()) throw HttpError(400, "invalid seccomp profile: " + where + "." + key + " must be a list of strings");
    out.push_back(v.get<std::string>());
  }
  return out;
}

std::string string_at(const json& obj, const char* key, const std::string& where, bool required) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) {
    if (required) throw HttpError(400, "invalid seccomp profile: " + where + " has no \"" + key + "\"");
    return "";
  }
  if (!it->is_string()) throw HttpError(400, "invalid seccomp profile: " + where + "." + key + " must be a string");
  return it->get<std::string>();
}

// "4.8" -> {4, 8}; a malformed version is a 400.
std::pair<int, int> parse_kernel_version(const std::string& text, const std::string& where) {
  int major = 0, minor = 0;
  char rest = 0;
  if (std::sscanf(text.c_str(), "%d.%d%c", &major, &minor, &rest) != 2 || major < 0 || minor < 0)
    throw HttpError(400, "invalid seccomp profile: " + where + ".minKernel \"" + text +
                             "\" is not a kernel version such as \"4.8\"");
  return {major, minor};
}

json oci_args(const json& rule, const std::string& where) {
  json out = json::array();
  auto it = rule.find("args");
  if (it == rule.end() || it->is_null()) return out;
  if (!it->is_array()) throw HttpError(400, "invalid seccomp profile: " + where + ".args must be a list");
  for (const json& a : *it) {
    if (!a.is_object() || !a.contains("index") || !non_negative(a["index"]) ||
        !a.contains("op") || !a["op"].is_string())
      throw HttpError(400, "invalid seccomp profile: " + where +
                               ".args entries need an \"index\" and an \"op\"");
    json o = {{"index", a["index"]}, {"op", a["op"]}};
    for (const char* k : {"value", "valueTwo"}) {
      if (!a.contains(k) || a[k].is_null()) continue;
      if (!non_negative(a[k]))
        throw HttpError(400, "invalid seccomp profile: " + where + ".args." + k + " must be an unsigned integer");
      o[k] = a[k];
    }
    out.push_back(std::move(o));
  }
  return out;
}

bool kernel_at_least(const Platform& p, std::pair<int, int> v) {
  return p.kernel_major > v.first || (p.kernel_major == v.first && p.kernel_minor >= v.second);
}

bool applies(const json& rule, const std::vector<std::string>& caps, const Platform& platform,
             const std::string& where) {
  if (auto inc = rule.find("includes"); inc != rule.end() && !inc->is_null()) {
    if (!inc->is_object()) throw HttpError(400, "invalid seccomp profile: " + where + ".includes must be an object");
    for (const std::string& c : strings_at(*inc, "caps", where + ".includes"))
      if (!contains(caps, c)) return false;
    auto arches = strings_at(*inc, "arches", where + ".includes");
    if (!arches.empty() && !contains(arches, platform.go_arch)) return false;
    std::string min = string_at(*inc, "minKernel", where + ".includes", false);
    if (!min.empty() && !kernel_at_least(platform, parse_kernel_version(min, where + ".includes")))
      return false;
  }
  if (auto exc = rule.find("excludes"); exc != rule.end() && !exc->is_null()) {
    if (!exc->is_object()) throw HttpError(400, "invalid seccomp profile: " + where + ".excludes must be an object");
    for (const std::string& c : strings_at(*exc, "caps", where + ".excludes"))
      if (contains(caps, c)) return false;
    if (contains(strings_at(*exc, "arches", where + ".excludes"), platform.go_arch)) return false;
  }
  return true;
}

std::string read_small(const char* path) {
  std::ifstream in(path);
  std::string s;
  std::getline(in, s);
  return s;
}

}  // namespace

SecurityOptions parse_security_opts(const json& host_config, bool apparmor_on) {
  SecurityOptions out;
  auto it = host_config.find("SecurityOpt");
  if (it == host_config.end() || it->is_null()) return out;
  if (!it->is_array()) throw HttpError(400, "invalid SecurityOpt: must be a list of strings");
  for (const json& j : *it) {
    if (!j.is_string()) throw HttpError(400, "invalid SecurityOpt: must be a list of strings");
    const std::string opt = j.get<std::string>();
    if (opt == "no-new-privileges") {
      out.no_new_privileges = true;
      continue;
    }
    if (opt == "disable") continue;  // the old spelling of label=disable
    auto sep = opt.find('=');
    if (sep == std::string::npos) sep = opt.find(':');
    if (sep == std::string::npos) throw HttpError(400, "invalid --security-opt 1: \"" + opt + "\"");
    const std::string key = opt.substr(0, sep), value = opt.substr(sep + 1);
    auto parse_bool = [&](const std::string& v) {
      if (v == "true" || v == "1" || v == "t" || v == "T" || v == "TRUE" || v == "True") return true;
      if (v == "false" || v == "0" || v == "f" || v == "F" || v == "FALSE" || v == "False") return false;
      throw HttpError(400, "invalid --security-opt 2: \"" + opt + "\"");
    };
    if (value.empty()) throw HttpError(400, "invalid --security-opt 2: \"" + opt + "\"");
    if (key == "seccomp") {
      if (value == "unconfined") {
        out.seccomp = SecurityOptions::Seccomp::Unconfined;
      } else if (value == "builtin") {
        out.seccomp = SecurityOptions::Seccomp::Default;
      } else {
        // The docker CLI sends the profile file's contents.
        json profile = json::parse(value, nullptr, false);
        if (profile.is_discarded() || !profile.is_object())
          throw HttpError(400, "Decoding seccomp profile failed: not a JSON object (the docker CLI "
                               "sends the contents of the file given to --security-opt seccomp=)");
        out.seccomp = SecurityOptions::Seccomp::Custom;
        out.seccomp_profile = std::move(profile);
      }
    } else if (key == "apparmor") {
      if (value != "unconfined" && !apparmor_on)
        throw HttpError(400, "AppArmor is not enabled in this machine's kernel: cannot apply "
                             "--security-opt \"" + opt + "\"; use apparmor=unconfined or leave it out");
      out.apparmor = value;
    } else if (key == "no-new-privileges") {
      out.no_new_privileges = parse_bool(value);
    } else if (key == "writable-cgroups") {
      out.writable_cgroups = parse_bool(value);
    } else if (key == "label") {
      if (value != "disable")
        throw HttpError(400, "SELinux is not enabled on this machine: cannot apply --security-opt \"" +
                                 opt + "\"");
    } else {
      throw HttpError(400, "invalid --security-opt 2: \"" + opt + "\"");
    }
  }
  return out;
}

Platform host_platform() {
  Platform p;
  utsname u{};
  if (::uname(&u) == 0) {
    std::sscanf(u.release, "%d.%d", &p.kernel_major, &p.kernel_minor);
    const std::string machine = u.machine;
    if (machine == "aarch64") {
      p.seccomp_arch = "SCMP_ARCH_AARCH64";
      p.go_arch = "arm64";
    } else if (machine == "s390x") {
      p.seccomp_arch = "SCMP_ARCH_S390X";
      p.go_arch = "s390x";
    } else if (machine == "riscv64") {
      p.seccomp_arch = "SCMP_ARCH_RISCV64";
      p.go_arch = "riscv64";
    }
  }
  return p;
}

const json& default_seccomp_profile() {
  static const json profile = json::parse(kDefaultSeccompProfile);
  return profile;
}

json oci_seccomp(const json& profile, const std::vector<std::string>& caps, const Platform& platform) {
  if (!profile.is_object()) throw HttpError(400, "invalid seccomp profile: not a JSON object");
  json out = {{"defaultAction", string_at(profile, "defaultAction", "the profile", true)}};
  if (auto e = profile.find("defaultErrnoRet"); e != profile.end() && !e->is_null()) {
    if (!non_negative(*e)) throw HttpError(400, "invalid seccomp profile: defaultErrnoRet must be an unsigned integer");
    out["defaultErrnoRet"] = *e;
  }
  const bool has_map = profile.contains("archMap") && !profile["archMap"].is_null();
  const bool has_list = profile.contains("architectures") && !profile["architectures"].is_null();
  if (has_map && has_list)
    throw HttpError(400, "invalid seccomp profile: use either 'architectures' or 'archMap'");
  json arches = json::array();
  if (has_list) {
    for (const std::string& a : strings_at(profile, "architectures", "the profile")) arches.push_back(a);
  } else if (has_map) {
    if (!profile["archMap"].is_array()) throw HttpError(400, "invalid seccomp profile: archMap must be a list");
    for (const json& m : profile["archMap"]) {
      if (!m.is_object()) throw HttpError(400, "invalid seccomp profile: archMap entries must be objects");
      if (string_at(m, "architecture", "archMap", true) != platform.seccomp_arch) continue;
      arches.push_back(platform.seccomp_arch);
      for (const std::string& s : strings_at(m, "subArchitectures", "archMap")) arches.push_back(s);
    }
  }
  out["architectures"] = arches;
  if (auto f = profile.find("flags"); f != profile.end() && !f->is_null())
    out["flags"] = strings_at(profile, "flags", "the profile");

  json syscalls = json::array();
  auto list = profile.find("syscalls");
  if (list != profile.end() && !list->is_null()) {
    if (!list->is_array()) throw HttpError(400, "invalid seccomp profile: syscalls must be a list");
    for (std::size_t i = 0; i < list->size(); ++i) {
      const json& rule = (*list)[i];
      const std::string where = "syscalls[" + std::to_string(i) + "]";
      if (!rule.is_object()) throw HttpError(400, "invalid seccomp profile: " + where + " must be an object");
      std::vector<std::string> names = strings_at(rule, "names", where);
      std::string name = string_at(rule, "name", where, false);
      if (!name.empty() && !names.empty())
        throw HttpError(400, "invalid seccomp profile: " + where + " uses both 'name' and 'names'");
      if (!name.empty()) names.push_back(name);
      std::string action = string_at(rule, "action", where, true);
      if (!applies(rule, caps, platform, where)) continue;
      json o = {{"names", names}, {"action", action}};
      if (auto e = rule.find("errnoRet"); e != rule.end() && !e->is_null()) {
        if (!non_negative(*e)) throw HttpError(400, "invalid seccomp profile: " + where + ".errnoRet must be an unsigned integer");
        o["errnoRet"] = *e;
      }
      if (json args = oci_args(rule, where); !args.empty()) o["args"] = std::move(args);
      syscalls.push_back(std::move(o));
    }
  }
  out["syscalls"] = std::move(syscalls);
  return out;
}

bool apparmor_enabled() {
  return read_small("/sys/module/apparmor/parameters/enabled") == "Y";
}

}  // namespace berth::agent::runtime
