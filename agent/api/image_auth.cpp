// POST /auth (docker login): the credentials checked against the registry.
#include <nlohmann/json.hpp>

#include "agent/api/images.h"
#include "agent/api/request_body.h"
#include "agent/api/routes.h"

namespace berth::agent::api {
namespace img = berth::agent::image;

void add_auth_routes(Router& router, img::RegistryOptions registry) {
  auto reg = std::make_shared<const img::RegistryOptions>(std::move(registry));
  router.add("POST", "/auth", [reg](const Request& req) {
    const nlohmann::json body = parse_json_object(req);
    img::RegistryAuth auth;
    auth.username = string_field(body, "username");
    auth.password = string_field(body, "password");
    auth.identity_token = string_field(body, "identitytoken");
    const std::string server = string_field(body, "serveraddress");
    std::string token;
    try {
      token = img::registry_login(*reg, server, auth);
    } catch (const img::RegistryError& e) {
      throw HttpError(e.status(), e.what());
    }
    return Response::json(200, {{"Status", "Login Succeeded"}, {"IdentityToken", token}});
  });
}

void add_auth_routes(Router& router, Engine& engine) {
  add_auth_routes(router, img::RegistryOptions{engine.options.insecure_registries, engine.options.registry_mirrors, {}});
}

}  // namespace berth::agent::api
