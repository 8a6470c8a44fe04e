#include "agent/build/parser.h"

#include <cctype>
#include <charconv>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>

#include "agent/build/error.h"
#include "agent/build/expand.h"
#include "agent/build/text.h"

namespace berth::agent::build {
namespace {

// A parse failure before the line is known; Parser adds it.
struct ParseFailure {
  std::string message;
};

// [\t\v\f\r ], the separator of buildkit's reWhitespace.
bool is_blank(char c) { return c == ' ' || c == '\t' || c == '\v' || c == '\f' || c == '\r'; }

std::string_view trim_left_space(std::string_view s) {
  while (!s.empty()) {
    text::Rune r = text::decode(s, 0);
    if (!r.valid || !text::is_space(r.cp)) break;
    s.remove_prefix(r.width);
  }
  return s;
}

// Go's TrimRight(s, "\r\n").
std::string_view trim_newline(std::string_view s) {
  while (!s.empty() && (s.back() == '\r' || s.back() == '\n')) s.remove_suffix(1);
  return s;
}

bool is_comment(std::string_view line) {
  std::string_view t = trim_left_space(trim_newline(line));
  return !t.empty() && t.front() == '#';
}

// Strips a trailing escape char (and blanks after it) that continues the line.
// Like buildkit's regexp, an escape preceded by another escape is literal.
bool continues(std::string_view& line, char escape) {
  std::size_t end = line.size();
  while (end > 0 && (line[end - 1] == ' ' || line[end - 1] == '\t')) --end;
  if (end == 0 || line[end - 1] != escape) return false;
  if (end >= 2 && line[end - 2] == escape) return false;
  line = line.substr(0, end - 1);
  return true;
}

// Splits text on runs of blanks (buildkit's reWhitespace.Split(s, -1)).
std::vector<std::string> split_blanks(std::string_view s) {
  std::vector<std::string> out;
  std::size_t i = 0;
  for (;;) {
    std::size_t j = i;
    while (j < s.size() && !is_blank(s[j])) ++j;
    out.emplace_back(s.substr(i, j - i));
    if (j >= s.size()) break;
    while (j < s.size() && is_blank(s[j])) ++j;
    i = j;
  }
  return out;
}

// --flag words after the keyword (buildkit's extractBuilderFlags): quotes and
// backslashes are processed, "--" ends the flags. Returns the rest.
std::string_view extract_flags(std::string_view line, std::vector<std::string>& flags) {
  enum { kSpaces, kWord, kQuote } phase = kSpaces;
  std::string word;
  char quote = 0;
  bool blank_ok = false;
  for (std::size_t pos = 0; pos <= line.size(); ++pos) {
    const char ch = pos < line.size() ? line[pos] : '\0';
    if (phase == kSpaces) {
      if (pos == line.size()) break;
      if (text::is_ascii_space(ch)) continue;
      if (ch != '-' || pos + 1 == line.size() || line[pos + 1] != '-') return line.substr(pos);
      phase = kWord;
    }
    if (pos == line.size()) {
      if (word != "--" && (blank_ok || !word.empty())) flags.push_back(word);
      break;
    }
    if (phase == kWord) {
      if (text::is_ascii_space(ch)) {
        phase = kSpaces;
        if (word == "--") return line.substr(pos);
        if (blank_ok || !word.empty()) flags.push_back(word);
        word.clear();
        blank_ok = false;
        continue;
      }
      if (ch == '\'' || ch == '"') {
        quote = ch;
        blank_ok = true;
        phase = kQuote;
        continue;
      }
      if (ch == '\\') {
        if (pos + 1 == line.size()) continue;
        ++pos;
      }
      word += line[pos];
      continue;
    }
    // kQuote
    if (ch == quote) {
      phase = kWord;
      continue;
    }
    if (ch == '\\') {
      if (pos + 1 == line.size()) {
        phase = kWord;
        continue;
      }
      ++pos;
    }
    word += line[pos];
  }
  return {};
}

// Words keeping their quotes and escapes (buildkit's parseWords, for ENV,
// LABEL and ARG): only blanks outside quotes separate them.
std::vector<std::string> parse_words(std::string_view rest, char escape) {
  enum { kSpaces, kWord, kQuote } phase = kSpaces;
  std::vector<std::string> words;
  std::string word;
  char32_t quote = 0;
  bool blank_ok = false;
  std::size_t width = 0;
  for (std::size_t pos = 0; pos <= rest.size(); pos += width) {
    text::Rune r{0, 0, true};
    if (pos < rest.size()) r = text::decode(rest, pos);
    width = r.width;
    char32_t ch = r.valid ? r.cp : 0xFFFD;
    std::string_view bytes = rest.substr(pos, width);
    if (phase == kSpaces) {
      if (pos == rest.size()) break;
      if (text::is_space(ch)) continue;
      phase = kWord;
    }
    if (pos == rest.size()) {
      if (blank_ok || !word.empty()) words.push_back(word);
      break;
    }
    const bool is_escape = ch == static_cast<unsigned char>(escape);
    if (phase == kWord) {
      if (text::is_space(ch)) {
        phase = kSpaces;
        if (blank_ok || !word.empty()) words.push_back(word);
        word.clear();
        blank_ok = false;
        continue;
      }
      if (ch == '\'' || ch == '"') {
        quote = ch;
        blank_ok = true;
        phase = kQuote;
      }
      if (is_escape) {
        if (pos + width == rest.size()) continue;  // an escape at the end is dropped
        word.append(bytes);
        pos += width;
        r = text::decode(rest, pos);
        width = r.width;
        bytes = rest.substr(pos, width);
      }
      word.append(bytes);
      continue;
    }
    // kQuote
    if (ch == quote) phase = kWord;
    if (is_escape && quote != '\'') {
      if (pos + width == rest.size()) {
        phase = kWord;
        continue;
      }
      word.append(bytes);
      pos += width;
      r = text::decode(rest, pos);
      width = r.width;
      bytes = rest.substr(pos, width);
    }
    word.append(bytes);
  }
  return words;
}

// Collects a JSON array's strings without building a DOM (no recursion on
// deeply nested input).
class StringArray final : public nlohmann::json_sax<nlohmann::json> {
 public:
  std::vector<std::string> strings;
  bool only_strings = true;

  bool null() override { return other(); }
  bool boolean(bool) override { return other(); }
  bool number_integer(number_integer_t) override { return other(); }
  bool number_unsigned(number_unsigned_t) override { return other(); }
  bool number_float(number_float_t, const string_t&) override { return other(); }
  bool string(string_t& s) override {
    if (depth_ == 1) {
      strings.push_back(s);
    } else {
      only_strings = false;
    }
    return true;
  }
  bool binary(binary_t&) override { return other(); }
  bool start_object(std::size_t) override {
    ++depth_;
    only_strings = false;
    return true;
  }
  bool key(string_t&) override { return true; }
  bool end_object() override {
    --depth_;
    return true;
  }
  bool start_array(std::size_t) override {
    if (++depth_ > 1) only_strings = false;
    return true;
  }
  bool end_array() override {
    --depth_;
    return true;
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) override {
    return false;
  }

 private:
  bool other() {
    only_strings = false;
    return true;
  }
  int depth_ = 0;
};

// The text as a JSON array of strings; nullopt when it is not JSON. A JSON
// array holding anything but strings is an error, as in buildkit.
std::optional<std::vector<std::string>> parse_json_array(std::string_view rest) {
  rest = trim_left_space(rest);
  if (rest.empty() || rest.front() != '[') return std::nullopt;
  StringArray sax;
  if (!nlohmann::json::sax_parse(rest.begin(), rest.end(), &sax)) return std::nullopt;
  if (!sax.only_strings)
    throw ParseFailure{"when using JSON array syntax, arrays must be comprised of strings only"};
  return std::move(sax.strings);
}

// Per-keyword argument parsing: buildkit's line_parsers.go.
void parse_args(Node& node, std::string_view rest, char escape, int depth);

void maybe_json(Node& node, std::string_view rest) {
  if (rest.empty()) return;
  if (auto json = parse_json_array(rest)) {
    node.args = std::move(*json);
    node.json = true;
    return;
  }
  node.args = {std::string(rest)};
}

void maybe_json_list(Node& node, std::string_view rest) {
  if (auto json = parse_json_array(rest)) {
    node.args = std::move(*json);
    node.json = true;
    return;
  }
  if (!rest.empty()) node.args = split_blanks(rest);
}

void name_value(Node& node, std::string_view rest, char escape, const std::string& keyword) {
  auto words = parse_words(rest, escape);
  if (words.empty()) return;
  if (words[0].find('=') == std::string::npos) {
    // Legacy "ENV key the rest": the value is everything after the first blank run.
    std::size_t i = 0;
    while (i < rest.size() && !is_blank(rest[i])) ++i;
    std::size_t j = i;
    while (j < rest.size() && is_blank(rest[j])) ++j;
    if (i == rest.size()) throw ParseFailure{keyword + " must have two arguments"};
    node.args = {std::string(rest.substr(0, i)), std::string(rest.substr(j))};
    return;
  }
  for (const std::string& word : words) {
    const auto eq = word.find('=');
    if (eq == std::string::npos)
      throw ParseFailure{"Syntax error - can't find = in " + text::go_quote(word) +
                         ". Must be of the form: name=value"};
    node.args.push_back(word.substr(0, eq));
    node.args.push_back(word.substr(eq + 1));
  }
}

void health(Node& node, std::string_view rest) {
  std::size_t sep = 0;
  while (sep < rest.size() && !text::is_ascii_space(rest[sep])) ++sep;
  if (sep == 0) return;
  std::size_t next = sep;
  while (next < rest.size() && text::is_ascii_space(rest[next])) ++next;
  Node cmd;
  maybe_json(cmd, rest.substr(next));
  node.args = {std::string(rest.substr(0, sep))};
  node.args.insert(node.args.end(), cmd.args.begin(), cmd.args.end());
  node.json = cmd.json;
}

Node node_from_line(std::string_view line, char escape, int depth) {
  Node node;
  node.original = std::string(line);
  std::string_view trimmed = text::trim_space(line);
  std::size_t k = 0;
  while (k < trimmed.size() && !is_blank(trimmed[k])) ++k;
  node.keyword = std::string(trimmed.substr(0, k));
  while (k < trimmed.size() && is_blank(trimmed[k])) ++k;
  std::string_view rest;
  if (k < trimmed.size()) rest = text::trim_space(extract_flags(trimmed.substr(k), node.flags));
  parse_args(node, rest, escape, depth);
  return node;
}

void parse_args(Node& node, std::string_view rest, char escape, int depth) {
  const std::string kw = text::to_lower(node.keyword);
  if (kw == "add" || kw == "copy" || kw == "volume") {
    maybe_json_list(node, rest);
  } else if (kw == "run" || kw == "cmd" || kw == "entrypoint" || kw == "shell") {
    maybe_json(node, rest);
  } else if (kw == "env" || kw == "label") {
    name_value(node, rest, escape, text::to_upper(kw));
  } else if (kw == "arg") {
    node.args = parse_words(rest, escape);
  } else if (kw == "expose" || kw == "from") {
    if (!rest.empty()) node.args = split_blanks(rest);
  } else if (kw == "healthcheck") {
    health(node, rest);
  } else if (kw == "maintainer" || kw == "stopsignal" || kw == "user" || kw == "workdir") {
    if (!rest.empty()) node.args = {std::string(rest)};
  } else if (kw == "onbuild") {
    // A chained ONBUILD ONBUILD is rejected later; not parsing deeper bounds
    // the recursion.
    if (rest.empty()) return;
    if (depth > 0) {
      node.args = {std::string(rest)};
      return;
    }
    Node trigger = node_from_line(rest, escape, depth + 1);
    node.args = {trigger.keyword};
    node.args.insert(node.args.end(), trigger.args.begin(), trigger.args.end());
    node.sub.push_back(std::move(trigger));
  }
}

bool can_contain_heredoc(const Node& node) {
  const Node* n = &node;
  if (text::iequals(n->keyword, "onbuild") && !n->sub.empty()) n = &n->sub[0];
  const std::string kw = text::to_lower(n->keyword);
  return (kw == "run" || kw == "copy" || kw == "add") && !n->json;
}

std::vector<Heredoc> heredocs_from_line(std::string_view line) {
  ExpandOptions raw;
  raw.keep_quotes = true;
  raw.keep_escapes = true;
  raw.keep_unset = true;
  raw.heredoc_words = true;
  std::vector<std::string> words;
  try {
    words = expand_words(line, VarMap(), raw);
  } catch (const BuildError&) {
    return {};  // buildkit ignores a line its lexer rejects
  }
  std::vector<Heredoc> docs;
  for (const std::string& word : words) {
    Heredoc doc;
    if (parse_heredoc_word(word, doc)) docs.push_back(std::move(doc));
  }
  return docs;
}

// ---- directives ----

bool is_builtin_frontend(std::string_view syntax) {
  std::string_view ref = syntax.substr(0, syntax.find(' '));
  ref = ref.substr(0, ref.find('@'));
  for (std::string_view prefix : {"docker.io/", "index.docker.io/"}) {
    if (ref.substr(0, prefix.size()) == prefix) ref.remove_prefix(prefix.size());
  }
  const auto colon = ref.find(':');
  return ref.substr(0, colon) == "docker/dockerfile";
}

class Parser {
 public:
  Parser(std::string_view text, std::string_view name) : text_(text), name_(name) {}

  ParsedDockerfile run() {
    ParsedDockerfile out;
    std::string_view raw;
    while (scan(raw)) {
      if (line_ == 0 && raw.substr(0, 3) == "\xEF\xBB\xBF") raw.remove_prefix(3);
      ++line_;
      std::string_view first = trim_left_space(trim_newline(raw));
      directive(first, out.directives);
      if (!first.empty() && first.front() == '#') first = {};
      const int start = line_;
      std::string_view piece = first;
      bool more = continues(piece, escape_);
      if (!more && piece.empty()) continue;
      std::string line(piece);

      bool empty_continuation = false;
      while (more && scan(raw)) {
        ++line_;
        std::string_view next = trim_newline(raw);
        directive(next, out.directives);
        if (is_comment(next)) continue;
        if (trim_left_space(next).empty()) {
          empty_continuation = true;
          continue;
        }
        more = continues(next, escape_);
        line.append(next);
      }
      if (empty_continuation) out.warnings.push_back("Empty continuation line found in: " + line);

      Node node;
      try {
        node = node_from_line(line, escape_, 0);
        if (can_contain_heredoc(node) && line.find("<<") != std::string::npos)
          read_heredocs(node, line);
      } catch (const ParseFailure& f) {
        fail(f.message, start);
      } catch (const BuildError& e) {
        fail(e.what(), start);
      }
      node.start_line = start;
      node.end_line = line_;
      out.nodes.push_back(std::move(node));
    }
    check_syntax(out.directives);
    if (out.nodes.empty()) fail("file with no instructions", line_);
    out.directives.escape = escape_;
    return out;
  }

 private:
  // The next line, its "\n" kept; false at the end.
  bool scan(std::string_view& line) {
    if (pos_ >= text_.size()) return false;
    std::size_t end = text_.find('\n', pos_);
    end = end == std::string_view::npos ? text_.size() : end + 1;
    line = text_.substr(pos_, end - pos_);
    pos_ = end;
    return true;
  }

  [[noreturn]] void fail(const std::string& message, int line) const {
    throw BuildError("failed to parse " + std::string(name_) + ": " + message, line);
  }

  // Reads `# key=value` lines until the first other line.
  void directive(std::string_view line, Directives& d) {
    if (directives_done_) return;
    if (!parse_directive(line, d)) {
      directives_done_ = true;
      check_syntax(d);
    }
  }

  // One `# key=value` line into `d`; false when the line is not a directive.
  bool parse_directive(std::string_view line, Directives& d) {
    if (line.empty() || line.front() != '#') return false;
    line = trim_left_space(line.substr(1));
    std::size_t k = 0;
    if (k < line.size() && ((line[k] | 0x20) >= 'a' && (line[k] | 0x20) <= 'z')) {
      while (k < line.size() && (std::isalnum(static_cast<unsigned char>(line[k])) != 0)) ++k;
    }
    std::string key = text::to_lower(line.substr(0, k));
    std::string_view rest = line.substr(k);
    while (!rest.empty() && text::is_ascii_space(rest.front())) rest.remove_prefix(1);
    if (key.empty() || rest.empty() || rest.front() != '=') return false;
    std::string_view value = text::trim_space(rest.substr(1));
    if (value.empty() || (key != "escape" && key != "syntax" && key != "check")) return false;
    if (!seen_.insert(key).second) fail("only one " + key + " parser directive can be used", line_);
    if (key == "escape") {
      if (value != "\\" && value != "`")
        fail("invalid escape token '" + std::string(value) + "' does not match ` or \\", line_);
      escape_ = value.front();
    } else if (key == "syntax") {
      d.syntax = std::string(value);
      d.syntax_line = line_;
    } else {
      d.check = std::string(value);
    }
    return true;
  }

  void check_syntax(const Directives& d) const {
    if (d.syntax.empty() || is_builtin_frontend(d.syntax)) return;
    throw BuildError("unsupported Dockerfile frontend " + text::go_quote(d.syntax) +
                         " (# syntax= on line " + std::to_string(d.syntax_line) +
                         "): berth-agent only has the built-in Dockerfile frontend; use "
                         "docker/dockerfile:1 or remove the directive",
                     d.syntax_line);
  }

  void read_heredocs(Node& node, const std::string& line) {
    node.heredocs = heredocs_from_line(line);
    for (Heredoc& doc : node.heredocs) {
      bool terminated = false;
      std::string_view raw;
      while (scan(raw)) {
        ++line_;
        std::string_view candidate = trim_newline(raw);
        if (doc.chomp) {
          while (!candidate.empty() && candidate.front() == '\t') candidate.remove_prefix(1);
        }
        if (candidate == doc.name) {
          terminated = true;
          break;
        }
        doc.content.append(raw);
      }
      if (!terminated) throw ParseFailure{"unterminated heredoc"};
    }
  }

  std::string_view text_;
  std::string_view name_;
  std::size_t pos_ = 0;
  int line_ = 0;
  char escape_ = '\\';
  bool directives_done_ = false;
  std::set<std::string> seen_;
};

}  // namespace

std::string Heredoc::body() const {
  if (!chomp) return content;
  std::string out;
  bool line_start = true;
  for (char c : content) {
    if (line_start && c == '\t') continue;
    line_start = c == '\n';
    out += c;
  }
  return out;
}

bool parse_heredoc_word(std::string_view word, Heredoc& out) {
  std::size_t i = 0;
  while (i < word.size() && word[i] >= '0' && word[i] <= '9') ++i;
  std::string_view digits = word.substr(0, i);
  if (word.substr(i, 2) != "<<") return false;
  i += 2;
  const bool chomp = i < word.size() && word[i] == '-';
  if (chomp) ++i;
  std::string_view rest = word.substr(i);
  if (rest.find('<') != std::string_view::npos) return false;
  while (!rest.empty() && text::is_ascii_space(rest.front())) rest.remove_prefix(1);
  if (rest.empty()) return false;

  ExpandOptions plain;
  plain.keep_unset = true;
  auto words = expand_words(rest, VarMap(), plain);
  if (words.size() != 1) return false;
  ExpandOptions quoted = plain;
  quoted.keep_quotes = true;
  auto raw = expand_words(rest, VarMap(), quoted);
  if (raw.size() != 1)
    throw BuildError("internal lexing of heredoc produced inconsistent results: " +
                     std::string(rest));
  auto quotes = [](const std::string& s) {
    std::size_t n = 0;
    for (char c : s) n += (c == '\'' || c == '"') ? 1 : 0;
    return n;
  };
  out = Heredoc{};
  out.name = words[0];
  out.expand = quotes(words[0]) == quotes(raw[0]);
  out.chomp = chomp;
  unsigned fd = 0;
  if (!digits.empty()) {
    auto [p, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), fd);
    if (ec != std::errc()) fd = 0;
  }
  out.fd = fd;
  return true;
}

ParsedDockerfile parse_dockerfile(std::string_view text, std::string_view name) {
  if (text.empty()) throw BuildError("the Dockerfile (" + std::string(name) + ") cannot be empty");
  return Parser(text, name).run();
}

}  // namespace berth::agent::build
