#pragma once
// .dockerignore: which paths of the build context are left out, with the rules
// of moby/patternmatcher and its ignorefile reader (what the docker CLI and
// dockerd use):
//   - one pattern a line; a line starting with # is a comment; blank lines and
//     surrounding blanks are ignored;
//   - patterns are cleaned like Go's filepath.Clean ("./a//b/" -> "a/b") and a
//     leading "/" is dropped: they are always relative to the context root;
//   - `*` matches any run without "/", `?` one char but "/", `[a-z]` / `[^a-z]`
//     a class (Go filepath.Match syntax, `\` escapes), `**` any number of
//     directories ("**/*.go", "a/**/b", "dir/**");
//   - a pattern also excludes everything below a directory it matches;
//   - `!pattern` re-includes; the last matching line wins.
#include <string>
#include <string_view>
#include <vector>

namespace berth::agent::build {

// The patterns of a .dockerignore file, cleaned, comments and blanks dropped.
std::vector<std::string> read_dockerignore(std::string_view text);

// Immutable once built: its const methods may be called from several threads.
class IgnoreMatcher {
 public:
  // Throws BuildError for a malformed pattern: `syntax error in pattern` (an
  // unclosed `[`, a trailing `\`, an empty class) or `illegal exclusion
  // pattern: "!"`.
  explicit IgnoreMatcher(std::vector<std::string> patterns);
  ~IgnoreMatcher();
  IgnoreMatcher(const IgnoreMatcher&);
  IgnoreMatcher& operator=(const IgnoreMatcher&);
  IgnoreMatcher(IgnoreMatcher&&) noexcept;
  IgnoreMatcher& operator=(IgnoreMatcher&&) noexcept;

  // Whether `path` (relative to the context, "/"-separated, e.g. "src/a.c")
  // is left out. Directories and files follow the same rules (patterns lose
  // their trailing "/" when cleaned). The context root "." is never excluded.
  bool excluded(std::string_view path) const;

  // For a walker that found `dir` excluded: whether some `!` pattern may
  // re-include a path below it, so it must still descend (checking each
  // entry with excluded()). False lets it skip the whole directory. It may
  // answer true when nothing below ends up included, never the reverse.
  bool may_include_below(std::string_view dir) const;

  bool empty() const { return patterns_.empty(); }
  bool has_exceptions() const { return has_exceptions_; }

 private:
  struct Pattern;  // one compiled line
  // Whether `pattern` matches `path` (or, with or_parent, a parent directory).
  bool matches(const Pattern& pattern, std::string_view path, bool or_parent) const;
  std::vector<Pattern> patterns_;
  bool has_exceptions_ = false;
};

// The client side: `patterns` with "!.dockerignore" and "!<dockerfile>"
// appended when they would exclude them, because the Dockerfile and the
// .dockerignore are always sent with the context (the docker CLI's
// TrimBuildFilesFromExcludes). `dockerfile` is the path within the context.
std::vector<std::string> keep_build_files(std::vector<std::string> patterns,
                                          std::string_view dockerfile);

// The daemon side: which of ".dockerignore" and `dockerfile` the patterns
// exclude; dockerd removes those from the context once it has read them, so a
// `COPY . /app` does not see them.
std::vector<std::string> excluded_build_files(const IgnoreMatcher& matcher,
                                              std::string_view dockerfile);

}  // namespace berth::agent::build
