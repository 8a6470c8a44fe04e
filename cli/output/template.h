#pragma once
// A subset of Go's text/template, as docker's --format uses it, over JSON values.
//   text {{.Field}} {{.A.B}} {{.}}                 fields; a missing key is "<no value>"
//   {{json .}} {{upper .X}} {{lower .X}} {{title .X}}
//   {{join .List ","}} {{split .S ","}} {{index .Map "key"}} {{index .List 0}}
//   {{truncate .S 5}} {{println .X}}
//   {{.X | upper}}                                  pipelines: the value is the last argument
//   {{- .X -}}                                      trims the whitespace beside the action
// Like docker, the two-character sequences \t and \n in the template become tab and newline.
// Printing follows Go's %v: strings raw, numbers and bools as text, null "<no value>",
// arrays [a b c], objects map[k:v ...] (keys sorted).
#include <nlohmann/json.hpp>

#include <memory>
#include <string>
#include <vector>

namespace berth::cli {

class Template {
 public:
  // Throws UsageError naming the template and what is wrong with it.
  static Template parse(const std::string& text);
  // Throws UsageError when an action cannot be evaluated (e.g. a field of a string).
  std::string render(const nlohmann::json& data) const;

  struct Node;

 private:
  std::string source_;
  std::vector<std::shared_ptr<const Node>> nodes_;
};

// Go's %v formatting of a JSON value.
std::string format_value(const nlohmann::json& value);

}  // namespace berth::cli
