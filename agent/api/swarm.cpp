// Swarm mode is not supported: its routes answer as dockerd does on a node
// that is not in a swarm, and no plugins are installed.
#include <nlohmann/json.hpp>

#include "agent/api/routes.h"

namespace berth::agent::api {

void add_swarm_routes(Router& router) {
  static const char* const kNotManager =
      "This node is not a swarm manager. Use \"docker swarm init\" or \"docker swarm join\" to "
      "connect this node to swarm and try again.";
  const Handler unavailable = [](const Request&) -> Response { throw HttpError(503, kNotManager); };
  for (const char* prefix : {"/swarm", "/nodes", "/services", "/tasks", "/secrets", "/configs"}) {
    for (const char* method : {"GET", "POST", "DELETE"}) {
      router.add(method, prefix, unavailable);
      router.add(method, std::string(prefix) + "/{rest...}", unavailable);
    }
  }
  router.add("GET", "/plugins", [](const Request&) { return Response::json(200, nlohmann::json::array()); });
}

}  // namespace berth::agent::api
