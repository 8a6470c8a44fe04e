#pragma once
// Dockerfile text -> a list of nodes, one per instruction, with the rules of
// buildkit's frontend/dockerfile/parser:
//   - parser directives (`# escape=`, `# syntax=`, `# check=`) only before
//     anything else, case-insensitive, each at most once;
//   - lines joined on a trailing escape char (\ or `), comment lines inside a
//     continuation dropped, whitespace-only continuation lines dropped with a
//     warning; `#` starts a comment only at the start of a line;
//   - `--flag=value` words right after the keyword go to Node::flags;
//   - JSON arrays (exec form) vs plain text, per instruction;
//   - heredocs for RUN, COPY, ADD (and ONBUILD of those): `<<EOF`, `<<-EOF`
//     (tabs stripped), `<<"EOF"` / `<<'EOF'` (no expansion), `3<<EOF`, several
//     per line; their bodies are read verbatim (no comments, no continuations).
// Nothing is validated per instruction here (not even the keyword): that is
// instructions.h's job, so ONBUILD triggers can be re-parsed the same way.
#include <string>
#include <string_view>
#include <vector>

namespace berth::agent::build {

struct Heredoc {
  std::string name;     // the delimiter, quotes removed: <<'EOF' -> EOF
  unsigned fd = 0;      // 3<<EOF -> 3; 0 when not given
  bool expand = true;   // false when any part of the delimiter was quoted
  bool chomp = false;   // <<-EOF: leading tabs are stripped from the body
  std::string content;  // the body as written, line endings kept
  // The body with leading tabs removed from every line when chomp.
  std::string body() const;
};

// One instruction as written. `args` depends on the keyword (lower-cased here):
//   add copy volume        the JSON array's strings, else the text split on
//                          blanks (quotes are NOT special here)
//   run cmd entrypoint shell   the JSON array's strings, else the whole text
//   env label              key, value, key, value... (quotes kept; expansion
//                          removes them); "ENV k v w" gives k, "v w"
//   arg                    "name" or "name=value" words (quotes kept)
//   expose from            the text split on blanks
//   healthcheck            the type (CMD, NONE...), then as for cmd
//   maintainer stopsignal user workdir   the whole text
//   onbuild                the trigger's keyword and args; `sub` holds it
//   anything else          nothing (instructions.h reports it as unknown)
struct Node {
  std::string keyword;             // as written: "RUN", "copy", "FOO"
  std::vector<std::string> flags;  // "--from=build", "--link" (quotes removed)
  std::vector<std::string> args;
  bool json = false;              // the arguments were a JSON array
  std::vector<Heredoc> heredocs;  // bodies in the order of the line
  std::vector<Node> sub;          // ONBUILD: the trigger (zero or one node)
  std::string original;           // the joined line, for "Step 1/2 : RUN ..."
  int start_line = 0;             // 1-based, where the instruction starts
  int end_line = 0;               // its last line (continuations, heredocs)
};

struct Directives {
  char escape = '\\';  // `# escape=` (\ or `)
  std::string syntax;  // `# syntax=` as written, "" when absent
  int syntax_line = 0;
  std::string check;  // `# check=` as written (recorded, not acted on)
};

struct ParsedDockerfile {
  Directives directives;
  std::vector<Node> nodes;
  // dockerd prints each as "[WARNING]: <text>", then "[WARNING]: Empty
  // continuation lines will become errors in a future release."
  std::vector<std::string> warnings;
};

// Parses a whole Dockerfile. `name` is the path given to the build (-f),
// used in messages. Throws BuildError:
//   - "the Dockerfile (Dockerfile) cannot be empty" for zero bytes;
//   - "failed to parse Dockerfile: file with no instructions" when only
//     comments and blanks;
//   - "failed to parse Dockerfile: <reason>" with the line for a bad directive,
//     a non-string JSON array, "ENV must have two arguments", "unterminated
//     heredoc"...;
//   - a clear error for a `# syntax=` naming another frontend than the
//     built-in docker/dockerfile one.
ParsedDockerfile parse_dockerfile(std::string_view text, std::string_view name = "Dockerfile");

// A word such as "<<EOF", "<<-'EOF'", "3<<EOF" or "<< EOF" as a heredoc (its
// content empty); false when the word is not one. buildkit's MustParseHeredoc.
bool parse_heredoc_word(std::string_view word, Heredoc& out);

}  // namespace berth::agent::build
