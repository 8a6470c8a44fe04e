#pragma once
// DigitalOcean API v2 over the cloud HTTP layer: bearer auth, JSON bodies,
// errors as cloud::ApiError with DO's message, id and request id, and list
// calls that follow links.pages.next.
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "drivers/cloud/http.h"

namespace berth::cloud::digitalocean {

using nlohmann::json;

class Api {
 public:
  // `base_url` as checked_endpoint() returns it; `machine` names errors.
  Api(Transport& transport, Clock& clock, RetryPolicy policy, CancelToken cancel, std::string base_url,
      std::string token, std::string machine);

  // GET with retries; a non-2xx answer throws ApiError.
  json get(const std::string& path);
  // As get(), but a 404 is std::nullopt.
  std::optional<json> get_or_404(const std::string& path);
  // Every item of `key` across all pages (links.pages.next).
  std::vector<json> list(const std::string& path, const std::string& key);
  // POST once (Retry::Unsafe) or with retries (Retry::Safe); the answer is
  // returned whatever its status, for callers that must tell 5xx from 4xx.
  HttpResponse post_raw(const std::string& path, const json& body, Retry retry);
  // POST whose non-2xx answer throws ApiError; returns the parsed body.
  json post(const std::string& path, const json& body, Retry retry);
  // DELETE with retries; a 404 counts as done.
  void del(const std::string& path);

  // The error for a non-2xx answer: "machine 'M': digitalocean: 422
  // unprocessable_entity: MESSAGE (request ID)".
  ApiError error(const HttpResponse& response) const;
  // Parses a 2xx body; nullopt when it is not a JSON object (truncated, garbage).
  static std::optional<json> parse(const std::string& body);

  HttpClient& http() { return http_; }
  Clock& clock() { return http_.clock(); }
  const CancelToken& cancel() const { return http_.cancel(); }
  const std::string& machine() const { return machine_; }
  std::string prefix() const;   // "machine 'M': digitalocean: "
  // http_.send, with transport errors named for the machine.
  HttpResponse wire(HttpRequest req, Retry retry);

 private:
  HttpRequest request(const std::string& method, const std::string& path_or_url) const;
  std::string resolve_next(const std::string& next) const;
  // Sends a Safe request again while its 2xx body is not JSON (a cut-off answer).
  std::pair<HttpResponse, std::optional<json>> send_safe(HttpRequest req);

  HttpClient http_;
  std::string base_;
  std::string token_;
  std::string machine_;
};

}  // namespace berth::cloud::digitalocean
