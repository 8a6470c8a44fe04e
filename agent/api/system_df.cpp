// GET /system/df (docker system df [-v]): images with their shared sizes and
// container counts, containers with their sizes, volumes with their usage.
// The build cache's steps are images here, so BuildCache is always [].
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "agent/api/images.h"
#include "agent/api/request_body.h"
#include "agent/api/routes.h"
#include "agent/runtime/container_manager.h"

namespace berth::agent::api {
namespace {
using nlohmann::json;

// ?type=container&type=image...: which sections to fill (all when none).
std::set<std::string> wanted_types(const Request& req) {
  std::set<std::string> out;
  for (const auto& t : query_values(req, "type")) {
    if (t != "container" && t != "image" && t != "volume" && t != "build-cache")
      throw HttpError(400, "unknown object type: " + t);
    out.insert(t);
  }
  if (out.empty()) out = {"container", "image", "volume", "build-cache"};
  return out;
}

Response disk_usage(Engine& engine, const Request& req) {
  const auto types = wanted_types(req);
  json out = {{"LayersSize", 0}, {"Images", nullptr}, {"Containers", nullptr}, {"Volumes", nullptr},
              {"BuildCache", nullptr}};
  if (types.count("image")) {
    const auto images = engine.images.images();
    // How many images hold each layer, over every image (as dockerd counts).
    std::map<std::string, int> layer_refs;
    std::map<std::string, std::uint64_t> layer_size;
    for (const auto& rec : images)
      for (const auto& chain : rec.chain_ids)
        if (++layer_refs[chain] == 1)
          if (auto info = engine.images.layer(chain)) layer_size[chain] = info->size;
    std::uint64_t total = 0;
    for (const auto& [chain, size] : layer_size) total += size;
    json list = json::array();
    for (const auto& rec : images) {
      if (engine.intermediate_image && engine.intermediate_image(rec.id)) continue;
      std::uint64_t shared = 0;
      for (const auto& chain : rec.chain_ids)
        if (layer_refs[chain] > 1) shared += layer_size[chain];
      json s = image_summary_json(rec);
      s["SharedSize"] = shared;
      s["Containers"] = engine.containers.users_of_image(rec.id).size();
      list.push_back(std::move(s));
    }
    out["LayersSize"] = total;
    out["Images"] = std::move(list);
  }
  if (types.count("container")) {
    // SizeRw, and SizeRootFs with the image's layers.
    out["Containers"] = engine.containers.list({.all = true, .size = true});
  }
  if (types.count("volume")) {
    json list = json::array();
    for (const auto& v : engine.volumes.list()) list.push_back(engine.volumes.to_json(v, true));
    out["Volumes"] = std::move(list);
  }
  if (types.count("build-cache")) out["BuildCache"] = json::array();
  return Response::json(200, out);
}

}  // namespace

void add_system_df_routes(Router& router, Engine& engine) {
  Engine* e = &engine;
  router.add("GET", "/system/df", [e](const Request& req) { return disk_usage(*e, req); });
}

}  // namespace berth::agent::api
