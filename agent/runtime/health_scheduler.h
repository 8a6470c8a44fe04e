#pragma once
// Every container's health probes on schedule, from one thread: each watched
// container has one thing due next (its next probe, or the timeout of the
// probe in flight), and the thread sleeps until the earliest. The probes are
// a Prober's; results go to a Report. Time comes from a HealthClock, so tests
// drive a fake one and call run_due() themselves. Thread-safe.
//
// Locking: the Prober's start() and the Report run without the scheduler's
// lock; kill() runs with it, so a Prober must not call back from kill().
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "agent/runtime/health.h"

namespace berth::agent::runtime {

class HealthClock {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;
  virtual ~HealthClock() = default;
  virtual TimePoint now() const = 0;         // for scheduling
  virtual std::int64_t wall_nanos() const = 0;  // unix ns, for the log's Start and End
};
// steady_clock and system_clock.
const HealthClock& system_health_clock();

class Prober {
 public:
  virtual ~Prober() = default;
  // Starts probe number `probe` of container `id`. It ends through
  // HealthScheduler::finished(probe, ...) exactly once, perhaps before start returns.
  virtual void start(const std::string& id, std::uint64_t probe) = 0;
  // Kills a probe in flight; it still ends through finished(). Unknown probes are ignored.
  virtual void kill(std::uint64_t probe) = 0;
};

class HealthScheduler {
 public:
  using TimePoint = HealthClock::TimePoint;
  // After each probe: the container's record and whether its status changed.
  // `generation` is the watch's (see current()).
  using Report = std::function<void(const std::string& id, std::uint64_t generation,
                                    const HealthRecord& record, bool status_changed)>;

  HealthScheduler(Prober& prober, Report report, const HealthClock& clock = system_health_clock());
  ~HealthScheduler();
  HealthScheduler(const HealthScheduler&) = delete;
  HealthScheduler& operator=(const HealthScheduler&) = delete;

  // Starts probing `id` with `record` as it stands, replacing an earlier watch.
  // The first probe is one interval (start_interval while starting) away.
  // `started_at`: State.StartedAt (unix ns). Returns the watch's generation.
  std::uint64_t watch(const std::string& id, HealthConfig config, HealthRecord record,
                      std::int64_t started_at);
  // Stops probing `id`; a probe in flight is killed and its result dropped.
  // False when `id` was not watched.
  bool unwatch(const std::string& id);
  // Whether `generation` is still `id`'s watch (a Report may race an unwatch).
  bool current(const std::string& id, std::uint64_t generation) const;
  // A probe ended (called by the Prober). Unknown or dropped probes are ignored.
  void finished(std::uint64_t probe, int exit_code, std::string output);
  // Starts the probes that are due at clock.now() and kills those past their
  // timeout. Returns when something is next due; nullopt when nothing is watched.
  std::optional<TimePoint> run_due();
  std::size_t watched() const;

  // The thread that calls run_due() on time; stop() ends it (also the destructor).
  void start();
  void stop();

  // How long a killed probe may take to end before its timeout counts anyway.
  static constexpr std::chrono::seconds kKillGrace{10};

 private:
  struct Watch {
    std::uint64_t generation = 0;
    HealthConfig config;
    HealthRecord record;
    std::int64_t started_at = 0;
    TimePoint due;                // the next probe when idle, the probe's deadline when probing
    std::uint64_t probe = 0;      // in flight; 0 when idle
    std::int64_t probe_start = 0;  // wall ns
    bool killed = false;           // past its timeout
  };
  struct Pending {  // a Report to make once the lock is released
    std::string id;
    std::uint64_t generation;
    HealthRecord record;
    bool changed;
  };
  // Records the probe's end and schedules the next one. mu_ held.
  Pending complete(const std::string& id, Watch& w, int exit_code, std::string output);
  void loop();
  void wake();

  Prober& prober_;
  Report report_;
  const HealthClock& clock_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, Watch> watches_;
  std::map<std::uint64_t, std::string> probes_;  // probe in flight -> container
  std::uint64_t next_probe_ = 0, next_generation_ = 0;
  bool stopping_ = false, woken_ = false;
  std::thread thread_;
};

}  // namespace berth::agent::runtime
