#include "agent/events/event_bus.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <ctime>
#include <stdexcept>

namespace berth::agent::events {
namespace {

constexpr std::int64_t kNanos = 1'000'000'000;

// dockerd's stripTag: the familiar name without tag or digest.
std::string strip_tag(std::string ref) {
  if (auto at = ref.find('@'); at != std::string::npos) ref.resize(at);
  auto slash = ref.rfind('/');
  auto colon = ref.rfind(':');
  if (colon != std::string::npos && (slash == std::string::npos || colon > slash)) ref.resize(colon);
  for (std::string_view p : {"docker.io/library/", "docker.io/"}) {
    if (ref.compare(0, p.size(), p) == 0 && ref.size() > p.size()) return ref.substr(p.size());
  }
  return ref;
}

bool all_digits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

std::optional<std::int64_t> parse_int(std::string_view s) {
  if (!all_digits(s) || s.size() > 18) return std::nullopt;
  std::int64_t v = 0;
  for (char c : s) v = v * 10 + (c - '0');
  return v;
}

// "1700000000", "1700000000.5" (the fraction scaled to nanoseconds), "-1".
std::optional<std::int64_t> parse_unix(std::string_view s) {
  bool neg = !s.empty() && s[0] == '-';
  if (neg) s.remove_prefix(1);
  auto dot = s.find('.');
  auto secs = parse_int(s.substr(0, dot));
  if (!secs) return std::nullopt;
  std::int64_t frac = 0;
  if (dot != std::string_view::npos) {
    std::string_view f = s.substr(dot + 1);
    if (f.size() > 9) f = f.substr(0, 9);
    auto v = parse_int(f);
    if (!v) return std::nullopt;
    frac = *v;
    for (std::size_t n = f.size(); n < 9; ++n) frac *= 10;
  }
  std::int64_t t = *secs * kNanos + frac;
  return neg ? -t : t;
}

// Go's time.ParseDuration: "300ms", "1.5h", "2h45m"; nullopt when malformed.
std::optional<std::int64_t> parse_duration(std::string_view s) {
  if (s.empty()) return std::nullopt;
  bool neg = false;
  if (s[0] == '-' || s[0] == '+') {
    neg = s[0] == '-';
    s.remove_prefix(1);
  }
  if (s == "0") return 0;
  if (s.empty()) return std::nullopt;
  static const std::pair<std::string_view, double> units[] = {
      {"ns", 1.0}, {"us", 1e3}, {"\xC2\xB5s", 1e3}, {"\xCE\xBCs", 1e3}, {"ms", 1e6},
      {"s", 1e9},  {"m", 60e9}, {"h", 3600e9}};
  double total = 0;
  while (!s.empty()) {
    std::size_t i = 0;
    while (i < s.size() && (std::isdigit(static_cast<unsigned char>(s[i])) || s[i] == '.')) ++i;
    if (i == 0) return std::nullopt;
    std::string number(s.substr(0, i));
    if (std::count(number.begin(), number.end(), '.') > 1 || number == ".") return std::nullopt;
    s.remove_prefix(i);
    std::size_t j = 0;
    while (j < s.size() && !std::isdigit(static_cast<unsigned char>(s[j])) && s[j] != '.') ++j;
    std::string_view unit = s.substr(0, j);
    s.remove_prefix(j);
    double scale = 0;
    for (const auto& [name, factor] : units)
      if (unit == name) scale = factor;
    if (scale == 0) return std::nullopt;
    total += std::stod(number) * scale;
  }
  if (total > 9.2e18) return std::nullopt;
  auto v = static_cast<std::int64_t>(std::llround(total));
  return neg ? -v : v;
}

// "2006-01-02", "2006-01-02T15", "2006-01-02T15:04", "2006-01-02T15:04:05[.frac]",
// each optionally followed by "Z" or "+07:00"; no zone means local time.
std::optional<std::int64_t> parse_rfc3339(std::string_view s) {
  auto num = [&](std::size_t pos, std::size_t len) -> std::optional<int> {
    if (pos + len > s.size()) return std::nullopt;
    auto v = parse_int(s.substr(pos, len));
    if (!v) return std::nullopt;
    return static_cast<int>(*v);
  };
  auto year = num(0, 4), month = num(5, 2), day = num(8, 2);
  if (!year || !month || !day || s[4] != '-' || s[7] != '-') return std::nullopt;
  std::tm tm{};
  tm.tm_year = *year - 1900;
  tm.tm_mon = *month - 1;
  tm.tm_mday = *day;
  std::size_t pos = 10;
  std::int64_t frac = 0;
  if (pos < s.size() && (s[pos] == 'T' || s[pos] == 't' || s[pos] == ' ')) {
    auto hour = num(pos + 1, 2);
    if (!hour) return std::nullopt;
    tm.tm_hour = *hour;
    pos += 3;
    if (pos < s.size() && s[pos] == ':') {
      auto minute = num(pos + 1, 2);
      if (!minute) return std::nullopt;
      tm.tm_min = *minute;
      pos += 3;
      if (pos < s.size() && s[pos] == ':') {
        auto second = num(pos + 1, 2);
        if (!second) return std::nullopt;
        tm.tm_sec = *second;
        pos += 3;
        if (pos < s.size() && s[pos] == '.') {
          std::size_t end = pos + 1;
          while (end < s.size() && std::isdigit(static_cast<unsigned char>(s[end]))) ++end;
          std::string_view f = s.substr(pos + 1, std::min<std::size_t>(end - pos - 1, 9));
          auto v = parse_int(f);
          if (!v) return std::nullopt;
          frac = *v;
          for (std::size_t n = f.size(); n < 9; ++n) frac *= 10;
          pos = end;
        }
      }
    }
  }
  if (tm.tm_mon < 0 || tm.tm_mon > 11 || tm.tm_mday < 1 || tm.tm_mday > 31 || tm.tm_hour > 23 ||
      tm.tm_min > 59 || tm.tm_sec > 60)
    return std::nullopt;
  std::int64_t secs;
  std::string_view zone = s.substr(pos);
  if (zone.empty()) {
    tm.tm_isdst = -1;
    secs = std::mktime(&tm);
  } else if (zone == "Z" || zone == "z") {
    secs = timegm(&tm);
  } else if (zone.size() == 6 && (zone[0] == '+' || zone[0] == '-') && zone[3] == ':') {
    auto h = parse_int(zone.substr(1, 2)), m = parse_int(zone.substr(4, 2));
    if (!h || !m) return std::nullopt;
    std::int64_t offset = (*h * 60 + *m) * 60;
    secs = timegm(&tm) - (zone[0] == '+' ? offset : -offset);
  } else {
    return std::nullopt;
  }
  return secs * kNanos + frac;
}

}  // namespace

std::int64_t now_nano() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::optional<std::int64_t> parse_event_time(std::string_view text, std::int64_t now) {
  if (text.empty()) return std::nullopt;
  if (auto t = parse_unix(text)) return t;
  if (auto t = parse_rfc3339(text)) return t;
  if (auto d = parse_duration(text)) return now - *d;
  return std::nullopt;
}

// ---------------------------------------------------------------- Event

nlohmann::ordered_json Event::to_json() const {
  nlohmann::ordered_json j = nlohmann::ordered_json::object();
  if (type == "container" || type == "image") {
    j["status"] = action;
    j["id"] = actor_id;
    if (type == "container") {
      auto img = attributes.find("image");
      j["from"] = img == attributes.end() ? std::string() : img->second;
    }
  }
  j["Type"] = type;
  j["Action"] = action;
  nlohmann::ordered_json attrs = nlohmann::ordered_json::object();
  for (const auto& [k, v] : attributes) attrs[k] = v;
  j["Actor"] = {{"ID", actor_id}, {"Attributes", attrs}};
  j["scope"] = scope;
  j["time"] = time_nano / kNanos;
  j["timeNano"] = time_nano;
  return j;
}

// ---------------------------------------------------------------- Filter

Filter Filter::parse(std::string_view text) {
  Filter f;
  if (text.empty()) return f;
  nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object())
    throw std::invalid_argument("invalid filter: " + std::string(text));
  for (const auto& [key, values] : j.items()) {
    if (values.is_object()) {
      for (const auto& [v, on] : values.items()) {
        if (!on.is_boolean()) throw std::invalid_argument("invalid filter: " + std::string(text));
        if (on.get<bool>()) f.add(key, v);
      }
    } else if (values.is_array()) {
      for (const auto& v : values) {
        if (!v.is_string()) throw std::invalid_argument("invalid filter: " + std::string(text));
        f.add(key, v.get<std::string>());
      }
    } else {
      throw std::invalid_argument("invalid filter: " + std::string(text));
    }
  }
  return f;
}

bool Filter::exact(const std::string& key, const std::string& source) const {
  auto it = fields_.find(key);
  if (it == fields_.end() || it->second.empty()) return true;
  return it->second.count(source) != 0;
}

bool Filter::fuzzy(const std::string& key, const std::string& source) const {
  if (exact(key, source)) return true;
  for (const std::string& prefix : fields_.at(key))
    if (source.compare(0, prefix.size(), prefix) == 0) return true;
  return false;
}

bool Filter::fuzzy_name(const Event& e, const std::string& key) const {
  if (!contains(key)) return true;
  auto name = e.attributes.find("name");
  return fuzzy(key, e.actor_id) ||
         (name != e.attributes.end() && fuzzy(key, name->second));
}

bool Filter::matches(const Event& e) const {
  if (fields_.empty()) return true;
  // event: exact, but "exec_create"/"exec_start"/"health_status" also match
  // "exec_create: sh" (dockerd #25798).
  if (contains("event")) {
    const auto& ev = fields_.at("event");
    bool prefix = ev.count("exec_create") || ev.count("exec_start") || ev.count("health_status");
    if (!(prefix ? fuzzy("event", e.action) : exact("event", e.action))) return false;
  }
  if (!exact("type", e.type)) return false;
  if (!exact("scope", e.scope)) return false;
  for (const char* key : {"container", "network", "volume", "plugin", "service", "node",
                          "secret", "config"})
    if (!fuzzy_name(e, key)) return false;
  if (contains("image")) {
    auto n = e.attributes.find(e.type == "image" ? "name" : "image");
    std::string name = n == e.attributes.end() ? std::string() : n->second;
    if (!(exact("image", e.actor_id) || exact("image", name) ||
          exact("image", strip_tag(e.actor_id)) || exact("image", strip_tag(name))))
      return false;
  }
  if (contains("label")) {
    for (const std::string& want : fields_.at("label")) {
      auto eq = want.find('=');
      auto it = e.attributes.find(want.substr(0, eq));
      if (it == e.attributes.end()) return false;
      if (eq != std::string::npos && it->second != want.substr(eq + 1)) return false;
    }
  }
  return true;
}

// ---------------------------------------------------------------- Subscription

Subscription::~Subscription() { bus_.unsubscribe(this); }

Subscription::Status Subscription::next(std::chrono::milliseconds wait, Event& out) {
  std::unique_lock l(bus_.mu_);
  cv_.wait_for(l, wait, [&] { return !queue_.empty() || overflowed_ || bus_.closed_; });
  if (overflowed_) return Status::Overflow;
  if (!queue_.empty()) {
    out = std::move(queue_.front());
    queue_.pop_front();
    return Status::Event;
  }
  return bus_.closed_ ? Status::Closed : Status::Timeout;
}

// ---------------------------------------------------------------- EventBus

EventBus::EventBus(std::size_t ring_capacity, std::size_t queue_limit)
    : ring_capacity_(ring_capacity), queue_limit_(std::max<std::size_t>(queue_limit, 1)) {}

EventBus::~EventBus() { close(); }

void EventBus::publish(Event e) {
  std::lock_guard l(mu_);
  if (e.time_nano == 0) e.time_nano = std::max(now_nano(), last_nano_);
  last_nano_ = std::max(last_nano_, e.time_nano);
  for (auto it = subs_.begin(); it != subs_.end();) {
    Subscription* s = *it;
    if (!s->filter_.matches(e)) {
      ++it;
      continue;
    }
    if (s->queue_.size() >= queue_limit_) {
      // Too slow: drop it rather than hold up the publisher or grow without bound.
      s->overflowed_ = true;
      s->queue_.clear();
      s->cv_.notify_all();
      it = subs_.erase(it);
      ++dropped_;
      continue;
    }
    s->queue_.push_back(e);
    s->cv_.notify_all();
    ++it;
  }
  if (ring_capacity_ == 0) return;
  if (ring_.size() >= ring_capacity_) ring_.pop_front();
  ring_.push_back(std::move(e));
}

void EventBus::emit(std::string type, std::string action, std::string actor_id,
                    Attributes attributes) {
  Event e;
  e.type = std::move(type);
  e.action = std::move(action);
  e.actor_id = std::move(actor_id);
  e.attributes = std::move(attributes);
  publish(std::move(e));
}

std::unique_ptr<Subscription> EventBus::subscribe(Filter filter, std::optional<std::int64_t> since,
                                                  std::optional<std::int64_t> until) {
  std::unique_ptr<Subscription> s(new Subscription(*this, std::move(filter)));
  std::lock_guard l(mu_);
  if (since || until) {
    // Like dockerd's loadBufferedEvents: newest first back to `since`.
    for (auto it = ring_.rbegin(); it != ring_.rend(); ++it) {
      if (since && it->time_nano < *since) break;
      if (until && it->time_nano > *until) continue;
      if (s->filter_.matches(*it)) s->replay_.push_back(*it);
    }
    std::reverse(s->replay_.begin(), s->replay_.end());
  }
  if (!closed_) subs_.insert(s.get());
  return s;
}

void EventBus::unsubscribe(Subscription* s) {
  std::lock_guard l(mu_);
  subs_.erase(s);
}

void EventBus::close() {
  std::lock_guard l(mu_);
  closed_ = true;
  for (Subscription* s : subs_) s->cv_.notify_all();
}

std::size_t EventBus::subscribers() const {
  std::lock_guard l(mu_);
  return subs_.size();
}

std::uint64_t EventBus::dropped_subscribers() const {
  std::lock_guard l(mu_);
  return dropped_;
}

}  // namespace berth::agent::events
