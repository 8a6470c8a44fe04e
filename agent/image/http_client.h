#pragma once
// A small synchronous HTTP/1.1 client over Boost.Beast (+ OpenSSL for https),
// one connection per request, for the registry client. Timeouts apply to each
// network operation.
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "agent/image/layer.h"

namespace berth::agent::image {

struct Url {
  std::string scheme;  // "http" or "https"
  std::string host;    // without brackets for IPv6
  std::string port;    // always set
  std::string target;  // path + query, starting with '/'

  std::string authority() const;  // host[:port] as written in Host headers
  std::string origin() const;     // scheme://authority
  std::string string() const { return origin() + target; }
};
// Throws std::invalid_argument.
Url parse_url(std::string_view text);
// Resolves `location` (absolute or relative) against `base`.
Url resolve_url(const Url& base, std::string_view location);

struct HttpRequest {
  std::string method = "GET";
  Url url;
  std::vector<std::pair<std::string, std::string>> headers;
  // The body: `body_size` bytes from `body` (none when body is empty).
  ReadFn body;
  std::uint64_t body_size = 0;
  bool verify_tls = true;
  std::string ca_file;  // extra CA bundle
};

struct HttpResponse {
  unsigned status = 0;
  std::map<std::string, std::string> headers;  // lower-case names; last value wins
  std::vector<std::string> www_authenticate;   // every WWW-Authenticate value
  std::string body;                            // unless a sink took it
  Url url;                                     // after redirects
  std::string header(const std::string& lower_name) const;
};

// Connection-level failure (refused, TLS, timeout), worded like Go's
// net/http: `Get "https://h/v2/": dial tcp h: connect: connection refused`.
class TransportError : public std::runtime_error {
 public:
  TransportError(const std::string& message, bool tls_mismatch)
      : std::runtime_error(message), tls_mismatch_(tls_mismatch) {}
  // The server answered plain HTTP to our TLS handshake.
  bool tls_mismatch() const noexcept { return tls_mismatch_; }

 private:
  bool tls_mismatch_;
};

// Sends the request; the response body goes to `sink` when set and the
// status is 2xx, else into HttpResponse::body (capped at 1 MiB). Follows up
// to 5 redirects for GET/HEAD (dropping Authorization on another host).
HttpResponse http_request(HttpRequest request,
                          const std::function<void(const char*, std::size_t)>& sink = {},
                          std::chrono::seconds timeout = std::chrono::seconds(60));

std::string base64_encode(std::string_view data);
// Standard or URL-safe alphabet, padding optional. nullopt when malformed.
std::optional<std::string> base64_decode(std::string_view text);
std::string url_encode(std::string_view text);  // for query values

}  // namespace berth::agent::image
