#pragma once
// The cloud drivers' one HTTP layer: libcurl underneath, retries with
// exponential backoff and jitter on 429, 5xx and network errors (honouring
// Retry-After and RateLimit-Reset), a timeout per request, and an injectable
// clock so tests never sleep.
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/error.h"
#include "drivers/driver.h"

namespace berth::cloud {

using Headers = std::vector<std::pair<std::string, std::string>>;

struct HttpRequest {
  std::string method = "GET";
  std::string url;
  Headers headers;
  std::string body;
};

struct HttpResponse {
  long status = 0;
  Headers headers;    // names as received
  std::string body;
  // The first header with this name, compared case-insensitively; "" when absent.
  std::string header(std::string_view name) const;
};

// One attempt failed below HTTP: refused, reset, timed out, bad TLS.
class TransportError : public DriverError {
 public:
  TransportError(const std::string& m, bool timed_out, bool may_have_arrived)
      : DriverError(m), timed_out_(timed_out), may_have_arrived_(may_have_arrived) {}
  bool timed_out() const noexcept { return timed_out_; }
  // false only when the request surely never reached the server (connect failed).
  bool may_have_arrived() const noexcept { return may_have_arrived_; }

 private:
  bool timed_out_;
  bool may_have_arrived_;
};

// A provider answered with an error. what() is one line naming the provider's
// message and its request id.
class ApiError : public DriverError {
 public:
  ApiError(const std::string& m, long status, std::string code, std::string request_id)
      : DriverError(m), status_(status), code_(std::move(code)), request_id_(std::move(request_id)) {}
  long status() const noexcept { return status_; }
  const std::string& code() const noexcept { return code_; }          // e.g. "not_found", "InvalidKeyPair.NotFound"
  const std::string& request_id() const noexcept { return request_id_; }

 private:
  long status_;
  std::string code_;
  std::string request_id_;
};

// One request on the wire, no retries.
class Transport {
 public:
  virtual ~Transport() = default;
  // Throws TransportError; any HTTP status is a response.
  virtual HttpResponse send(const HttpRequest& request, std::chrono::milliseconds timeout) = 0;
};

std::unique_ptr<Transport> make_curl_transport();

class Clock {
 public:
  virtual ~Clock() = default;
  virtual std::chrono::system_clock::time_point now() = 0;
  // Sleeps, waking early (and throwing Interrupted) when `cancel` fires.
  virtual void sleep(std::chrono::milliseconds d, const CancelToken& cancel) = 0;
};

Clock& real_clock();

struct RetryPolicy {
  int max_attempts = 6;
  std::chrono::milliseconds base_delay{500};
  std::chrono::milliseconds max_delay{30000};
  std::chrono::milliseconds request_timeout{30000};
};

// Whether a request may be sent again when its answer is unknown.
enum class Retry {
  Safe,     // GET, DELETE, or made idempotent (an EC2 ClientToken)
  Unsafe,   // retried only when the server surely did not act: 429, connect refused
};

class HttpClient {
 public:
  HttpClient(Transport& transport, Clock& clock, RetryPolicy policy, CancelToken cancel);

  // Called before every attempt (SigV4 signs each with a fresh date).
  void set_signer(std::function<void(HttpRequest&)> signer) { signer_ = std::move(signer); }
  // [0,1) for the jitter; tests make it fixed.
  void set_random(std::function<double()> random) { random_ = std::move(random); }

  // Sends with retries. Returns the last response, whatever its status; throws
  // the last TransportError when every attempt failed below HTTP.
  HttpResponse send(HttpRequest request, Retry retry);

  int attempts() const { return attempts_; }   // requests put on the wire so far
  Clock& clock() { return clock_; }
  const CancelToken& cancel() const { return cancel_; }

  // The wait before attempt `attempt` (1 = first retry) after `response`
  // (nullptr after a transport error): Retry-After (seconds or an HTTP date),
  // then RateLimit-Reset (epoch seconds) when no requests remain, else
  // exponential backoff with full jitter, capped at max_delay.
  std::chrono::milliseconds retry_delay(int attempt, const HttpResponse* response);

 private:
  Transport& transport_;
  Clock& clock_;
  RetryPolicy policy_;
  CancelToken cancel_;
  std::function<void(HttpRequest&)> signer_;
  std::function<double()> random_;
  int attempts_ = 0;
};

// Accepts https:// anywhere and http:// only to a loopback host; throws
// UserError naming `flag` otherwise. Returns the URL without a trailing '/'.
std::string checked_endpoint(const std::string& url, const std::string& flag);

// Percent-encoding of RFC 3986 unreserved characters (what SigV4 and query strings need).
std::string url_encode(std::string_view s);

// Polls `probe` until it returns true, sleeping `interval` on `clock` between
// tries; throws DriverError with `what` when `deadline` passes.
void poll_until(Clock& clock, const CancelToken& cancel, std::chrono::milliseconds deadline,
                std::chrono::milliseconds interval, const std::string& what, const std::function<bool()>& probe);

}  // namespace berth::cloud
