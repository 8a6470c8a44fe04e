#pragma once
// Variable substitution in Dockerfile words, with the rules of buildkit's
// shell lexer (frontend/dockerfile/shell/lex.go), which dockerd's classic
// builder uses too:
//   $VAR ${VAR}            the value, "" when unset
//   ${VAR:-word} ${VAR-word}   word when VAR is unset or empty (":-") / unset ("-")
//   ${VAR:+word} ${VAR+word}   word when VAR is set and non-empty (":+") / set ("+")
//   ${VAR:?msg}  ${VAR?msg}    an error "VAR: msg" when unset or empty / unset
//   ${VAR#pat} ${VAR##pat} ${VAR%pat} ${VAR%%pat}   remove a shortest/longest
//                          prefix/suffix matching a pattern of * and ?
//   ${VAR/pat/repl} ${VAR//pat/repl}   replace the first/every match
// The escape char (\ or the Dockerfile's `escape=` directive) makes the next
// char literal; 'single quotes' keep everything literal; "double quotes" keep
// spaces and expand $ (the escape only escapes " $ and itself there). Quotes
// are removed from the result. Words are split on unquoted whitespace after
// substitution, so a value with spaces yields several words unless quoted.
//
// Which instructions expand which fields is decided in instructions.h
// (expand_instruction); this header is the word-level engine.
#include <initializer_list>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace berth::agent::build {

// Where $NAME is looked up. nullopt means unset, which differs from
// set-but-empty for ${X-word}, ${X+word} and ${X?msg}.
class VarLookup {
 public:
  virtual ~VarLookup() = default;
  virtual std::optional<std::string> get(std::string_view name) const = 0;
};

// Variables from "KEY=VALUE" strings, e.g. an image config's Env followed by
// the build args in effect. A later KEY wins; "KEY" alone is set and empty.
class EnvList final : public VarLookup {
 public:
  explicit EnvList(const std::vector<std::string>& entries);
  std::optional<std::string> get(std::string_view name) const override;

 private:
  std::map<std::string, std::string, std::less<>> vars_;
};

// Variables from a map.
class VarMap final : public VarLookup {
 public:
  VarMap() = default;
  explicit VarMap(std::map<std::string, std::string, std::less<>> vars) : vars_(std::move(vars)) {}
  VarMap(std::initializer_list<std::pair<const std::string, std::string>> vars) : vars_(vars) {}
  void set(std::string name, std::string value) { vars_[std::move(name)] = std::move(value); }
  std::optional<std::string> get(std::string_view name) const override;

 private:
  std::map<std::string, std::string, std::less<>> vars_;
};

struct ExpandOptions {
  char escape = '\\';          // the Dockerfile's escape char: '\\' or '`'
  bool process_quotes = true;  // false: quotes are ordinary chars (heredoc bodies)
  bool keep_quotes = false;    // quotes stay in the result (buildkit's RawQuotes)
  bool keep_escapes = false;   // escape chars stay in the result (RawEscapes)
  bool keep_unset = false;     // an unset $VAR is left as written (SkipUnsetEnv)
  bool heredoc_words = false;  // "<<  EOF" / "<<- EOF" stay one word (heredoc detection)
};

// The word with variables substituted and quotes removed. Throws BuildError
// (line 0) in buildkit's words, e.g. `failed to process "${X:?}": X: is not
// allowed to be empty` or `failed to process "'a": unexpected end of statement
// while looking for matching single-quote`.
std::string expand_word(std::string_view text, const VarLookup& vars,
                        const ExpandOptions& options = {});

// The same, split into words: `a "b c" $V` with V="d e" -> a, b c, d, e.
// Empty words vanish ("" alone yields nothing).
std::vector<std::string> expand_words(std::string_view text, const VarLookup& vars,
                                      const ExpandOptions& options = {});

}  // namespace berth::agent::build
