#include "agent/build/dockerignore.h"

#include <algorithm>
#include <cstdint>
#include <map>

#include "agent/build/error.h"
#include "agent/build/text.h"

namespace berth::agent::build {
namespace {

// One element of a compiled pattern. What each matches mirrors the regexp
// moby/patternmatcher builds: `*` is [^/]*, `?` is [^/], `**/` is (.*/)?, a
// final `**` is .* (Go's `.` does not match "\n").
struct Token {
  enum Kind { kLiteral, kStar, kOne, kClass, kAnyDirs, kAny } kind;
  std::string literal;                                // kLiteral: one rune's bytes
  bool negated = false;                               // kClass
  std::vector<std::pair<char32_t, char32_t>> ranges;  // kClass
};

[[noreturn]] void bad_pattern() { throw BuildError("syntax error in pattern"); }

class Scanner {
 public:
  explicit Scanner(std::string_view s) : s_(s) {}
  bool done() const { return pos_ >= s_.size(); }
  char32_t peek() const {
    if (done()) return 0xFFFFFFFF;
    text::Rune r = text::decode(s_, pos_);
    return r.valid ? r.cp : 0xFFFD;
  }
  std::string_view next() {
    text::Rune r = text::decode(s_, pos_);
    std::string_view bytes = s_.substr(pos_, r.width);
    pos_ += r.width;
    return bytes;
  }
  // Go's getEsc: a class char, maybe escaped, that must be followed by more.
  char32_t class_char() {
    if (done() || peek() == '-' || peek() == ']') bad_pattern();
    if (peek() == '\\') {
      next();
      if (done()) bad_pattern();
    }
    text::Rune r = text::decode(s_, pos_);
    if (!r.valid) bad_pattern();
    pos_ += r.width;
    if (done()) bad_pattern();
    return r.cp;
  }

 private:
  std::string_view s_;
  std::size_t pos_ = 0;
};

// After "[": the class up to its "]", with Go's filepath.Match syntax.
Token parse_class(Scanner& scan) {
  Token tok{Token::kClass, {}, false, {}};
  if (scan.peek() == '^') {
    tok.negated = true;
    scan.next();
  }
  for (;;) {
    if (scan.peek() == ']' && !tok.ranges.empty()) {
      scan.next();
      return tok;
    }
    const char32_t lo = scan.class_char();
    char32_t hi = lo;
    if (scan.peek() == '-') {
      scan.next();
      hi = scan.class_char();
    }
    if (hi < lo) bad_pattern();
    tok.ranges.emplace_back(lo, hi);
  }
}

bool class_matches(const Token& tok, char32_t cp) {
  bool in = false;
  for (auto [lo, hi] : tok.ranges) in = in || (lo <= cp && cp <= hi);
  return in != tok.negated;
}

// Sets of automaton states, one bit per token index (and one for "matched").
using Mask = std::vector<std::uint64_t>;

void set_bit(Mask& m, std::size_t i) { m[i / 64] |= std::uint64_t{1} << (i % 64); }

enum class Run {
  kWhole,          // the pattern matches all of path
  kWholeOrParent,  // ... or one of its parent directories
  kPrefix,         // some path starting with path could still match
};

// A context-relative path: cleaned, without a leading "/"; "" for the root.
std::string relative(std::string_view path) {
  std::string p = text::clean_path(path);
  if (p == "." || p == "/") return "";
  if (p.front() == '/') p.erase(0, 1);
  return p;
}

bool starts_with(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

}  // namespace

struct IgnoreMatcher::Pattern {
  enum Type { kExact, kPrefix, kSuffix, kRegexp } type = kExact;
  bool exception = false;
  std::string literal;  // kExact: the path; kPrefix: before "**"; kSuffix: after "**"
  std::vector<Token> tokens;
  // The tokens as bit masks over their indices (kRegexp only).
  Mask star, any, any_dirs, skippable, one;
  std::map<std::string, Mask, std::less<>> literals;  // a rune's bytes -> its literal tokens
  std::vector<std::size_t> classes;

  void compile(std::string_view cleaned);
  bool run(std::string_view path, Run mode) const;
};

// moby/patternmatcher's compile: the match type and, for wildcards, tokens.
void IgnoreMatcher::Pattern::compile(std::string_view cleaned) {
  // Adjacent identical wildcards ("****") match what one does: keeping one
  // stops a long run from making matching quadratic.
  auto add = [this](Token t) {
    const bool wildcard =
        t.kind == Token::kStar || t.kind == Token::kAny || t.kind == Token::kAnyDirs;
    if (wildcard && !tokens.empty() && tokens.back().kind == t.kind) return;
    tokens.push_back(std::move(t));
  };
  Scanner scan(cleaned);
  for (int i = 0; !scan.done(); ++i) {
    std::string_view bytes = scan.next();
    if (bytes == "*") {
      if (scan.peek() == '*') {
        scan.next();
        if (scan.peek() == '/') scan.next();
        if (scan.done()) {
          if (type == kExact) {
            type = kPrefix;
          } else {
            add({Token::kAny, {}, false, {}});
            type = kRegexp;
          }
        } else {
          add({Token::kAnyDirs, {}, false, {}});
          type = kRegexp;
        }
        if (i == 0) type = kSuffix;
      } else {
        add({Token::kStar, {}, false, {}});
        type = kRegexp;
      }
    } else if (bytes == "?") {
      add({Token::kOne, {}, false, {}});
      type = kRegexp;
    } else if (bytes == "\\") {
      if (scan.done()) bad_pattern();
      add({Token::kLiteral, std::string(scan.next()), false, {}});
      type = kRegexp;
    } else if (bytes == "[") {
      add(parse_class(scan));
      type = kRegexp;
    } else if (bytes == "]") {
      add({Token::kLiteral, "]", false, {}});
      type = kRegexp;
    } else {
      add({Token::kLiteral, std::string(bytes), false, {}});
    }
  }
  const Mask empty(tokens.size() / 64 + 1, 0);
  star = any = any_dirs = skippable = one = empty;
  for (std::size_t k = 0; k < tokens.size(); ++k) {
    switch (tokens[k].kind) {
      case Token::kLiteral:
        set_bit(literals.try_emplace(tokens[k].literal, empty).first->second, k);
        break;
      case Token::kOne:
        set_bit(one, k);
        break;
      case Token::kClass:
        classes.push_back(k);
        break;
      case Token::kStar:
        set_bit(star, k);
        set_bit(skippable, k);
        break;
      case Token::kAny:
        set_bit(any, k);
        set_bit(skippable, k);
        break;
      case Token::kAnyDirs:
        set_bit(any_dirs, k);
        set_bit(skippable, k);
        break;
    }
  }
  if (type == kExact) literal = std::string(cleaned);
  if (type == kPrefix) literal = std::string(cleaned.substr(0, cleaned.size() - 2));
  if (type == kSuffix) literal = std::string(cleaned.substr(2));
}

// Simulates the pattern's automaton over `path`, 64 states a word. Bit k of
// `at` is "before token k" (k == size: matched); bit k of `inside` is within
// the ".*" of the AnyDirs token k, waiting for a "/". Only the words up to
// `live` can be non-zero, so a dying pattern costs little.
bool IgnoreMatcher::Pattern::run(std::string_view path, Run mode) const {
  const std::size_t n = tokens.size();
  const std::size_t words = n / 64 + 1;
  Mask at(words, 0), inside(words, 0);
  std::size_t live = 1;
  at[0] = 1;
  // Takes every wildcard that may match nothing (a forward pass, as such
  // moves only go from token k to k+1).
  auto close = [&] {
    std::uint64_t carry = 0;
    std::size_t w = 0;
    for (; w < words && (w < live || carry); ++w) {
      std::uint64_t x = at[w] | carry;
      for (std::uint64_t y = x | ((x & skippable[w]) << 1); y != x;
           y = x | ((x & skippable[w]) << 1))
        x = y;
      carry = (x & skippable[w]) >> 63;
      at[w] = x;
      inside[w] |= x & any_dirs[w];
    }
    live = std::max(live, w);
  };
  close();
  std::map<std::string_view, Mask> accepts;  // per rune: the tokens consuming it
  for (std::size_t i = 0; i < path.size();) {
    if (mode == Run::kWholeOrParent && path[i] == '/' && ((at[n / 64] >> (n % 64)) & 1))
      return true;
    text::Rune r = text::decode(path, i);
    const std::string_view bytes = path.substr(i, r.width);
    const char32_t cp = r.valid ? r.cp : 0xFFFD;
    i += r.width;
    auto [it, fresh] = accepts.try_emplace(bytes, words, 0);
    Mask& accept = it->second;
    if (fresh) {
      if (auto lit = literals.find(bytes); lit != literals.end()) accept = lit->second;
      for (std::size_t w = 0; w < words && cp != '/'; ++w) accept[w] |= one[w];
      for (std::size_t k : classes) {
        if (class_matches(tokens[k], cp)) set_bit(accept, k);
      }
    }
    // One step, in place from the top word down so each word still sees the
    // old value of the one below it (shifts carry upwards).
    live = std::min(words, live + 1);
    for (std::size_t w = live; w-- > 0;) {
      const std::uint64_t below = w ? (at[w - 1] & accept[w - 1]) >> 63 : 0;
      std::uint64_t next = ((at[w] & accept[w]) << 1) | below;
      if (cp != '/') next |= at[w] & star[w];
      if (cp != '\n') next |= at[w] & any[w];
      if (cp == '/') next |= (inside[w] << 1) | (w ? inside[w - 1] >> 63 : 0);
      at[w] = next;
      if (cp == '\n') inside[w] = 0;
    }
    close();
    while (live > 0 && at[live - 1] == 0 && inside[live - 1] == 0) --live;
    if (live == 0) return false;
  }
  if (mode == Run::kPrefix) return true;
  return (at[n / 64] >> (n % 64)) & 1;
}

std::vector<std::string> read_dockerignore(std::string_view text) {
  std::vector<std::string> out;
  bool first = true;
  while (!text.empty()) {
    std::size_t end = text.find('\n');
    std::string_view line = text.substr(0, end);
    text = end == std::string_view::npos ? std::string_view() : text.substr(end + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (first && starts_with(line, "\xEF\xBB\xBF")) line.remove_prefix(3);
    first = false;
    if (starts_with(line, "#")) continue;
    line = text::trim_space(line);
    if (line.empty()) continue;
    const bool invert = line.front() == '!';
    if (invert) line = text::trim_space(line.substr(1));
    std::string pattern;
    if (!line.empty()) {
      pattern = text::clean_path(line);
      if (pattern.size() > 1 && pattern.front() == '/') pattern.erase(0, 1);
    }
    out.push_back(invert ? "!" + pattern : pattern);
  }
  return out;
}

IgnoreMatcher::IgnoreMatcher(std::vector<std::string> patterns) {
  for (const std::string& raw : patterns) {
    std::string_view p = text::trim_space(raw);
    if (p.empty()) continue;
    Pattern pattern;
    if (p.front() == '!') {
      p = text::trim_space(p.substr(1));
      if (p.empty()) throw BuildError("illegal exclusion pattern: \"!\"");
      pattern.exception = true;
      has_exceptions_ = true;
    }
    std::string cleaned = text::clean_path(p);
    if (cleaned.size() > 1 && cleaned.front() == '/') cleaned.erase(0, 1);
    pattern.compile(cleaned);
    patterns_.push_back(std::move(pattern));
  }
}

IgnoreMatcher::~IgnoreMatcher() = default;
IgnoreMatcher::IgnoreMatcher(const IgnoreMatcher&) = default;
IgnoreMatcher& IgnoreMatcher::operator=(const IgnoreMatcher&) = default;
IgnoreMatcher::IgnoreMatcher(IgnoreMatcher&&) noexcept = default;
IgnoreMatcher& IgnoreMatcher::operator=(IgnoreMatcher&&) noexcept = default;

bool IgnoreMatcher::matches(const Pattern& pattern, std::string_view path, bool or_parent) const {
  if (pattern.type == Pattern::kRegexp)
    return pattern.run(path, or_parent ? Run::kWholeOrParent : Run::kWhole);
  auto one = [&](std::string_view p) {
    switch (pattern.type) {
      case Pattern::kExact:
        return p == pattern.literal;
      case Pattern::kPrefix:
        return starts_with(p, pattern.literal);
      case Pattern::kSuffix: {
        const std::string& suffix = pattern.literal;
        if (p.size() >= suffix.size() && p.substr(p.size() - suffix.size()) == suffix) return true;
        // "**/foo" also matches "foo".
        return !suffix.empty() && suffix.front() == '/' && p == std::string_view(suffix).substr(1);
      }
      case Pattern::kRegexp:
        break;
    }
    return false;
  };
  if (one(path)) return true;
  // A pattern matching a parent directory covers everything below it.
  for (std::size_t slash = path.find('/'); or_parent && slash != std::string_view::npos;
       slash = path.find('/', slash + 1)) {
    if (one(path.substr(0, slash))) return true;
  }
  return false;
}

bool IgnoreMatcher::excluded(std::string_view path) const {
  const std::string p = relative(path);
  if (p.empty()) return false;
  bool matched = false;
  for (const Pattern& pattern : patterns_) {
    // An exclusion can only change an excluded path, and the other way round.
    if (pattern.exception != matched) continue;
    if (matches(pattern, p, true)) matched = !pattern.exception;
  }
  return matched;
}

bool IgnoreMatcher::may_include_below(std::string_view dir) const {
  if (!has_exceptions_) return false;
  const std::string d = relative(dir);
  const std::string prefix = d.empty() ? "" : d + "/";
  for (const Pattern& pattern : patterns_) {
    if (!pattern.exception) continue;
    switch (pattern.type) {
      case Pattern::kExact:
        if (starts_with(pattern.literal, prefix)) return true;
        break;
      case Pattern::kPrefix:
        if (starts_with(pattern.literal, prefix) || starts_with(prefix, pattern.literal))
          return true;
        break;
      case Pattern::kSuffix:
        return true;
      case Pattern::kRegexp:
        if (pattern.run(prefix, Run::kPrefix)) return true;
        break;
    }
    // An exception naming `dir` or one of its parents covers everything below.
    if (!d.empty() && matches(pattern, d, true)) return true;
  }
  return false;
}

std::vector<std::string> keep_build_files(std::vector<std::string> patterns,
                                          std::string_view dockerfile) {
  IgnoreMatcher matcher(patterns);
  if (matcher.excluded(".dockerignore")) patterns.push_back("!.dockerignore");
  const std::string df = relative(dockerfile);
  if (!df.empty() && matcher.excluded(df)) patterns.push_back("!" + df);
  return patterns;
}

std::vector<std::string> excluded_build_files(const IgnoreMatcher& matcher,
                                              std::string_view dockerfile) {
  std::vector<std::string> out;
  if (matcher.excluded(".dockerignore")) out.push_back(".dockerignore");
  const std::string df = relative(dockerfile);
  if (!df.empty() && df != ".dockerignore" && matcher.excluded(df)) out.push_back(df);
  return out;
}

}  // namespace berth::agent::build
