#include "cli/usage.h"

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <regex>

#include "core/error.h"

namespace berth::cli {
namespace {

// Optimal string alignment distance: a swap of two neighbours ("craete") counts once.
size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<std::vector<size_t>> d(a.size() + 1, std::vector<size_t>(b.size() + 1));
  for (size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[a.size()][b.size()];
}

std::vector<std::string> command_names(const CLI::App& root) {
  std::vector<std::string> names;
  for (const CLI::App* sub : root.get_subcommands([](const CLI::App*) { return true; })) {
    names.push_back(sub->get_name());
    for (const auto& alias : sub->get_aliases()) names.push_back(alias);
  }
  return names;
}

const CLI::Option* global_option(const CLI::App& root, const std::string& arg) {
  for (const CLI::Option* opt : root.get_options()) {
    if (opt->get_positional()) continue;
    if (arg.rfind("--", 0) == 0 && opt->check_lname(arg.substr(2))) return opt;
    if (arg.size() == 2 && arg[0] == '-' && opt->check_sname(arg.substr(1))) return opt;
  }
  return nullptr;
}

std::string plural(size_t n, const std::string& one, const std::string& many) { return n == 1 ? one : many; }

std::string quoted_list(const std::vector<std::string>& words) {
  std::string out;
  for (const auto& w : words) out += (out.empty() ? "'" : " '") + w + "'";
  return out;
}

}  // namespace

std::string closest(const std::string& word, const std::vector<std::string>& candidates) {
  std::string best;
  size_t best_distance = 3;
  for (const auto& c : candidates) {
    size_t d = edit_distance(word, c);
    if (d == 0) return c;
    if (word.size() >= 2 && c.rfind(word, 0) == 0) d = std::min<size_t>(d, 1);
    if (d < best_distance && d < std::max<size_t>(c.size(), 2)) {
      best = c;
      best_distance = d;
    }
  }
  return best;
}

namespace {

const CLI::App& deepest_command(const CLI::App& root) {
  const CLI::App* cur = &root;
  for (auto subs = cur->get_subcommands(); !subs.empty(); subs = cur->get_subcommands()) cur = subs.front();
  return *cur;
}

// "a machine name" from a positional's help "Machine name (default: the active one)".
std::string what_positional_is(const CLI::App& cmd, const std::string& name) {
  const CLI::Option* opt = cmd.get_option_no_throw(name);
  std::string what = opt ? opt->get_description() : "";
  what = what.substr(0, what.find(" ("));
  const bool names_a_thing = what.size() > 5 && (what.ends_with(" name") || what.ends_with(" names"));
  if (!names_a_thing) return "its " + name + " argument";
  what[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(what[0])));
  return (what.back() == 's' ? "one or more " : "a ") + what;
}

}  // namespace

std::string command_path(const CLI::App& root) {
  std::string path = "berth";
  for (const CLI::App* cur = &root; !cur->get_subcommands().empty();) {
    cur = cur->get_subcommands().front();
    path += " " + cur->get_name();
  }
  return path;
}

namespace {

// The index of the command word in args, or args.size().
size_t command_index(const CLI::App& root, const std::vector<std::string>& args) {
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--") return i + 1;
    if (a.empty() || a[0] != '-' || a == "-") return i;
    if (a.find('=') != std::string::npos) continue;
    const CLI::Option* opt = global_option(root, a);
    if (opt && opt->get_expected_min() > 0) ++i;  // its value
  }
  return args.size();
}

// `berth ssh [FLAGS] NAME CMD...`: flags before NAME are berth's, so an unknown
// one is an error (CLI11's prefix mode would pass it on). And once NAME is
// filled, CLI11 hands what follows `--` back to the top level; everything
// after NAME is the command anyway, so that `--` goes.
void check_ssh_args(const CLI::App& root, std::vector<std::string>& args, size_t ssh_at) {
  for (size_t i = ssh_at + 1; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--") return;
    if (a.empty() || a[0] != '-') {  // NAME
      if (i + 1 < args.size() && args[i + 1] == "--") args.erase(args.begin() + static_cast<std::ptrdiff_t>(i) + 1);
      return;
    }
    if (a == "-h" || a == "--help" || a.find('=') != std::string::npos) continue;
    const CLI::Option* opt = global_option(root, a);
    if (!opt) throw UsageError(fmt::format("'berth ssh' has no flag '{}'; see 'berth ssh --help'", a));
    if (opt->get_expected_min() > 0) ++i;
  }
}

}  // namespace

std::string command_word(const CLI::App& root, const std::vector<std::string>& args) {
  const size_t i = command_index(root, args);
  return i < args.size() ? args[i] : "";
}

std::vector<std::string> resolve_command_word(const CLI::App& root, std::vector<std::string> args) {
  std::string word = command_word(root, args);
  if (word.empty()) return args;
  const auto names = command_names(root);
  auto is_command = [&](const std::string& w) { return std::find(names.begin(), names.end(), w) != names.end(); };
  if (word == "help" && !is_command("help")) {
    auto at = std::find(args.begin(), args.end(), word);
    args.erase(at);
    args.push_back("--help");
    word = command_word(root, args);
    if (word.empty() || word == "--help") return args;
  }
  if (!is_command(word)) {
    std::string message = fmt::format("'{}' is not a berth command", word);
    if (auto near = closest(word, names); !near.empty()) message += fmt::format("; did you mean '{}'?", near);
    throw UsageError(message + " See 'berth --help'");
  }
  const size_t at = command_index(root, args);
  if (word == "ssh") check_ssh_args(root, args, at);
  // A command with its own commands (cluster): its next word is one of them.
  const CLI::App* sub = root.get_subcommand(word);
  const auto sub_names = command_names(*sub);
  if (sub_names.empty()) return args;
  for (size_t i = at + 1; i < args.size(); ++i) {
    if (args[i].empty() || args[i][0] == '-') continue;
    if (std::find(sub_names.begin(), sub_names.end(), args[i]) != sub_names.end()) break;
    std::string message = fmt::format("'{}' is not a 'berth {}' command", args[i], sub->get_name());
    if (auto near = closest(args[i], sub_names); !near.empty()) message += fmt::format("; did you mean '{}'?", near);
    throw UsageError(message + fmt::format(" See 'berth {} --help'", sub->get_name()));
  }
  return args;
}

std::string describe_parse_error(const CLI::ParseError& e, const CLI::App& root) {
  const std::string cmd = command_path(root);
  const std::string what = e.what();
  std::string sentence = what;
  std::smatch m;
  static const std::regex required("^(\\S+) is required$");
  static const std::regex at_most("^(\\S+): At Most (\\d+) required but received (\\d+)$");
  static const std::regex extras("^The following arguments? (?:was|were) not expected: (.*)$");
  static const std::regex no_value("^(\\S+): \\d+ required (\\S+) missing$");
  static const std::regex not_converted("^Could not convert: (\\S+) = (.*)$");
  if (std::regex_match(what, m, required)) {
    const std::string item = m[1];
    sentence = item.rfind("-", 0) == 0
                   ? fmt::format("'{}' needs {}", cmd, item)
                   : fmt::format("'{}' needs {}", cmd, what_positional_is(deepest_command(root), item));
  } else if (what.find("subcommand") != std::string::npos && e.get_name() == "RequiredError") {
    sentence = cmd == "berth" ? "no command given" : fmt::format("'{}' needs a subcommand", cmd);
  } else if (std::regex_match(what, m, at_most)) {
    const std::string flag = m[1], most = m[2], got = m[3];
    sentence = most == "1" ? fmt::format("{} can be given only once, not {} times", flag, got)
                           : fmt::format("{} takes at most {} values, but got {}", flag, most, got);
  } else if (std::regex_match(what, m, no_value)) {
    sentence = fmt::format("{} needs a value", m[1].str());
  } else if (std::regex_match(what, m, not_converted)) {
    sentence = fmt::format("{} can't be '{}'", m[1].str(), m[2].str());
  } else if (std::regex_match(what, m, extras)) {
    std::vector<std::string> words;
    const std::string list = m[1];
    for (size_t start = 0, end; start < list.size(); start = end + 1) {
      end = list.find(' ', start);
      if (end == std::string::npos) end = list.size();
      if (end > start) words.push_back(list.substr(start, end - start));
    }
    const bool flags = !words.empty() && std::all_of(words.begin(), words.end(), [](const std::string& w) {
      return w.size() > 1 && w[0] == '-';
    });
    sentence = flags ? fmt::format("'{}' has no {} {}", cmd, plural(words.size(), "flag", "flags"), quoted_list(words))
                     : fmt::format("'{}' does not take the {} {}", cmd,
                                   plural(words.size(), "argument", "arguments"), quoted_list(words));
  }
  return fmt::format("{}; see '{} --help'", sentence, cmd);
}

}  // namespace berth::cli
