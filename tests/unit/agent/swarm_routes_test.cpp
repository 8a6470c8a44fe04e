// Swarm mode is not supported: its routes answer as dockerd outside a swarm.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "agent/api/api.h"
#include "agent/api/routes.h"

namespace berth::agent::api {
namespace {

using nlohmann::json;

Response call(const Api& api, std::string method, std::string target) {
  Request req;
  req.method = std::move(method);
  req.target = std::move(target);
  return api.handle(std::move(req));
}

Api swarm_api() {
  Router r;
  add_swarm_routes(r);
  return Api(std::move(r));
}

TEST(SwarmRoutes, AnswerNotASwarmManager) {
  const Api api = swarm_api();
  const std::string message =
      "This node is not a swarm manager. Use \"docker swarm init\" or \"docker swarm join\" to connect this "
      "node to swarm and try again.";
  const std::pair<const char*, const char*> calls[] = {
      {"GET", "/v1.47/swarm"},          {"POST", "/v1.47/swarm/init"},       {"POST", "/v1.47/swarm/leave"},
      {"GET", "/v1.47/nodes"},          {"GET", "/v1.47/nodes/abc"},         {"DELETE", "/v1.47/nodes/abc"},
      {"GET", "/v1.47/services"},       {"POST", "/v1.47/services/create"},  {"POST", "/services/web/update"},
      {"GET", "/v1.47/services/web/logs"}, {"GET", "/v1.47/tasks"},          {"GET", "/v1.47/tasks/t1"},
      {"GET", "/v1.47/secrets"},        {"POST", "/v1.47/secrets/create"},   {"DELETE", "/v1.47/secrets/s1"},
      {"GET", "/v1.47/configs"},        {"POST", "/v1.47/configs/c1/update"}};
  for (const auto& [method, target] : calls) {
    Response r = call(api, method, target);
    EXPECT_EQ(r.status, 503u) << method << " " << target;
    EXPECT_EQ(json::parse(r.body), json({{"message", message}})) << method << " " << target;
  }
}

TEST(SwarmRoutes, NoPluginsAreInstalled) {
  Response r = call(swarm_api(), "GET", "/v1.47/plugins");
  ASSERT_EQ(r.status, 200u);
  EXPECT_EQ(json::parse(r.body), json::array());
  // Nothing else is claimed: /swarming is not a swarm route.
  EXPECT_EQ(call(swarm_api(), "GET", "/v1.47/swarming").status, 404u);
}

}  // namespace
}  // namespace berth::agent::api
