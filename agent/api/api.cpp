#include "agent/api/api.h"

#include <charconv>
#include <exception>
#include <nlohmann/json.hpp>

#include "agent/build_info.h"
#include "core/error.h"

namespace berth::agent::api {
namespace {

struct SplitTarget {
  std::string path;
  std::string query;
  std::string version;  // empty when the path had no /vX.Y prefix
};

// "/v1.47/containers/json?all=1" -> {"/containers/json", "all=1", "1.47"}.
std::optional<SplitTarget> split_target(std::string_view target) {
  SplitTarget out;
  auto q = target.find('?');
  if (q != std::string_view::npos) out.query = std::string(target.substr(q + 1));
  auto path = percent_decode(target.substr(0, q));
  if (!path) return std::nullopt;
  out.path = std::move(*path);
  // dockerd's route prefix is /v{version:[0-9.]+}.
  if (out.path.size() > 2 && out.path[0] == '/' && out.path[1] == 'v') {
    auto slash = out.path.find('/', 2);
    std::string_view version = std::string_view(out.path).substr(
        2, slash == std::string::npos ? std::string::npos : slash - 2);
    bool numeric =
        !version.empty() && version.find_first_not_of("0123456789.") == std::string_view::npos;
    if (numeric && slash != std::string::npos) {
      out.version = std::string(version);
      out.path.erase(0, slash);
    }
  }
  return out;
}

// "[json.exception.type_error.302] type must be string, but is number" ->
// "invalid JSON body: type must be string, but is number".
std::string json_error_text(const nlohmann::json::exception& e) {
  std::string_view text = e.what();
  if (auto close = text.find("] "); text.rfind("[json.exception.", 0) == 0 && close != std::string_view::npos)
    text.remove_prefix(close + 2);
  return "invalid JSON body: " + std::string(text);
}

int version_part(std::string_view s) {
  int v = 0;
  std::from_chars(s.data(), s.data() + s.size(), v);
  return v;
}

}  // namespace

void add_common_headers(Response& r) {
  r.headers.set("Api-Version", kApiVersion);
  r.headers.set("Docker-Experimental", "false");
  r.headers.set("Ostype", "linux");
  r.headers.set("Server", std::string("Docker/") + kAgentVersion + " (linux)");
}

int compare_api_versions(std::string_view a, std::string_view b) {
  while (!a.empty() || !b.empty()) {
    auto da = a.find('.');
    auto db = b.find('.');
    int x = version_part(a.substr(0, da));
    int y = version_part(b.substr(0, db));
    if (x != y) return x < y ? -1 : 1;
    a = da == std::string_view::npos ? std::string_view{} : a.substr(da + 1);
    b = db == std::string_view::npos ? std::string_view{} : b.substr(db + 1);
  }
  return 0;
}

RouteOptions Api::route_options(std::string_view method, std::string_view target) const {
  auto split = split_target(target);
  if (!split) return {};
  auto match = router_.match(method, split->path);
  return match ? match->options : RouteOptions{};
}

Response Api::handle(Request request) const {
  Response response;
  auto target = split_target(request.target);
  if (!target) {
    response = Response::error(400, "invalid URL escape in " + request.target);
  } else if (auto match = router_.match(request.method, target->path); !match) {
    response = Response::error(404, "page not found");
  } else if (!target->version.empty() &&
             compare_api_versions(target->version, kMinApiVersion) < 0) {
    response =
        Response::error(400, "client version " + target->version +
                                 " is too old. Minimum supported API version is " + kMinApiVersion +
                                 ", please upgrade your client to a newer version");
  } else if (!target->version.empty() && compare_api_versions(target->version, kApiVersion) > 0) {
    response =
        Response::error(400, "client version " + target->version +
                                 " is too new. Maximum supported API version is " + kApiVersion);
  } else {
    request.path = std::move(target->path);
    request.query = std::move(target->query);
    request.api_version = target->version.empty() ? kApiVersion : target->version;
    request.params = std::move(match->params);
    try {
      response = (*match->handler)(request);
    } catch (const HttpError& e) {
      response = Response::error(e.status(), e.what());
    } catch (const NotFound& e) {
      response = Response::error(404, e.what());
    } catch (const UserError& e) {
      response = Response::error(400, e.what());
    } catch (const nlohmann::json::exception& e) {
      // A handler reading a field of the wrong type (or a body that is not
      // JSON) out of the request body: the client's fault, as dockerd's
      // "json: cannot unmarshal ..." is.
      response = Response::error(request.body.empty() ? 500 : 400, json_error_text(e));
    } catch (const std::exception& e) {
      response = Response::error(500, e.what());
    }
  }
  add_common_headers(response);
  return response;
}

}  // namespace berth::agent::api
