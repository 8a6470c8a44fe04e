#pragma once
// dockerd's event stream (GET /events): the stores and managers publish, each
// /events client subscribes. Publishing never blocks on a subscriber: every
// subscriber has a bounded queue and is dropped when it overflows. The last
// `ring_capacity` events are kept for `since` replays. Thread-safe.
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace berth::agent::events {

using Attributes = std::map<std::string, std::string>;

struct Event {
  std::string type;      // "container", "image", "network", "volume"
  std::string action;    // "create", "start", "die", "exec_create: sh -c ..."
  std::string actor_id;  // container id, image id or reference, network id, volume name
  Attributes attributes;
  std::string scope = "local";
  std::int64_t time_nano = 0;  // unix nanoseconds; stamped by publish() when 0

  // dockerd's EventMessage, with the deprecated status/id/from of container
  // and image events, in dockerd's field order.
  nlohmann::ordered_json to_json() const;
};

// The `filters` query parameter of GET /events, matched like dockerd's
// daemon/events/filter.go (type, event, container, image, label, network,
// volume, scope; keys for swarm objects match nothing here but are accepted).
class Filter {
 public:
  Filter() = default;
  // {"type":{"container":true}} or {"type":["container"]}; "" or "{}" is no
  // filter. Throws std::invalid_argument with dockerd-like wording.
  static Filter parse(std::string_view json_text);
  void add(const std::string& key, const std::string& value) { fields_[key].insert(value); }
  bool matches(const Event& e) const;

 private:
  bool contains(const std::string& key) const { return fields_.count(key) != 0; }
  // True when key is absent, or a value equals `source`.
  bool exact(const std::string& key, const std::string& source) const;
  // As exact, or a value is a prefix of `source`.
  bool fuzzy(const std::string& key, const std::string& source) const;
  bool fuzzy_name(const Event& e, const std::string& key) const;
  std::map<std::string, std::set<std::string>> fields_;
};

class EventBus;

// One /events client: replayed events first, then live ones. Released (and
// unsubscribed) by destruction.
class Subscription {
 public:
  enum class Status { Event, Timeout, Closed, Overflow };
  ~Subscription();
  Subscription(const Subscription&) = delete;
  Subscription& operator=(const Subscription&) = delete;

  // The events from the ring that matched since/until/filter at subscribe time.
  const std::vector<Event>& replay() const { return replay_; }
  // Waits up to `wait` for the next live event. Closed: the bus was closed
  // (agent stopping). Overflow: this subscriber fell too far behind.
  Status next(std::chrono::milliseconds wait, Event& out);

 private:
  friend class EventBus;
  Subscription(EventBus& bus, Filter filter) : bus_(bus), filter_(std::move(filter)) {}
  EventBus& bus_;
  Filter filter_;
  std::vector<Event> replay_;
  // Guarded by bus_.mu_.
  std::deque<Event> queue_;
  bool overflowed_ = false;
  std::condition_variable cv_;
};

class EventBus {
 public:
  explicit EventBus(std::size_t ring_capacity = 1000, std::size_t queue_limit = 4096);
  ~EventBus();
  EventBus(const EventBus&) = delete;
  EventBus& operator=(const EventBus&) = delete;

  // Stamps the time (monotonic, never before the previous event), keeps it in
  // the ring and queues it for every matching subscriber.
  void publish(Event e);
  void emit(std::string type, std::string action, std::string actor_id, Attributes attributes = {});

  // since/until: unix nanoseconds. With either set, the ring's events in
  // [since, until] that match are replayed (dockerd: none without both unset).
  std::unique_ptr<Subscription> subscribe(Filter filter, std::optional<std::int64_t> since = {},
                                          std::optional<std::int64_t> until = {});
  // Wakes every subscriber with Closed; later subscribers get Closed at once.
  void close();

  std::size_t subscribers() const;
  std::uint64_t dropped_subscribers() const;

 private:
  friend class Subscription;
  void unsubscribe(Subscription* s);

  const std::size_t ring_capacity_, queue_limit_;
  mutable std::mutex mu_;
  std::deque<Event> ring_;
  std::set<Subscription*> subs_;
  std::int64_t last_nano_ = 0;
  std::uint64_t dropped_ = 0;
  bool closed_ = false;
};

// GET /events since/until: unix seconds with an optional fraction
// ("1700000000.5"), RFC 3339 ("2024-01-02T03:04:05.1Z", "+01:00", or a bare
// date "2024-01-02"), or a Go duration before now ("10m", "1h30m", "1.5s").
// nullopt when malformed.
std::optional<std::int64_t> parse_event_time(std::string_view text, std::int64_t now_nano);
std::int64_t now_nano();

}  // namespace berth::agent::events
