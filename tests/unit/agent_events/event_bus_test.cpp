// The event bus behind GET /events: dockerd's message shape, its filters,
// since/until replay from the ring, and slow subscribers being dropped.
#include "agent/events/event_bus.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

namespace berth::agent::events {
namespace {

using namespace std::chrono_literals;

Event container_event(const std::string& action, const std::string& id, const std::string& name,
                      Attributes extra = {}) {
  Event e;
  e.type = "container";
  e.action = action;
  e.actor_id = id;
  e.attributes = {{"image", "busybox"}, {"name", name}};
  for (auto& [k, v] : extra) e.attributes[k] = v;
  return e;
}

Filter filter(const std::string& json) { return Filter::parse(json); }

std::vector<std::string> actions(const std::vector<Event>& events) {
  std::vector<std::string> out;
  for (const Event& e : events) out.push_back(e.action);
  return out;
}

TEST(EventMessage, ContainerEventHasDockerdsFieldsInOrder) {
  Event e = container_event("die", "abc123", "web", {{"exitCode", "0"}, {"com.example", "x"}});
  e.time_nano = 1'700'000'000'123'456'789;
  EXPECT_EQ(e.to_json().dump(),
            R"({"status":"die","id":"abc123","from":"busybox","Type":"container","Action":"die",)"
            R"("Actor":{"ID":"abc123","Attributes":{"com.example":"x","exitCode":"0","image":"busybox",)"
            R"("name":"web"}},"scope":"local","time":1700000000,"timeNano":1700000000123456789})");
}

TEST(EventMessage, NetworkEventHasNoDeprecatedFields) {
  Event e;
  e.type = "network";
  e.action = "connect";
  e.actor_id = "net1";
  e.attributes = {{"container", "abc"}, {"name", "bridge"}, {"type", "bridge"}};
  e.time_nano = 5'000'000'000;
  auto j = e.to_json();
  EXPECT_FALSE(j.contains("status"));
  EXPECT_FALSE(j.contains("id"));
  EXPECT_FALSE(j.contains("from"));
  EXPECT_EQ(j["Type"], "network");
  EXPECT_EQ(j["time"], 5);
}

TEST(EventMessage, ImageEventHasStatusAndIdButNoFrom) {
  Event e;
  e.type = "image";
  e.action = "pull";
  e.actor_id = "busybox:latest";
  e.attributes = {{"name", "busybox"}};
  auto j = e.to_json();
  EXPECT_EQ(j["status"], "pull");
  EXPECT_EQ(j["id"], "busybox:latest");
  EXPECT_FALSE(j.contains("from"));
}

TEST(EventFilter, TypeEventAndContainerByIdPrefixOrName) {
  Event start = container_event("start", "abcdef0123", "web");
  EXPECT_TRUE(filter("").matches(start));
  EXPECT_TRUE(filter(R"({"type":{"container":true}})").matches(start));
  EXPECT_FALSE(filter(R"({"type":{"network":true}})").matches(start));
  EXPECT_TRUE(filter(R"({"type":["container","image"]})").matches(start));
  EXPECT_TRUE(filter(R"({"event":["start","die"]})").matches(start));
  EXPECT_FALSE(filter(R"({"event":["die"]})").matches(start));
  EXPECT_TRUE(filter(R"({"container":["abcdef"]})").matches(start));
  EXPECT_TRUE(filter(R"({"container":["web"]})").matches(start));
  EXPECT_FALSE(filter(R"({"container":["db"]})").matches(start));
  // Several keys must all match.
  EXPECT_FALSE(filter(R"({"container":["web"],"event":["die"]})").matches(start));
}

TEST(EventFilter, ContainerFilterLeavesOutOtherTypes) {
  Event net;
  net.type = "network";
  net.action = "connect";
  net.actor_id = "n1";
  net.attributes = {{"container", "abcdef"}, {"name", "bridge"}, {"type", "bridge"}};
  EXPECT_FALSE(filter(R"({"container":["abcdef"]})").matches(net));
  EXPECT_TRUE(filter(R"({"network":["bridge"]})").matches(net));
  EXPECT_TRUE(filter(R"({"network":["n1"]})").matches(net));
  EXPECT_FALSE(filter(R"({"network":["other"]})").matches(net));
}

TEST(EventFilter, ExecEventsMatchByPrefix) {
  Event e = container_event("exec_create: sh -c date", "abc", "web", {{"execID", "e1"}});
  EXPECT_TRUE(filter(R"({"event":["exec_create"]})").matches(e));
  EXPECT_FALSE(filter(R"({"event":["exec_start"],"type":["image"]})").matches(e));
}

TEST(EventFilter, ImageMatchesIdNameAndNameWithoutTag) {
  Event c = container_event("start", "abc", "web");
  c.attributes["image"] = "busybox:1.36";
  EXPECT_TRUE(filter(R"({"image":["busybox:1.36"]})").matches(c));
  EXPECT_TRUE(filter(R"({"image":["busybox"]})").matches(c));
  EXPECT_FALSE(filter(R"({"image":["alpine"]})").matches(c));
  Event tag;
  tag.type = "image";
  tag.action = "tag";
  tag.actor_id = "sha256:feed";
  tag.attributes = {{"name", "127.0.0.1:5000/app:v1"}};
  EXPECT_TRUE(filter(R"({"image":["sha256:feed"]})").matches(tag));
  EXPECT_TRUE(filter(R"({"image":["127.0.0.1:5000/app"]})").matches(tag));
  EXPECT_FALSE(filter(R"({"image":["127.0.0.1:5000"]})").matches(tag));
}

TEST(EventFilter, LabelsAreAllRequired) {
  Event e = container_event("start", "abc", "web", {{"tier", "front"}, {"team", "a"}});
  EXPECT_TRUE(filter(R"({"label":["tier"]})").matches(e));
  EXPECT_TRUE(filter(R"({"label":["tier=front","team=a"]})").matches(e));
  EXPECT_FALSE(filter(R"({"label":["tier=back"]})").matches(e));
  EXPECT_FALSE(filter(R"({"label":["tier=front","owner"]})").matches(e));
}

TEST(EventFilter, VolumeByName) {
  Event v;
  v.type = "volume";
  v.action = "create";
  v.actor_id = "data";
  v.attributes = {{"driver", "local"}};
  EXPECT_TRUE(filter(R"({"volume":["data"]})").matches(v));
  EXPECT_FALSE(filter(R"({"volume":["logs"]})").matches(v));
  EXPECT_TRUE(filter(R"({"type":["volume"],"scope":["local"]})").matches(v));
  EXPECT_FALSE(filter(R"({"scope":["swarm"]})").matches(v));
}

TEST(EventFilter, MalformedJsonIsRejected) {
  EXPECT_THROW(filter("{"), std::invalid_argument);
  EXPECT_THROW(filter(R"(["type"])"), std::invalid_argument);
  EXPECT_THROW(filter(R"({"type":"container"})"), std::invalid_argument);
  EXPECT_THROW(filter(R"({"type":{"container":"yes"}})"), std::invalid_argument);
  // A value switched off is no filter.
  EXPECT_TRUE(filter(R"({"type":{"network":false}})").matches(container_event("start", "a", "b")));
}

TEST(EventTime, UnixSecondsRfc3339AndDurations) {
  const std::int64_t now = 1'700'000'000'000'000'000;
  EXPECT_EQ(parse_event_time("1700000000", now), 1'700'000'000'000'000'000);
  EXPECT_EQ(parse_event_time("1700000000.5", now), 1'700'000'000'500'000'000);
  EXPECT_EQ(parse_event_time("1700000000.000000001", now), 1'700'000'000'000'000'001);
  EXPECT_EQ(parse_event_time("2023-11-14T22:13:20Z", now), 1'700'000'000'000'000'000);
  EXPECT_EQ(parse_event_time("2023-11-14T22:13:20.25Z", now), 1'700'000'000'250'000'000);
  EXPECT_EQ(parse_event_time("2023-11-14T23:13:20+01:00", now), 1'700'000'000'000'000'000);
  EXPECT_EQ(parse_event_time("10m", now), now - 600'000'000'000);
  EXPECT_EQ(parse_event_time("1h30m", now), now - 5'400'000'000'000);
  EXPECT_EQ(parse_event_time("1.5s", now), now - 1'500'000'000);
  EXPECT_EQ(parse_event_time("250ms", now), now - 250'000'000);
  EXPECT_FALSE(parse_event_time("", now));
  EXPECT_FALSE(parse_event_time("yesterday", now));
  EXPECT_FALSE(parse_event_time("10x", now));
  EXPECT_FALSE(parse_event_time("2023-13-01T00:00:00Z", now));
  EXPECT_FALSE(parse_event_time("1700000000.5.5", now));
}

TEST(EventBus, LiveSubscriberGetsMatchingEventsInOrder) {
  EventBus bus;
  auto sub = bus.subscribe(filter(R"({"container":["web"]})"));
  EXPECT_TRUE(sub->replay().empty());
  bus.publish(container_event("create", "a1", "web"));
  bus.publish(container_event("create", "b2", "db"));
  bus.publish(container_event("start", "a1", "web"));
  Event e;
  ASSERT_EQ(sub->next(1s, e), Subscription::Status::Event);
  EXPECT_EQ(e.action, "create");
  EXPECT_GT(e.time_nano, 0);
  std::int64_t first = e.time_nano;
  ASSERT_EQ(sub->next(1s, e), Subscription::Status::Event);
  EXPECT_EQ(e.action, "start");
  EXPECT_GE(e.time_nano, first);
  EXPECT_EQ(sub->next(20ms, e), Subscription::Status::Timeout);
}

TEST(EventBus, WakesAWaitingSubscriberPromptly) {
  EventBus bus;
  auto sub = bus.subscribe({});
  auto t0 = std::chrono::steady_clock::now();
  std::thread publisher([&] {
    std::this_thread::sleep_for(50ms);
    bus.emit("container", "die", "a1", {{"exitCode", "3"}});
  });
  Event e;
  auto status = sub->next(5s, e);
  auto waited = std::chrono::steady_clock::now() - t0;
  publisher.join();
  ASSERT_EQ(status, Subscription::Status::Event);
  EXPECT_EQ(e.attributes.at("exitCode"), "3");
  EXPECT_LT(waited, 1s);
}

TEST(EventBus, SinceAndUntilReplayFromTheRing) {
  EventBus bus;
  for (int i = 1; i <= 5; ++i) {
    Event e = container_event("a" + std::to_string(i), "c", "web");
    e.time_nano = i * 1'000'000'000LL;
    bus.publish(e);
  }
  EXPECT_TRUE(bus.subscribe({})->replay().empty());  // dockerd: no replay without since/until
  EXPECT_EQ(actions(bus.subscribe({}, 3'000'000'000LL)->replay()),
            (std::vector<std::string>{"a3", "a4", "a5"}));
  EXPECT_EQ(actions(bus.subscribe({}, 2'000'000'000LL, 4'000'000'000LL)->replay()),
            (std::vector<std::string>{"a2", "a3", "a4"}));
  EXPECT_EQ(actions(bus.subscribe({}, std::nullopt, 2'500'000'000LL)->replay()),
            (std::vector<std::string>{"a1", "a2"}));
  EXPECT_EQ(actions(bus.subscribe(filter(R"({"event":["a4","a1"]})"), 0)->replay()),
            (std::vector<std::string>{"a1", "a4"}));
}

TEST(EventBus, RingKeepsOnlyTheNewest) {
  EventBus bus(3);
  for (int i = 1; i <= 5; ++i) bus.emit("volume", "v" + std::to_string(i), "x");
  EXPECT_EQ(actions(bus.subscribe({}, 0)->replay()), (std::vector<std::string>{"v3", "v4", "v5"}));
}

TEST(EventBus, TimesNeverGoBackwards) {
  EventBus bus;
  Event late = container_event("x", "c", "n");
  late.time_nano = now_nano() + 3'600'000'000'000LL;  // an hour ahead
  bus.publish(late);
  bus.emit("container", "y", "c");
  auto replay = bus.subscribe({}, 0)->replay();
  ASSERT_EQ(replay.size(), 2u);
  EXPECT_GE(replay[1].time_nano, replay[0].time_nano);
}

TEST(EventBus, SlowSubscriberIsDroppedWithoutBlockingPublishers) {
  EventBus bus(10, 4);
  auto slow = bus.subscribe({});
  auto quick = bus.subscribe({});
  Event e;
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < 10; ++i) {
    bus.emit("container", "start", "c" + std::to_string(i));
    ASSERT_EQ(quick->next(1s, e), Subscription::Status::Event);  // keeps up
  }
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 1s);
  EXPECT_EQ(slow->next(10ms, e), Subscription::Status::Overflow);
  EXPECT_EQ(bus.dropped_subscribers(), 1u);
  EXPECT_EQ(bus.subscribers(), 1u);
  bus.emit("container", "stop", "c0");
  EXPECT_EQ(quick->next(1s, e), Subscription::Status::Event);
  EXPECT_EQ(e.action, "stop");
}

TEST(EventBus, FilteredOutEventsDoNotFillTheQueue) {
  EventBus bus(10, 2);
  auto sub = bus.subscribe(filter(R"({"type":["network"]})"));
  for (int i = 0; i < 10; ++i) bus.emit("container", "start", "c");
  bus.emit("network", "create", "n");
  Event e;
  ASSERT_EQ(sub->next(1s, e), Subscription::Status::Event);
  EXPECT_EQ(e.action, "create");
}

TEST(EventBus, CloseEndsWaitingSubscribersAtOnce) {
  EventBus bus;
  auto sub = bus.subscribe({});
  std::atomic<bool> ended{false};
  Subscription::Status status = Subscription::Status::Timeout;
  std::thread reader([&] {
    Event e;
    status = sub->next(10s, e);
    ended = true;
  });
  std::this_thread::sleep_for(50ms);
  EXPECT_FALSE(ended);
  auto t0 = std::chrono::steady_clock::now();
  bus.close();
  reader.join();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 1s);
  EXPECT_EQ(status, Subscription::Status::Closed);
  Event e;
  EXPECT_EQ(bus.subscribe({})->next(10ms, e), Subscription::Status::Closed);
}

TEST(EventBus, UnsubscribesOnDestruction) {
  EventBus bus;
  {
    auto a = bus.subscribe({});
    auto b = bus.subscribe({});
    EXPECT_EQ(bus.subscribers(), 2u);
  }
  EXPECT_EQ(bus.subscribers(), 0u);
  bus.emit("container", "start", "c");  // nobody left to queue for
}

}  // namespace
}  // namespace berth::agent::events
