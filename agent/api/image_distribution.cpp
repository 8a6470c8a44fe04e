// GET /distribution/{name}/json: the registry's descriptor and platforms.
#include <nlohmann/json.hpp>

#include "agent/api/images.h"
#include "agent/api/routes.h"

namespace berth::agent::api {
namespace img = berth::agent::image;

void add_distribution_routes(Router& router, img::RegistryOptions registry) {
  auto reg = std::make_shared<const img::RegistryOptions>(std::move(registry));
  router.add("GET", "/distribution/{name...}/json", [reg](const Request& req) {
    img::Reference ref;
    try {
      ref = img::parse_reference_default_tag(req.params.at("name"));
    } catch (const std::invalid_argument& e) {
      throw HttpError(400, e.what());
    }
    try {
      return Response::json(
          200, img::distribution_inspect(*reg, ref, img::parse_registry_auth(req.headers.get("X-Registry-Auth").value_or(""))));
    } catch (const img::RegistryError& e) {
      throw HttpError(e.status(), e.what());
    }
  });
}

void add_distribution_routes(Router& router, Engine& engine) {
  add_distribution_routes(router,
                          img::RegistryOptions{engine.options.insecure_registries, engine.options.registry_mirrors, {}});
}

}  // namespace berth::agent::api
