#pragma once
// Turns CLI11's parse errors into one sentence that names the command and its
// own help, and finds the command word of a command line before CLI11 parses it.
#include <string>
#include <vector>

namespace CLI {
class App;
class ParseError;
}  // namespace CLI

namespace berth::cli {

// "berth create": the deepest subcommand CLI11 had reached.
std::string command_path(const CLI::App& root);

// e.g. "'berth rm' needs a machine name; see 'berth rm --help'".
std::string describe_parse_error(const CLI::ParseError& e, const CLI::App& root);

// The first word of args (argv without argv[0]) that is not a global option or
// its value; empty when there is none.
std::string command_word(const CLI::App& root, const std::vector<std::string>& args);

// Rewrites `help [CMD...]` into `[CMD...] --help` and drops the `--` of
// `ssh NAME -- CMD...`. Throws UsageError for a word that is not a berth
// command, suggesting the closest one.
std::vector<std::string> resolve_command_word(const CLI::App& root, std::vector<std::string> args);

// The closest of `candidates` to `word` (edit distance at most 2, or a prefix); empty when none is close.
std::string closest(const std::string& word, const std::vector<std::string>& candidates);

}  // namespace berth::cli
