#pragma once
// Method + path pattern -> handler. Patterns are "/"-separated segments:
//   literal      matches itself
//   {name}       matches one non-empty segment, captured as params["name"]
//   {name...}    matches one or more segments, slashes included (image names
//                like "registry:5000/team/app"), like dockerd's {name:.*}
// Routes are tried in the order they were added; the first match wins.
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "agent/api/http.h"

namespace berth::agent::api {

using Handler = std::function<Response(const Request&)>;

struct RouteOptions {
  // The handler reads the body itself through Request::body_reader, with no
  // size limit (docker load, image import, archive uploads).
  bool stream_body = false;
};

class Router {
 public:
  // Throws std::invalid_argument for a malformed pattern (a programming error).
  void add(std::string method, std::string_view pattern, Handler handler,
           RouteOptions options = {});

  struct Match {
    const Handler* handler;
    Params params;
    RouteOptions options;
  };
  // `path` is already percent-decoded and has no version prefix or query.
  std::optional<Match> match(std::string_view method, std::string_view path) const;

 private:
  struct Segment {
    enum class Kind { Literal, Param, Rest } kind;
    std::string text;  // the literal, or the parameter name
  };
  struct Route {
    std::string method;
    std::vector<Segment> segments;
    Handler handler;
    RouteOptions options;
  };
  static bool match_segments(const std::vector<Segment>& pattern, std::size_t pi,
                             const std::vector<std::string_view>& path, std::size_t si,
                             Params& params);

  std::vector<Route> routes_;
};

}  // namespace berth::agent::api
