// GET /containers/{id}/stats and POST /containers/{id}/update.
#include <nlohmann/json.hpp>

#include "agent/api/request_body.h"
#include "agent/api/routes.h"
#include "agent/runtime/container_manager.h"

namespace berth::agent::api {

using nlohmann::json;
using runtime::ContainerManager;

void add_container_stats_routes(Router& router, Engine& engine) {
  ContainerManager& cm = engine.containers;

  router.add("GET", "/containers/{id}/stats", [&cm](const Request& r) {
    ContainerManager::StatsOptions o;
    o.stream = !r.query_param("stream") || query_bool(r, "stream");  // dockerd: true unless given
    o.one_shot = query_bool(r, "one-shot");
    if (o.stream && o.one_shot) throw HttpError(400, "cannot have stream=true and one-shot=true");
    const std::string id = cm.resolve(r.params.at("id"));  // 404 before the headers go
    Response resp;
    resp.status = 200;
    resp.headers.set("Content-Type", "application/json");
    resp.stream = [&cm, id, o](StreamWriter& w) {
      try {
        cm.stats(id, o, [&w](const json& sample) { return w.write(sample.dump() + "\n"); });
      } catch (const std::exception&) {
        // Removed meanwhile: the stream just ends.
      }
    };
    return resp;
  });

  router.add("POST", "/containers/{id}/update", [&cm](const Request& r) {
    json body = json::object();
    if (r.body.find_first_not_of(" \t\r\n") != std::string::npos) {
      try {
        body = json::parse(r.body);
      } catch (const json::parse_error& e) {
        throw HttpError(400, std::string("invalid JSON: ") + e.what());
      }
    }
    return Response::json(200, cm.update(r.params.at("id"), body));
  });
}

}  // namespace berth::agent::api
