// libFuzzer: raw bytes as an HTTP request through Beast's parser and the
// Engine API front (version prefix, percent-decoding, router, query parsing,
// JSON bodies). Must never crash, hang or leak; every outcome is a response.
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "agent/api/api.h"
#include "agent/api/router.h"
#include "agent/api/system.h"
#include "agent/host_info.h"

namespace {

namespace http = boost::beast::http;
using namespace berth::agent;

class FixedInfo : public SystemInfoProvider {
 public:
  HostFacts facts() const override {
    HostFacts f;
    f.engine_id = "fuzz";
    f.cgroup_version = "2";
    return f;
  }
};

api::Api make_api() {
  api::Router r;
  api::add_system_routes(r, std::make_shared<FixedInfo>(), {"/var/lib/berth", {"a=b"}, {}, {}, {}});
  // Handlers the shape of the container routes: path params, query and a JSON body.
  r.add("POST", "/containers/create", [](const api::Request& req) {
    auto body = nlohmann::json::parse(req.body, nullptr, false);
    if (body.is_discarded()) throw api::HttpError(400, "invalid JSON");
    return api::Response::json(201, {{"Id", req.query_param("name").value_or("")}});
  });
  r.add("GET", "/images/{name...}/json", [](const api::Request& req) {
    return api::Response::json(200, {{"Name", req.params.at("name")}});
  });
  r.add("DELETE", "/containers/{id}", [](const api::Request& req) {
    return api::Response::text(204, req.query_param("force").value_or(""));
  });
  return api::Api(std::move(r));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const api::Api api = make_api();
  http::request_parser<http::string_body> parser;
  parser.header_limit(64 << 10);
  parser.body_limit(1 << 20);
  boost::beast::error_code ec;
  parser.put(boost::asio::buffer(data, size), ec);
  if (!ec && !parser.is_done()) parser.put_eof(ec);
  if (ec || !parser.is_done()) return 0;
  auto msg = parser.release();
  api::Request request;
  request.method = std::string(msg.method_string());
  request.target = std::string(msg.target());
  for (const auto& field : msg)
    request.headers.add(std::string(field.name_string()), std::string(field.value()));
  request.body = std::move(msg.body());
  (void)api.route_options(request.method, request.target);
  api::Response response = api.handle(std::move(request));
  if (response.status < 100 || response.status > 599) __builtin_trap();
  return 0;
}
