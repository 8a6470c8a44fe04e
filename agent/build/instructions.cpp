#include "agent/build/instructions.h"

#include <algorithm>
#include <map>

#include "agent/build/error.h"
#include "agent/build/text.h"

namespace berth::agent::build {
namespace {

// A validation failure of one instruction; to_dockerfile adds the line.
struct Invalid {
  std::string message;
};

const std::vector<std::string>& instruction_names() {
  static const std::vector<std::string> names = {
      "ADD",    "ARG",   "CMD",         "COPY",  "ENTRYPOINT", "ENV",
      "EXPOSE", "FROM",  "HEALTHCHECK", "LABEL", "MAINTAINER", "ONBUILD",
      "RUN",    "SHELL", "STOPSIGNAL",  "USER",  "VOLUME",     "WORKDIR"};
  return names;
}

Invalid at_least_one(const std::string& kw) { return {kw + " requires at least one argument"}; }
Invalid exactly_one(const std::string& kw) { return {kw + " requires exactly one argument"}; }

// The --flags an instruction accepts (buildkit's BFlags).
class Flags {
 public:
  enum Kind { kBool, kString, kStrings };

  Flags(const std::vector<std::string>& given,
        std::initializer_list<std::pair<const char*, Kind>> known) {
    for (auto& [name, kind] : known) known_[name] = kind;
    for (const std::string& arg : given) {
      if (arg == "--") break;
      if (arg.rfind("--", 0) != 0) throw Invalid{"arg should start with -- : " + arg};
      const auto eq = arg.find('=');
      const bool has_value = eq != std::string::npos;
      const std::string flag = arg.substr(0, eq);
      const std::string name = flag.substr(2);
      const std::string value = has_value ? arg.substr(eq + 1) : "";
      auto it = known_.find(name);
      if (it == known_.end()) {
        std::vector<std::string> names;
        for (auto& [n, k] : known_) names.push_back(n);
        std::string message = "unknown flag: " + flag;
        const std::string hint = text::suggest(name, names, true);
        if (!hint.empty()) message += " (did you mean " + hint + "?)";
        throw Invalid{message};
      }
      if (it->second != kStrings && values_.count(name))
        throw Invalid{"duplicate flag specified: " + flag};
      if (std::find(used_.begin(), used_.end(), name) == used_.end()) used_.push_back(name);
      switch (it->second) {
        case kBool: {
          if (has_value && value.empty()) throw Invalid{"missing a value on flag: " + flag};
          const std::string lower = text::to_lower(value);
          if (lower.empty() || lower == "true") {
            values_[name] = {"true"};
          } else if (lower == "false") {
            values_[name] = {"false"};
          } else {
            throw Invalid{"expecting boolean value for flag " + flag + ", not: " + value};
          }
          break;
        }
        case kString:
        case kStrings:
          if (!has_value) throw Invalid{"missing a value on flag: " + flag};
          values_[name].push_back(value);
          break;
      }
    }
  }

  std::string str(const std::string& name) const {
    auto it = values_.find(name);
    return it == values_.end() ? "" : it->second.back();
  }
  bool on(const std::string& name) const { return str(name) == "true"; }
  std::vector<std::string> all(const std::string& name) const {
    auto it = values_.find(name);
    return it == values_.end() ? std::vector<std::string>{} : it->second;
  }
  const std::vector<std::string>& used() const { return used_; }

 private:
  std::map<std::string, Kind> known_;
  std::map<std::string, std::vector<std::string>> values_;
  std::vector<std::string> used_;
};

void no_flags(const Node& node) { Flags(node.flags, {}); }

// buildkit's handleJSONArgs: exec form as is, shell form as one string.
std::vector<std::string> command_args(const std::vector<std::string>& args, bool json) {
  if (args.empty() || json) return args;
  std::string joined;
  for (std::size_t i = 0; i < args.size(); ++i) joined += (i ? " " : "") + args[i];
  return {joined};
}

CommandLine command_line(const Node& node, const std::vector<Heredoc>& heredocs) {
  return {command_args(node.args, node.json), !node.json, heredocs};
}

std::vector<KeyValue> key_values(const std::vector<std::string>& args, const std::string& kw) {
  if (args.empty()) throw at_least_one(kw);
  if (args.size() % 2 != 0) throw Invalid{"Bad input to " + kw + ", too many arguments"};
  std::vector<KeyValue> out;
  for (std::size_t i = 0; i < args.size(); i += 2) {
    if (args[i].empty()) throw Invalid{kw + " names can not be blank"};
    out.push_back({args[i], args[i + 1]});
  }
  return out;
}

SourcesAndDest sources_and_dest(const Node& node, const std::vector<Heredoc>& heredocs,
                                const std::string& kw, const Flags& flags) {
  SourcesAndDest out;
  out.dest = node.args.back();
  Heredoc doc;
  if (parse_heredoc_word(out.dest, doc))
    throw Invalid{kw + " cannot accept a heredoc as a destination"};
  for (std::size_t i = 0; i + 1 < node.args.size(); ++i) {
    const std::string& src = node.args[i];
    if (parse_heredoc_word(src, doc)) {
      InlineFile file{doc.name, "", doc.expand};
      for (const Heredoc& h : heredocs) {  // the last body of that name, like buildkit
        if (h.name != doc.name) continue;
        Heredoc copy = h;
        copy.chomp = doc.chomp;
        file.content = copy.body();
      }
      out.inline_sources.push_back(std::move(file));
    } else {
      out.sources.push_back(src);
    }
  }
  out.chown = flags.str("chown");
  out.chmod = flags.str("chmod");
  out.link = flags.on("link");
  return out;
}

// The parsed duration of an interval flag; 0 when absent or zero.
std::chrono::nanoseconds interval(const Flags& flags, const std::string& name) {
  const std::string value = flags.str(name);
  if (value.empty()) return std::chrono::nanoseconds(0);
  std::int64_t nanos = 0;
  std::string error;
  if (!text::parse_go_duration(value, nanos, error)) throw Invalid{error};
  if (nanos != 0 && nanos < 1000000)
    throw Invalid{"Interval " + text::go_quote(name) + " cannot be less than 1ms"};
  return std::chrono::nanoseconds(nanos);
}

HealthcheckInstruction healthcheck(const Node& node) {
  if (node.args.empty()) throw at_least_one("HEALTHCHECK");
  HealthcheckInstruction out;
  std::string type = text::to_upper(node.args[0]);
  std::vector<std::string> rest(node.args.begin() + 1, node.args.end());
  if (type == "NONE") {
    // dockerd does not even look at the flags here.
    if (!rest.empty()) throw Invalid{"HEALTHCHECK NONE takes no arguments"};
    out.test = {"NONE"};
    return out;
  }
  Flags flags(node.flags, {{"interval", Flags::kString},
                           {"timeout", Flags::kString},
                           {"start-period", Flags::kString},
                           {"start-interval", Flags::kString},
                           {"retries", Flags::kString}});
  if (type != "CMD")
    throw Invalid{"Unknown type " + text::go_quote(type) + " in HEALTHCHECK (try CMD)"};
  auto cmd = command_args(rest, node.json);
  if (cmd.empty()) throw Invalid{"Missing command after HEALTHCHECK CMD"};
  out.test = {node.json ? "CMD" : "CMD-SHELL"};
  out.test.insert(out.test.end(), cmd.begin(), cmd.end());
  out.interval = interval(flags, "interval");
  out.timeout = interval(flags, "timeout");
  out.start_period = interval(flags, "start-period");
  out.start_interval = interval(flags, "start-interval");
  const std::string retries = flags.str("retries");
  if (!retries.empty()) {
    std::int32_t n = 0;
    std::string error;
    if (!text::parse_go_int32(retries, n, error)) throw Invalid{error};
    if (n < 0) throw Invalid{"--retries cannot be negative (" + std::to_string(n) + ")"};
    out.retries = n;
  }
  return out;
}

Instruction to_instruction(const Node& node, const std::vector<Heredoc>& heredocs);

OnbuildInstruction onbuild(const Node& node) {
  if (node.args.empty()) throw at_least_one("ONBUILD");
  no_flags(node);
  const std::string trigger = text::to_upper(text::trim_space(node.args[0]));
  if (trigger == "ONBUILD") throw Invalid{"Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"};
  if (trigger == "MAINTAINER" || trigger == "FROM")
    throw Invalid{trigger + " isn't allowed as an ONBUILD trigger"};
  // The original text without its leading "ONBUILD " (any case).
  std::string_view expr = node.original;
  while (!expr.empty() && text::is_ascii_space(expr.front())) expr.remove_prefix(1);
  expr.remove_prefix(std::min<std::size_t>(7, expr.size()));
  while (!expr.empty() && text::is_ascii_space(expr.front())) expr.remove_prefix(1);
  OnbuildInstruction out;
  out.expression = std::string(expr);
  for (const Heredoc& h : node.heredocs) out.expression += "\n" + h.content + h.name;
  if (!node.sub.empty()) {
    Instruction inner = to_instruction(node.sub[0], node.heredocs);
    inner.line = node.start_line;
    inner.end_line = node.end_line;
    out.trigger = std::make_shared<const Instruction>(std::move(inner));
  }
  return out;
}

// A stage's FROM line; throws Invalid.
Stage from(const Node& node) {
  Stage stage;
  const auto& a = node.args;
  if (a.size() == 3 && text::iequals(a[1], "as")) {
    stage.name = text::to_lower(a[2]);
    bool valid = !stage.name.empty() && stage.name[0] >= 'a' && stage.name[0] <= 'z';
    for (char c : stage.name) {
      valid = valid && ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
                        c == '.');
    }
    if (!valid)
      throw Invalid{"invalid name for build stage: " + text::go_quote(a[2]) +
                    ", name can't start with a number or contain symbols"};
  } else if (a.size() != 1) {
    throw Invalid{"FROM requires either one or three arguments"};
  }
  Flags flags(node.flags, {{"platform", Flags::kString}});
  stage.base = a[0];
  stage.platform = flags.str("platform");
  stage.source = std::string(text::trim_space(node.original));
  stage.line = node.start_line;
  return stage;
}

InstructionBody body_of(const Node& node, const std::vector<Heredoc>& heredocs,
                        const std::string& kw) {
  const auto& a = node.args;
  if (kw == "RUN") {
    Flags flags(
        node.flags,
        {{"mount", Flags::kStrings}, {"network", Flags::kString}, {"security", Flags::kString}});
    return RunInstruction{command_line(node, heredocs), flags.all("mount"), flags.str("network"),
                          flags.str("security"), flags.used()};
  }
  if (kw == "CMD") {
    no_flags(node);
    return CmdInstruction{command_line(node, heredocs)};
  }
  if (kw == "ENTRYPOINT") {
    no_flags(node);
    return EntrypointInstruction{command_line(node, heredocs)};
  }
  if (kw == "SHELL") {
    no_flags(node);
    if (a.empty()) throw at_least_one("SHELL");
    if (!node.json) throw Invalid{"SHELL requires the arguments to be in JSON form"};
    return ShellInstruction{a};
  }
  if (kw == "ENV") {
    no_flags(node);
    return EnvInstruction{key_values(a, "ENV")};
  }
  if (kw == "LABEL") {
    no_flags(node);
    return LabelInstruction{key_values(a, "LABEL")};
  }
  if (kw == "ARG") {
    // dockerd ignores flags on ARG.
    if (a.empty()) throw at_least_one("ARG");
    ArgInstruction out;
    for (const std::string& word : a) {
      const auto eq = word.find('=');
      if (eq == std::string::npos) {
        out.args.push_back({word, std::nullopt});
      } else {
        if (eq == 0) throw Invalid{"ARG names can not be blank"};
        out.args.push_back({word.substr(0, eq), word.substr(eq + 1)});
      }
    }
    return out;
  }
  if (kw == "WORKDIR" || kw == "USER" || kw == "MAINTAINER" || kw == "STOPSIGNAL") {
    if (a.size() != 1) throw exactly_one(kw);
    if (kw == "WORKDIR") {
      no_flags(node);
      return WorkdirInstruction{a[0]};
    }
    if (kw == "USER") {
      no_flags(node);
      return UserInstruction{a[0]};
    }
    if (kw == "MAINTAINER") {
      no_flags(node);
      return MaintainerInstruction{a[0]};
    }
    return StopsignalInstruction{a[0]};  // dockerd ignores flags on STOPSIGNAL
  }
  if (kw == "EXPOSE") {
    if (a.empty()) throw at_least_one("EXPOSE");
    no_flags(node);
    ExposeInstruction out{a};
    std::sort(out.ports.begin(), out.ports.end());
    return out;
  }
  if (kw == "VOLUME") {
    if (a.empty()) throw at_least_one("VOLUME");
    no_flags(node);
    VolumeInstruction out;
    for (const std::string& v : a) {
      std::string path(text::trim_space(v));
      if (path.empty()) throw Invalid{"VOLUME specified can not be an empty string"};
      out.paths.push_back(std::move(path));
    }
    return out;
  }
  if (kw == "COPY" || kw == "ADD") {
    if (a.size() < 2)
      throw Invalid{kw +
                    " requires at least two arguments, but only one was provided. "
                    "Destination could not be determined"};
    if (kw == "COPY") {
      Flags flags(node.flags, {{"chown", Flags::kString},
                               {"from", Flags::kString},
                               {"chmod", Flags::kString},
                               {"link", Flags::kBool}});
      CopyInstruction out;
      static_cast<SourcesAndDest&>(out) = sources_and_dest(node, heredocs, kw, flags);
      out.from = flags.str("from");
      return out;
    }
    Flags flags(node.flags, {{"chown", Flags::kString},
                             {"chmod", Flags::kString},
                             {"link", Flags::kBool},
                             {"keep-git-dir", Flags::kBool},
                             {"checksum", Flags::kString}});
    AddInstruction out;
    static_cast<SourcesAndDest&>(out) = sources_and_dest(node, heredocs, kw, flags);
    out.keep_git_dir = flags.on("keep-git-dir");
    out.checksum = flags.str("checksum");
    return out;
  }
  if (kw == "HEALTHCHECK") return healthcheck(node);
  if (kw == "ONBUILD") return onbuild(node);

  std::string message = "unknown instruction: " + node.keyword;
  const std::string hint = text::suggest(node.keyword, instruction_names(), false);
  if (!hint.empty()) message += " (did you mean " + hint + "?)";
  throw Invalid{message};
}

Instruction to_instruction(const Node& node, const std::vector<Heredoc>& heredocs) {
  Instruction out;
  out.keyword = text::to_upper(node.keyword);
  if (out.keyword == "FROM") throw Invalid{"FROM isn't allowed as an ONBUILD trigger"};
  out.body = body_of(node, heredocs, out.keyword);
  out.source = std::string(text::trim_space(node.original));
  out.line = node.start_line;
  out.end_line = node.end_line;
  return out;
}

}  // namespace

std::string shell_script(const CommandLine& command) {
  if (command.args.empty()) return "";
  if (command.heredocs.empty() || !command.shell_form) return command.args[0];
  Heredoc lone;
  if (parse_heredoc_word(command.args[0], lone)) {
    Heredoc body = command.heredocs[0];
    body.chomp = lone.chomp;
    return body.body();
  }
  std::string full = command.args[0];
  for (const Heredoc& h : command.heredocs) full += "\n" + h.content + h.name;
  return full;
}

Dockerfile to_dockerfile(ParsedDockerfile parsed) {
  Dockerfile out;
  out.directives = parsed.directives;
  out.warnings = std::move(parsed.warnings);
  for (const Node& node : parsed.nodes) {
    const std::string kw = text::to_upper(node.keyword);
    try {
      if (kw == "FROM") {
        out.stages.push_back(from(node));
        continue;
      }
      Instruction inst = to_instruction(node, node.heredocs);
      if (out.stages.empty()) {
        if (inst.keyword == "ARG") {
          out.meta_args.push_back(std::move(inst));
          continue;
        }
        throw BuildError("no build stage in current context", node.start_line);
      }
      out.stages.back().instructions.push_back(std::move(inst));
    } catch (const Invalid& e) {
      throw BuildError(
          "dockerfile parse error on line " + std::to_string(node.start_line) + ": " + e.message,
          node.start_line);
    }
  }
  return out;
}

Dockerfile load_dockerfile(std::string_view text, std::string_view name) {
  return to_dockerfile(parse_dockerfile(text, name));
}

Instruction parse_trigger(std::string_view expression) {
  if (text::trim_space(expression).empty())
    throw BuildError("onbuild trigger should be a single expression");
  ParsedDockerfile parsed = parse_dockerfile(expression, "ONBUILD trigger");
  if (parsed.nodes.size() != 1) throw BuildError("onbuild trigger should be a single expression");
  try {
    return to_instruction(parsed.nodes[0], parsed.nodes[0].heredocs);
  } catch (const Invalid& e) {
    throw BuildError(e.message);
  }
}

std::span<const Stage> stages_for_target(const Dockerfile& dockerfile, std::string_view target) {
  std::span<const Stage> stages(dockerfile.stages);
  if (!target.empty()) {
    const Stage* found = find_stage(stages, target);
    if (!found)
      throw BuildError("failed to reach build target " + std::string(target) + " in Dockerfile");
    stages = stages.first(static_cast<std::size_t>(found - stages.data()) + 1);
  }
  for (std::size_t i = 0; i < stages.size(); ++i) {
    if (stages[i].name.empty()) continue;
    for (std::size_t j = 0; j < i; ++j) {
      if (stages[j].name == stages[i].name)
        throw BuildError(stages[i].name + " stage name already used", stages[i].line);
    }
  }
  return stages;
}

const Stage* find_stage(std::span<const Stage> stages, std::string_view name) {
  for (const Stage& stage : stages) {
    if (!stage.name.empty() && text::iequals(stage.name, name)) return &stage;
  }
  return nullptr;
}

int step_count(const Dockerfile& dockerfile, std::span<const Stage> stages) {
  std::size_t total = dockerfile.meta_args.size() + stages.size();
  for (const Stage& stage : stages) total += stage.instructions.size();
  return static_cast<int>(total);
}

std::string step_line(int step, int total, std::string_view source) {
  return "Step " + std::to_string(step) + "/" + std::to_string(total) + " : " + std::string(source);
}

bool expands_variables(const Instruction& instruction) {
  return std::visit(
      [](const auto& body) {
        using T = std::decay_t<decltype(body)>;
        return std::is_same_v<T, EnvInstruction> || std::is_same_v<T, LabelInstruction> ||
               std::is_same_v<T, ArgInstruction> || std::is_same_v<T, CopyInstruction> ||
               std::is_same_v<T, AddInstruction> || std::is_same_v<T, WorkdirInstruction> ||
               std::is_same_v<T, UserInstruction> || std::is_same_v<T, StopsignalInstruction> ||
               std::is_same_v<T, VolumeInstruction> || std::is_same_v<T, ExposeInstruction>;
      },
      instruction.body);
}

void expand_instruction(Instruction& instruction, const VarLookup& vars, char escape) {
  ExpandOptions word;
  word.escape = escape;
  // Heredoc sources: only $ is special, with \ as the escape (buildkit's ExpandRaw).
  ExpandOptions raw;
  raw.process_quotes = false;

  auto pairs = [&](std::vector<KeyValue>& kvs) {
    for (KeyValue& kv : kvs) {
      kv.key = expand_word(kv.key, vars, word);
      kv.value = expand_word(kv.value, vars, word);
    }
  };
  auto sources = [&](SourcesAndDest& s) {
    s.chown = expand_word(s.chown, vars, word);
    s.chmod = expand_word(s.chmod, vars, word);
    for (std::string& src : s.sources) src = expand_word(src, vars, word);
    s.dest = expand_word(s.dest, vars, word);
    for (InlineFile& f : s.inline_sources) {
      if (f.expand) f.content = expand_word(f.content, vars, raw);
    }
  };
  try {
    std::visit(
        [&](auto& body) {
          using T = std::decay_t<decltype(body)>;
          if constexpr (std::is_same_v<T, EnvInstruction>) {
            pairs(body.vars);
          } else if constexpr (std::is_same_v<T, LabelInstruction>) {
            pairs(body.labels);
          } else if constexpr (std::is_same_v<T, ArgInstruction>) {
            for (auto& arg : body.args) {
              arg.name = expand_word(arg.name, vars, word);
              if (arg.value) arg.value = expand_word(*arg.value, vars, word);
            }
          } else if constexpr (std::is_same_v<T, CopyInstruction>) {
            sources(body);
            body.from = expand_word(body.from, vars, word);
          } else if constexpr (std::is_same_v<T, AddInstruction>) {
            sources(body);
            body.checksum = expand_word(body.checksum, vars, word);
          } else if constexpr (std::is_same_v<T, WorkdirInstruction>) {
            body.path = expand_word(body.path, vars, word);
          } else if constexpr (std::is_same_v<T, UserInstruction>) {
            body.user = expand_word(body.user, vars, word);
          } else if constexpr (std::is_same_v<T, StopsignalInstruction>) {
            body.signal = expand_word(body.signal, vars, word);
          } else if constexpr (std::is_same_v<T, VolumeInstruction>) {
            for (std::string& p : body.paths) p = expand_word(p, vars, word);
          } else if constexpr (std::is_same_v<T, ExposeInstruction>) {
            std::vector<std::string> ports;
            for (const std::string& p : body.ports) {
              for (std::string& w : expand_words(p, vars, word)) ports.push_back(std::move(w));
            }
            body.ports = std::move(ports);
          }
        },
        instruction.body);
  } catch (const BuildError& e) {
    throw BuildError(e.what(), instruction.line);
  }
}

}  // namespace berth::agent::build
