#include "drivers/cloud/http.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <deque>
#include <thread>

namespace berth::cloud {
namespace {

using namespace std::chrono_literals;

class FakeClock final : public Clock {
 public:
  std::chrono::system_clock::time_point now() override { return now_; }
  void sleep(std::chrono::milliseconds d, const CancelToken& cancel) override {
    cancel.throw_if_cancelled();
    sleeps.push_back(d);
    now_ += d;
  }
  std::vector<std::chrono::milliseconds> sleeps;
  std::chrono::system_clock::time_point now_ = std::chrono::system_clock::time_point(std::chrono::seconds(1'700'000'000));
};

// Answers from a script: a response, or a TransportError.
class ScriptedTransport final : public Transport {
 public:
  struct Step {
    HttpResponse response;
    std::optional<TransportError> error;
  };
  HttpResponse send(const HttpRequest& request, std::chrono::milliseconds timeout) override {
    seen.push_back(request);
    timeouts.push_back(timeout);
    if (script.empty()) throw std::logic_error("unexpected request " + request.url);
    Step s = script.front();
    script.pop_front();
    if (s.error) throw *s.error;
    return s.response;
  }
  void respond(long status, Headers headers = {}, std::string body = "") {
    script.push_back({HttpResponse{status, std::move(headers), std::move(body)}, std::nullopt});
  }
  void fail(bool may_have_arrived, bool timed_out = false) {
    script.push_back({{}, TransportError("boom", timed_out, may_have_arrived)});
  }
  std::deque<Step> script;
  std::vector<HttpRequest> seen;
  std::vector<std::chrono::milliseconds> timeouts;
};

struct Fixture : ::testing::Test {
  ScriptedTransport transport;
  FakeClock clock;
  std::atomic<bool> cancelled{false};
  RetryPolicy policy{4, 100ms, 10s, 5s};
  HttpClient client{transport, clock, policy, CancelToken{&cancelled}};
  Fixture() { client.set_random([] { return 0.0; }); }
};

TEST_F(Fixture, SafeRequestRetries5xxWithGrowingBackoff) {
  transport.respond(503);
  transport.respond(502);
  transport.respond(200, {}, "ok");
  auto r = client.send({"GET", "https://api/x", {}, ""}, Retry::Safe);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "ok");
  EXPECT_EQ(client.attempts(), 3);
  // Half the step at jitter 0: 100ms<<0, 100ms<<1.
  EXPECT_EQ(clock.sleeps, (std::vector<std::chrono::milliseconds>{50ms, 100ms}));
  EXPECT_EQ(transport.timeouts.front(), 5s);
}

TEST_F(Fixture, GivesUpAfterMaxAttemptsAndReturnsTheLastAnswer) {
  for (int i = 0; i < 4; ++i) transport.respond(500, {}, "down");
  auto r = client.send({"GET", "https://api/x", {}, ""}, Retry::Safe);
  EXPECT_EQ(r.status, 500);
  EXPECT_EQ(client.attempts(), 4);
  EXPECT_TRUE(transport.script.empty());
}

TEST_F(Fixture, UnsafeRequestIsNotRepeatedAfterA5xx) {
  transport.respond(500);
  auto r = client.send({"POST", "https://api/droplets", {}, "{}"}, Retry::Unsafe);
  EXPECT_EQ(r.status, 500);
  EXPECT_EQ(client.attempts(), 1);
}

TEST_F(Fixture, UnsafeRequestIsRepeatedAfter429HonouringRetryAfterSeconds) {
  transport.respond(429, {{"retry-after", "7"}});
  transport.respond(201);
  auto r = client.send({"POST", "https://api/droplets", {}, "{}"}, Retry::Unsafe);
  EXPECT_EQ(r.status, 201);
  EXPECT_EQ(clock.sleeps, (std::vector<std::chrono::milliseconds>{7s}));
}

TEST_F(Fixture, RetryAfterAsAnHttpDate) {
  // 1700000000 is Tue, 14 Nov 2023 22:13:20 GMT.
  transport.respond(503, {{"Retry-After", "Tue, 14 Nov 2023 22:13:23 GMT"}});
  transport.respond(200);
  client.send({"GET", "https://api/x", {}, ""}, Retry::Safe);
  EXPECT_EQ(clock.sleeps, (std::vector<std::chrono::milliseconds>{3s}));
}

TEST_F(Fixture, RateLimitResetIsHonouredWhenNothingRemains) {
  const auto reset = std::chrono::duration_cast<std::chrono::seconds>(clock.now_.time_since_epoch()).count() + 4;
  transport.respond(429, {{"RateLimit-Remaining", "0"}, {"RateLimit-Reset", std::to_string(reset)}});
  transport.respond(200);
  client.send({"GET", "https://api/x", {}, ""}, Retry::Safe);
  EXPECT_EQ(clock.sleeps, (std::vector<std::chrono::milliseconds>{4s}));
}

TEST_F(Fixture, WaitsAreCappedAtMaxDelay) {
  transport.respond(429, {{"Retry-After", "3600"}});
  transport.respond(200);
  client.send({"GET", "https://api/x", {}, ""}, Retry::Safe);
  EXPECT_EQ(clock.sleeps, (std::vector<std::chrono::milliseconds>{10s}));
}

TEST_F(Fixture, JitterSpreadsTheWait) {
  client.set_random([] { return 0.999; });
  EXPECT_GT(client.retry_delay(3, nullptr), 390ms);   // step 400 ms
  client.set_random([] { return 0.0; });
  EXPECT_EQ(client.retry_delay(3, nullptr), 200ms);
  EXPECT_EQ(client.retry_delay(30, nullptr), 5s);      // half of the 10 s cap
}

TEST_F(Fixture, NetworkErrorsAreRetriedForSafeRequests) {
  transport.fail(true, true);
  transport.respond(200);
  EXPECT_EQ(client.send({"GET", "https://api/x", {}, ""}, Retry::Safe).status, 200);
}

TEST_F(Fixture, UnsafeRequestRetriesOnlyWhenItSurelyNeverArrived) {
  transport.fail(false);   // connection refused
  transport.respond(201);
  EXPECT_EQ(client.send({"POST", "https://api/x", {}, ""}, Retry::Unsafe).status, 201);
  transport.fail(true);    // reset after sending: the answer is lost
  EXPECT_THROW(client.send({"POST", "https://api/x", {}, ""}, Retry::Unsafe), TransportError);
}

TEST_F(Fixture, SignerRunsBeforeEveryAttempt) {
  int n = 0;
  client.set_signer([&n](HttpRequest& r) { r.headers.emplace_back("X-Attempt", std::to_string(++n)); });
  transport.respond(503);
  transport.respond(200);
  client.send({"GET", "https://api/x", {}, ""}, Retry::Safe);
  ASSERT_EQ(transport.seen.size(), 2u);
  EXPECT_EQ(transport.seen[1].headers.back().second, "2");
  EXPECT_EQ(transport.seen[1].headers.size(), 1u);   // each attempt signs a fresh copy
}

TEST_F(Fixture, CancelStopsRetrying) {
  transport.respond(503);
  cancelled = true;
  EXPECT_THROW(client.send({"GET", "https://api/x", {}, ""}, Retry::Safe), Interrupted);
  EXPECT_EQ(client.attempts(), 0);
}

TEST_F(Fixture, PollUntilUsesTheClockAndHasADeadline) {
  int polls = 0;
  poll_until(clock, CancelToken{&cancelled}, 10s, 2s, "droplet active", [&] { return ++polls == 3; });
  EXPECT_EQ(polls, 3);
  EXPECT_EQ(clock.sleeps.size(), 2u);
  try {
    poll_until(clock, CancelToken{&cancelled}, 5s, 2s, "droplet 42 active", [] { return false; });
    FAIL() << "no deadline";
  } catch (const DriverError& e) {
    EXPECT_STREQ(e.what(), "droplet 42 active did not happen within 5 s");
  }
}

TEST(Endpoint, HttpsAnywhereHttpOnlyToLoopback) {
  EXPECT_EQ(checked_endpoint("https://api.digitalocean.com/", "x"), "https://api.digitalocean.com");
  EXPECT_EQ(checked_endpoint("http://127.0.0.1:8080", "x"), "http://127.0.0.1:8080");
  EXPECT_EQ(checked_endpoint("http://[::1]:8080/", "x"), "http://[::1]:8080");
  EXPECT_EQ(checked_endpoint("http://localhost:1", "x"), "http://localhost:1");
  EXPECT_THROW(checked_endpoint("http://10.0.0.1:8080", "digitalocean-api-url"), UserError);
  EXPECT_THROW(checked_endpoint("http://127.0.0.1.evil.com/", "x"), UserError);
  EXPECT_THROW(checked_endpoint("ftp://127.0.0.1/", "x"), UserError);
  EXPECT_THROW(checked_endpoint("api.digitalocean.com", "x"), UserError);
  try {
    checked_endpoint("http://example.com", "digitalocean-api-url");
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("--digitalocean-api-url"), std::string::npos);
  }
}

TEST(Endpoint, UrlEncodeKeepsOnlyUnreserved) {
  EXPECT_EQ(url_encode("a-b_c.d~e"), "a-b_c.d~e");
  EXPECT_EQ(url_encode("a b/c=d&é"), "a%20b%2Fc%3Dd%26%C3%A9");
}

// A one-connection-at-a-time HTTP server on 127.0.0.1 answering `reply` (raw),
// optionally after a delay. Records the raw requests.
class LoopbackServer {
 public:
  LoopbackServer(std::string reply, std::chrono::milliseconds delay = 0ms) : reply_(std::move(reply)), delay_(delay) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a);
    socklen_t len = sizeof a;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    ::listen(fd_, 4);
    thread_ = std::thread([this] { serve(); });
  }
  ~LoopbackServer() {
    stop_ = true;
    ::shutdown(fd_, SHUT_RDWR);
    ::close(fd_);
    thread_.join();
  }
  std::string url(const std::string& path) const { return "http://127.0.0.1:" + std::to_string(port_) + path; }
  std::string request;

 private:
  void serve() {
    int c = ::accept(fd_, nullptr, nullptr);
    if (c < 0) return;
    char buf[4096];
    ssize_t n;
    while ((n = ::read(c, buf, sizeof buf)) > 0) {
      request.append(buf, n);
      auto end = request.find("\r\n\r\n");
      if (end == std::string::npos) continue;
      auto cl = request.find("Content-Length: ");
      size_t want = cl == std::string::npos ? 0 : std::stoul(request.substr(cl + 16));
      if (request.size() >= end + 4 + want) break;
    }
    std::this_thread::sleep_for(delay_);
    if (!stop_) (void)!::write(c, reply_.data(), reply_.size());
    ::close(c);
  }
  std::string reply_;
  std::chrono::milliseconds delay_;
  int fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

TEST(Curl, SendsMethodHeadersAndBodyAndReadsTheAnswer) {
  LoopbackServer server("HTTP/1.1 201 Created\r\nContent-Length: 2\r\nX-Request-Id: abc\r\n\r\n{}");
  auto t = make_curl_transport();
  auto r = t->send({"POST", server.url("/v2/droplets"), {{"Authorization", "Bearer t"}, {"Content-Type", "application/json"}}, "{\"a\":1}"}, 5s);
  EXPECT_EQ(r.status, 201);
  EXPECT_EQ(r.body, "{}");
  EXPECT_EQ(r.header("x-request-id"), "abc");
  EXPECT_EQ(server.request.rfind("POST /v2/droplets HTTP/1.1\r\n", 0), 0u) << server.request;
  EXPECT_NE(server.request.find("Authorization: Bearer t\r\n"), std::string::npos);
  EXPECT_NE(server.request.find("{\"a\":1}"), std::string::npos);
  EXPECT_EQ(server.request.find("Expect:"), std::string::npos);
}

TEST(Curl, TimeoutIsATransportErrorThatMayHaveArrived) {
  LoopbackServer server("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 1500ms);
  auto t = make_curl_transport();
  try {
    t->send({"GET", server.url("/slow?token=secret"), {}, ""}, 300ms);
    FAIL() << "no timeout";
  } catch (const TransportError& e) {
    EXPECT_TRUE(e.timed_out());
    EXPECT_TRUE(e.may_have_arrived());
    EXPECT_EQ(std::string(e.what()).find("secret"), std::string::npos) << e.what();
  }
}

TEST(Curl, RefusedConnectionSurelyNeverArrived) {
  int port;
  {
    LoopbackServer server("HTTP/1.1 200 OK\r\n\r\n");
    port = std::stoi(server.url("").substr(17));
    auto t = make_curl_transport();
    t->send({"GET", server.url("/"), {}, ""}, 2s);   // let the server finish
  }
  auto t = make_curl_transport();
  try {
    t->send({"GET", "http://127.0.0.1:" + std::to_string(port) + "/", {}, ""}, 2s);
    FAIL() << "connected to a closed port";
  } catch (const TransportError& e) {
    EXPECT_FALSE(e.may_have_arrived());
    EXPECT_FALSE(e.timed_out());
  }
}

}  // namespace
}  // namespace berth::cloud
