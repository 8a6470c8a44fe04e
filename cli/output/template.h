#pragma once
// A subset of Go's text/template, as docker's --format uses it, over JSON values.
//   text {{.Field}} {{.A.B}} {{.}}                 fields; a missing key is "<no value>"
//   {{json .}} {{upper .X}} {{lower .X}} {{title .X}}
//   {{join .List ","}} {{split .S ","}} {{index .Map "key"}} {{index .List 0}}
//   {{truncate .S 5}} {{println .X}}
//   {{.X | upper}}                                  pipelines: the value is the last argument
//   {{- .X -}}                                      trims the whitespace beside the action
//   {{if .X}}..{{else if .Y}}..{{else}}..{{end}}    false, 0, null, "" and empty lists and maps are false
//   {{with .X}}..{{.}}..{{else}}..{{end}}           . is .X inside
//   {{range .List}}..{{.}}..{{else}}..{{end}}       . is each item (a map's values, by key); else when empty
//   {{$.Name}}                                      $ is the data the template started with
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
  // A field missing from an object: "<no value>" (Go's maps), or an Error naming
  // the field and the fields there are (Go's structs, what --format users expect).
  enum class Missing { NoValue, Fail };
  // Throws UsageError when an action cannot be evaluated (e.g. a field of a string).
  std::string render(const nlohmann::json& data, Missing missing = Missing::NoValue) const;

  struct Node;

 private:
  std::string source_;
  std::vector<std::shared_ptr<const Node>> nodes_;
};

// Go's %v formatting of a JSON value.
std::string format_value(const nlohmann::json& value);

}  // namespace berth::cli
