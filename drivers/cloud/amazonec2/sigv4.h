#pragma once
// AWS Signature Version 4 (HMAC-SHA256 through OpenSSL). The steps are
// separate functions so tests can check each against AWS's published suite.
#include <chrono>
#include <string>
#include <string_view>

#include "drivers/cloud/http.h"

namespace berth::cloud::sigv4 {

struct Credentials {
  std::string access_key;
  std::string secret_key;
  std::string session_token;  // "" for long-term keys
};

struct Signed {
  std::string canonical_request;
  std::string string_to_sign;
  std::string authorization;  // the Authorization header's value
};

std::string sha256_hex(std::string_view data);
std::string hmac_sha256(std::string_view key, std::string_view data);  // raw 32 bytes
std::string to_hex(std::string_view bytes);

// "20150830T123600Z" (UTC).
std::string amz_date(std::chrono::system_clock::time_point t);

// The canonical URI of a request path as it appears on the request line:
// each segment URI-encoded (again, as non-S3 services want).
std::string canonical_uri(std::string_view path);
// Parameters sorted by encoded name then value, each side encoded once.
std::string canonical_query(std::string_view query);

// Signs a request given as its method, request target ("/path?query") and
// headers, all of which are signed. `amz_date_value` is the request time
// ("YYYYMMDDTHHMMSSZ"); the caller puts it in the headers (X-Amz-Date) itself.
Signed sign(std::string_view method, std::string_view target, const Headers& headers, std::string_view payload,
            const Credentials& creds, std::string_view region, std::string_view service,
            std::string_view amz_date_value);

// Signs `request` in place for `service` in `region` at time `now`: sets Host,
// X-Amz-Date, X-Amz-Security-Token (with a session token) and Authorization,
// replacing earlier ones, so a retry is signed afresh. Signs every header it carries.
void sign_request(HttpRequest& request, const Credentials& creds, std::string_view region, std::string_view service,
                  std::chrono::system_clock::time_point now);

// The host[:port] part of an http(s) URL, port left out when it is the scheme's default.
std::string url_authority(std::string_view url);

}  // namespace berth::cloud::sigv4
