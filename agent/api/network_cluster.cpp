// berth's cluster routes: GET /berth/cluster, POST /berth/cluster/members,
// DELETE /berth/cluster/members/{name}, POST /berth/cluster/leave.
#include <nlohmann/json.hpp>

#include "agent/api/request_body.h"
#include "agent/api/routes.h"
#include "agent/engine.h"
#include "agent/network/cluster_admin.h"
#include "agent/network/network_manager.h"

namespace berth::agent::api {

using nlohmann::json;

void add_cluster_routes(Router& router, Engine& engine) {
  network::NetworkManager& nm = engine.networks;
  router.add("GET", "/berth/cluster", [&nm](const Request&) {
    return Response::json(200, network::ClusterAdmin(nm.overlay()).status());
  });
  router.add("POST", "/berth/cluster/members", [&nm](const Request& r) {
    json body = parse_json_object(r);
    std::string initial =
        network::ClusterAdmin(nm.overlay()).add_member(string_field(body, "Name"), string_field(body, "PeerURL"));
    return Response::json(201, {{"InitialCluster", initial}});
  });
  router.add("DELETE", "/berth/cluster/members/{name}", [&nm](const Request& r) {
    if (!network::ClusterAdmin(nm.overlay()).remove_member(r.params.at("name")))
      throw HttpError(404, "the cluster store has no member " + r.params.at("name"));
    Response out;
    out.status = 204;
    return out;
  });
  router.add("POST", "/berth/cluster/leave", [&nm](const Request&) {
    int removed = network::ClusterAdmin(nm.overlay()).leave();
    return Response::json(200, {{"EndpointsRemoved", removed}});
  });
}

}  // namespace berth::agent::api
