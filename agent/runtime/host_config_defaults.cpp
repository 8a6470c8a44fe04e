#include "agent/runtime/host_config_defaults.h"

#include "agent/runtime/log_rotate.h"

namespace berth::agent::runtime {

using nlohmann::json;

void fill_run_defaults(json& hc) {
  json& lc = hc["LogConfig"];
  if (!lc.is_object()) lc = json::object();
  if (!lc.contains("Type") || !lc["Type"].is_string() || lc["Type"].get<std::string>().empty())
    lc["Type"] = "json-file";
  if (!lc.contains("Config") || !lc["Config"].is_object()) lc["Config"] = json::object();
  parse_log_rotation(lc);
  if (!hc.contains("Runtime") || !hc["Runtime"].is_string() ||
      hc["Runtime"].get<std::string>().empty())
    hc["Runtime"] = "runc";
}

}  // namespace berth::agent::runtime
