#include "agent/build/expand.h"

#include <utility>

#include "agent/build/error.h"
#include "agent/build/text.h"

namespace berth::agent::build {
namespace {

constexpr char32_t kEof = 0xFFFFFFFF;
// Deeper ${a:-${b:-...}} nesting than any real Dockerfile, bounding the stack.
constexpr int kMaxNesting = 200;

struct LexError {
  std::string message;
};

// One shell word being split: buildkit's wordsStruct.
struct Words {
  std::string buf;
  std::vector<std::string> words;
  bool in_word = false;

  void add_char(char32_t cp, std::string_view bytes) {
    if (text::is_space(cp)) {
      if (in_word && !buf.empty()) {
        words.push_back(std::move(buf));
        buf.clear();
        in_word = false;
      }
    } else {
      add_raw(bytes);
    }
  }
  void add_raw(std::string_view bytes) {
    buf.append(bytes);
    in_word = true;
  }
  // A substituted value: its spaces split words.
  void add_string(std::string_view s) {
    for (std::size_t i = 0; i < s.size();) {
      text::Rune r = text::decode(s, i);
      add_char(r.valid ? r.cp : 0xFFFD, s.substr(i, r.width));
      i += r.width;
    }
  }
  std::vector<std::string> finish() {
    if (!buf.empty()) words.push_back(std::move(buf));
    buf.clear();
    in_word = false;
    return std::move(words);
  }
};

// ---- patterns of ${VAR#pat}, ${VAR%pat}, ${VAR/pat/repl} ----

// A shell pattern: literal runes, '*' (any run without '\n') and '?' (one rune
// but '\n'), as buildkit's convertShellPatternToRegex turns them into regexps.
struct PatternToken {
  enum Kind { kLiteral, kStar, kOne } kind;
  std::string literal;  // the rune's bytes for kLiteral
};

std::vector<PatternToken> compile_pattern(std::string_view pattern) {
  std::vector<PatternToken> out;
  for (std::size_t i = 0; i < pattern.size();) {
    text::Rune r = text::decode(pattern, i);
    std::string_view bytes = pattern.substr(i, r.width);
    i += r.width;
    if (r.valid && r.cp == '*') {
      out.push_back({PatternToken::kStar, {}});
    } else if (r.valid && r.cp == '?') {
      out.push_back({PatternToken::kOne, {}});
    } else if (r.valid && r.cp == '\\') {
      // \} and \/ inside ${} are not part of the pattern; \* \? \\ are literals.
      if (i < pattern.size() && (pattern[i] == '}' || pattern[i] == '/')) continue;
      if (i >= pattern.size()) throw LexError{"invalid escape '\\'"};
      text::Rune next = text::decode(pattern, i);
      std::string_view next_bytes = pattern.substr(i, next.width);
      i += next.width;
      if (!(next.valid && (next.cp == '*' || next.cp == '?' || next.cp == '\\')))
        throw LexError{"invalid escape '\\" + std::string(next_bytes) + "'"};
      out.push_back({PatternToken::kLiteral, std::string(next_bytes)});
    } else {
      out.push_back({PatternToken::kLiteral, std::string(bytes)});
    }
  }
  return out;
}

// The value split into runes, each with its byte offset (offsets.back() is
// the size), so '?' consumes one rune.
struct Runes {
  std::vector<std::string_view> runes;
  std::vector<std::size_t> offsets;
  explicit Runes(std::string_view s) {
    for (std::size_t i = 0; i < s.size();) {
      text::Rune r = text::decode(s, i);
      runes.push_back(s.substr(i, r.width));
      offsets.push_back(i);
      i += r.width;
    }
    offsets.push_back(s.size());
  }
};

// For every start rune s, where a backtracking regexp engine would end a
// match of `tokens` beginning at s (-1 for none): greedy stars try the longest
// run first, lazy ones the shortest. Dynamic programming, O(tokens * runes).
std::vector<long> match_ends(const std::vector<PatternToken>& tokens, const Runes& value,
                             bool greedy) {
  const std::size_t n = value.runes.size();
  std::vector<long> next(n + 1), row(n + 1);
  for (std::size_t s = 0; s <= n; ++s) next[s] = static_cast<long>(s);
  for (std::size_t t = tokens.size(); t-- > 0;) {
    const PatternToken& tok = tokens[t];
    for (std::size_t s = n + 1; s-- > 0;) {
      const bool can_take = s < n && value.runes[s] != "\n";
      switch (tok.kind) {
        case PatternToken::kLiteral:
          row[s] = (s < n && value.runes[s] == tok.literal) ? next[s + 1] : -1;
          break;
        case PatternToken::kOne:
          row[s] = can_take ? next[s + 1] : -1;
          break;
        case PatternToken::kStar: {
          const long more = can_take ? row[s + 1] : -1;
          if (greedy) {
            row[s] = more != -1 ? more : next[s];
          } else {
            row[s] = next[s] != -1 ? next[s] : more;
          }
          break;
        }
      }
    }
    std::swap(next, row);
  }
  return next;
}

std::string reverse_runes(std::string_view s) {
  Runes r(s);
  std::string out;
  for (std::size_t i = r.runes.size(); i-- > 0;) out.append(r.runes[i]);
  return out;
}

// Reverses a pattern keeping each "\x" pair in order.
std::string reverse_pattern(std::string_view pattern) {
  std::vector<std::string> units;
  for (std::size_t i = 0; i < pattern.size();) {
    text::Rune r = text::decode(pattern, i);
    std::string unit(pattern.substr(i, r.width));
    i += r.width;
    if (unit == "\\" && i < pattern.size()) {
      text::Rune next = text::decode(pattern, i);
      unit.append(pattern.substr(i, next.width));
      i += next.width;
    }
    units.push_back(std::move(unit));
  }
  std::string out;
  for (std::size_t i = units.size(); i-- > 0;) out += units[i];
  return out;
}

std::string trim_prefix(std::string_view pattern, std::string_view value, bool greedy) {
  auto tokens = compile_pattern(pattern);
  Runes runes(value);
  const long end = match_ends(tokens, runes, greedy)[0];
  if (end < 0) return std::string(value);
  return std::string(value.substr(runes.offsets[static_cast<std::size_t>(end)]));
}

std::string trim_suffix(std::string_view pattern, std::string_view value, bool greedy) {
  return reverse_runes(trim_prefix(reverse_pattern(pattern), reverse_runes(value), greedy));
}

// Go's Regexp.ReplaceAllString / first-match replacement with a greedy pattern.
std::string replace(std::string_view pattern, std::string_view value, std::string_view repl,
                    bool all) {
  auto tokens = compile_pattern(pattern);
  Runes runes(value);
  const std::vector<long> ends = match_ends(tokens, runes, true);
  const std::size_t n = runes.runes.size();
  std::string out;
  std::size_t search = 0;
  long last_end = -1;
  std::size_t copied = 0;  // runes of value already copied or replaced
  while (search <= n) {
    std::size_t start = search;
    while (start <= n && ends[start] < 0) ++start;
    if (start > n) break;
    const std::size_t end = static_cast<std::size_t>(ends[start]);
    out.append(value.substr(runes.offsets[copied], runes.offsets[start] - runes.offsets[copied]));
    if (static_cast<long>(end) > last_end || start == 0) out.append(repl);
    copied = end;
    last_end = static_cast<long>(end);
    if (!all) break;
    search = end > search ? end : search + 1;
  }
  out.append(value.substr(runes.offsets[copied]));
  return out;
}

// ---- the lexer ----

class Lexer {
 public:
  Lexer(std::string_view src, const VarLookup& vars, const ExpandOptions& options)
      : src_(src), vars_(vars), options_(options), raw_escapes_(options.keep_escapes) {}

  std::pair<std::string, std::vector<std::string>> run() {
    return process_stop_on(kEof, options_.keep_escapes);
  }

 private:
  char32_t peek() const {
    if (pos_ >= src_.size()) return kEof;
    text::Rune r = text::decode(src_, pos_);
    return r.valid ? r.cp : 0xFFFD;
  }
  // Consumes one rune; returns its original bytes ("" at the end).
  std::string_view next() {
    if (pos_ >= src_.size()) return {};
    text::Rune r = text::decode(src_, pos_);
    std::string_view bytes = src_.substr(pos_, r.width);
    pos_ += r.width;
    return bytes;
  }
  static char32_t code(std::string_view bytes) {
    if (bytes.empty()) return kEof;
    text::Rune r = text::decode(bytes, 0);
    return r.valid ? r.cp : 0xFFFD;
  }
  bool is_escape(char32_t cp) const { return cp == static_cast<unsigned char>(options_.escape); }

  std::pair<std::string, std::vector<std::string>> process_stop_on(char32_t stop,
                                                                   bool raw_escapes) {
    if (++depth_ > kMaxNesting) throw LexError{"too many nested substitutions"};
    const bool saved = std::exchange(raw_escapes_, raw_escapes);
    std::string result;
    Words words;
    bool stopped = false;
    while (peek() != kEof) {
      const char32_t ch = peek();
      if (stop != kEof && ch == stop) {
        next();
        stopped = true;
        break;
      }
      if (ch == '$') {
        std::string value = process_dollar();
        result += value;
        words.add_string(value);
      } else if (options_.heredoc_words && ch == '<') {
        std::string value = process_possible_heredoc();
        result += value;
        words.add_raw(value);
      } else if (options_.process_quotes && (ch == '\'' || ch == '"')) {
        std::string value = ch == '\'' ? process_single_quote() : process_double_quote();
        result += value;
        words.add_raw(value);
      } else {
        std::string_view bytes = next();
        if (is_escape(code(bytes))) {
          if (raw_escapes_) {
            words.add_raw(bytes);
            result.append(bytes);
          }
          bytes = next();
          if (bytes.empty()) break;  // an escape at the very end is dropped
          words.add_raw(bytes);
        } else {
          words.add_char(code(bytes), bytes);
        }
        result.append(bytes);
      }
    }
    raw_escapes_ = saved;
    --depth_;
    if (stop != kEof && !stopped) {
      std::string s;
      text::append_utf8(s, stop);
      throw LexError{"unexpected end of statement while looking for matching " + s};
    }
    return {std::move(result), words.finish()};
  }

  // "<<", "<<-" and the blanks after them, kept in the word so that
  // "<<  EOF" reads as one heredoc word, like buildkit's lexer.
  std::string process_possible_heredoc() {
    std::string result(next());
    if (peek() != '<') return result;
    result.append(next());
    if (peek() == '-') result.append(next());
    while (peek() == ' ' || peek() == '\t') result.append(next());
    return result;
  }

  std::string process_single_quote() {
    std::string result;
    std::string_view open = next();
    if (options_.keep_quotes) result.append(open);
    for (;;) {
      std::string_view bytes = next();
      if (bytes.empty())
        throw LexError{"unexpected end of statement while looking for matching single-quote"};
      result.append(bytes);
      if (bytes == "'") {
        if (!options_.keep_quotes) result.pop_back();
        return result;
      }
    }
  }

  std::string process_double_quote() {
    std::string result;
    std::string_view open = next();
    if (options_.keep_quotes) result.append(open);
    for (;;) {
      const char32_t ch = peek();
      if (ch == kEof)
        throw LexError{"unexpected end of statement while looking for matching double-quote"};
      if (ch == '"') {
        std::string_view close = next();
        if (options_.keep_quotes) result.append(close);
        return result;
      }
      if (ch == '$') {
        result += process_dollar();
        continue;
      }
      std::string_view bytes = next();
      if (is_escape(code(bytes))) {
        if (raw_escapes_) result.append(bytes);
        const char32_t following = peek();
        if (following == kEof) continue;  // then fails as unterminated
        // Only " $ and the escape itself can be escaped; otherwise it is literal.
        if (following == '"' || following == '$' || is_escape(following)) bytes = next();
      }
      result.append(bytes);
    }
  }

  std::string process_name() {
    std::string name;
    while (peek() != kEof) {
      const char32_t ch = peek();
      if (name.empty() && ch >= '0' && ch <= '9') {
        while (peek() >= '0' && peek() <= '9') name.append(next());
        return name;
      }
      if (name.empty() && is_special_param(ch)) return std::string(next());
      const bool letter = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                          (ch >= 0x80 && ch != 0xFFFD && !text::is_space(ch));
      if (!letter && !(ch >= '0' && ch <= '9') && ch != '_') break;
      name.append(next());
    }
    return name;
  }

  static bool is_special_param(char32_t ch) {
    switch (ch) {
      case '@':
      case '*':
      case '#':
      case '?':
      case '-':
      case '$':
      case '!':
      case '0':
        return true;
      default:
        return false;
    }
  }

  // The text of `${` ... up to '}' after a modifier; a missing '}' is reported
  // as such, like buildkit.
  std::string word_until(char32_t stop, bool raw_escapes, const char* missing) {
    try {
      return process_stop_on(stop, raw_escapes).first;
    } catch (const LexError&) {
      if (peek() == kEof) throw LexError{missing};
      throw;
    }
  }

  std::string process_dollar() {
    if (++depth_ > kMaxNesting) throw LexError{"too many nested substitutions"};
    struct Leave {
      int& depth;
      ~Leave() { --depth; }
    } leave{depth_};

    next();  // '$'
    if (peek() != '{') {
      std::string name = process_name();
      if (name.empty()) return "$";
      auto value = vars_.get(name);
      if (!value && options_.keep_unset) return "$" + name;
      return value.value_or("");
    }
    next();  // '{'
    switch (peek()) {
      case kEof:
        throw LexError{"syntax error: missing '}'"};
      case '{':
      case '}':
      case ':':
        throw LexError{"syntax error: bad substitution"};
      default:
        break;
    }
    const std::string name = process_name();
    // buildkit reports "unsupported modifier" for a bare "${NAME"; a missing
    // brace is the clearer message.
    if (peek() == kEof) throw LexError{"syntax error: missing '}'"};
    std::string_view modifier_bytes = next();
    char32_t ch = code(modifier_bytes);
    std::string modifier(modifier_bytes);

    if (ch == '}') {
      auto value = vars_.get(name);
      if (!value && options_.keep_unset) return "${" + name + "}";
      return value.value_or("");
    }
    if (ch == '/') return process_replace(name);

    bool null_is_unset = false;
    if (ch == ':') {
      null_is_unset = true;
      modifier_bytes = next();
      ch = code(modifier_bytes);
      modifier.append(modifier_bytes);
    } else if (ch != '+' && ch != '-' && ch != '?' && ch != '#' && ch != '%') {
      throw LexError{"unsupported modifier (" + modifier + ") in substitution"};
    }
    const bool raw = ch == '#' || ch == '%';
    if (null_is_unset && raw)
      throw LexError{"unsupported modifier (" + modifier + ") in substitution"};
    std::string word = word_until('}', raw, "syntax error: missing '}'");

    auto value = vars_.get(name);
    if (!value && options_.keep_unset) return "${" + name + modifier + word + "}";
    const bool unset = !value || (null_is_unset && value->empty());
    switch (ch) {
      case '-':
        return unset ? word : *value;
      case '+':
        return unset ? std::string() : word;
      case '?':
        if (!value)
          throw LexError{name + ": " + (word.empty() ? "is not allowed to be unset" : word)};
        if (unset)
          throw LexError{name + ": " + (word.empty() ? "is not allowed to be empty" : word)};
        return *value;
      case '#':
      case '%': {
        bool greedy = false;
        if (!word.empty() && static_cast<char32_t>(static_cast<unsigned char>(word[0])) == ch) {
          greedy = true;
          word.erase(0, 1);
        }
        try {
          return ch == '%' ? trim_suffix(word, value.value_or(""), greedy)
                           : trim_prefix(word, value.value_or(""), greedy);
        } catch (const LexError& e) {
          throw LexError{"invalid pattern (" + word + ") in substitution: " + e.message};
        }
      }
      default:
        throw LexError{"unsupported modifier (" + modifier + ") in substitution"};
    }
  }

  std::string process_replace(const std::string& name) {
    const bool all = peek() == '/';
    if (all) next();
    std::string pattern = word_until('/', true, "syntax error: missing '/' in ${}");
    std::string repl = word_until('}', true, "syntax error: missing '}'");
    auto value = vars_.get(name);
    if (!value && options_.keep_unset) return "${" + name + "/" + pattern + "/" + repl + "}";
    try {
      return replace(pattern, value.value_or(""), repl, all);
    } catch (const LexError& e) {
      throw LexError{"invalid pattern (" + pattern + ") in substitution: " + e.message};
    }
  }

  std::string_view src_;
  std::size_t pos_ = 0;
  const VarLookup& vars_;
  const ExpandOptions& options_;
  bool raw_escapes_;
  int depth_ = 0;
};

std::pair<std::string, std::vector<std::string>> lex(std::string_view text, const VarLookup& vars,
                                                     const ExpandOptions& options) {
  try {
    return Lexer(text, vars, options).run();
  } catch (const LexError& e) {
    throw BuildError("failed to process " + text::go_quote(text) + ": " + e.message);
  }
}

}  // namespace

EnvList::EnvList(const std::vector<std::string>& entries) {
  for (const std::string& e : entries) {
    const auto eq = e.find('=');
    if (eq == std::string::npos) {
      vars_[e] = "";
    } else {
      vars_[e.substr(0, eq)] = e.substr(eq + 1);
    }
  }
}

std::optional<std::string> EnvList::get(std::string_view name) const {
  auto it = vars_.find(name);
  if (it == vars_.end()) return std::nullopt;
  return it->second;
}

std::optional<std::string> VarMap::get(std::string_view name) const {
  auto it = vars_.find(name);
  if (it == vars_.end()) return std::nullopt;
  return it->second;
}

std::string expand_word(std::string_view text, const VarLookup& vars,
                        const ExpandOptions& options) {
  return lex(text, vars, options).first;
}

std::vector<std::string> expand_words(std::string_view text, const VarLookup& vars,
                                      const ExpandOptions& options) {
  return lex(text, vars, options).second;
}

}  // namespace berth::agent::build
