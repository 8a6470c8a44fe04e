#pragma once
// The Engine API in front of the router, the way dockerd's middleware behaves:
// strips an optional /vX.Y prefix and checks it against the supported range,
// answers unknown routes with 404 {"message":"page not found"}, turns handler
// exceptions into JSON errors, and adds Server/Api-Version/Ostype headers.
#include "agent/api/http.h"
#include "agent/api/router.h"

namespace berth::agent::api {

class Api {
 public:
  explicit Api(Router router) : router_(std::move(router)) {}

  // Never throws. `request` needs method, target, headers, body and client_cn.
  Response handle(Request request) const;

  // The options of the route `target` would reach (defaults when none), so the
  // server knows before reading the body whether the handler streams it.
  RouteOptions route_options(std::string_view method, std::string_view target) const;

 private:
  Router router_;
};

// Server, Api-Version, Ostype and Docker-Experimental, as every dockerd response has.
void add_common_headers(Response& response);

// Compares dotted versions numerically ("1.9" < "1.10"); missing parts are 0.
int compare_api_versions(std::string_view a, std::string_view b);

}  // namespace berth::agent::api
