#pragma once
// `berth ls`: filters and output formats.
//
// Fields for --format templates and the keys of --format json:
//   {{.Name}}           string   machine name
//   {{.Active}}         bool     true for the machine docker talks to now
//   {{.ActiveHost}}     string   "*" or "-", as the ACTIVE column shows it
//   {{.DriverName}}     string   driver, e.g. "generic"
//   {{.State}}          string   e.g. "Running", "Stopped", "Error"
//   {{.URL}}            string   Docker endpoint, e.g. tcp://192.0.2.7:2376
//   {{.DockerVersion}}  string   engine version, or "Unknown"
//   {{.Error}}          string   why the machine could not be queried
//   {{.Labels}}         list     engine labels "k=v"
//   {{.Swarm}}          string
//   {{.Forwards}}       string   published ports forwarded to 127.0.0.1 ("8080,8443"),
//                                "on" (none published), "off", or "" (not running)
// "table {{.Name}}\t{{.State}}" prints a table whose headers come from the fields:
// NAME ACTIVE DRIVER STATE URL DOCKER FORWARDS ERRORS LABELS SWARM.
#include <regex>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace berth::cli {

struct LsRow {
  std::string name;
  bool active = false;
  std::string driver, state, url, docker, error;
  std::vector<std::string> labels;  // "k=v" or "k"
  std::string swarm;
  std::string forwards;
};

nlohmann::json to_ls_json(const LsRow& row);

// --filter KEY=VALUE: driver=, state= (case-insensitive), name= (ECMAScript regex,
// searched in the name), label=K or label=K=V. The same key repeated matches
// either value; different keys must all match.
class LsFilter {
 public:
  // Throws UsageError on an unknown key or state, a missing value or an invalid regex.
  static LsFilter parse(const std::vector<std::string>& filters);
  bool matches(const LsRow& row) const;
  // The same without state=: what the store alone can answer.
  bool matches_stored(const LsRow& row) const;
  bool uses_state() const { return !states_.empty(); }
  // Whether it looks past the name (driver=, label=, state=).
  bool uses_record() const { return !drivers_.empty() || !labels_.empty() || !states_.empty(); }

 private:
  std::vector<std::string> drivers_, states_, labels_;  // drivers_/states_ lower-case
  std::vector<std::regex> names_;
};

// quiet: names, one a line. format "" or "table": the default table. "json": one
// object a line. "table TEMPLATE": a table of TEMPLATE's cells (split on tabs).
// Anything else: TEMPLATE rendered for each row, one a line.
// Throws UsageError for a malformed template.
std::string format_ls(const std::vector<LsRow>& rows, const std::string& format, bool quiet);

}  // namespace berth::cli
