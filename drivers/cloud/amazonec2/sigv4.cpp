#include "drivers/cloud/amazonec2/sigv4.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <ctime>
#include <map>
#include <vector>

#include "core/error.h"

namespace berth::cloud::sigv4 {
namespace {

bool unreserved(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
         c == '.' || c == '~';
}

// SigV4's UriEncode: everything but the unreserved characters as %XX (upper case).
std::string uri_encode(std::string_view s) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size());
  for (unsigned char c : s) {
    if (unreserved(c)) {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string percent_decode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && hex_value(s[i + 1]) >= 0 && hex_value(s[i + 2]) >= 0) {
      out += static_cast<char>(hex_value(s[i + 1]) * 16 + hex_value(s[i + 2]));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return std::tolower(c); });
  return out;
}

// Trims and collapses runs of spaces (the suite does so inside quotes too).
std::string trim_value(std::string_view v) {
  std::string out;
  bool space = false;
  for (char c : v) {
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
      space = true;
      continue;
    }
    if (space && !out.empty()) out += ' ';
    space = false;
    out += c;
  }
  return out;
}

}  // namespace

std::string to_hex(std::string_view bytes) {
  static const char* hex = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) {
    out += hex[c >> 4];
    out += hex[c & 15];
  }
  return out;
}

std::string sha256_hex(std::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr) != 1)
    throw Error("SHA-256 failed in OpenSSL");
  return to_hex(std::string_view(reinterpret_cast<const char*>(md), len));
}

std::string hmac_sha256(std::string_view key, std::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (!HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), reinterpret_cast<const unsigned char*>(data.data()),
            data.size(), md, &len))
    throw Error("HMAC-SHA256 failed in OpenSSL");
  return std::string(reinterpret_cast<const char*>(md), len);
}

std::string amz_date(std::chrono::system_clock::time_point t) {
  std::time_t tt = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  ::gmtime_r(&tt, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y%m%dT%H%M%SZ", &tm);
  return buf;
}

std::string canonical_uri(std::string_view path) {
  if (path.empty()) return "/";
  // Remove dot segments and empty segments (RFC 3986 5.2.4), keeping a trailing slash.
  std::vector<std::string_view> segments;
  size_t start = 0;
  while (start <= path.size()) {
    size_t end = path.find('/', start);
    if (end == std::string_view::npos) end = path.size();
    std::string_view seg = path.substr(start, end - start);
    if (seg == "..") {
      if (!segments.empty()) segments.pop_back();
    } else if (!seg.empty() && seg != ".") {
      segments.push_back(seg);
    }
    start = end + 1;
  }
  const bool trailing = path.back() == '/' && !segments.empty();
  std::string out;
  for (auto seg : segments) out += "/" + uri_encode(seg);
  if (out.empty() || trailing) out += "/";
  return out;
}

std::string canonical_query(std::string_view query) {
  std::vector<std::pair<std::string, std::string>> params;
  size_t start = 0;
  while (start < query.size()) {
    size_t end = query.find('&', start);
    if (end == std::string_view::npos) end = query.size();
    std::string_view pair = query.substr(start, end - start);
    if (!pair.empty()) {
      size_t eq = pair.find('=');
      std::string_view k = pair.substr(0, eq);
      std::string_view v = eq == std::string_view::npos ? std::string_view{} : pair.substr(eq + 1);
      params.emplace_back(uri_encode(percent_decode(k)), uri_encode(percent_decode(v)));
    }
    start = end + 1;
  }
  std::sort(params.begin(), params.end());
  std::string out;
  for (const auto& [k, v] : params) out += (out.empty() ? "" : "&") + k + "=" + v;
  return out;
}

Signed sign(std::string_view method, std::string_view target, const Headers& headers, std::string_view payload,
            const Credentials& creds, std::string_view region, std::string_view service,
            std::string_view amz_date_value) {
  const size_t q = target.find('?');
  const std::string_view path = target.substr(0, q);
  const std::string_view query = q == std::string_view::npos ? std::string_view{} : target.substr(q + 1);

  std::map<std::string, std::string> canon;  // sorted by lower-case name
  for (const auto& [name, value] : headers) {
    auto& v = canon[lower(name)];
    v += (v.empty() ? "" : ",") + trim_value(value);
  }
  std::string header_lines, signed_headers;
  for (const auto& [name, value] : canon) {
    header_lines += name + ":" + value + "\n";
    signed_headers += (signed_headers.empty() ? "" : ";") + name;
  }

  Signed s;
  s.canonical_request = std::string(method) + "\n" + canonical_uri(path) + "\n" + canonical_query(query) + "\n" +
                        header_lines + "\n" + signed_headers + "\n" + sha256_hex(payload);
  const std::string date(amz_date_value.substr(0, 8));
  const std::string scope = date + "/" + std::string(region) + "/" + std::string(service) + "/aws4_request";
  s.string_to_sign =
      "AWS4-HMAC-SHA256\n" + std::string(amz_date_value) + "\n" + scope + "\n" + sha256_hex(s.canonical_request);
  std::string key = hmac_sha256("AWS4" + creds.secret_key, date);
  key = hmac_sha256(key, region);
  key = hmac_sha256(key, service);
  key = hmac_sha256(key, "aws4_request");
  const std::string signature = to_hex(hmac_sha256(key, s.string_to_sign));
  s.authorization = "AWS4-HMAC-SHA256 Credential=" + creds.access_key + "/" + scope +
                    ", SignedHeaders=" + signed_headers + ", Signature=" + signature;
  return s;
}

std::string url_authority(std::string_view url) {
  size_t scheme_end = url.find("://");
  if (scheme_end == std::string_view::npos) throw Error("not a URL: " + std::string(url));
  const std::string scheme = lower(url.substr(0, scheme_end));
  std::string_view rest = url.substr(scheme_end + 3);
  std::string_view authority = rest.substr(0, rest.find_first_of("/?#"));
  if (auto at = authority.rfind('@'); at != std::string_view::npos) authority = authority.substr(at + 1);
  std::string out = lower(authority);
  const std::string default_port = scheme == "https" ? ":443" : scheme == "http" ? ":80" : "";
  if (!default_port.empty() && out.size() > default_port.size() &&
      out.compare(out.size() - default_port.size(), default_port.size(), default_port) == 0)
    out.resize(out.size() - default_port.size());
  return out;
}

void sign_request(HttpRequest& request, const Credentials& creds, std::string_view region, std::string_view service,
                  std::chrono::system_clock::time_point now) {
  // Drop what an earlier attempt added, so the retry is signed afresh.
  std::erase_if(request.headers, [](const auto& h) {
    const std::string n = lower(h.first);
    return n == "authorization" || n == "host" || n == "x-amz-date" || n == "x-amz-security-token";
  });
  const std::string date = amz_date(now);
  request.headers.emplace_back("Host", url_authority(request.url));
  request.headers.emplace_back("X-Amz-Date", date);
  if (!creds.session_token.empty()) request.headers.emplace_back("X-Amz-Security-Token", creds.session_token);

  std::string_view url = request.url;
  std::string_view rest = url.substr(url.find("://") + 3);
  size_t slash = rest.find_first_of("/?");
  std::string target = slash == std::string_view::npos ? "/" : std::string(rest.substr(slash));
  if (auto hash = target.find('#'); hash != std::string::npos) target.resize(hash);
  if (!target.empty() && target.front() == '?') target.insert(0, "/");

  Signed s = sign(request.method, target, request.headers, request.body, creds, region, service, date);
  request.headers.emplace_back("Authorization", s.authorization);
}

}  // namespace berth::cloud::sigv4
