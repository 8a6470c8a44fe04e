#include "cli/output/template.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <functional>
#include <map>
#include <string_view>

#include "core/error.h"

namespace berth::cli {

using nlohmann::json;

namespace {

struct Operand {
  enum class Kind { Field, Literal } kind = Kind::Field;
  std::vector<std::string> path;  // Field: {} is "."
  bool from_root = false;         // Field: $ or $.path
  json literal;                   // Literal: string or integer
};

struct Command {
  std::string function;        // empty: the command is a single operand
  std::vector<Operand> args;
};

using Pipeline = std::vector<Command>;

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

bool is_ident_char(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }

std::string replace_all(std::string s, std::string_view from, std::string_view to) {
  for (size_t pos = 0; (pos = s.find(from, pos)) != std::string::npos; pos += to.size()) s.replace(pos, from.size(), to);
  return s;
}

std::string ascii_map(std::string s, int (*f)(int)) {
  for (char& c : s) c = static_cast<char>(f(static_cast<unsigned char>(c)));
  return s;
}

}  // namespace

struct Template::Node {
  enum class Kind { Text, Action, If, With, Range } kind = Kind::Text;
  std::string text;
  Pipeline pipeline;
  std::string source;  // the action as written, for error messages
  std::vector<std::shared_ptr<const Node>> body, otherwise;  // If/With/Range: then and {{else}}
};

namespace {

[[noreturn]] void render_error(const std::string& action, const std::string& why) {
  throw UsageError("template action " + action + ": " + why);
}

const json& as_string_arg(const json& v, const std::string& fn, const std::string& action) {
  if (!v.is_string()) render_error(action, fn + " needs a string, got " + std::string(v.type_name()));
  return v;
}

long long as_int_arg(const json& v, const std::string& fn, const std::string& action) {
  if (!v.is_number_integer()) render_error(action, fn + " needs an integer, got " + std::string(v.type_name()));
  return v.get<long long>();
}

json call_function(const std::string& name, const std::vector<json>& a, const std::string& action) {
  if (name == "json") return a[0].dump(-1, ' ', false, json::error_handler_t::replace);
  if (name == "upper") return ascii_map(format_value(a[0]), ::toupper);
  if (name == "lower") return ascii_map(format_value(a[0]), ::tolower);
  if (name == "title") {
    std::string s = format_value(a[0]);
    bool start = true;
    for (char& c : s) {
      if (start) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
      start = std::isspace(static_cast<unsigned char>(c)) != 0;
    }
    return s;
  }
  if (name == "join") {
    if (a[0].is_null()) return "";
    if (!a[0].is_array()) render_error(action, "join needs a list, got " + std::string(a[0].type_name()));
    const std::string sep = as_string_arg(a[1], "join", action).get<std::string>();
    std::string out;
    for (size_t i = 0; i < a[0].size(); ++i) out += (i ? sep : "") + format_value(a[0][i]);
    return out;
  }
  if (name == "split") {
    const std::string s = as_string_arg(a[0], "split", action).get<std::string>();
    const std::string sep = as_string_arg(a[1], "split", action).get<std::string>();
    json out = json::array();
    if (sep.empty()) {
      for (char c : s) out.push_back(std::string(1, c));
      return out;
    }
    size_t start = 0;
    for (size_t pos; (pos = s.find(sep, start)) != std::string::npos; start = pos + sep.size())
      out.push_back(s.substr(start, pos - start));
    out.push_back(s.substr(start));
    return out;
  }
  if (name == "index") {
    json cur = a[0];
    for (size_t i = 1; i < a.size(); ++i) {
      if (cur.is_object()) {
        const std::string key = as_string_arg(a[i], "index of a map", action).get<std::string>();
        auto it = cur.find(key);
        cur = it == cur.end() ? json() : *it;
      } else if (cur.is_array() || cur.is_string()) {
        const long long n = as_int_arg(a[i], "index of a list", action);
        const auto size = static_cast<long long>(cur.is_array() ? cur.size() : cur.get<std::string>().size());
        if (n < 0 || n >= size) render_error(action, "index out of range: " + std::to_string(n));
        cur = cur.is_array() ? cur[static_cast<size_t>(n)]
                             : json(static_cast<int>(static_cast<unsigned char>(cur.get<std::string>()[n])));
      } else if (cur.is_null()) {
        return json();
      } else {
        render_error(action, "can't index a " + std::string(cur.type_name()));
      }
    }
    return cur;
  }
  if (name == "truncate") {
    std::string s = format_value(a[0]);
    const long long n = as_int_arg(a[1], "truncate", action);
    if (n >= 0 && static_cast<size_t>(n) < s.size()) s.resize(static_cast<size_t>(n));
    return s;
  }
  if (name == "println") {
    std::string out;
    for (size_t i = 0; i < a.size(); ++i) out += (i ? " " : "") + format_value(a[i]);
    return out + "\n";
  }
  render_error(action, "unknown function " + name);
}

const std::map<std::string, int>& function_arity() {
  // Argument counts; -N: at least N.
  static const std::map<std::string, int> m = {
      {"json", 1},  {"upper", 1}, {"lower", 1},    {"title", 1},    {"join", 2},
      {"split", 2}, {"index", -2}, {"truncate", 2}, {"println", -1},
  };
  return m;
}

// Parses one action's inside (between "{{" and "}}", trim markers removed).
class ActionParser {
 public:
  ActionParser(std::string_view body, std::function<void(const std::string&)> fail)
      : s_(body), fail_(std::move(fail)) {}

  Pipeline parse() {
    Pipeline p;
    while (true) {
      p.push_back(command());
      skip_space();
      if (at_end()) break;
      if (s_[i_] != '|') fail_("unexpected '" + std::string(1, s_[i_]) + "'");
      ++i_;
    }
    for (size_t k = 1; k < p.size(); ++k)
      if (p[k].function.empty()) fail_("a pipeline stage after '|' must be a function");
    for (const auto& c : p) {
      if (c.function.empty()) continue;
      const int want = function_arity().at(c.function);
      // A later stage receives the previous value as its last argument.
      const size_t got = c.args.size() + (&c == &p.front() ? 0 : 1);
      if (want > 0 && got != static_cast<size_t>(want))
        fail_(c.function + " takes " + std::to_string(want) + " argument" + (want == 1 ? "" : "s") + ", got " +
              std::to_string(got));
      if (want < 0 && got < static_cast<size_t>(-want))
        fail_(c.function + " takes at least " + std::to_string(-want) + " argument" + (want == -1 ? "" : "s"));
    }
    return p;
  }

 private:
  bool at_end() const { return i_ >= s_.size(); }
  void skip_space() {
    while (!at_end() && std::isspace(static_cast<unsigned char>(s_[i_]))) ++i_;
  }

  Command command() {
    Command c;
    skip_space();
    if (at_end() || s_[i_] == '|') fail_("missing value");
    if (std::isalpha(static_cast<unsigned char>(s_[i_]))) {
      size_t start = i_;
      while (!at_end() && is_ident_char(s_[i_])) ++i_;
      c.function = std::string(s_.substr(start, i_ - start));
      if (!function_arity().count(c.function))
        fail_("function \"" + c.function + "\" not defined (known: json, upper, lower, title, join, split, index, "
              "truncate, println)");
    }
    while (true) {
      skip_space();
      if (at_end() || s_[i_] == '|') break;
      c.args.push_back(operand());
    }
    if (c.function.empty() && c.args.size() != 1) fail_("a value can't take arguments; did you mean a function?");
    return c;
  }

  Operand operand() {
    Operand o;
    char ch = s_[i_];
    if (ch == '$') {
      o.from_root = true;
      ++i_;
      if (at_end() || s_[i_] != '.') {
        if (!at_end() && !std::isspace(static_cast<unsigned char>(s_[i_])) && s_[i_] != '|')
          fail_("variables other than $ are not supported");
        return o;
      }
      ch = '.';
    }
    if (ch == '.') {
      ++i_;
      while (true) {
        size_t start = i_;
        while (!at_end() && is_ident_char(s_[i_])) ++i_;
        if (start == i_) {
          if (!o.path.empty() || (!at_end() && !std::isspace(static_cast<unsigned char>(s_[i_])) && s_[i_] != '|'))
            fail_("bad field name");
          break;
        }
        o.path.emplace_back(s_.substr(start, i_ - start));
        if (at_end() || s_[i_] != '.') break;
        ++i_;
      }
      return o;
    }
    o.kind = Operand::Kind::Literal;
    if (ch == '"') {
      o.literal = quoted();
      return o;
    }
    if (ch == '`') {
      size_t end = s_.find('`', i_ + 1);
      if (end == std::string_view::npos) fail_("unterminated raw string");
      o.literal = std::string(s_.substr(i_ + 1, end - i_ - 1));
      i_ = end + 1;
      return o;
    }
    if (std::isdigit(static_cast<unsigned char>(ch)) || ch == '-') {
      size_t start = i_++;
      while (!at_end() && std::isdigit(static_cast<unsigned char>(s_[i_]))) ++i_;
      std::string digits(s_.substr(start, i_ - start));
      if (digits == "-" || (!at_end() && !std::isspace(static_cast<unsigned char>(s_[i_])) && s_[i_] != '|'))
        fail_("bad number");
      o.literal = std::stoll(digits);
      return o;
    }
    if (std::isalpha(static_cast<unsigned char>(ch))) fail_("a function can only come first in a command");
    fail_("unexpected '" + std::string(1, ch) + "'");
    return o;
  }

  std::string quoted() {
    std::string out;
    for (++i_; !at_end(); ++i_) {
      char c = s_[i_];
      if (c == '"') {
        ++i_;
        return out;
      }
      if (c != '\\') {
        out += c;
        continue;
      }
      if (++i_ >= s_.size()) break;
      switch (s_[i_]) {
        case 'n': out += '\n'; break;
        case 't': out += '\t'; break;
        case 'r': out += '\r'; break;
        case '\\': out += '\\'; break;
        case '"': out += '"'; break;
        case '\'': out += '\''; break;
        default: fail_("unknown escape \\" + std::string(1, s_[i_]) + " in string");
      }
    }
    fail_("unterminated string");
    return out;
  }

  std::string_view s_;
  size_t i_ = 0;
  std::function<void(const std::string&)> fail_;
};

json field(const json& base, const std::vector<std::string>& path, const std::string& action, Template::Missing missing) {
  const json* cur = &base;
  static const json null_value;
  for (const auto& name : path) {
    if (cur->is_null()) return null_value;
    if (!cur->is_object())
      render_error(action, "can't evaluate field " + name + " in a " + std::string(cur->type_name()));
    auto it = cur->find(name);
    if (it == cur->end()) {
      if (missing == Template::Missing::NoValue) return null_value;
      std::string known;
      for (const auto& item : cur->items()) known += (known.empty() ? "" : ", ") + item.key();
      throw Error("template action " + action + ": there is no field " + name + "; the fields are: " + known);
    }
    cur = &*it;
  }
  return *cur;
}

// Go's truth: false, 0, null and empty strings, lists and maps are false.
bool truthy(const json& v) {
  switch (v.type()) {
    case json::value_t::null: return false;
    case json::value_t::boolean: return v.get<bool>();
    case json::value_t::number_integer:
    case json::value_t::number_unsigned:
    case json::value_t::number_float: return v.get<double>() != 0;
    case json::value_t::string: return !v.get<std::string>().empty();
    case json::value_t::array:
    case json::value_t::object: return !v.empty();
    default: return true;
  }
}

bool starts_with_word(std::string_view s, std::string_view word) {
  return s.substr(0, word.size()) == word && (s.size() == word.size() || is_space(s[word.size()]));
}

}  // namespace

std::string format_value(const json& v) {
  switch (v.type()) {
    case json::value_t::null: return "<no value>";
    case json::value_t::string: return v.get<std::string>();
    case json::value_t::boolean: return v.get<bool>() ? "true" : "false";
    case json::value_t::number_integer: return std::to_string(v.get<long long>());
    case json::value_t::number_unsigned: return std::to_string(v.get<unsigned long long>());
    case json::value_t::number_float: {
      const double d = v.get<double>();
      if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 1e21) return std::to_string(static_cast<long long>(d));
      return v.dump();
    }
    case json::value_t::array: {
      std::string out = "[";
      for (size_t i = 0; i < v.size(); ++i) out += (i ? " " : "") + format_value(v[i]);
      return out + "]";
    }
    case json::value_t::object: {
      std::string out = "map[";
      bool first = true;
      for (const auto& [k, item] : v.items()) {  // nlohmann::json keeps keys sorted, like Go's fmt
        out += (first ? "" : " ") + k + ":" + format_value(item);
        first = false;
      }
      return out + "]";
    }
    default: return v.dump();
  }
}

Template Template::parse(const std::string& text) {
  Template t;
  t.source_ = text;
  const std::string s = replace_all(replace_all(text, "\\t", "\t"), "\\n", "\n");
  auto fail = [&](const std::string& why) { throw UsageError("invalid template \"" + text + "\": " + why); };
  // Open {{if}}/{{with}}/{{range}} blocks; `chained` for the {{if}} of an {{else if}}, which the same {{end}} closes.
  struct Open {
    std::shared_ptr<Node> node;
    bool in_else = false;
    bool chained = false;
  };
  std::vector<Open> open_blocks;
  auto current = [&]() -> std::vector<std::shared_ptr<const Node>>& {
    if (open_blocks.empty()) return t.nodes_;
    Open& b = open_blocks.back();
    return b.in_else ? b.node->otherwise : b.node->body;
  };
  auto add_text = [&](const std::string& literal) {
    if (literal.empty()) return;
    auto n = std::make_shared<Node>();
    n->text = literal;
    current().push_back(n);
  };
  size_t pos = 0;
  bool trim_next_text = false;
  while (pos <= s.size()) {
    size_t open = s.find("{{", pos);
    std::string literal = s.substr(pos, open == std::string::npos ? std::string::npos : open - pos);
    if (trim_next_text) literal.erase(0, std::find_if_not(literal.begin(), literal.end(), is_space) - literal.begin());
    if (open == std::string::npos) {
      add_text(literal);
      break;
    }
    size_t close = s.find("}}", open + 2);
    if (close == std::string::npos) fail("unclosed action (missing \"}}\")");
    std::string_view body(s.data() + open + 2, close - open - 2);
    const std::string action = std::string("{{") + std::string(body) + "}}";
    // "{{- " and " -}}" trim the whitespace beside the action, as in Go.
    if (body.size() >= 2 && body[0] == '-' && is_space(body[1])) {
      while (!literal.empty() && is_space(literal.back())) literal.pop_back();
      body.remove_prefix(2);
    }
    trim_next_text = false;
    if (body.size() >= 2 && body.back() == '-' && is_space(body[body.size() - 2])) {
      trim_next_text = true;
      body.remove_suffix(2);
    }
    add_text(literal);
    std::string_view trimmed = body;
    while (!trimmed.empty() && is_space(trimmed.front())) trimmed.remove_prefix(1);
    while (!trimmed.empty() && is_space(trimmed.back())) trimmed.remove_suffix(1);
    auto pipeline = [&](std::string_view p) {
      while (!p.empty() && is_space(p.front())) p.remove_prefix(1);
      if (p.empty()) fail("missing value in " + action);
      ActionParser parser(p, [&](const std::string& why) { fail(why + " in " + action); });
      return parser.parse();
    };
    auto open_block = [&](Node::Kind kind, std::string_view rest, bool chained) {
      auto n = std::make_shared<Node>();
      n->kind = kind;
      n->source = action;
      n->pipeline = pipeline(rest);
      current().push_back(n);
      open_blocks.push_back({n, false, chained});
    };
    if (trimmed.substr(0, 2) == "/*") {
      if (trimmed.size() < 4 || trimmed.substr(trimmed.size() - 2) != "*/") fail("unclosed comment in " + action);
    } else if (starts_with_word(trimmed, "if")) {
      open_block(Node::Kind::If, trimmed.substr(2), false);
    } else if (starts_with_word(trimmed, "with")) {
      open_block(Node::Kind::With, trimmed.substr(4), false);
    } else if (starts_with_word(trimmed, "range")) {
      open_block(Node::Kind::Range, trimmed.substr(5), false);
    } else if (starts_with_word(trimmed, "else")) {
      if (open_blocks.empty() || open_blocks.back().in_else) fail(action + " without an {{if}}, {{with}} or {{range}}");
      open_blocks.back().in_else = true;
      std::string_view rest = trimmed.substr(4);
      while (!rest.empty() && is_space(rest.front())) rest.remove_prefix(1);
      if (starts_with_word(rest, "if")) open_block(Node::Kind::If, rest.substr(2), true);
      else if (starts_with_word(rest, "with")) open_block(Node::Kind::With, rest.substr(4), true);
      else if (!rest.empty()) fail("{{else}} takes nothing but 'if' or 'with' in " + action);
    } else if (trimmed == "end") {
      if (open_blocks.empty()) fail("{{end}} without an {{if}}, {{with}} or {{range}}");
      while (open_blocks.back().chained) open_blocks.pop_back();
      open_blocks.pop_back();
    } else {
      auto n = std::make_shared<Node>();
      n->kind = Node::Kind::Action;
      n->source = action;
      n->pipeline = pipeline(trimmed);
      current().push_back(n);
    }
    pos = close + 2;
  }
  if (!open_blocks.empty()) fail("missing {{end}} for " + open_blocks.back().node->source);
  return t;
}

namespace {

struct Renderer {
  const json& root;
  Template::Missing missing;

  json eval(const Template::Node& node, const json& dot) const {
    json value;
    bool first = true;
    for (const Command& c : node.pipeline) {
      std::vector<json> args;
      for (const Operand& o : c.args)
        args.push_back(o.kind == Operand::Kind::Field ? field(o.from_root ? root : dot, o.path, node.source, missing)
                                                      : o.literal);
      if (!first) args.push_back(value);
      value = c.function.empty() ? args.front() : call_function(c.function, args, node.source);
      first = false;
    }
    return value;
  }

  void render(const std::vector<std::shared_ptr<const Template::Node>>& nodes, const json& dot, std::string& out) const {
    using Kind = Template::Node::Kind;
    for (const auto& node : nodes) {
      switch (node->kind) {
        case Kind::Text: out += node->text; break;
        case Kind::Action: out += format_value(eval(*node, dot)); break;
        case Kind::If: render(truthy(eval(*node, dot)) ? node->body : node->otherwise, dot, out); break;
        case Kind::With: {
          const json v = eval(*node, dot);
          if (truthy(v)) render(node->body, v, out);
          else render(node->otherwise, dot, out);
          break;
        }
        case Kind::Range: {
          const json v = eval(*node, dot);
          if (!v.is_null() && !v.is_array() && !v.is_object())
            render_error(node->source, "range can't iterate over a " + std::string(v.type_name()));
          if (!truthy(v)) render(node->otherwise, dot, out);
          for (const auto& item : v) render(node->body, item, out);  // a map's values, by key
          break;
        }
      }
    }
  }
};

}  // namespace

std::string Template::render(const json& data, Missing missing) const {
  std::string out;
  Renderer{data, missing}.render(nodes_, data, out);
  return out;
}

}  // namespace berth::cli
