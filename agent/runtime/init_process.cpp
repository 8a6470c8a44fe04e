#include "agent/runtime/init_process.h"

#include "agent/api/http.h"

namespace berth::agent::runtime {

namespace fs = std::filesystem;
using nlohmann::json;

std::optional<fs::path> find_init_binary(const std::vector<fs::path>& candidates) {
  std::error_code ec;
  for (const fs::path& p : candidates)
    if (fs::is_regular_file(p, ec) &&
        (fs::status(p, ec).permissions() &
         (fs::perms::owner_exec | fs::perms::group_exec | fs::perms::others_exec)) != fs::perms::none)
      return p;
  return std::nullopt;
}

void apply_init(json& spec, const json& hc, const std::optional<fs::path>& init_binary) {
  if (!hc.is_object() || !hc.contains("Init") || !hc["Init"].is_boolean() || !hc["Init"].get<bool>())
    return;
  if (!init_binary)
    throw api::HttpError(500, "exec: \"docker-init\": executable file not found in $PATH");
  json& args = spec["process"]["args"];
  json with_init = json::array({kInitPath, "--"});
  for (const json& a : args) with_init.push_back(a);
  args = with_init;
  spec["mounts"].push_back({{"destination", kInitPath},
                            {"type", "bind"},
                            {"source", init_binary->string()},
                            {"options", {"bind", "ro"}}});
}

}  // namespace berth::agent::runtime
