#include "cli/output/ls_format.h"

#include <algorithm>
#include <cctype>

#include "cli/output/table.h"
#include "cli/output/template.h"
#include "core/error.h"

namespace berth::cli {
namespace {

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

bool any_equal(const std::vector<std::string>& wanted, const std::string& value) {
  return wanted.empty() || std::find(wanted.begin(), wanted.end(), lower(value)) != wanted.end();
}

// label=K matches a label K or K=anything; label=K=V matches exactly.
bool label_matches(const std::string& filter, const std::vector<std::string>& labels) {
  const bool has_value = filter.find('=') != std::string::npos;
  return std::any_of(labels.begin(), labels.end(), [&](const std::string& l) {
    if (has_value) return l == filter;
    return l == filter || l.rfind(filter + "=", 0) == 0;
  });
}

std::vector<std::string> split_lines(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  for (size_t pos; (pos = s.find('\n', start)) != std::string::npos; start = pos + 1) out.push_back(s.substr(start, pos - start));
  if (start < s.size()) out.push_back(s.substr(start));
  return out;
}

std::vector<std::string> split_cells(const std::string& line) {
  std::vector<std::string> out;
  size_t start = 0;
  for (size_t pos; (pos = line.find('\t', start)) != std::string::npos; start = pos + 1)
    out.push_back(line.substr(start, pos - start));
  out.push_back(line.substr(start));
  return out;
}

nlohmann::json header_json() {
  return {{"Name", "NAME"},   {"Active", "ACTIVE"},       {"ActiveHost", "ACTIVE"}, {"DriverName", "DRIVER"},
          {"State", "STATE"}, {"URL", "URL"},             {"DockerVersion", "DOCKER"}, {"Error", "ERRORS"},
          {"Labels", "LABELS"}, {"Swarm", "SWARM"}, {"Forwards", "FORWARDS"}};
}

std::string default_table(const std::vector<LsRow>& rows) {
  std::vector<std::vector<std::string>> cells;
  for (const auto& r : rows) cells.push_back({r.name, r.active ? "*" : "-", r.driver, r.state, r.url, r.docker, r.forwards, r.error});
  return render_table({"NAME", "ACTIVE", "DRIVER", "STATE", "URL", "DOCKER", "FORWARDS", "ERRORS"}, cells);
}

constexpr auto kStrict = Template::Missing::Fail;

// The header row: each field's column name. Throws Error for a field that does not exist.
std::string render_header(const Template& tmpl) {
  try {
    return tmpl.render(header_json(), kStrict);
  } catch (const UsageError&) {  // e.g. {{join .Labels ","}} needs a list
    nlohmann::json h = header_json();
    h["Labels"] = nlohmann::json::array({"LABELS"});
    return tmpl.render(h, kStrict);
  }
}

std::string table_of_template(const std::vector<LsRow>& rows, const std::string& text) {
  const Template tmpl = Template::parse(text);
  const std::string header_text = render_header(tmpl);
  // A template that prints several lines per row gets its first line as the header.
  const auto header_lines = split_lines(header_text);
  const auto headers = header_lines.empty() ? std::vector<std::string>{} : split_cells(header_lines.front());
  std::vector<std::vector<std::string>> cells;
  for (const auto& r : rows)
    for (const auto& line : split_lines(tmpl.render(to_ls_json(r), kStrict))) cells.push_back(split_cells(line));
  return render_table(headers, cells);
}

}  // namespace

nlohmann::json to_ls_json(const LsRow& row) {
  return {{"Name", row.name},   {"Active", row.active}, {"ActiveHost", row.active ? "*" : "-"},
          {"DriverName", row.driver}, {"State", row.state}, {"URL", row.url},
          {"DockerVersion", row.docker}, {"Error", row.error}, {"Labels", row.labels},
          {"Swarm", row.swarm}, {"Forwards", row.forwards}};
}

LsFilter LsFilter::parse(const std::vector<std::string>& filters) {
  LsFilter f;
  for (const auto& text : filters) {
    const auto eq = text.find('=');
    const std::string key = lower(text.substr(0, eq));
    const std::string value = eq == std::string::npos ? "" : text.substr(eq + 1);
    if (eq == std::string::npos || value.empty() ||
        (key != "driver" && key != "state" && key != "name" && key != "label"))
      throw UsageError("invalid filter '" + text + "': use driver=NAME, state=STATE, name=REGEX or label=KEY[=VALUE]");
    if (key == "driver") f.drivers_.push_back(lower(value));
    if (key == "state") {
      static const std::vector<std::string> states = {"running", "stopped", "starting", "stopping", "paused",
                                                      "error", "timeout", "notfound", "unknown"};
      if (!any_equal(states, value))
        throw UsageError("invalid filter '" + text +
                         "': the states are Running, Stopped, Starting, Stopping, Paused, Error, Timeout, NotFound, Unknown");
      f.states_.push_back(lower(value));
    }
    if (key == "label") f.labels_.push_back(value);
    if (key == "name") {
      try {
        f.names_.emplace_back(value, std::regex::ECMAScript);
      } catch (const std::regex_error& e) {
        throw UsageError("invalid filter '" + text + "': bad regular expression: " + e.what());
      }
    }
  }
  return f;
}

bool LsFilter::matches(const LsRow& row) const { return any_equal(states_, row.state) && matches_stored(row); }

bool LsFilter::matches_stored(const LsRow& row) const {
  if (!any_equal(drivers_, row.driver)) return false;
  if (!names_.empty() &&
      std::none_of(names_.begin(), names_.end(), [&](const std::regex& re) { return std::regex_search(row.name, re); }))
    return false;
  if (!labels_.empty() &&
      std::none_of(labels_.begin(), labels_.end(), [&](const std::string& l) { return label_matches(l, row.labels); }))
    return false;
  return true;
}

std::string format_ls(const std::vector<LsRow>& rows, const std::string& format, bool quiet) {
  std::string out;
  if (quiet) {
    for (const auto& r : rows) out += r.name + "\n";
    return out;
  }
  if (format.empty()) return default_table(rows);
  if (format == "json") {
    for (const auto& r : rows) out += to_ls_json(r).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
    return out;
  }
  if (format.rfind("table", 0) == 0) {  // like docker: what follows "table", spaces trimmed
    const auto b = format.find_first_not_of(' ', 5);
    if (b == std::string::npos) return default_table(rows);
    return table_of_template(rows, format.substr(b, format.find_last_not_of(' ') - b + 1));
  }
  const Template tmpl = Template::parse(format);
  render_header(tmpl);  // a misspelt field fails even when there are no machines
  for (const auto& r : rows) out += tmpl.render(to_ls_json(r), kStrict) + "\n";
  return out;
}

}  // namespace berth::cli
