#include "agent/runtime/oci_spec.h"

#include <csignal>
#include <charconv>
#include <map>
#include <set>
#include <sstream>

#include "agent/api/http.h"

namespace berth::agent::runtime {
namespace {

using nlohmann::json;

bool non_empty_array(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_array() && !it->empty();
}

bool empty_value(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return true;
  if (it->is_string()) return it->get_ref<const std::string&>().empty();  // json::empty() is false for ""
  if (it->is_array() || it->is_object()) return it->empty();
  return false;
}

std::string env_key(const std::string& kv) { return kv.substr(0, kv.find('=')); }

// dockerd's ReplaceOrAppendEnvValues: later entries replace same-named earlier ones.
std::vector<std::string> replace_or_append(std::vector<std::string> base,
                                           const std::vector<std::string>& overrides) {
  for (const std::string& kv : overrides) {
    std::string key = env_key(kv);
    bool replaced = false;
    for (std::string& b : base) {
      if (env_key(b) == key) {
        b = kv;
        replaced = true;
        break;
      }
    }
    if (!replaced) base.push_back(kv);
  }
  return base;
}

std::vector<std::string> string_list(const json& j, const char* key) {
  std::vector<std::string> out;
  auto it = j.find(key);
  if (it == j.end() || !it->is_array()) return out;
  for (const json& v : *it)
    if (v.is_string()) out.push_back(v.get<std::string>());
  return out;
}

std::optional<std::uint32_t> parse_u32(std::string_view s) {
  std::uint32_t v;
  if (s.empty()) return std::nullopt;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
  return v;
}

std::vector<std::string> split(std::string_view s, char sep) {
  std::vector<std::string> out;
  std::size_t start = 0;
  for (;;) {
    auto pos = s.find(sep, start);
    out.emplace_back(s.substr(start, pos - start));
    if (pos == std::string_view::npos) break;
    start = pos + 1;
  }
  return out;
}

struct PasswdEntry {
  std::string name;
  std::uint32_t uid, gid;
  std::string home;
};
struct GroupEntry {
  std::string name;
  std::uint32_t gid;
  std::vector<std::string> members;
};

std::vector<PasswdEntry> parse_passwd(const std::string& text) {
  std::vector<PasswdEntry> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    auto f = split(line, ':');
    if (f.size() < 4) continue;
    auto uid = parse_u32(f[2]);
    auto gid = parse_u32(f[3]);
    if (!uid || !gid) continue;
    out.push_back({f[0], *uid, *gid, f.size() > 5 ? f[5] : ""});
  }
  return out;
}

std::vector<GroupEntry> parse_group(const std::string& text) {
  std::vector<GroupEntry> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    auto f = split(line, ':');
    if (f.size() < 3) continue;
    auto gid = parse_u32(f[2]);
    if (!gid) continue;
    GroupEntry g{f[0], *gid, {}};
    if (f.size() > 3 && !f[3].empty()) g.members = split(f[3], ',');
    out.push_back(std::move(g));
  }
  return out;
}

json mount(std::string dest, std::string type, std::string source,
           std::vector<std::string> options) {
  return {{"destination", std::move(dest)},
          {"type", std::move(type)},
          {"source", std::move(source)},
          {"options", std::move(options)}};
}

std::string normalize_cap(std::string c) {
  for (char& ch : c) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  if (c != "ALL" && c.rfind("CAP_", 0) != 0) c = "CAP_" + c;
  return c;
}

const std::vector<std::string>& all_capabilities() {
  static const std::vector<std::string> caps = {
      "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
      "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
      "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
      "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
      "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
      "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
      "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE",
      "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ",
      "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE"};
  return caps;
}

}  // namespace

std::vector<std::string> container_capabilities(const json& hc) {
  if (hc.value("Privileged", false)) return all_capabilities();
  std::vector<std::string> caps = default_capabilities();
  std::vector<std::string> add, drop;
  for (const std::string& c : string_list(hc, "CapAdd")) add.push_back(normalize_cap(c));
  for (const std::string& c : string_list(hc, "CapDrop")) drop.push_back(normalize_cap(c));
  auto has = [](const std::vector<std::string>& v, const std::string& c) {
    return std::find(v.begin(), v.end(), c) != v.end();
  };
  if (has(add, "ALL")) caps = all_capabilities();
  if (has(drop, "ALL")) caps.clear();
  for (const std::string& c : add)
    if (c != "ALL" && !has(caps, c)) caps.push_back(c);
  std::erase_if(caps, [&](const std::string& c) { return has(drop, c) && !has(add, c); });
  return caps;
}

namespace {

json caps_json(const std::vector<std::string>& caps) {
  return {{"bounding", caps}, {"effective", caps}, {"permitted", caps}};
}

json device_rules(bool privileged) {
  if (privileged) return json::array({{{"allow", true}, {"access", "rwm"}}});
  json d = json::array();
  d.push_back({{"allow", false}, {"access", "rwm"}});
  auto allow = [&](const char* type, json major, json minor, const char* access) {
    json r = {{"allow", true}, {"type", type}, {"access", access}};
    if (!major.is_null()) r["major"] = major;
    if (!minor.is_null()) r["minor"] = minor;
    d.push_back(r);
  };
  allow("c", nullptr, nullptr, "m");
  allow("b", nullptr, nullptr, "m");
  allow("c", 1, 3, "rwm");    // null
  allow("c", 1, 8, "rwm");    // random
  allow("c", 1, 7, "rwm");    // full
  allow("c", 5, 0, "rwm");    // tty
  allow("c", 1, 5, "rwm");    // zero
  allow("c", 1, 9, "rwm");    // urandom
  allow("c", 136, nullptr, "rwm");  // pts
  allow("c", 5, 2, "rwm");    // ptmx
  allow("c", 5, 1, "rwm");    // console
  allow("c", 10, 200, "rwm");  // tun
  return d;
}

std::int64_t int_field(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_number()) return 0;
  return it->get<std::int64_t>();
}

const std::map<std::string, int>& signal_table() {
  static const std::map<std::string, int> t = {
      {"ABRT", SIGABRT}, {"ALRM", SIGALRM}, {"BUS", SIGBUS},   {"CHLD", SIGCHLD},
      {"CONT", SIGCONT}, {"FPE", SIGFPE},   {"HUP", SIGHUP},   {"ILL", SIGILL},
      {"INT", SIGINT},   {"IO", SIGIO},     {"IOT", SIGIOT},   {"KILL", SIGKILL},
      {"PIPE", SIGPIPE}, {"PROF", SIGPROF}, {"PWR", SIGPWR},   {"QUIT", SIGQUIT},
      {"SEGV", SIGSEGV}, {"STKFLT", SIGSTKFLT}, {"STOP", SIGSTOP}, {"SYS", SIGSYS},
      {"TERM", SIGTERM}, {"TRAP", SIGTRAP}, {"TSTP", SIGTSTP}, {"TTIN", SIGTTIN},
      {"TTOU", SIGTTOU}, {"URG", SIGURG},   {"USR1", SIGUSR1}, {"USR2", SIGUSR2},
      {"VTALRM", SIGVTALRM}, {"WINCH", SIGWINCH}, {"XCPU", SIGXCPU}, {"XFSZ", SIGXFSZ}};
  return t;
}

}  // namespace

json merge_image_config(const json& body, const json& image) {
  json c = body.is_object() ? body : json::object();
  const json img = image.is_object() ? image : json::object();
  if (empty_value(c, "User") && img.contains("User")) c["User"] = img["User"];
  // ExposedPorts and Volumes: union.
  for (const char* key : {"ExposedPorts", "Volumes"}) {
    auto it = img.find(key);
    if (it == img.end() || !it->is_object()) continue;
    if (!c.contains(key) || !c[key].is_object()) c[key] = json::object();
    for (auto& [k, v] : it->items())
      if (!c[key].contains(k)) c[key][k] = v;
  }
  // Env: the body's, then the image's variables the body does not set.
  std::vector<std::string> env = string_list(c, "Env");
  for (const std::string& kv : string_list(img, "Env")) {
    std::string key = env_key(kv);
    if (std::none_of(env.begin(), env.end(), [&](const auto& e) { return env_key(e) == key; }))
      env.push_back(kv);
  }
  c["Env"] = env;
  // Labels: the image's, overridden by the body's.
  json labels = img.contains("Labels") && img["Labels"].is_object() ? img["Labels"] : json::object();
  if (c.contains("Labels") && c["Labels"].is_object())
    for (auto& [k, v] : c["Labels"].items()) labels[k] = v;
  c["Labels"] = labels;
  // Entrypoint/Cmd.
  bool body_entrypoint = c.contains("Entrypoint") && c["Entrypoint"].is_array() &&
                         !c["Entrypoint"].empty();
  if (body_entrypoint && c["Entrypoint"].size() == 1 && c["Entrypoint"][0] == "") {
    c["Entrypoint"] = json::array();  // --entrypoint "": reset the image's
    if (!non_empty_array(c, "Cmd")) c["Cmd"] = img.value("Cmd", json(nullptr));
  } else if (!body_entrypoint) {
    if (!non_empty_array(c, "Cmd")) c["Cmd"] = img.value("Cmd", json(nullptr));
    c["Entrypoint"] = img.value("Entrypoint", json(nullptr));
  }
  if (c.contains("Cmd") && c["Cmd"].is_string()) c["Cmd"] = json::array({c["Cmd"]});
  if (c.contains("Entrypoint") && c["Entrypoint"].is_string())
    c["Entrypoint"] = json::array({c["Entrypoint"]});
  for (const char* key : {"WorkingDir", "StopSignal", "Healthcheck", "Shell", "OnBuild"})
    if (empty_value(c, key) && img.contains(key) && !img[key].is_null()) c[key] = img[key];
  // --health-* over the image's HEALTHCHECK: what the body leaves unset comes from the image.
  if (c.contains("Healthcheck") && c["Healthcheck"].is_object() && img.contains("Healthcheck") &&
      img["Healthcheck"].is_object()) {
    json& hc = c["Healthcheck"];
    const json& image_hc = img["Healthcheck"];
    if (!non_empty_array(hc, "Test") && image_hc.contains("Test")) hc["Test"] = image_hc["Test"];
    for (const char* key : {"Interval", "Timeout", "StartPeriod", "StartInterval", "Retries"})
      if ((!hc.contains(key) || hc[key] == 0) && image_hc.contains(key)) hc[key] = image_hc[key];
  }
  for (const char* key : {"Hostname", "Domainname", "User", "WorkingDir"})
    if (!c.contains(key) || c[key].is_null()) c[key] = "";
  for (const char* key : {"AttachStdin", "AttachStdout", "AttachStderr", "Tty", "OpenStdin",
                          "StdinOnce"})
    if (!c.contains(key) || !c[key].is_boolean()) c[key] = false;
  if (!c.contains("Entrypoint")) c["Entrypoint"] = nullptr;
  if (!c.contains("Cmd")) c["Cmd"] = nullptr;
  if (!c.contains("Volumes")) c["Volumes"] = nullptr;
  if (!c.contains("OnBuild")) c["OnBuild"] = nullptr;
  return c;
}

MountRequest parse_bind(const std::string& spec) {
  auto bad = [&] { return api::HttpError(400, "invalid volume specification: '" + spec + "'"); };
  std::vector<std::string> parts = split(spec, ':');
  MountRequest m;
  if (parts.size() == 1) {
    m.kind = MountRequest::Kind::Volume;
    m.destination = parts[0];
  } else if (parts.size() == 2 || parts.size() == 3) {
    // "src:dst" or "src:dst:mode"; "dst:mode" is not allowed by dockerd either.
    m.source = parts[0];
    m.destination = parts[1];
    m.kind = !m.source.empty() && m.source[0] == '/' ? MountRequest::Kind::Bind
                                                     : MountRequest::Kind::Volume;
    if (m.source.empty()) throw bad();
    if (parts.size() == 3) {
      m.mode = parts[2];
      for (const std::string& opt : split(parts[2], ',')) {
        if (opt == "ro") m.read_only = true;
        else if (opt == "rw" || opt == "z" || opt == "Z" || opt == "nocopy" || opt == "copy") {
        } else if (opt == "private" || opt == "rprivate" || opt == "shared" ||
                   opt == "rshared" || opt == "slave" || opt == "rslave") {
          m.propagation = opt;
        } else {
          throw bad();
        }
      }
    }
  } else {
    throw bad();
  }
  if (m.destination.empty() || m.destination[0] != '/')
    throw api::HttpError(400, "invalid volume specification: '" + spec +
                                  "': invalid mount config for type \"" +
                                  (m.kind == MountRequest::Kind::Bind ? "bind" : "volume") +
                                  "\": invalid mount path: '" + m.destination +
                                  "' mount path must be absolute");
  if (m.destination == "/")
    throw api::HttpError(400, "invalid volume specification: '" + spec +
                                  "': invalid mount config: destination can't be '/'");
  if (m.kind == MountRequest::Kind::Bind && m.propagation.empty()) m.propagation = "rprivate";
  return m;
}

MountRequest parse_mount(const json& j) {
  if (!j.is_object()) throw api::HttpError(400, "invalid mount config: not an object");
  MountRequest m;
  std::string type = j.value("Type", "");
  m.source = j.value("Source", "");
  m.destination = j.value("Target", "");
  m.read_only = j.value("ReadOnly", false);
  if (type == "bind") {
    m.kind = MountRequest::Kind::Bind;
    if (m.source.empty())
      throw api::HttpError(400, "invalid mount config for type \"bind\": field Source must not be empty");
    m.propagation = "rprivate";
    if (auto b = j.find("BindOptions"); b != j.end() && b->is_object())
      m.propagation = b->value("Propagation", "rprivate");
  } else if (type == "volume") {
    m.kind = MountRequest::Kind::Volume;
  } else if (type == "tmpfs") {
    m.kind = MountRequest::Kind::Tmpfs;
  } else {
    throw api::HttpError(400, "invalid mount config: mount type unknown: \"" + type + "\"");
  }
  if (m.destination.empty() || m.destination[0] != '/')
    throw api::HttpError(400, "invalid mount config for type \"" + type +
                                  "\": invalid mount path: '" + m.destination +
                                  "' mount path must be absolute");
  if (m.read_only) m.mode = "ro";
  return m;
}

std::vector<MountRequest> collect_mounts(const json& config, const json& hc) {
  std::vector<MountRequest> out;
  std::set<std::string> seen;
  auto add = [&](MountRequest m) {
    if (!seen.insert(m.destination).second)
      throw api::HttpError(400, "Duplicate mount point: " + m.destination);
    out.push_back(std::move(m));
  };
  if (hc.is_object()) {
    for (const std::string& b : string_list(hc, "Binds")) add(parse_bind(b));
    if (auto it = hc.find("Mounts"); it != hc.end() && it->is_array())
      for (const json& m : *it) add(parse_mount(m));
  }
  if (config.is_object()) {
    if (auto it = config.find("Volumes"); it != config.end() && it->is_object()) {
      for (auto& [key, _] : it->items()) {
        MountRequest m = anonymous_volume(key);
        if (seen.count(m.destination)) continue;
        add(std::move(m));
      }
    }
  }
  return out;
}

MountRequest anonymous_volume(const std::string& path) {
  // As dockerd: the whole key is a path in the container, never "src:dst".
  std::string dest = std::filesystem::path(path).lexically_normal().string();
  while (dest.size() > 1 && dest.back() == '/') dest.pop_back();
  if (dest.empty() || dest[0] != '/')
    throw api::HttpError(400, "invalid volume '" + path +
                                  "' in the container's or image's Volumes: it must be an absolute "
                                  "path inside the container");
  if (dest == "/")
    throw api::HttpError(400, "invalid volume '" + path +
                                  "' in the container's or image's Volumes: destination can't be '/'");
  MountRequest m;
  m.kind = MountRequest::Kind::Volume;
  m.destination = dest;
  return m;
}

ResolvedUser resolve_user(const std::string& spec, const std::string& passwd_text,
                          const std::string& group_text) {
  ResolvedUser r;
  std::string user = spec, group;
  auto colon = spec.find(':');
  if (colon != std::string::npos) {
    user = spec.substr(0, colon);
    group = spec.substr(colon + 1);
  }
  auto users = parse_passwd(passwd_text);
  auto groups = parse_group(group_text);
  std::string user_name;
  if (user.empty()) user = "0";
  const PasswdEntry* found = nullptr;
  auto numeric = parse_u32(user);
  for (const PasswdEntry& p : users) {
    if ((numeric && p.uid == *numeric) || (!numeric && p.name == user)) {
      found = &p;
      break;
    }
  }
  if (found) {
    r.uid = found->uid;
    r.gid = found->gid;
    user_name = found->name;
    if (!found->home.empty()) r.home = found->home;
  } else if (numeric) {
    r.uid = *numeric;
    r.gid = 0;
  } else {
    throw api::HttpError(400, "unable to find user " + user + ": no matching entries in passwd file");
  }
  if (!group.empty()) {
    auto gnum = parse_u32(group);
    const GroupEntry* g = nullptr;
    for (const GroupEntry& e : groups)
      if ((gnum && e.gid == *gnum) || (!gnum && e.name == group)) {
        g = &e;
        break;
      }
    if (g)
      r.gid = g->gid;
    else if (gnum)
      r.gid = *gnum;
    else
      throw api::HttpError(400, "unable to find group " + group +
                                    ": no matching entries in group file");
  }
  if (!user_name.empty()) {
    for (const GroupEntry& g : groups) {
      if (g.gid == r.gid) continue;
      if (std::find(g.members.begin(), g.members.end(), user_name) != g.members.end() &&
          std::find(r.additional_gids.begin(), r.additional_gids.end(), g.gid) ==
              r.additional_gids.end())
        r.additional_gids.push_back(g.gid);
    }
  }
  return r;
}

std::vector<std::string> default_capabilities() {
  return {"CAP_CHOWN",  "CAP_DAC_OVERRIDE", "CAP_FSETID",           "CAP_FOWNER",
          "CAP_MKNOD",  "CAP_NET_RAW",      "CAP_SETGID",           "CAP_SETUID",
          "CAP_SETFCAP", "CAP_SETPCAP",     "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT",
          "CAP_KILL",   "CAP_AUDIT_WRITE"};
}

std::optional<int> parse_signal(const std::string& text) {
  if (text.empty()) return std::nullopt;
  if (auto n = parse_u32(text)) {
    if (*n == 0 || *n > 64) return std::nullopt;
    return static_cast<int>(*n);
  }
  std::string name = text;
  for (char& c : name) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  if (name.rfind("SIG", 0) == 0) name = name.substr(3);
  if (name.rfind("RTMIN", 0) == 0 || name.rfind("RTMAX", 0) == 0) {
    bool min = name[3] == 'I';
    std::string rest = name.substr(5);
    int off = 0;
    if (!rest.empty()) {
      if ((rest[0] != '+' && rest[0] != '-')) return std::nullopt;
      auto v = parse_u32(rest.substr(1));
      if (!v) return std::nullopt;
      off = static_cast<int>(*v) * (rest[0] == '+' ? 1 : -1);
    }
    return (min ? SIGRTMIN : SIGRTMAX) + off;
  }
  auto it = signal_table().find(name);
  if (it == signal_table().end()) return std::nullopt;
  return it->second;
}

json build_oci_spec(const SpecInput& in) {
  const json& c = in.config;
  const json& hc = in.host_config.is_object() ? in.host_config : json::object();
  const bool privileged = hc.value("Privileged", false);
  const bool tty = c.value("Tty", false);

  // Args: Entrypoint + Cmd.
  std::vector<std::string> args = string_list(c, "Entrypoint");
  for (const std::string& a : string_list(c, "Cmd")) args.push_back(a);
  if (args.empty()) throw api::HttpError(400, "no command specified");

  // Env as dockerd builds it: PATH default, HOSTNAME, TERM, then Config.Env.
  std::vector<std::string> env = {
      "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
      "HOSTNAME=" + in.hostname};
  if (tty) env.push_back("TERM=xterm");
  env = replace_or_append(env, string_list(c, "Env"));
  if (std::none_of(env.begin(), env.end(), [](const auto& e) { return env_key(e) == "HOME"; }))
    env.push_back("HOME=" + in.user.home);

  std::string cwd = c.value("WorkingDir", "");
  if (cwd.empty()) cwd = "/";

  json rlimits = json::array();
  bool nofile_set = false;
  if (auto it = hc.find("Ulimits"); it != hc.end() && it->is_array()) {
    for (const json& u : *it) {
      std::string name = u.value("Name", "");
      for (char& ch : name) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
      if (name.empty()) continue;
      if (name == "NOFILE") nofile_set = true;
      rlimits.push_back({{"type", "RLIMIT_" + name},
                         {"hard", u.value("Hard", std::int64_t{0})},
                         {"soft", u.value("Soft", std::int64_t{0})}});
    }
  }
  if (!nofile_set)
    rlimits.push_back({{"type", "RLIMIT_NOFILE"}, {"hard", 1048576}, {"soft", 1048576}});

  json user = {{"uid", in.user.uid}, {"gid", in.user.gid}};
  if (!in.user.additional_gids.empty()) user["additionalGids"] = in.user.additional_gids;

  json process = {{"terminal", tty},
                  {"user", user},
                  {"args", args},
                  {"env", env},
                  {"cwd", cwd},
                  {"capabilities", caps_json(container_capabilities(hc))},
                  {"rlimits", rlimits},
                  {"noNewPrivileges", in.no_new_privileges},
                  {"oomScoreAdj", hc.value("OomScoreAdj", 0)}};
  if (in.apparmor_profile) process["apparmorProfile"] = *in.apparmor_profile;
  if (auto cs = hc.find("ConsoleSize"); tty && cs != hc.end() && cs->is_array() && cs->size() == 2 &&
      (*cs)[0].is_number_integer() && (*cs)[1].is_number_integer() && (*cs)[0].get<int>() > 0 &&
      (*cs)[1].get<int>() > 0)
    process["consoleSize"] = {{"height", (*cs)[0]}, {"width", (*cs)[1]}};

  json mounts = json::array();
  mounts.push_back(mount("/proc", "proc", "proc", {"nosuid", "noexec", "nodev"}));
  mounts.push_back(
      mount("/dev", "tmpfs", "tmpfs", {"nosuid", "strictatime", "mode=755", "size=65536k"}));
  mounts.push_back(mount("/dev/pts", "devpts", "devpts",
                         {"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620",
                          "gid=5"}));
  mounts.push_back(mount("/sys", "sysfs", "sysfs",
                         {"nosuid", "noexec", "nodev", privileged ? "rw" : "ro"}));
  mounts.push_back(mount("/sys/fs/cgroup", "cgroup", "cgroup",
                         {"nosuid", "noexec", "nodev", "relatime",
                          privileged || in.writable_cgroups ? "rw" : "ro"}));
  mounts.push_back(mount("/dev/mqueue", "mqueue", "mqueue", {"nosuid", "noexec", "nodev"}));
  std::int64_t shm = int_field(hc, "ShmSize");
  if (shm <= 0) shm = 64 * 1024 * 1024;
  mounts.push_back(mount("/dev/shm", "tmpfs", "shm",
                         {"nosuid", "noexec", "nodev", "mode=1777",
                          "size=" + std::to_string(shm)}));
  for (const OciMount& m : in.extra_mounts) {
    // A user mount over a default one replaces it.
    for (auto it = mounts.begin(); it != mounts.end(); ++it) {
      if ((*it)["destination"] == m.destination) {
        mounts.erase(it);
        break;
      }
    }
    mounts.push_back(mount(m.destination, m.type, m.source, m.options));
  }

  json namespaces = json::array();
  const std::string pid_mode = hc.value("PidMode", "");
  const std::string ipc_mode = hc.value("IpcMode", "");
  if (pid_mode != "host") namespaces.push_back({{"type", "pid"}});
  if (ipc_mode != "host") namespaces.push_back({{"type", "ipc"}});
  namespaces.push_back({{"type", "uts"}});
  namespaces.push_back({{"type", "mount"}});
  if (in.netns_path) namespaces.push_back({{"type", "network"}, {"path", *in.netns_path}});
  namespaces.push_back({{"type", "cgroup"}});

  json resources = {{"devices", device_rules(privileged)}};
  if (std::int64_t mem = int_field(hc, "Memory"); mem > 0) {
    resources["memory"] = {{"limit", mem}};
    std::int64_t swap = int_field(hc, "MemorySwap");
    if (swap > 0 || swap == -1) resources["memory"]["swap"] = swap;
    if (std::int64_t res = int_field(hc, "MemoryReservation"); res > 0)
      resources["memory"]["reservation"] = res;
  }
  json cpu = json::object();
  if (std::int64_t nano = int_field(hc, "NanoCpus"); nano > 0) {
    cpu["period"] = 100000;
    cpu["quota"] = nano / 10000;  // nano * period / 1e9, without overflow
  } else {
    if (std::int64_t q = int_field(hc, "CpuQuota"); q > 0) cpu["quota"] = q;
    if (std::int64_t p = int_field(hc, "CpuPeriod"); p > 0) cpu["period"] = p;
  }
  if (std::int64_t s = int_field(hc, "CpuShares"); s > 0) cpu["shares"] = s;
  if (std::string cpus = hc.value("CpusetCpus", ""); !cpus.empty()) cpu["cpus"] = cpus;
  if (std::string mems = hc.value("CpusetMems", ""); !mems.empty()) cpu["mems"] = mems;
  if (!cpu.empty()) resources["cpu"] = cpu;
  if (std::int64_t pids = int_field(hc, "PidsLimit"); pids > 0)
    resources["pids"] = {{"limit", pids}};

  json linux = {{"namespaces", namespaces},
                {"resources", resources},
                {"cgroupsPath", in.cgroups_path}};
  if (!privileged) {
    // HostConfig's lists when the client sent them (--security-opt systempaths=unconfined sends []).
    auto given = [&](const char* key) { return hc.contains(key) && hc[key].is_array(); };
    linux["maskedPaths"] =
        given("MaskedPaths")
            ? json(string_list(hc, "MaskedPaths"))
            : json{"/proc/asound",     "/proc/acpi",        "/proc/interrupts",
                   "/proc/kcore",      "/proc/keys",        "/proc/latency_stats",
                   "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
                   "/proc/scsi",       "/sys/firmware",     "/sys/devices/virtual/powercap"};
    linux["readonlyPaths"] =
        given("ReadonlyPaths")
            ? json(string_list(hc, "ReadonlyPaths"))
            : json{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"};
  }
  if (in.seccomp) linux["seccomp"] = *in.seccomp;
  if (auto it = hc.find("Sysctls"); it != hc.end() && it->is_object() && !it->empty())
    linux["sysctl"] = *it;

  return {{"ociVersion", "1.0.2"},
          {"process", process},
          {"root", {{"path", in.rootfs.string()}, {"readonly", hc.value("ReadonlyRootfs", false)}}},
          {"hostname", in.hostname},
          {"mounts", mounts},
          {"linux", linux}};
}

json build_exec_process(const json& spec, const json& exec, const ResolvedUser* user) {
  json p = spec.at("process");
  std::vector<std::string> args = string_list(exec, "Cmd");
  if (args.empty()) throw api::HttpError(400, "No exec command specified");
  p["args"] = args;
  std::vector<std::string> env = p["env"].get<std::vector<std::string>>();
  bool tty = exec.value("Tty", false);
  if (tty && std::none_of(env.begin(), env.end(), [](auto& e) { return env_key(e) == "TERM"; }))
    env.push_back("TERM=xterm");
  p["env"] = replace_or_append(env, string_list(exec, "Env"));
  if (std::string wd = exec.value("WorkingDir", ""); !wd.empty()) p["cwd"] = wd;
  p["terminal"] = tty;
  if (user) {
    json u = {{"uid", user->uid}, {"gid", user->gid}};
    if (!user->additional_gids.empty()) u["additionalGids"] = user->additional_gids;
    p["user"] = u;
  }
  if (exec.value("Privileged", false)) p["capabilities"] = caps_json(all_capabilities());
  p.erase("rlimits");
  p.erase("oomScoreAdj");
  return p;
}

}  // namespace berth::agent::runtime
