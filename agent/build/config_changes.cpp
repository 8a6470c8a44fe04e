#include "agent/build/config_changes.h"

#include <chrono>
#include <set>

#include "agent/build/error.h"
#include "agent/build/text.h"
#include "agent/runtime/oci_spec.h"

namespace berth::agent::build {
namespace {

using nlohmann::json;

std::string join(const std::vector<std::string>& v, const std::string& sep) {
  std::string out;
  for (const std::string& s : v) out += (out.empty() ? "" : sep) + s;
  return out;
}

// Go's %q of a []string: ["a" "b"].
std::string go_list(const std::vector<std::string>& v) {
  std::string out = "[";
  for (std::size_t i = 0; i < v.size(); ++i) out += (i ? " " : "") + text::go_quote(v[i]);
  return out + "]";
}

std::vector<std::string> strings_of(const json& j) {
  std::vector<std::string> out;
  if (j.is_array())
    for (const json& v : j)
      if (v.is_string()) out.push_back(v.get<std::string>());
  return out;
}

std::string env_key(const std::string& kv) { return kv.substr(0, kv.find('=')); }

void set_env(json& config, const std::string& key, const std::string& value) {
  json env = config.contains("Env") && config["Env"].is_array() ? config["Env"] : json::array();
  std::string entry = key + "=" + value;
  for (json& e : env)
    if (e.is_string() && env_key(e.get<std::string>()) == key) {
      e = entry;
      config["Env"] = env;
      return;
    }
  env.push_back(entry);
  config["Env"] = env;
}

json& object_at(json& config, const char* key) {
  if (!config.contains(key) || !config[key].is_object()) config[key] = json::object();
  return config[key];
}

// "80" -> "80/tcp"; "8000-8002/udp" -> three keys.
std::vector<std::string> expose_keys(const std::string& spec) {
  std::string port = spec, proto = "tcp";
  if (auto slash = spec.find('/'); slash != std::string::npos) {
    port = spec.substr(0, slash);
    proto = text::to_lower(spec.substr(slash + 1));
  }
  if (proto != "tcp" && proto != "udp" && proto != "sctp") throw BuildError("invalid proto: " + proto);
  auto number = [&](const std::string& p) {
    std::int32_t v = 0;
    std::string err;
    if (!text::parse_go_int32(p, v, err) || v < 0 || v > 65535) throw BuildError("invalid containerPort: " + spec);
    return v;
  };
  std::vector<std::string> out;
  if (auto dash = port.find('-'); dash != std::string::npos) {
    int a = number(port.substr(0, dash)), b = number(port.substr(dash + 1));
    if (b < a) throw BuildError("invalid range specified for container port: " + spec);
    for (int p = a; p <= b; ++p) out.push_back(std::to_string(p) + "/" + proto);
  } else {
    out.push_back(std::to_string(number(port)) + "/" + proto);
  }
  return out;
}

// dockerd's validCommitCommands.
const std::set<std::string>& commit_commands() {
  static const std::set<std::string> names = {"cmd",     "entrypoint", "env",  "expose", "label",
                                              "onbuild", "stopsignal", "user", "volume", "workdir"};
  return names;
}

}  // namespace

std::vector<std::string> config_shell(const json& config) {
  auto shell = strings_of(config.value("Shell", json::array()));
  return shell.empty() ? std::vector<std::string>{"/bin/sh", "-c"} : shell;
}

std::vector<std::string> command_argv(const json& config, const CommandLine& command) {
  if (!command.shell_form) return command.args;
  if (command.args.empty()) return {};
  std::vector<std::string> argv = config_shell(config);
  argv.push_back(shell_script(command));
  return argv;
}

std::string workdir_path(const std::string& current, const std::string& path) {
  std::string dir = path;
  if (dir.empty() || dir[0] != '/') {
    const bool slash = !path.empty() && path.back() == '/';
    dir = text::clean_path("/" + current + "/" + path);
    if (slash && dir != "/") dir += "/";
  }
  if (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  return dir;
}

std::optional<std::string> apply_config_instruction(json& c, const Instruction& in, bool& cmd_set) {
  if (auto* env = in.as<EnvInstruction>()) {
    std::vector<std::string> parts;
    for (const KeyValue& kv : env->vars) {
      set_env(c, kv.key, kv.value);
      parts.push_back(kv.key + "=" + kv.value);
    }
    return "ENV " + join(parts, " ");
  }
  if (auto* label = in.as<LabelInstruction>()) {
    json& labels = object_at(c, "Labels");
    std::vector<std::string> parts;
    for (const KeyValue& kv : label->labels) {
      labels[kv.key] = kv.value;
      parts.push_back(kv.key + "=" + kv.value);
    }
    return "LABEL " + join(parts, " ");
  }
  if (auto* cmd = in.as<CmdInstruction>()) {
    std::vector<std::string> argv = command_argv(c, cmd->command);
    c["Cmd"] = argv;
    cmd_set = true;
    return "CMD " + go_list(argv);
  }
  if (auto* ep = in.as<EntrypointInstruction>()) {
    std::vector<std::string> argv = command_argv(c, ep->command);
    c["Entrypoint"] = argv.empty() ? json(nullptr) : json(argv);
    if (!cmd_set) c["Cmd"] = nullptr;  // an inherited CMD does not go with a new ENTRYPOINT
    return "ENTRYPOINT " + go_list(argv);
  }
  if (auto* shell = in.as<ShellInstruction>()) {
    c["Shell"] = shell->shell;
    return "SHELL " + go_list(shell->shell);
  }
  if (auto* user = in.as<UserInstruction>()) {
    c["User"] = user->user;
    return "USER " + user->user;
  }
  if (auto* expose = in.as<ExposeInstruction>()) {
    json& ports = object_at(c, "ExposedPorts");
    std::vector<std::string> keys;
    for (const std::string& p : expose->ports)
      for (const std::string& k : expose_keys(p)) {
        ports[k] = json::object();
        keys.push_back(k);
      }
    return "EXPOSE " + join(keys, " ");
  }
  if (auto* volume = in.as<VolumeInstruction>()) {
    json& volumes = object_at(c, "Volumes");
    for (const std::string& v : volume->paths) {
      if (v.empty()) throw BuildError("VOLUME specified can not be an empty string", in.line);
      volumes[v] = json::object();
    }
    return "VOLUME [" + join(volume->paths, " ") + "]";
  }
  if (auto* stop = in.as<StopsignalInstruction>()) {
    if (!runtime::parse_signal(stop->signal)) throw BuildError("Invalid signal: " + stop->signal, in.line);
    c["StopSignal"] = stop->signal;
    return "STOPSIGNAL " + stop->signal;
  }
  if (auto* health = in.as<HealthcheckInstruction>()) {
    json h = {{"Test", health->test}};
    auto add = [&](const char* k, std::chrono::nanoseconds v) {
      if (v.count()) h[k] = v.count();
    };
    add("Interval", health->interval);
    add("Timeout", health->timeout);
    add("StartPeriod", health->start_period);
    add("StartInterval", health->start_interval);
    if (health->retries) h["Retries"] = health->retries;
    c["Healthcheck"] = h;
    return "HEALTHCHECK " + h.dump();
  }
  if (auto* onbuild = in.as<OnbuildInstruction>()) {
    if (!c.contains("OnBuild") || !c["OnBuild"].is_array()) c["OnBuild"] = json::array();
    c["OnBuild"].push_back(onbuild->expression);
    return "ONBUILD " + onbuild->expression;
  }
  return std::nullopt;
}

json apply_changes(json config, const std::vector<std::string>& changes) {
  if (changes.empty()) return config;
  std::string text;
  for (const std::string& line : changes) text += line + "\n";
  ParsedDockerfile parsed = parse_dockerfile(text, "changes");
  // Every line is checked before any applies, as dockerd does.
  for (const Node& node : parsed.nodes) {
    const std::string keyword = text::to_lower(node.keyword);
    if (!commit_commands().count(keyword)) throw BuildError(keyword + " is not a valid change command");
  }
  bool cmd_set = false;
  for (const Node& node : parsed.nodes) {
    Instruction in = parse_trigger(node.original);
    if (expands_variables(in)) expand_instruction(in, EnvList(strings_of(config.value("Env", json::array()))));
    if (auto* workdir = in.as<WorkdirInstruction>()) {
      const json& current = config.contains("WorkingDir") ? config["WorkingDir"] : json();
      config["WorkingDir"] = workdir_path(current.is_string() ? current.get<std::string>() : "", workdir->path);
      continue;
    }
    apply_config_instruction(config, in, cmd_set);
  }
  return config;
}

}  // namespace berth::agent::build
