#include "agent/runtime/health.h"

#include <algorithm>

#include "agent/api/http.h"
#include "agent/runtime/json_log.h"

namespace berth::agent::runtime {
namespace {

using nlohmann::json;

// A duration field in nanoseconds; 0 when absent or not an integer.
nanoseconds duration_field(const json& hc, const char* key) {
  auto it = hc.find(key);
  if (it == hc.end() || !it->is_number_integer()) return nanoseconds{0};
  return nanoseconds{it->get<std::int64_t>()};
}

nanoseconds or_default(nanoseconds configured, nanoseconds fallback) {
  return configured.count() == 0 ? fallback : configured;
}

// v/10^prec as ".123" (trailing zeros dropped, nothing when 0); returns v/10^prec.
std::uint64_t fraction(std::string& out, std::uint64_t v, int prec) {
  std::string digits;
  bool printing = false;
  for (int i = 0; i < prec; ++i) {
    auto digit = static_cast<char>('0' + v % 10);
    printing = printing || digit != '0';
    if (printing) digits.insert(digits.begin(), digit);
    v /= 10;
  }
  if (printing) out = "." + digits + out;
  return v;
}

}  // namespace

std::optional<HealthConfig> HealthConfig::from_config(const json& config) {
  if (!config.is_object()) return std::nullopt;
  auto hc_it = config.find("Healthcheck");
  if (hc_it == config.end() || !hc_it->is_object()) return std::nullopt;
  const json& hc = *hc_it;
  std::vector<std::string> test;
  if (auto t = hc.find("Test"); t != hc.end() && t->is_array())
    for (const json& a : *t)
      if (a.is_string()) test.push_back(a.get<std::string>());
  if (test.empty()) return std::nullopt;
  HealthConfig c;
  if (test[0] == "CMD") {
    c.command.assign(test.begin() + 1, test.end());
  } else if (test[0] == "CMD-SHELL") {
    if (auto s = config.find("Shell"); s != config.end() && s->is_array() && !s->empty())
      for (const json& a : *s)
        if (a.is_string()) c.command.push_back(a.get<std::string>());
    if (c.command.empty()) c.command = {"/bin/sh", "-c"};
    c.command.insert(c.command.end(), test.begin() + 1, test.end());
  } else {
    return std::nullopt;  // "NONE", or a type dockerd does not know
  }
  if (c.command.empty()) return std::nullopt;
  c.interval = or_default(duration_field(hc, "Interval"), kDefaultProbeInterval);
  c.timeout = or_default(duration_field(hc, "Timeout"), kDefaultProbeTimeout);
  c.start_period = duration_field(hc, "StartPeriod");
  c.start_interval = or_default(duration_field(hc, "StartInterval"), kDefaultProbeInterval);
  if (auto r = hc.find("Retries"); r != hc.end() && r->is_number_integer() && r->get<int>() > 0)
    c.retries = r->get<int>();
  return c;
}

void validate_healthcheck(const json& config) {
  if (!config.is_object()) return;
  auto hc_it = config.find("Healthcheck");
  if (hc_it == config.end() || hc_it->is_null()) return;
  if (!hc_it->is_object()) throw api::HttpError(400, "invalid Healthcheck");
  const json& hc = *hc_it;
  if (auto t = hc.find("Test"); t != hc.end() && !t->is_null()) {
    if (!t->is_array() || std::any_of(t->begin(), t->end(), [](const json& a) { return !a.is_string(); }))
      throw api::HttpError(400, "invalid Healthcheck.Test: an array of strings is expected");
  }
  constexpr nanoseconds kMinimum = std::chrono::milliseconds(1);
  for (const char* key : {"Interval", "Timeout", "StartPeriod", "StartInterval", "Retries"}) {
    auto it = hc.find(key);
    if (it != hc.end() && !it->is_null() && !it->is_number_integer())
      throw api::HttpError(400, std::string("invalid Healthcheck.") + key + ": an integer is expected");
  }
  for (const char* key : {"Interval", "Timeout"}) {
    nanoseconds d = duration_field(hc, key);
    if (d.count() != 0 && d < kMinimum)
      throw api::HttpError(400, std::string(key) + " in Healthcheck cannot be less than 1ms");
  }
  if (auto r = hc.find("Retries"); r != hc.end() && r->is_number_integer() && r->get<std::int64_t>() < 0)
    throw api::HttpError(400, "Retries in Healthcheck cannot be negative");
  for (const char* key : {"StartPeriod", "StartInterval"}) {
    nanoseconds d = duration_field(hc, key);
    if (d.count() != 0 && d < kMinimum)
      throw api::HttpError(400, std::string(key) + " in Healthcheck cannot be less than 1ms");
  }
}

json HealthRecord::to_json() const {
  json entries = json::array();
  for (const ProbeResult& r : log)
    entries.push_back({{"Start", rfc3339_nano(r.start)},
                       {"End", rfc3339_nano(r.end)},
                       {"ExitCode", r.exit_code},
                       {"Output", r.output}});
  return {{"Status", status}, {"FailingStreak", failing_streak}, {"Log", entries}};
}

HealthRecord HealthRecord::from_json(const json& j) {
  HealthRecord r;
  if (!j.is_object()) return r;
  if (auto s = j.find("Status"); s != j.end() && s->is_string()) r.status = s->get<std::string>();
  if (auto f = j.find("FailingStreak"); f != j.end() && f->is_number_integer())
    r.failing_streak = f->get<int>();
  if (auto l = j.find("Log"); l != j.end() && l->is_array()) {
    for (const json& e : *l) {
      if (!e.is_object()) continue;
      ProbeResult p;
      p.start = parse_rfc3339(e.value("Start", "")).value_or(0);
      p.end = parse_rfc3339(e.value("End", "")).value_or(0);
      if (auto c = e.find("ExitCode"); c != e.end() && c->is_number_integer()) p.exit_code = c->get<int>();
      if (auto o = e.find("Output"); o != e.end() && o->is_string()) p.output = o->get<std::string>();
      r.log.push_back(std::move(p));
    }
    if (r.log.size() > kMaxHealthLog) r.log.erase(r.log.begin(), r.log.end() - kMaxHealthLog);
  }
  return r;
}

bool apply_probe_result(HealthRecord& h, const ProbeResult& result, const HealthConfig& config,
                        std::int64_t started_at) {
  const std::string old_status = h.status;
  h.log.push_back(result);
  if (h.log.size() > kMaxHealthLog) h.log.erase(h.log.begin(), h.log.end() - kMaxHealthLog);
  if (result.exit_code == 0) {
    h.failing_streak = 0;
    h.status = "healthy";
  } else {
    // While starting, failures within the start period do not count.
    bool counts = true;
    if (h.status == "starting" && result.start - started_at < config.start_period.count())
      counts = false;
    if (counts && ++h.failing_streak >= config.retries) h.status = "unhealthy";
  }
  return h.status != old_status;
}

nanoseconds next_probe_delay(const HealthRecord& h, const HealthConfig& config, nanoseconds since_start) {
  if (since_start >= config.start_period) return config.interval;
  return h.status == "starting" ? config.start_interval : config.interval;
}

void ProbeOutput::append(std::string_view data) {
  std::size_t room = kMaxProbeOutput - kept_.size();
  kept_.append(data.substr(0, room));
  if (data.size() > room) truncated_ = true;
}

std::string timeout_output(nanoseconds timeout, const std::string& output) {
  std::string msg = "Health check exceeded timeout (" + go_duration(timeout) + ")";
  return output.empty() ? msg : msg + ": " + output;
}

std::string go_duration(nanoseconds d) {
  if (d.count() == 0) return "0s";
  const bool negative = d.count() < 0;
  std::uint64_t u = negative ? 0 - static_cast<std::uint64_t>(d.count())
                             : static_cast<std::uint64_t>(d.count());
  std::string out;
  if (u < 1'000'000'000) {
    // Below a second: the largest unit of ns, µs and ms, with a fraction.
    std::string unit;
    int prec = 0;
    if (u < 1'000) {
      unit = "ns";
    } else if (u < 1'000'000) {
      unit = "\u00b5s";
      prec = 3;
    } else {
      unit = "ms";
      prec = 6;
    }
    out = unit;
    u = fraction(out, u, prec);
    out = std::to_string(u) + out;
  } else {
    out = "s";
    u = fraction(out, u, 9);
    out = std::to_string(u % 60) + out;
    u /= 60;
    if (u > 0) {
      out = std::to_string(u % 60) + "m" + out;
      u /= 60;
      if (u > 0) out = std::to_string(u) + "h" + out;
    }
  }
  return negative ? "-" + out : out;
}

}  // namespace berth::agent::runtime
