#pragma once
// Health checks as dockerd runs them (daemon/health.go): Config.Healthcheck
// read into a probe configuration, State.Health (status, failing streak, the
// last 5 probes), and how one probe's result moves it. Pure; the scheduling
// is health_scheduler.h, the probes themselves probe_runner.h.
#include <chrono>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace berth::agent::runtime {

using std::chrono::nanoseconds;

// dockerd's defaults and limits.
inline constexpr nanoseconds kDefaultProbeInterval = std::chrono::seconds(30);
inline constexpr nanoseconds kDefaultProbeTimeout = std::chrono::seconds(30);
inline constexpr int kDefaultProbeRetries = 3;
inline constexpr std::size_t kMaxHealthLog = 5;
inline constexpr std::size_t kMaxProbeOutput = 4096;

struct HealthConfig {
  std::vector<std::string> command;  // what a probe runs in the container
  nanoseconds interval = kDefaultProbeInterval;
  nanoseconds timeout = kDefaultProbeTimeout;
  nanoseconds start_period{0};
  nanoseconds start_interval = kDefaultProbeInterval;
  int retries = kDefaultProbeRetries;

  // From the container's Config (Healthcheck merged from the image). nullopt
  // when no probe runs: no Healthcheck, an empty Test, ["NONE"] or an unknown
  // type. CMD runs Test[1:]; CMD-SHELL runs Config.Shell (or /bin/sh -c) + Test[1:].
  static std::optional<HealthConfig> from_config(const nlohmann::json& config);
};

// dockerd's create-time checks of Config.Healthcheck; throws api::HttpError(400).
void validate_healthcheck(const nlohmann::json& config);

// One probe in State.Health.Log. Times are unix nanoseconds.
struct ProbeResult {
  std::int64_t start = 0, end = 0;
  int exit_code = 0;
  std::string output;
};

// State.Health.
struct HealthRecord {
  std::string status = "starting";  // "starting", "healthy", "unhealthy"
  int failing_streak = 0;
  std::vector<ProbeResult> log;  // oldest first, at most kMaxHealthLog

  nlohmann::json to_json() const;
  // Tolerates missing or malformed fields (an older record).
  static HealthRecord from_json(const nlohmann::json& j);
};

// dockerd's handleProbeResult: appends to the log, counts the failing streak
// (not while starting within the start period) and sets the status. Returns
// true when the status changed. `started_at`: State.StartedAt (unix ns).
bool apply_probe_result(HealthRecord& record, const ProbeResult& result, const HealthConfig& config,
                        std::int64_t started_at);

// The wait before the next probe: start_interval while starting within the
// start period, else interval. `since_start`: time since State.StartedAt.
nanoseconds next_probe_delay(const HealthRecord& record, const HealthConfig& config,
                             nanoseconds since_start);

// A probe's stdout and stderr, kept up to kMaxProbeOutput bytes; "..." marks
// that more was discarded.
class ProbeOutput {
 public:
  void append(std::string_view data);
  std::string text() const { return truncated_ ? kept_ + "..." : kept_; }

 private:
  std::string kept_;
  bool truncated_ = false;
};

// The output of a probe killed at its timeout, as dockerd words it.
std::string timeout_output(nanoseconds timeout, const std::string& output);

// Go's time.Duration.String(): "30s", "1m30s", "500ms", "1.5s", "0s".
std::string go_duration(nanoseconds d);

}  // namespace berth::agent::runtime
