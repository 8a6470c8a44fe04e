// Health checks: the configuration, dockerd's state machine, and the
// scheduler driven by a fake clock and a fake prober (no thread, no process).
#include "agent/runtime/health.h"

#include <gtest/gtest.h>

#include <map>
#include <set>

#include "agent/api/http.h"
#include "agent/runtime/health_scheduler.h"

namespace berth::agent::runtime {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

constexpr std::int64_t kSecond = 1'000'000'000;

json config_with(json healthcheck) { return {{"Healthcheck", std::move(healthcheck)}}; }

TEST(HealthConfig, CmdAndCmdShellAndNone) {
  auto cmd = HealthConfig::from_config(config_with({{"Test", {"CMD", "curl", "-f", "http://x/"}}}));
  ASSERT_TRUE(cmd);
  EXPECT_EQ(cmd->command, (std::vector<std::string>{"curl", "-f", "http://x/"}));
  EXPECT_EQ(cmd->interval, 30s);
  EXPECT_EQ(cmd->timeout, 30s);
  EXPECT_EQ(cmd->start_period, 0s);
  EXPECT_EQ(cmd->start_interval, 30s);
  EXPECT_EQ(cmd->retries, 3);

  auto shell = HealthConfig::from_config(
      config_with({{"Test", {"CMD-SHELL", "exit 1"}}, {"Interval", kSecond}, {"Timeout", 2 * kSecond},
                   {"StartPeriod", 5 * kSecond}, {"StartInterval", kSecond / 2}, {"Retries", 7}}));
  ASSERT_TRUE(shell);
  EXPECT_EQ(shell->command, (std::vector<std::string>{"/bin/sh", "-c", "exit 1"}));
  EXPECT_EQ(shell->interval, 1s);
  EXPECT_EQ(shell->timeout, 2s);
  EXPECT_EQ(shell->start_period, 5s);
  EXPECT_EQ(shell->start_interval, 500ms);
  EXPECT_EQ(shell->retries, 7);

  json with_shell = config_with({{"Test", {"CMD-SHELL", "true"}}});
  with_shell["Shell"] = {"/bin/bash", "-ec"};
  EXPECT_EQ(HealthConfig::from_config(with_shell)->command,
            (std::vector<std::string>{"/bin/bash", "-ec", "true"}));

  EXPECT_FALSE(HealthConfig::from_config(config_with({{"Test", {"NONE"}}})));
  EXPECT_FALSE(HealthConfig::from_config(config_with({{"Test", json::array()}})));
  EXPECT_FALSE(HealthConfig::from_config(config_with({{"Test", {"BOGUS", "x"}}})));
  EXPECT_FALSE(HealthConfig::from_config(json::object()));
  EXPECT_FALSE(HealthConfig::from_config(config_with(nullptr)));
}

TEST(HealthConfig, ValidatedInDockerdsWords) {
  auto message = [](json hc) -> std::string {
    try {
      validate_healthcheck(config_with(std::move(hc)));
      return "";
    } catch (const api::HttpError& e) {
      EXPECT_EQ(e.status(), 400u);
      return e.what();
    }
  };
  EXPECT_EQ(message({{"Test", {"CMD", "true"}}, {"Interval", kSecond}}), "");
  EXPECT_EQ(message({{"Interval", 1000}}), "Interval in Healthcheck cannot be less than 1ms");
  EXPECT_EQ(message({{"Timeout", -5}}), "Timeout in Healthcheck cannot be less than 1ms");
  EXPECT_EQ(message({{"Retries", -1}}), "Retries in Healthcheck cannot be negative");
  EXPECT_EQ(message({{"StartPeriod", 10}}), "StartPeriod in Healthcheck cannot be less than 1ms");
  EXPECT_EQ(message({{"StartInterval", 999999}}), "StartInterval in Healthcheck cannot be less than 1ms");
  EXPECT_NE(message({{"Interval", "1s"}}), "");
  EXPECT_NE(message({{"Test", "true"}}), "");
  EXPECT_NO_THROW(validate_healthcheck(json::object()));
}

TEST(HealthRecord, RetriesMakeItUnhealthyAndASuccessResetsTheStreak) {
  HealthConfig c;
  c.retries = 2;
  HealthRecord h;
  auto probe = [&](int code, std::int64_t start) {
    return apply_probe_result(h, {start, start + 1, code, "out"}, c, 0);
  };
  EXPECT_FALSE(probe(1, 10 * kSecond));
  EXPECT_EQ(h.status, "starting");
  EXPECT_EQ(h.failing_streak, 1);
  EXPECT_TRUE(probe(1, 20 * kSecond));
  EXPECT_EQ(h.status, "unhealthy");
  EXPECT_EQ(h.failing_streak, 2);
  EXPECT_FALSE(probe(1, 30 * kSecond));
  EXPECT_EQ(h.failing_streak, 3);
  EXPECT_TRUE(probe(0, 40 * kSecond));
  EXPECT_EQ(h.status, "healthy");
  EXPECT_EQ(h.failing_streak, 0);
  // A failure while healthy counts at once, and healthy stays until the retries.
  EXPECT_FALSE(probe(1, 50 * kSecond));
  EXPECT_EQ(h.status, "healthy");
  EXPECT_EQ(h.failing_streak, 1);
}

TEST(HealthRecord, FailuresInTheStartPeriodDoNotCountWhileStarting) {
  HealthConfig c;
  c.retries = 1;
  c.start_period = 10s;
  HealthRecord h;
  const std::int64_t started = 100 * kSecond;
  EXPECT_FALSE(apply_probe_result(h, {started + 5 * kSecond, 0, 1, ""}, c, started));
  EXPECT_EQ(h.status, "starting");
  EXPECT_EQ(h.failing_streak, 0);
  EXPECT_TRUE(apply_probe_result(h, {started + 11 * kSecond, 0, 1, ""}, c, started));
  EXPECT_EQ(h.status, "unhealthy");
}

TEST(HealthRecord, TheLogKeepsTheLastFiveAndRoundTrips) {
  HealthConfig c;
  HealthRecord h;
  for (int i = 0; i < 7; ++i) apply_probe_result(h, {i * kSecond, i * kSecond + 5, i, std::to_string(i)}, c, 0);
  ASSERT_EQ(h.log.size(), 5u);
  EXPECT_EQ(h.log.front().output, "2");
  EXPECT_EQ(h.log.back().output, "6");
  json j = h.to_json();
  EXPECT_EQ(j["Status"], "unhealthy");
  EXPECT_EQ(j["FailingStreak"], 6);
  EXPECT_EQ(j["Log"][0], json({{"Start", "1970-01-01T00:00:02Z"}, {"End", "1970-01-01T00:00:02.000000005Z"},
                               {"ExitCode", 2}, {"Output", "2"}}));
  HealthRecord back = HealthRecord::from_json(j);
  EXPECT_EQ(back.to_json(), j);
  EXPECT_EQ(HealthRecord::from_json(nullptr).status, "starting");
}

TEST(HealthRecord, TheNextProbeUsesTheStartIntervalOnlyWhileStarting) {
  HealthConfig c;
  c.interval = 30s;
  c.start_interval = 1s;
  c.start_period = 60s;
  HealthRecord h;
  EXPECT_EQ(next_probe_delay(h, c, 10s), 1s);
  EXPECT_EQ(next_probe_delay(h, c, 61s), 30s);
  h.status = "healthy";
  EXPECT_EQ(next_probe_delay(h, c, 10s), 30s);
}

TEST(ProbeOutput, KeepsFourKibAndMarksTheRest) {
  ProbeOutput small;
  small.append("hello ");
  small.append("world");
  EXPECT_EQ(small.text(), "hello world");
  ProbeOutput big;
  big.append(std::string(4000, 'a'));
  big.append(std::string(200, 'b'));
  std::string text = big.text();
  EXPECT_EQ(text.size(), 4096u + 3);
  EXPECT_EQ(text.substr(4000, 96), std::string(96, 'b'));
  EXPECT_EQ(text.substr(4096), "...");
}

TEST(GoDuration, FormatsAsGo) {
  EXPECT_EQ(go_duration(0s), "0s");
  EXPECT_EQ(go_duration(1s), "1s");
  EXPECT_EQ(go_duration(30s), "30s");
  EXPECT_EQ(go_duration(90s), "1m30s");
  EXPECT_EQ(go_duration(3600s), "1h0m0s");
  EXPECT_EQ(go_duration(1500ms), "1.5s");
  EXPECT_EQ(go_duration(500ms), "500ms");
  EXPECT_EQ(go_duration(std::chrono::microseconds(1500)), "1.5ms");
  EXPECT_EQ(go_duration(std::chrono::nanoseconds(42)), "42ns");
  EXPECT_EQ(go_duration(std::chrono::microseconds(2)), "2\u00b5s");
  EXPECT_EQ(timeout_output(1s, ""), "Health check exceeded timeout (1s)");
  EXPECT_EQ(timeout_output(2s, "partial"), "Health check exceeded timeout (2s): partial");
}

// --- the scheduler ---

class FakeClock : public HealthClock {
 public:
  TimePoint now() const override { return TimePoint{} + elapsed_; }
  std::int64_t wall_nanos() const override {
    return kEpoch + std::chrono::duration_cast<nanoseconds>(elapsed_).count();
  }
  void advance(std::chrono::nanoseconds d) { elapsed_ += d; }
  static constexpr std::int64_t kEpoch = 1'700'000'000 * kSecond;

 private:
  std::chrono::nanoseconds elapsed_{1'000'000'000'000};
};

class FakeProber : public Prober {
 public:
  void start(const std::string& id, std::uint64_t probe) override { started[probe] = id; }
  void kill(std::uint64_t probe) override { killed.insert(probe); }
  std::map<std::uint64_t, std::string> started;
  std::set<std::uint64_t> killed;
  // The latest probe of `id`.
  std::uint64_t last(const std::string& id) const {
    std::uint64_t p = 0;
    for (const auto& [probe, who] : started)
      if (who == id) p = probe;
    return p;
  }
};

class SchedulerTest : public ::testing::Test {
 protected:
  struct Reported {
    std::string id;
    HealthRecord record;
    bool changed;
  };
  SchedulerTest()
      : scheduler_(prober_, [this](const std::string& id, std::uint64_t, const HealthRecord& r, bool changed) {
          reports_.push_back({id, r, changed});
        }, clock_) {}

  HealthConfig config(std::chrono::nanoseconds interval, int retries = 3) {
    HealthConfig c;
    c.command = {"true"};
    c.interval = interval;
    c.timeout = 2s;
    c.retries = retries;
    return c;
  }
  std::int64_t now_wall() const { return clock_.wall_nanos(); }

  FakeClock clock_;
  FakeProber prober_;
  std::vector<Reported> reports_;
  HealthScheduler scheduler_;
};

TEST_F(SchedulerTest, TheFirstProbeComesAfterOneIntervalAndTheNextAfterTheEnd) {
  scheduler_.watch("c1", config(5s), {}, now_wall());
  auto next = scheduler_.run_due();
  ASSERT_TRUE(next);
  EXPECT_EQ(*next - clock_.now(), 5s);
  EXPECT_TRUE(prober_.started.empty());
  clock_.advance(5s);
  scheduler_.run_due();
  ASSERT_EQ(prober_.started.size(), 1u);
  std::uint64_t p = prober_.last("c1");
  clock_.advance(1s);
  scheduler_.finished(p, 0, "ok\n");
  ASSERT_EQ(reports_.size(), 1u);
  EXPECT_TRUE(reports_[0].changed);
  EXPECT_EQ(reports_[0].record.status, "healthy");
  EXPECT_EQ(reports_[0].record.log.back().output, "ok\n");
  EXPECT_EQ(reports_[0].record.log.back().end - reports_[0].record.log.back().start, kSecond);
  // The interval runs from the probe's end.
  next = scheduler_.run_due();
  EXPECT_EQ(*next - clock_.now(), 5s);
  clock_.advance(4s);
  scheduler_.run_due();
  EXPECT_EQ(prober_.started.size(), 1u);
  clock_.advance(1s);
  scheduler_.run_due();
  EXPECT_EQ(prober_.started.size(), 2u);
  // A report without a change of status.
  scheduler_.finished(prober_.last("c1"), 0, "");
  EXPECT_FALSE(reports_.back().changed);
}

TEST_F(SchedulerTest, RetriesFailuresMakeItUnhealthyOnce) {
  scheduler_.watch("c1", config(1s, 3), {}, now_wall());
  for (int i = 0; i < 4; ++i) {
    clock_.advance(1s);
    scheduler_.run_due();
    scheduler_.finished(prober_.last("c1"), 1, "fail");
  }
  ASSERT_EQ(reports_.size(), 4u);
  EXPECT_FALSE(reports_[1].changed);
  EXPECT_TRUE(reports_[2].changed);
  EXPECT_EQ(reports_[2].record.status, "unhealthy");
  EXPECT_EQ(reports_[2].record.failing_streak, 3);
  EXPECT_FALSE(reports_[3].changed);
  EXPECT_EQ(reports_[3].record.failing_streak, 4);
}

TEST_F(SchedulerTest, AProbePastItsTimeoutIsKilledAndFails) {
  scheduler_.watch("c1", config(1s, 1), {}, now_wall());
  clock_.advance(1s);
  scheduler_.run_due();
  std::uint64_t p = prober_.last("c1");
  clock_.advance(1999ms);
  scheduler_.run_due();
  EXPECT_TRUE(prober_.killed.empty());
  clock_.advance(1ms);
  auto next = scheduler_.run_due();
  EXPECT_EQ(prober_.killed.count(p), 1u);
  EXPECT_TRUE(reports_.empty()) << "the result waits for the killed probe to end";
  scheduler_.finished(p, 137, "half");
  ASSERT_EQ(reports_.size(), 1u);
  const ProbeResult& r = reports_[0].record.log.back();
  EXPECT_EQ(r.exit_code, -1);
  EXPECT_EQ(r.output, "Health check exceeded timeout (2s): half");
  EXPECT_EQ(reports_[0].record.status, "unhealthy");
  (void)next;
}

TEST_F(SchedulerTest, AKilledProbeThatNeverEndsStillCounts) {
  scheduler_.watch("c1", config(1s, 1), {}, now_wall());
  clock_.advance(1s);
  scheduler_.run_due();
  clock_.advance(2s);
  scheduler_.run_due();  // kill
  clock_.advance(HealthScheduler::kKillGrace);
  scheduler_.run_due();
  ASSERT_EQ(reports_.size(), 1u);
  EXPECT_EQ(reports_[0].record.log.back().output, "Health check exceeded timeout (2s)");
}

TEST_F(SchedulerTest, StartIntervalDuringTheStartPeriod) {
  HealthConfig c = config(30s);
  c.start_period = 10s;
  c.start_interval = 1s;
  scheduler_.watch("c1", c, {}, now_wall());
  EXPECT_EQ(*scheduler_.run_due() - clock_.now(), 1s);
  // Failures in the start period do not count.
  for (int i = 0; i < 5; ++i) {
    clock_.advance(1s);
    scheduler_.run_due();
    scheduler_.finished(prober_.last("c1"), 1, "");
  }
  EXPECT_EQ(reports_.back().record.status, "starting");
  EXPECT_EQ(reports_.back().record.failing_streak, 0);
  clock_.advance(1s);
  scheduler_.run_due();
  scheduler_.finished(prober_.last("c1"), 0, "");
  EXPECT_EQ(reports_.back().record.status, "healthy");
  // Healthy: the normal interval.
  EXPECT_EQ(*scheduler_.run_due() - clock_.now(), 30s);
}

TEST_F(SchedulerTest, UnwatchKillsTheProbeAndDropsItsResult) {
  std::uint64_t generation = scheduler_.watch("c1", config(1s), {}, now_wall());
  EXPECT_TRUE(scheduler_.current("c1", generation));
  clock_.advance(1s);
  scheduler_.run_due();
  std::uint64_t p = prober_.last("c1");
  EXPECT_TRUE(scheduler_.unwatch("c1"));
  EXPECT_FALSE(scheduler_.unwatch("c1"));
  EXPECT_EQ(prober_.killed.count(p), 1u);
  EXPECT_FALSE(scheduler_.current("c1", generation));
  scheduler_.finished(p, 0, "");
  EXPECT_TRUE(reports_.empty());
  EXPECT_FALSE(scheduler_.run_due());
  EXPECT_EQ(scheduler_.watched(), 0u);
}

TEST_F(SchedulerTest, ManyContainersOneTimeline) {
  for (int i = 0; i < 20; ++i) scheduler_.watch("c" + std::to_string(i), config(1s + i * 100ms), {}, now_wall());
  clock_.advance(1s);
  scheduler_.run_due();
  EXPECT_EQ(prober_.started.size(), 1u);
  clock_.advance(1950ms);
  auto next = scheduler_.run_due();
  EXPECT_EQ(prober_.started.size(), 20u);
  ASSERT_TRUE(next);
  EXPECT_EQ(*next - clock_.now(), 50ms) << "the earliest due: the first probe's timeout";
}

TEST_F(SchedulerTest, ARestartedWatchStartsOverFromTheRecordItIsGiven) {
  HealthRecord healthy;
  healthy.status = "healthy";
  healthy.log.push_back({1, 2, 0, "old"});
  std::uint64_t g1 = scheduler_.watch("c1", config(1s), healthy, now_wall());
  clock_.advance(1s);
  scheduler_.run_due();
  std::uint64_t old_probe = prober_.last("c1");
  std::uint64_t g2 = scheduler_.watch("c1", config(1s), healthy, now_wall());
  EXPECT_NE(g1, g2);
  EXPECT_EQ(prober_.killed.count(old_probe), 1u);
  scheduler_.finished(old_probe, 1, "");
  EXPECT_TRUE(reports_.empty());
  clock_.advance(1s);
  scheduler_.run_due();
  scheduler_.finished(prober_.last("c1"), 0, "");
  ASSERT_EQ(reports_.size(), 1u);
  EXPECT_EQ(reports_[0].record.log.size(), 2u);
  EXPECT_FALSE(reports_[0].changed);
}

}  // namespace
}  // namespace berth::agent::runtime
