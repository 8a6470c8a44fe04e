#pragma once
// Transport-neutral HTTP request and response for the Engine API handlers.
// The server (agent/server.cpp) converts to and from Beast messages.
#include <map>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace berth::agent::api {

// Ordered; names compare case-insensitively.
class Headers {
 public:
  void set(std::string name, std::string value);  // replaces
  void add(std::string name, std::string value);  // appends
  std::optional<std::string> get(std::string_view name) const;
  const std::vector<std::pair<std::string, std::string>>& items() const { return items_; }

 private:
  std::vector<std::pair<std::string, std::string>> items_;
};

using Params = std::map<std::string, std::string, std::less<>>;

struct Request {
  std::string method;  // "GET", "HEAD", ...
  std::string target;  // as received: /v1.47/containers/json?all=1
  Headers headers;
  std::string body;
  std::string client_cn;  // common name of the verified client certificate

  // Set by Api::handle before the handler runs.
  std::string path;         // percent-decoded, without version prefix and query
  std::string query;        // raw, without '?'
  std::string api_version;  // from the /vX.Y prefix, else kApiVersion
  Params params;            // from {name} segments of the route

  // The percent-decoded value of ?name=...; nullopt when absent.
  std::optional<std::string> query_param(std::string_view name) const;
};

struct Response {
  unsigned status = 200;
  Headers headers;
  std::string body;

  // dockerd's encoding: compact JSON plus a newline, Content-Type application/json.
  static Response json(unsigned status, const nlohmann::json& body);
  static Response text(unsigned status, std::string body);
  // {"message": "..."} as dockerd sends errors.
  static Response error(unsigned status, std::string_view message);
};

// "%41b+c" -> "Ab+c" (with plus_as_space: "Ab c"); nullopt for a malformed escape.
std::optional<std::string> percent_decode(std::string_view in, bool plus_as_space = false);

}  // namespace berth::agent::api
