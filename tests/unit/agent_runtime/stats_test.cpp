// docker stats from fixture cgroup v2 files, /proc/stat and net/dev in a temp
// dir: the numbers dockerd reports, and what the docker CLI computes from them
// (cli/command/container/stats_helpers.go, repeated here as the client's side).
#include "agent/runtime/stats.h"

#include <stdlib.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <thread>

#include "agent/runtime/stats_collector.h"

namespace berth::agent::runtime {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using namespace std::chrono_literals;

void write(const fs::path& p, const std::string& text) {
  fs::create_directories(p.parent_path());
  std::ofstream(p) << text;
}

// The CLI's CPU %: container delta over host delta, times the online CPUs.
double cli_cpu_percent(const json& s) {
  double cpu_delta = s["cpu_stats"]["cpu_usage"]["total_usage"].get<double>() -
                     s["precpu_stats"]["cpu_usage"]["total_usage"].get<double>();
  double system_delta = s["cpu_stats"].value("system_cpu_usage", 0.0) -
                        s["precpu_stats"].value("system_cpu_usage", 0.0);
  double online = s["cpu_stats"].value("online_cpus", 0.0);
  return system_delta > 0 && cpu_delta > 0 ? cpu_delta / system_delta * online * 100.0 : 0.0;
}

// The CLI's memory use on cgroup v2: usage minus inactive_file.
double cli_memory_usage(const json& m) {
  double usage = m.value("usage", 0.0);
  double inactive = m["stats"].value("inactive_file", 0.0);
  return inactive < usage ? usage - inactive : usage;
}

class StatsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/bst.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    cg_ = root_ / "cgroup" / "berth" / "c1";
    write(cg_ / "cpu.stat",
          "usage_usec 2000000\nuser_usec 1500000\nsystem_usec 500000\nnr_periods 10\n"
          "nr_throttled 2\nthrottled_usec 3000\n");
    write(cg_ / "memory.current", "67108864\n");
    write(cg_ / "memory.max", "134217728\n");
    write(cg_ / "memory.stat",
          "anon 40000000\nfile 20000000\ninactive_file 16777216\nactive_file 1000\npgfault 77\n");
    write(cg_ / "memory.events", "low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\n");
    write(cg_ / "pids.current", "3\n");
    write(cg_ / "pids.max", "max\n");
    write(cg_ / "io.stat", "8:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n"
                           "8:16 rbytes=100 wbytes=0 rios=1 wios=0 dbytes=0 dios=0\n");
    write(root_ / "net_dev",
          "Inter-|   Receive                                                |  Transmit\n"
          " face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n"
          "    lo:     500       5    0    0    0     0          0         0      500       5    0    0    0     0       0          0\n"
          "  eth0:    1296      16    1    2    0     0          0         0      648       8    3    4    0     0       0          0\n");
    // user nice system idle iowait irq softirq steal: the first seven count.
    write(root_ / "proc_stat",
          "cpu  100 0 50 800 25 5 20 999 0 0\ncpu0 50 0 25 400 10 3 10 0 0 0\n"
          "cpu1 50 0 25 400 15 2 10 0 0 0\nintr 12345\nctxt 1\n");
    source_ = {"c1", "/web", cg_, root_ / "net_dev"};
  }
  void TearDown() override { fs::remove_all(root_); }

  fs::path root_, cg_;
  StatsSource source_;
};

TEST_F(StatsTest, SystemCpuIsTheFirstSevenFieldsInNanoseconds) {
  auto cpu = read_system_cpu(root_ / "proc_stat");
  ASSERT_TRUE(cpu);
  const std::uint64_t ticks = static_cast<std::uint64_t>(::sysconf(_SC_CLK_TCK));
  EXPECT_EQ(cpu->usage_ns, 1000ULL * 1'000'000'000ULL / ticks);  // 100+0+50+800+25+5+20, steal left out
  EXPECT_EQ(cpu->online, 2u);
  EXPECT_FALSE(read_system_cpu(root_ / "missing"));
}

TEST_F(StatsTest, ASampleHasDockerdsShapeAndCgroupV2Numbers) {
  json s = read_stats(source_, {5'000'000'000ULL, 2}, 8ULL << 30, 1'700'000'000'000'000'000LL);
  EXPECT_EQ(s["id"], "c1");
  EXPECT_EQ(s["name"], "/web");
  EXPECT_EQ(s["read"], "2023-11-14T22:13:20Z");
  EXPECT_EQ(s["preread"], "0001-01-01T00:00:00Z");
  EXPECT_EQ(s["num_procs"], 0);
  EXPECT_EQ(s["storage_stats"], json::object());
  // cpu.stat microseconds as nanoseconds.
  EXPECT_EQ(s["cpu_stats"]["cpu_usage"]["total_usage"], 2'000'000'000ULL);
  EXPECT_EQ(s["cpu_stats"]["cpu_usage"]["usage_in_usermode"], 1'500'000'000ULL);
  EXPECT_EQ(s["cpu_stats"]["cpu_usage"]["usage_in_kernelmode"], 500'000'000ULL);
  EXPECT_FALSE(s["cpu_stats"]["cpu_usage"].contains("percpu_usage"));
  EXPECT_EQ(s["cpu_stats"]["system_cpu_usage"], 5'000'000'000ULL);
  EXPECT_EQ(s["cpu_stats"]["online_cpus"], 2);
  EXPECT_EQ(s["cpu_stats"]["throttling_data"],
            json({{"periods", 10}, {"throttled_periods", 2}, {"throttled_time", 3'000'000}}));
  // memory: usage raw (the client subtracts inactive_file), the limit, the OOM count.
  EXPECT_EQ(s["memory_stats"]["usage"], 67108864u);
  EXPECT_EQ(s["memory_stats"]["limit"], 134217728u);
  EXPECT_EQ(s["memory_stats"]["failcnt"], 1);
  EXPECT_EQ(s["memory_stats"]["stats"]["inactive_file"], 16777216u);
  EXPECT_EQ(s["memory_stats"]["stats"]["anon"], 40000000u);
  EXPECT_EQ(s["memory_stats"]["stats"]["pgfault"], 77);
  EXPECT_EQ(s["memory_stats"]["stats"]["slab"], 0) << "every field dockerd reports is there";
  EXPECT_DOUBLE_EQ(cli_memory_usage(s["memory_stats"]), 67108864.0 - 16777216.0);
  // pids.max "max" is reported as dockerd's containerd reads it.
  EXPECT_EQ(s["pids_stats"], json({{"current", 3}, {"limit", kUnlimited}}));
  // io.stat as read and write entries per device.
  json io = s["blkio_stats"]["io_service_bytes_recursive"];
  ASSERT_EQ(io.size(), 4u);
  EXPECT_EQ(io[0], json({{"major", 8}, {"minor", 0}, {"op", "read"}, {"value", 4096}}));
  EXPECT_EQ(io[1], json({{"major", 8}, {"minor", 0}, {"op", "write"}, {"value", 8192}}));
  EXPECT_EQ(io[2]["minor"], 16);
  EXPECT_TRUE(s["blkio_stats"]["io_serviced_recursive"].is_null());
  // Networks per interface, lo left out.
  ASSERT_TRUE(s.contains("networks"));
  EXPECT_FALSE(s["networks"].contains("lo"));
  EXPECT_EQ(s["networks"]["eth0"], json({{"rx_bytes", 1296}, {"rx_packets", 16}, {"rx_errors", 1},
                                         {"rx_dropped", 2}, {"tx_bytes", 648}, {"tx_packets", 8},
                                         {"tx_errors", 3}, {"tx_dropped", 4}}));
}

TEST_F(StatsTest, NoMemoryLimitReportsTheMachinesMemory) {
  write(cg_ / "memory.max", "max\n");
  json s = read_stats(source_, {1, 1}, 2ULL << 30, 0);
  EXPECT_EQ(s["memory_stats"]["limit"], 2ULL << 30);
  write(cg_ / "memory.events", "oom 0\n");
  EXPECT_FALSE(read_stats(source_, {1, 1}, 2ULL << 30, 0)["memory_stats"].contains("failcnt"));
}

TEST_F(StatsTest, NoNetworkNamespaceAndNoIoLeaveThemOut) {
  source_.net_dev.clear();
  fs::remove(cg_ / "io.stat");
  json s = read_stats(source_, {1, 1}, 0, 0);
  EXPECT_FALSE(s.contains("networks"));
  EXPECT_TRUE(s["blkio_stats"]["io_service_bytes_recursive"].is_null());
}

TEST_F(StatsTest, AGoneCgroupGivesTheEmptySample) {
  source_.cgroup_dir = root_ / "nope";
  EXPECT_EQ(read_stats(source_, {1, 1}, 0, 5), empty_stats("c1", "/web"));
}

TEST_F(StatsTest, TheEmptySampleIsDockerdsZeroValue) {
  json e = empty_stats("abc", "/x");
  EXPECT_EQ(e["read"], "0001-01-01T00:00:00Z");
  EXPECT_EQ(e["preread"], "0001-01-01T00:00:00Z");
  EXPECT_EQ(e["pids_stats"], json::object());
  EXPECT_EQ(e["memory_stats"], json::object());
  EXPECT_EQ(e["cpu_stats"]["cpu_usage"]["total_usage"], 0);
  EXPECT_FALSE(e["cpu_stats"].contains("system_cpu_usage"));
  EXPECT_EQ(e["precpu_stats"], e["cpu_stats"]);
  EXPECT_EQ(e["blkio_stats"].size(), 8u);
  EXPECT_FALSE(e.contains("networks"));
  EXPECT_EQ(e["name"], "/x");
  EXPECT_EQ(e["id"], "abc");
}

TEST_F(StatsTest, TheChainGivesEachSampleThePreviousCpuAndTheCliItsPercent) {
  StatsChain chain;
  json first = chain.link(read_stats(source_, {10'000'000'000ULL, 2}, 0, 1'000'000'000));
  EXPECT_EQ(first["precpu_stats"]["cpu_usage"]["total_usage"], 0) << "the first has an empty precpu";
  EXPECT_EQ(first["preread"], "0001-01-01T00:00:00Z");
  // Against the empty precpu the CLI shows the lifetime average: 2 s of 10 s on 2 CPUs.
  EXPECT_DOUBLE_EQ(cli_cpu_percent(first), 40.0);
  // One second later: the container used 0.5 s of CPU while the host's two CPUs ran 2 s.
  write(cg_ / "cpu.stat", "usage_usec 2500000\nuser_usec 1900000\nsystem_usec 600000\n");
  json second = chain.link(read_stats(source_, {12'000'000'000ULL, 2}, 0, 2'000'000'000));
  EXPECT_EQ(second["precpu_stats"], first["cpu_stats"]);
  EXPECT_EQ(second["preread"], first["read"]);
  EXPECT_DOUBLE_EQ(cli_cpu_percent(second), 50.0);
}

TEST(StatsCollector, StreamsOfOneContainerShareEachRound) {
  std::atomic<int> samples{0}, system_reads{0};
  std::atomic<bool> gone{false};
  StatsCollector collector(
      [&](const std::string& id, const SystemCpu& cpu) -> std::optional<json> {
        if (gone) return std::nullopt;
        ++samples;
        return json{{"id", id}, {"system", cpu.usage_ns}};
      },
      [&] {
        ++system_reads;
        return SystemCpu{42, 1};
      },
      50ms);
  auto a = collector.subscribe("c1");
  auto b = collector.subscribe("c1");
  auto first_a = a->next(2s);
  auto first_b = b->next(2s);
  ASSERT_TRUE(first_a && first_b);
  EXPECT_EQ(*first_a, *first_b);
  EXPECT_EQ((*first_a)["system"], 42);
  ASSERT_TRUE(a->next(2s));
  ASSERT_TRUE(b->next(2s));
  // Two streams, one sample per round.
  EXPECT_LE(samples.load(), system_reads.load() + 1);
  // The container goes: the streams end.
  // A sample taken before it went may still be waiting; the one after it ends.
  gone = true;
  const auto drained = [](auto& stream) {
    for (int i = 0; i < 2 && stream->next(2s); ++i) {
    }
    return !stream->next(2s) && stream->ended();
  };
  EXPECT_TRUE(drained(a));
  EXPECT_TRUE(drained(b));
}

TEST(StatsCollector, NothingIsSampledWithoutSubscribersAndStopEndsStreams) {
  std::atomic<int> samples{0};
  StatsCollector collector(
      [&](const std::string&, const SystemCpu&) -> std::optional<json> {
        ++samples;
        return json::object();
      },
      [] { return SystemCpu{}; }, 20ms);
  {
    auto s = collector.subscribe("c1");
    ASSERT_TRUE(s->next(2s));
  }
  std::this_thread::sleep_for(100ms);
  const int after = samples.load();
  std::this_thread::sleep_for(200ms);
  EXPECT_LE(samples.load(), after + 1) << "no rounds once nobody streams";
  auto s = collector.subscribe("c1");
  std::thread stopper([&] {
    std::this_thread::sleep_for(50ms);
    collector.stop();
  });
  auto start = std::chrono::steady_clock::now();
  while (s->next(200ms)) {
  }
  EXPECT_TRUE(s->ended());
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
  stopper.join();
}

}  // namespace
}  // namespace berth::agent::runtime
