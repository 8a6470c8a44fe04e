#include "agent/runtime/health_scheduler.h"

#include <vector>

namespace berth::agent::runtime {
namespace {

class SystemHealthClock : public HealthClock {
 public:
  TimePoint now() const override { return std::chrono::steady_clock::now(); }
  std::int64_t wall_nanos() const override {
    return std::chrono::duration_cast<nanoseconds>(std::chrono::system_clock::now().time_since_epoch())
        .count();
  }
};

}  // namespace

const HealthClock& system_health_clock() {
  static const SystemHealthClock clock;
  return clock;
}

HealthScheduler::HealthScheduler(Prober& prober, Report report, const HealthClock& clock)
    : prober_(prober), report_(std::move(report)), clock_(clock) {}

HealthScheduler::~HealthScheduler() { stop(); }

std::uint64_t HealthScheduler::watch(const std::string& id, HealthConfig config, HealthRecord record,
                                     std::int64_t started_at) {
  std::uint64_t generation;
  {
    std::lock_guard l(mu_);
    if (auto old = watches_.find(id); old != watches_.end() && old->second.probe) {
      probes_.erase(old->second.probe);
      prober_.kill(old->second.probe);
    }
    Watch w;
    w.generation = generation = ++next_generation_;
    w.started_at = started_at;
    nanoseconds since_start{clock_.wall_nanos() - started_at};
    w.due = clock_.now() + next_probe_delay(record, config, since_start);
    w.config = std::move(config);
    w.record = std::move(record);
    watches_[id] = std::move(w);
  }
  wake();
  return generation;
}

bool HealthScheduler::unwatch(const std::string& id) {
  std::lock_guard l(mu_);
  auto it = watches_.find(id);
  if (it == watches_.end()) return false;
  if (it->second.probe) {
    probes_.erase(it->second.probe);
    prober_.kill(it->second.probe);
  }
  watches_.erase(it);
  return true;
}

bool HealthScheduler::current(const std::string& id, std::uint64_t generation) const {
  std::lock_guard l(mu_);
  auto it = watches_.find(id);
  return it != watches_.end() && it->second.generation == generation;
}

std::size_t HealthScheduler::watched() const {
  std::lock_guard l(mu_);
  return watches_.size();
}

HealthScheduler::Pending HealthScheduler::complete(const std::string& id, Watch& w, int exit_code,
                                                   std::string output) {
  ProbeResult result;
  result.start = w.probe_start;
  result.end = clock_.wall_nanos();
  if (w.killed) {
    result.exit_code = -1;
    result.output = timeout_output(w.config.timeout, output);
  } else {
    result.exit_code = exit_code;
    result.output = std::move(output);
  }
  bool changed = apply_probe_result(w.record, result, w.config, w.started_at);
  probes_.erase(w.probe);
  w.probe = 0;
  w.killed = false;
  // Like dockerd, the interval runs from the end of one probe to the start of the next.
  w.due = clock_.now() + next_probe_delay(w.record, w.config, nanoseconds{result.end - w.started_at});
  return {id, w.generation, w.record, changed};
}

void HealthScheduler::finished(std::uint64_t probe, int exit_code, std::string output) {
  std::optional<Pending> pending;
  {
    std::lock_guard l(mu_);
    auto p = probes_.find(probe);
    if (p == probes_.end()) return;
    auto w = watches_.find(p->second);
    if (w == watches_.end() || w->second.probe != probe) {
      probes_.erase(p);
      return;
    }
    pending = complete(w->first, w->second, exit_code, std::move(output));
  }
  wake();
  if (report_) report_(pending->id, pending->generation, pending->record, pending->changed);
}

std::optional<HealthScheduler::TimePoint> HealthScheduler::run_due() {
  std::vector<std::pair<std::string, std::uint64_t>> to_start;
  std::vector<Pending> reports;
  std::optional<TimePoint> next;
  {
    std::lock_guard l(mu_);
    const TimePoint now = clock_.now();
    for (auto& [id, w] : watches_) {
      if (w.due <= now) {
        if (!w.probe) {
          w.probe = ++next_probe_;
          probes_[w.probe] = id;
          w.probe_start = clock_.wall_nanos();
          w.killed = false;
          w.due = now + w.config.timeout;
          to_start.emplace_back(id, w.probe);
        } else if (!w.killed) {
          w.killed = true;
          w.due = now + kKillGrace;
          prober_.kill(w.probe);
        } else {
          // The killed probe never ended: its timeout counts without it.
          reports.push_back(complete(id, w, -1, ""));
        }
      }
      if (!next || w.due < *next) next = w.due;
    }
  }
  for (const Pending& p : reports)
    if (report_) report_(p.id, p.generation, p.record, p.changed);
  for (const auto& [id, probe] : to_start) prober_.start(id, probe);
  return next;
}

void HealthScheduler::wake() {
  {
    std::lock_guard l(mu_);
    woken_ = true;
  }
  cv_.notify_all();
}

void HealthScheduler::start() {
  std::lock_guard l(mu_);
  if (thread_.joinable() || stopping_) return;
  thread_ = std::thread([this] { loop(); });
}

void HealthScheduler::stop() {
  {
    std::lock_guard l(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void HealthScheduler::loop() {
  for (;;) {
    auto next = run_due();
    std::unique_lock l(mu_);
    auto ready = [&] { return stopping_ || woken_; };
    if (next)
      cv_.wait_until(l, *next, ready);
    else
      cv_.wait(l, ready);
    if (stopping_) return;
    woken_ = false;
  }
}

}  // namespace berth::agent::runtime
