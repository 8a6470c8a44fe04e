#include "drivers/cloud/http.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <ctime>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <thread>

namespace berth::cloud {
namespace {

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

std::string trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return std::string(s);
}

struct CurlFree {
  void operator()(CURL* c) const { curl_easy_cleanup(c); }
};
struct SlistFree {
  void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};

size_t append_body(char* data, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(data, size * n);
  return size * n;
}

size_t append_header(char* data, size_t size, size_t n, void* out) {
  auto* headers = static_cast<Headers*>(out);
  std::string_view line(data, size * n);
  if (line.rfind("HTTP/", 0) == 0) {
    headers->clear();  // a new response (after 100 Continue or a redirect)
  } else if (auto colon = line.find(':'); colon != std::string_view::npos) {
    headers->emplace_back(trim(line.substr(0, colon)), trim(line.substr(colon + 1)));
  }
  return size * n;
}

class CurlTransport final : public Transport {
 public:
  CurlTransport() {
    static std::once_flag once;
    std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  }

  HttpResponse send(const HttpRequest& request, std::chrono::milliseconds timeout) override {
    std::unique_ptr<CURL, CurlFree> curl(curl_easy_init());
    if (!curl) throw TransportError("cannot start libcurl", false, false);
    std::unique_ptr<curl_slist, SlistFree> headers;
    for (const auto& [name, value] : request.headers) {
      const std::string line = value.empty() ? name + ";" : name + ": " + value;
      headers.reset(curl_slist_append(headers.release(), line.c_str()));
    }
    // No "Expect: 100-continue" round trip.
    headers.reset(curl_slist_append(headers.release(), "Expect:"));
    HttpResponse response;
    CURL* c = curl.get();
    curl_easy_setopt(c, CURLOPT_URL, request.url.c_str());
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, request.method.c_str());
    if (request.method == "HEAD") curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    if (!request.body.empty() || request.method == "POST" || request.method == "PUT") {
      curl_easy_setopt(c, CURLOPT_POSTFIELDS, request.body.data());
      curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(request.body.size()));
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers.get());
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(timeout.count()));
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(std::min<long>(timeout.count(), 15000)));
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "berth/" BERTH_VERSION);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, append_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &response.body);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, append_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &response.headers);
    char error[CURL_ERROR_SIZE] = {0};
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, error);
    const CURLcode rc = curl_easy_perform(c);
    if (rc != CURLE_OK) {
      const bool timed_out = rc == CURLE_OPERATION_TIMEDOUT;
      const bool never_sent = rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST ||
                              rc == CURLE_COULDNT_RESOLVE_PROXY || rc == CURLE_SSL_CONNECT_ERROR ||
                              rc == CURLE_UNSUPPORTED_PROTOCOL || rc == CURLE_URL_MALFORMAT;
      throw TransportError(fmt::format("{} {}: {}", request.method, strip_query(request.url),
                                       error[0] ? error : curl_easy_strerror(rc)),
                           timed_out, !never_sent);
    }
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &response.status);
    return response;
  }

 private:
  // Query strings may hold signatures or filters; errors name the path only.
  static std::string strip_query(const std::string& url) { return url.substr(0, url.find('?')); }
};

class RealClock final : public Clock {
 public:
  std::chrono::system_clock::time_point now() override { return std::chrono::system_clock::now(); }
  void sleep(std::chrono::milliseconds d, const CancelToken& cancel) override {
    const auto until = std::chrono::steady_clock::now() + d;
    while (std::chrono::steady_clock::now() < until) {
      cancel.throw_if_cancelled();
      const auto left = until - std::chrono::steady_clock::now();
      std::this_thread::sleep_for(std::min<std::chrono::steady_clock::duration>(left, std::chrono::milliseconds(50)));
    }
    cancel.throw_if_cancelled();
  }
};

bool retryable_status(long status) { return status == 429 || (status >= 500 && status <= 599); }

// Seconds, or an HTTP date (RFC 7231 IMF-fixdate). nullopt when unreadable.
std::optional<std::chrono::milliseconds> parse_retry_after(const std::string& value,
                                                           std::chrono::system_clock::time_point now) {
  if (value.empty()) return std::nullopt;
  if (std::all_of(value.begin(), value.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)); })) {
    if (value.size() > 9) return std::nullopt;
    return std::chrono::seconds(std::stol(value));
  }
  std::tm tm{};
  if (!strptime(value.c_str(), "%a, %d %b %Y %H:%M:%S GMT", &tm)) return std::nullopt;
  const auto when = std::chrono::system_clock::from_time_t(timegm(&tm));
  return std::max(std::chrono::milliseconds(0), std::chrono::duration_cast<std::chrono::milliseconds>(when - now));
}

}  // namespace

std::string HttpResponse::header(std::string_view name) const {
  for (const auto& [n, v] : headers)
    if (iequals(n, name)) return v;
  return "";
}

std::unique_ptr<Transport> make_curl_transport() { return std::make_unique<CurlTransport>(); }

Clock& real_clock() {
  static RealClock clock;
  return clock;
}

HttpClient::HttpClient(Transport& transport, Clock& clock, RetryPolicy policy, CancelToken cancel)
    : transport_(transport), clock_(clock), policy_(policy), cancel_(cancel) {}

std::chrono::milliseconds HttpClient::retry_delay(int attempt, const HttpResponse* response) {
  using std::chrono::milliseconds;
  if (response) {
    if (auto after = parse_retry_after(response->header("Retry-After"), clock_.now()))
      return std::min(*after, policy_.max_delay);
    const std::string reset = response->header("RateLimit-Reset");
    const std::string remaining = response->header("RateLimit-Remaining");
    if (!reset.empty() && (response->status == 429 || remaining == "0")) {
      try {
        const auto at = std::chrono::system_clock::time_point(std::chrono::seconds(std::stoll(reset)));
        const auto wait = std::chrono::duration_cast<milliseconds>(at - clock_.now());
        return std::clamp(wait, milliseconds(0), policy_.max_delay);
      } catch (const std::exception&) {
      }
    }
  }
  if (!random_) {
    random_ = [] {
      static thread_local std::mt19937_64 rng{std::random_device{}()};
      return std::uniform_real_distribution<double>(0.0, 1.0)(rng);
    };
  }
  const int shift = std::min(attempt - 1, 20);
  const auto cap = std::min(policy_.max_delay, milliseconds(policy_.base_delay.count() << shift));
  // Full jitter, but never less than half the step, so retries do spread out.
  return milliseconds(static_cast<long>(cap.count() * (0.5 + 0.5 * random_())));
}

HttpResponse HttpClient::send(HttpRequest request, Retry retry) {
  for (int attempt = 1;; ++attempt) {
    cancel_.throw_if_cancelled();
    HttpRequest wire = request;
    if (signer_) signer_(wire);
    ++attempts_;
    const bool last = attempt >= policy_.max_attempts;
    try {
      HttpResponse response = transport_.send(wire, policy_.request_timeout);
      // An unsafe request that got a 5xx may have acted; the caller decides.
      const bool may_retry = response.status == 429 || (retry == Retry::Safe && retryable_status(response.status));
      if (!may_retry || last) return response;
      clock_.sleep(retry_delay(attempt, &response), cancel_);
    } catch (const TransportError& e) {
      if (last || (retry == Retry::Unsafe && e.may_have_arrived())) throw;
      clock_.sleep(retry_delay(attempt, nullptr), cancel_);
    }
  }
}

std::string checked_endpoint(const std::string& url, const std::string& flag) {
  std::string u = url;
  while (!u.empty() && u.back() == '/') u.pop_back();
  auto scheme_end = u.find("://");
  if (scheme_end == std::string::npos || u.size() == scheme_end + 3)
    throw UserError(fmt::format("--{} '{}' is not a URL; give https://HOST[:PORT]", flag, url));
  std::string scheme = u.substr(0, scheme_end);
  std::transform(scheme.begin(), scheme.end(), scheme.begin(), [](unsigned char c) { return std::tolower(c); });
  if (scheme == "https") return u;
  if (scheme != "http")
    throw UserError(fmt::format("--{} '{}' must use https://", flag, url));
  std::string host = u.substr(scheme_end + 3);
  host = host.substr(0, host.find('/'));
  if (auto at = host.rfind('@'); at != std::string::npos) host = host.substr(at + 1);
  if (!host.empty() && host.front() == '[') {
    host = host.substr(1, host.find(']') - 1);
  } else if (auto colon = host.rfind(':'); colon != std::string::npos) {
    host = host.substr(0, colon);
  }
  in_addr v4{};
  const bool loopback = host == "localhost" || host == "::1" ||
                        (inet_pton(AF_INET, host.c_str(), &v4) == 1 && (ntohl(v4.s_addr) >> 24) == 127);
  if (!loopback)
    throw UserError(fmt::format("--{} '{}': plain http is only allowed to 127.0.0.1, ::1 or localhost; use https://",
                                flag, url));
  return u;
}

std::string url_encode(std::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size() * 3);
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

void poll_until(Clock& clock, const CancelToken& cancel, std::chrono::milliseconds deadline,
                std::chrono::milliseconds interval, const std::string& what, const std::function<bool()>& probe) {
  const auto end = clock.now() + deadline;
  while (true) {
    cancel.throw_if_cancelled();
    if (probe()) return;
    if (clock.now() >= end)
      throw DriverError(fmt::format("{} did not happen within {} s", what,
                                    std::chrono::duration_cast<std::chrono::seconds>(deadline).count()));
    clock.sleep(interval, cancel);
  }
}

}  // namespace berth::cloud
