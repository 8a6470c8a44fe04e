// GET /events through the Engine API front (Api + Router), as the docker CLI
// calls it: since/until/filters, replay then live events, and the stream
// ending when the client goes, when `until` passes or when the bus closes.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdio>
#include <chrono>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "agent/api/api.h"
#include "agent/api/routes.h"
#include "agent/events/event_bus.h"

namespace berth::agent::api {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

class FakeWriter : public StreamWriter {
 public:
  bool write(std::string_view data) override {
    std::lock_guard l(mu_);
    out_.append(data);
    return !gone;
  }
  bool client_gone() override { return gone; }
  std::vector<json> messages() {
    std::lock_guard l(mu_);
    std::vector<json> out;
    std::istringstream in(out_);
    for (std::string line; std::getline(in, line);) out.push_back(json::parse(line));
    return out;
  }
  std::atomic<bool> gone{false};

 private:
  std::mutex mu_;
  std::string out_;
};

class EventsRoute : public ::testing::Test {
 protected:
  EventsRoute() : bus_(std::make_shared<events::EventBus>()), api_(make_router(bus_)) {}
  static Router make_router(std::shared_ptr<events::EventBus> bus) {
    Router r;
    add_event_routes(r, std::move(bus));
    return r;
  }
  Response get(const std::string& query) {
    Request req;
    req.method = "GET";
    req.target = "/v1.47/events" + (query.empty() ? "" : "?" + query);
    return api_.handle(std::move(req));
  }
  std::shared_ptr<events::EventBus> bus_;
  Api api_;
};

// "SECONDS.NANOS" as the docker CLI sends it: the fraction always has 9 digits.
std::string seconds(std::int64_t nanos) {
  char frac[16];
  std::snprintf(frac, sizeof frac, ".%09lld", static_cast<long long>(nanos % 1'000'000'000));
  return std::to_string(nanos / 1'000'000'000) + frac;
}

TEST_F(EventsRoute, PastWindowReplaysAndEnds) {
  std::int64_t t0 = events::now_nano();
  bus_->emit("container", "create", "c1", {{"image", "busybox"}, {"name", "web"}});
  bus_->emit("container", "start", "c1", {{"image", "busybox"}, {"name", "web"}});
  bus_->emit("container", "create", "c2", {{"image", "busybox"}, {"name", "db"}});
  std::int64_t t1 = events::now_nano();
  bus_->emit("container", "die", "c1", {{"image", "busybox"}, {"name", "web"}});
  Response r = get("since=" + seconds(t0) + "&until=" + seconds(t1) +
                   "&filters=%7B%22container%22%3A%7B%22web%22%3Atrue%7D%7D");
  ASSERT_EQ(r.status, 200u);
  EXPECT_EQ(r.headers.get("Content-Type"), "application/json");
  ASSERT_TRUE(r.stream);
  FakeWriter w;
  auto start = std::chrono::steady_clock::now();
  r.stream(w);  // returns: until is in the past
  EXPECT_LT(std::chrono::steady_clock::now() - start, 1s);
  auto msgs = w.messages();
  ASSERT_EQ(msgs.size(), 2u);
  EXPECT_EQ(msgs[0]["Action"], "create");
  EXPECT_EQ(msgs[0]["status"], "create");
  EXPECT_EQ(msgs[0]["id"], "c1");
  EXPECT_EQ(msgs[0]["from"], "busybox");
  EXPECT_EQ(msgs[0]["Actor"]["Attributes"]["name"], "web");
  EXPECT_EQ(msgs[0]["scope"], "local");
  EXPECT_EQ(msgs[1]["Action"], "start");
}

TEST_F(EventsRoute, FollowsLiveEventsUntilTheClientGoes) {
  Response r = get("filters=" + std::string("%7B%22type%22%3A%5B%22container%22%5D%7D"));
  ASSERT_EQ(r.status, 200u);
  FakeWriter w;
  std::thread streamer([&] { r.stream(w); });
  // Published after the request was answered but before the stream loop runs: not lost.
  bus_->emit("network", "create", "n1", {{"name", "x"}, {"type", "bridge"}});
  bus_->emit("container", "start", "c1", {{"image", "busybox"}, {"name", "web"}});
  auto deadline = std::chrono::steady_clock::now() + 2s;
  while (w.messages().empty() && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(5ms);
  auto msgs = w.messages();
  ASSERT_EQ(msgs.size(), 1u);
  EXPECT_EQ(msgs[0]["Action"], "start");
  auto t_die = std::chrono::steady_clock::now();
  bus_->emit("container", "die", "c1", {{"exitCode", "0"}, {"name", "web"}});
  while (w.messages().size() < 2 && std::chrono::steady_clock::now() < t_die + 2s)
    std::this_thread::sleep_for(1ms);
  EXPECT_LT(std::chrono::steady_clock::now() - t_die, 100ms);
  ASSERT_EQ(w.messages().size(), 2u);
  EXPECT_EQ(w.messages()[1]["Actor"]["Attributes"]["exitCode"], "0");
  auto t_gone = std::chrono::steady_clock::now();
  w.gone = true;
  streamer.join();
  EXPECT_LT(std::chrono::steady_clock::now() - t_gone, 1s);
  r.stream = nullptr;  // as the server drops the response: the subscription goes with it
  EXPECT_EQ(bus_->subscribers(), 0u);
}

TEST_F(EventsRoute, FutureUntilEndsTheStreamOnTime) {
  auto until = events::now_nano() + 300'000'000;
  Response r = get("until=" + seconds(until));
  ASSERT_EQ(r.status, 200u);
  FakeWriter w;
  auto start = std::chrono::steady_clock::now();
  std::thread streamer([&] { r.stream(w); });
  bus_->emit("volume", "create", "v1", {{"driver", "local"}});
  streamer.join();
  auto took = std::chrono::steady_clock::now() - start;
  EXPECT_GE(took, 250ms);
  EXPECT_LT(took, 1s);
  ASSERT_EQ(w.messages().size(), 1u);
  EXPECT_EQ(w.messages()[0]["Type"], "volume");
}

TEST_F(EventsRoute, ClosingTheBusEndsOpenStreams) {
  Response r = get("");
  FakeWriter w;
  std::thread streamer([&] { r.stream(w); });
  std::this_thread::sleep_for(50ms);
  auto t0 = std::chrono::steady_clock::now();
  bus_->close();
  streamer.join();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 500ms);
}

TEST_F(EventsRoute, DurationsAndRfc3339AreAccepted) {
  bus_->emit("container", "create", "c1", {{"name", "web"}});
  FakeWriter a, b;
  Response r1 = get("since=10m&until=0s");
  ASSERT_EQ(r1.status, 200u);
  r1.stream(a);
  EXPECT_EQ(a.messages().size(), 1u);
  Response r2 = get("since=2000-01-01T00:00:00Z&until=2000-01-02");
  ASSERT_EQ(r2.status, 200u);
  r2.stream(b);
  EXPECT_TRUE(b.messages().empty());
}

TEST_F(EventsRoute, BadParametersAre400) {
  EXPECT_EQ(get("since=soon").status, 400u);
  EXPECT_EQ(get("until=later").status, 400u);
  EXPECT_EQ(get("since=200&until=100").status, 400u);
  EXPECT_EQ(get("filters=%7Bnot-json").status, 400u);
  Response r = get("since=200&until=100");
  EXPECT_NE(json::parse(r.body)["message"].get<std::string>().find("cannot be after"),
            std::string::npos);
}

}  // namespace
}  // namespace berth::agent::api
