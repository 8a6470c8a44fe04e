#include "agent/api/api.h"
#include "agent/api/request_body.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace berth::agent::api {
namespace {

using nlohmann::json;

// Echoes what the handler saw, so tests can check the prefix handling.
Response echo(const Request& r) {
  json params = json::object();
  for (const auto& [k, v] : r.params) params[k] = v;
  return Response::json(200, {{"path", r.path},
                              {"version", r.api_version},
                              {"query", r.query},
                              {"params", params},
                              {"all", r.query_param("all").value_or("<none>")},
                              {"cn", r.client_cn}});
}

Api make_api() {
  Router r;
  r.add("GET", "/_ping", echo);
  r.add("GET", "/containers/{id}/json", echo);
  r.add("GET", "/missing",
        [](const Request&) -> Response { throw NotFound("No such container: web"); });
  r.add("GET", "/bad", [](const Request&) -> Response { throw UserError("invalid filter 'x'"); });
  r.add("GET", "/boom",
        [](const Request&) -> Response { throw std::runtime_error("disk on fire"); });
  return Api(std::move(r));
}

Response get(const Api& api, std::string target, std::string method = "GET") {
  Request req;
  req.method = std::move(method);
  req.target = std::move(target);
  req.client_cn = "client-1";
  return api.handle(std::move(req));
}

json body(const Response& r) { return json::parse(r.body); }

TEST(Api, StripsVersionPrefix) {
  Api api = make_api();
  for (const char* v : {"1.24", "1.40", "1.47"}) {
    Response r = get(api, std::string("/v") + v + "/_ping");
    ASSERT_EQ(r.status, 200u) << v;
    EXPECT_EQ(body(r)["path"], "/_ping");
    EXPECT_EQ(body(r)["version"], v);
  }
}

TEST(Api, WithoutPrefixUsesTheServerVersion) {
  Response r = get(make_api(), "/_ping");
  ASSERT_EQ(r.status, 200u);
  EXPECT_EQ(body(r)["path"], "/_ping");
  EXPECT_EQ(body(r)["version"], "1.47");
  EXPECT_EQ(body(r)["cn"], "client-1");
}

TEST(Api, TooNewVersionIsRejectedLikeDockerd) {
  Response r = get(make_api(), "/v1.99/_ping");
  EXPECT_EQ(r.status, 400u);
  EXPECT_EQ(r.body,
            R"({"message":"client version 1.99 is too new. Maximum supported API version is 1.47"})"
            "\n");
  EXPECT_EQ(r.headers.get("Content-Type"), "application/json");
  EXPECT_EQ(get(make_api(), "/v1.48/_ping").status, 400u);
  EXPECT_EQ(get(make_api(), "/v2.0/_ping").status, 400u);
}

TEST(Api, TooOldVersionIsRejectedLikeDockerd) {
  Response r = get(make_api(), "/v1.23/_ping");
  EXPECT_EQ(r.status, 400u);
  EXPECT_EQ(body(r)["message"],
            "client version 1.23 is too old. Minimum supported API version is 1.24, please upgrade "
            "your client to a newer version");
}

TEST(Api, UnknownPathOrMethodIs404PageNotFound) {
  Api api = make_api();
  for (auto [method, target] :
       std::vector<std::pair<std::string, std::string>>{{"GET", "/nope"},
                                                        {"POST", "/_ping"},
                                                        {"GET", "/v1.47/nope"},
                                                        {"GET", "/v1.99/nope"},
                                                        {"GET", "/vX/_ping"},
                                                        {"GET", "/v1.47"},
                                                        {"DELETE", "/containers/x/json"}}) {
    Response r = get(api, target, method);
    EXPECT_EQ(r.status, 404u) << method << " " << target;
    EXPECT_EQ(r.body, "{\"message\":\"page not found\"}\n");
    EXPECT_EQ(r.headers.get("Content-Type"), "application/json");
  }
}

TEST(Api, EveryResponseCarriesDockerdHeaders) {
  Api api = make_api();
  for (const char* target : {"/_ping", "/nope", "/v1.99/_ping", "/boom"}) {
    Response r = get(api, target);
    EXPECT_EQ(r.headers.get("Api-Version"), "1.47") << target;
    EXPECT_EQ(r.headers.get("api-version"), "1.47") << target;  // case-insensitive lookup
    EXPECT_EQ(r.headers.get("Server"), "Docker/" BERTH_VERSION " (linux)") << target;
    EXPECT_EQ(r.headers.get("Ostype"), "linux") << target;
    EXPECT_EQ(r.headers.get("Docker-Experimental"), "false") << target;
  }
}

TEST(Api, ParamsQueryAndPercentDecoding) {
  Response r = get(make_api(), "/v1.47/containers/my%20app/json?all=1&size=false");
  ASSERT_EQ(r.status, 200u);
  EXPECT_EQ(body(r)["params"]["id"], "my app");
  EXPECT_EQ(body(r)["query"], "all=1&size=false");
  EXPECT_EQ(body(r)["all"], "1");
  EXPECT_EQ(get(make_api(), "/containers/%zz/json").status, 400u);
}

TEST(Api, HandlerExceptionsBecomeJsonErrors) {
  Api api = make_api();
  Response missing = get(api, "/missing");
  EXPECT_EQ(missing.status, 404u);
  EXPECT_EQ(body(missing)["message"], "No such container: web");
  Response bad = get(api, "/bad");
  EXPECT_EQ(bad.status, 400u);
  EXPECT_EQ(body(bad)["message"], "invalid filter 'x'");
  Response boom = get(api, "/boom");
  EXPECT_EQ(boom.status, 500u);
  EXPECT_EQ(body(boom)["message"], "disk on fire");
}

TEST(Api, ComparesVersionsNumerically) {
  EXPECT_LT(compare_api_versions("1.9", "1.10"), 0);
  EXPECT_GT(compare_api_versions("1.47.1", "1.47"), 0);
  EXPECT_EQ(compare_api_versions("1.47", "1.47.0"), 0);
  EXPECT_GT(compare_api_versions("2", "1.99"), 0);
}

TEST(Request, QueryParamDecodes) {
  Request r;
  r.query = "filters=%7B%22label%22%3A%5B%22a%3Db%22%5D%7D&name=a+b&flag";
  EXPECT_EQ(r.query_param("filters"), R"({"label":["a=b"]})");
  EXPECT_EQ(r.query_param("name"), "a b");
  EXPECT_EQ(r.query_param("flag"), "");
  EXPECT_EQ(r.query_param("absent"), std::nullopt);
}

}  // namespace
}  // namespace berth::agent::api

namespace berth::agent::api {
namespace {

Response post(const Api& api, std::string target, std::string request_body) {
  Request req;
  req.method = "POST";
  req.target = std::move(target);
  req.body = std::move(request_body);
  return api.handle(std::move(req));
}

// A field of the wrong type in a JSON body is the client's fault (400), not
// the server's, wherever a handler reads it.
TEST(Api, WrongTypedBodyFieldsAre400) {
  Router r;
  r.add("POST", "/things/create", [](const Request& req) {
    json b = json::parse(req.body);
    return Response::json(201, {{"Image", b.value("Image", std::string())}, {"N", b.value("N", 0)}});
  });
  r.add("POST", "/internal", [](const Request&) -> Response {
    json stored = {{"Name", 1}};
    return Response::json(200, {{"Name", stored.value("Name", std::string())}});
  });
  Api api(std::move(r));
  Response ok = post(api, "/v1.47/things/create", R"({"Image":"busybox","N":2})");
  EXPECT_EQ(ok.status, 201u);
  Response wrong = post(api, "/v1.47/things/create", R"({"Image":5})");
  EXPECT_EQ(wrong.status, 400u);
  EXPECT_EQ(body(wrong)["message"], "invalid JSON body: type must be string, but is number");
  wrong = post(api, "/v1.47/things/create", R"({"N":"two"})");
  EXPECT_EQ(wrong.status, 400u);
  wrong = post(api, "/v1.47/things/create", R"({"Image":)");
  EXPECT_EQ(wrong.status, 400u);
  EXPECT_EQ(body(wrong)["message"].get<std::string>().rfind("invalid JSON body: ", 0), 0u);
  // Without a body, the same failure is the server's own.
  EXPECT_EQ(post(api, "/v1.47/internal", "").status, 500u);
}

}  // namespace
}  // namespace berth::agent::api

namespace berth::agent::api {
namespace {

TEST(CanonicalKeys, RenamesFieldsAsGoMatchesThem) {
  auto body = nlohmann::json::parse(R"({"detachKeys": "ctrl-x,x", "TTY": true, "cmd": ["a"], "Cmd": ["b"], "Other": 1})");
  canonical_keys(body, {"DetachKeys", "Tty", "Cmd", "User"});
  EXPECT_EQ(body["DetachKeys"], "ctrl-x,x");
  EXPECT_EQ(body["Tty"], true);
  EXPECT_EQ(body["Cmd"], nlohmann::json::array({"b"}));  // the exact key wins
  EXPECT_FALSE(body.contains("detachKeys"));
  EXPECT_FALSE(body.contains("User"));
  EXPECT_EQ(body["Other"], 1);
  nlohmann::json not_object = nlohmann::json::array();
  canonical_keys(not_object, {"Tty"});
  EXPECT_TRUE(not_object.empty());
}

}  // namespace
}  // namespace berth::agent::api
