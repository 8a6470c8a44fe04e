#include "drivers/cloud/digitalocean/api.h"

#include <set>

namespace berth::cloud::digitalocean {
namespace {

constexpr int kBadJsonAttempts = 3;
constexpr int kMaxPages = 1000;

bool ok(long status) { return status >= 200 && status < 300; }

// One printable line of at most `max` characters.
std::string one_line(const std::string& s, size_t max = 200) {
  std::string out;
  for (char c : s) {
    if (out.size() >= max) break;
    out += (c == '\n' || c == '\r' || c == '\t') ? ' ' : (static_cast<unsigned char>(c) < 0x20 ? '?' : c);
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

}  // namespace

Api::Api(Transport& transport, Clock& clock, RetryPolicy policy, CancelToken cancel, std::string base_url,
         std::string token, std::string machine)
    : http_(transport, clock, policy, cancel),
      base_(std::move(base_url)),
      token_(std::move(token)),
      machine_(std::move(machine)) {}

std::string Api::prefix() const { return "machine '" + machine_ + "': digitalocean: "; }

HttpRequest Api::request(const std::string& method, const std::string& path_or_url) const {
  HttpRequest r;
  r.method = method;
  r.url = path_or_url.rfind("http", 0) == 0 ? path_or_url : base_ + path_or_url;
  r.headers = {{"Authorization", "Bearer " + token_}, {"Accept", "application/json"}};
  return r;
}

std::optional<json> Api::parse(const std::string& body) {
  json j = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return std::nullopt;
  return j;
}

ApiError Api::error(const HttpResponse& r) const {
  std::string code, message, request_id = r.header("x-request-id");
  if (auto j = parse(r.body)) {
    if ((*j)["id"].is_string()) code = (*j)["id"].get<std::string>();
    if ((*j)["message"].is_string()) message = (*j)["message"].get<std::string>();
    if (request_id.empty() && (*j)["request_id"].is_string()) request_id = (*j)["request_id"].get<std::string>();
  } else if (!r.body.empty()) {
    message = one_line(r.body);
  }
  if (message.empty()) message = "no error message";
  std::string m = prefix() + std::to_string(r.status) + (code.empty() ? "" : " " + one_line(code, 64)) + ": " +
                  one_line(message, 500);
  if (r.status == 401) m += "; check --digitalocean-access-token (DIGITALOCEAN_ACCESS_TOKEN)";
  if (!request_id.empty()) m += " (request " + one_line(request_id, 80) + ")";
  return ApiError(m, r.status, code, request_id);
}

HttpResponse Api::wire(HttpRequest req, Retry retry) {
  try {
    return http_.send(std::move(req), retry);
  } catch (const TransportError& e) {
    throw TransportError(prefix() + e.what() + "; check the network and --digitalocean-api-url, then try again",
                         e.timed_out(), e.may_have_arrived());
  }
}

std::pair<HttpResponse, std::optional<json>> Api::send_safe(HttpRequest req) {
  for (int attempt = 1;; ++attempt) {
    HttpResponse r = wire(req, Retry::Safe);
    if (!ok(r.status)) return {std::move(r), std::nullopt};
    if (r.status == 204 && r.body.empty()) return {std::move(r), json::object()};
    auto j = parse(r.body);
    if (j) return {std::move(r), std::move(j)};
    if (attempt >= kBadJsonAttempts)
      throw DriverError(prefix() + req.method + " " + req.url.substr(base_.size()) +
                        " answered with a body that is not JSON (" + std::to_string(r.body.size()) +
                        " bytes); try again later");
    http_.clock().sleep(http_.retry_delay(attempt, nullptr), http_.cancel());
  }
}

json Api::get(const std::string& path) {
  auto [r, j] = send_safe(request("GET", path));
  if (!ok(r.status)) throw error(r);
  return std::move(*j);
}

std::optional<json> Api::get_or_404(const std::string& path) {
  auto [r, j] = send_safe(request("GET", path));
  if (r.status == 404) return std::nullopt;
  if (!ok(r.status)) throw error(r);
  return std::move(*j);
}

std::string Api::resolve_next(const std::string& next) const {
  if (next.rfind(base_ + "/", 0) == 0) return next;
  if (!next.empty() && next.front() == '/') return base_ + next;
  // Another origin: keep only its path and query, so the token goes nowhere but base_.
  auto scheme = next.find("://");
  auto slash = scheme == std::string::npos ? std::string::npos : next.find('/', scheme + 3);
  if (slash == std::string::npos)
    throw DriverError(prefix() + "the API answered with a next-page link that is not a URL: '" + one_line(next, 100) +
                      "'");
  return base_ + next.substr(slash);
}

std::vector<json> Api::list(const std::string& path, const std::string& key) {
  std::vector<json> items;
  std::set<std::string> seen;
  std::string url = path;
  for (int page = 0; page < kMaxPages; ++page) {
    seen.insert(url);
    json j = get(url);
    if (j.contains(key) && j[key].is_array())
      for (auto& item : j[key]) items.push_back(std::move(item));
    const json* next = nullptr;
    if (j.contains("links") && j["links"].is_object() && j["links"].contains("pages") &&
        j["links"]["pages"].is_object() && j["links"]["pages"].contains("next") &&
        j["links"]["pages"]["next"].is_string())
      next = &j["links"]["pages"]["next"];
    if (!next) return items;
    url = resolve_next(next->get<std::string>());
    if (seen.count(url)) return items;  // a server that links a page to itself
  }
  throw DriverError(prefix() + "GET " + path + " has more than " + std::to_string(kMaxPages) + " pages");
}

HttpResponse Api::post_raw(const std::string& path, const json& body, Retry retry) {
  HttpRequest r = request("POST", path);
  r.headers.emplace_back("Content-Type", "application/json");
  r.body = body.dump();
  return wire(std::move(r), retry);
}

json Api::post(const std::string& path, const json& body, Retry retry) {
  HttpResponse r = post_raw(path, body, retry);
  if (!ok(r.status)) throw error(r);
  if (auto j = parse(r.body)) return std::move(*j);
  if (r.body.empty()) return json::object();
  throw DriverError(prefix() + "POST " + path + " answered with a body that is not JSON (" +
                    std::to_string(r.body.size()) + " bytes)");
}

void Api::del(const std::string& path) {
  HttpResponse r = wire(request("DELETE", path), Retry::Safe);
  if (ok(r.status) || r.status == 404) return;
  throw error(r);
}

}  // namespace berth::cloud::digitalocean
