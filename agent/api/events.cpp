// GET /events: dockerd's event stream from the engine's EventBus.
#include <chrono>
#include <memory>
#include <optional>
#include <stdexcept>

#include "agent/api/routes.h"
#include "agent/events/event_bus.h"

namespace berth::agent::api {
namespace {

using events::Subscription;

// How often an idle stream checks whether its client went away.
constexpr std::chrono::milliseconds kIdlePoll{250};

std::optional<std::int64_t> time_param(const Request& r, const char* key, std::int64_t now) {
  auto v = r.query_param(key);
  if (!v || v->empty()) return std::nullopt;
  auto t = events::parse_event_time(*v, now);
  if (!t) throw HttpError(400, std::string("invalid value for \"") + key + "\": " + *v);
  return t;
}

bool write_event(StreamWriter& w, const events::Event& e) {
  return w.write(e.to_json().dump() + "\n");
}

}  // namespace

void add_event_routes(Router& router, Engine& engine) { add_event_routes(router, engine.events); }

void add_event_routes(Router& router, std::shared_ptr<events::EventBus> bus) {
  router.add("GET", "/events", [bus](const Request& r) {
    const std::int64_t now = events::now_nano();
    auto since = time_param(r, "since", now);
    auto until = time_param(r, "until", now);
    if (until && since && *until < *since)
      throw HttpError(400, "`since` time (" + r.query_param("since").value_or("") +
                               ") cannot be after `until` time (" +
                               r.query_param("until").value_or("") + ")");
    events::Filter filter;
    try {
      filter = events::Filter::parse(r.query_param("filters").value_or(""));
    } catch (const std::invalid_argument& e) {
      throw HttpError(400, e.what());
    }
    const bool only_past = until && *until < now;
    // Subscribe now, so nothing published before the stream starts is missed.
    std::shared_ptr<Subscription> sub = bus->subscribe(std::move(filter), since, until);

    Response resp;
    resp.status = 200;
    resp.headers.set("Content-Type", "application/json");
    resp.stream = [sub, until, only_past](StreamWriter& w) {
      for (const events::Event& e : sub->replay())
        if (!write_event(w, e)) return;
      if (only_past) return;
      for (;;) {
        auto wait = kIdlePoll;
        if (until) {
          std::int64_t left = *until - events::now_nano();
          if (left <= 0) return;
          wait = std::min(wait, std::chrono::duration_cast<std::chrono::milliseconds>(
                                    std::chrono::nanoseconds(left)) +
                                    std::chrono::milliseconds(1));
        }
        events::Event e;
        switch (sub->next(wait, e)) {
          case Subscription::Status::Event:
            if (until && e.time_nano > *until) return;
            if (!write_event(w, e)) return;
            break;
          case Subscription::Status::Timeout:
            if (w.client_gone()) return;
            break;
          case Subscription::Status::Closed:
          case Subscription::Status::Overflow:
            return;
        }
      }
    };
    return resp;
  });
}

}  // namespace berth::agent::api
