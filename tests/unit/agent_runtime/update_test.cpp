// docker update: dockerd's checks and merge, and the cgroup v2 writes.
#include "agent/runtime/update.h"

#include <stdlib.h>

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "agent/api/http.h"
#include "agent/runtime/fd.h"

namespace berth::agent::runtime {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr std::int64_t MiB = 1024 * 1024;

HostResources host() {
  HostResources h;
  h.ncpu = 2;
  h.cpus = "0-1";
  h.mems = "0";
  return h;
}

json stored() {
  return {{"Memory", 0}, {"MemorySwap", 0}, {"NanoCpus", 0}, {"CpuShares", 0}, {"CpuQuota", 0},
          {"CpuPeriod", 0}, {"AutoRemove", false}, {"RestartPolicy", {{"Name", "no"}, {"MaximumRetryCount", 0}}}};
}

// The error of plan_update as "STATUS message"; "" when it passes.
std::string error_of(const json& hc, const json& request) {
  try {
    plan_update("abc", hc, request, host());
    return "";
  } catch (const api::HttpError& e) {
    return std::to_string(e.status()) + " " + e.what();
  }
}

TEST(Update, MergesWhatTheRequestSets) {
  json hc = stored();
  hc["Memory"] = 32 * MiB;  // run -m 32m: dockerd stored twice that as MemorySwap
  auto plan = plan_update("abc", hc,
                          {{"Memory", 48 * MiB}, {"NanoCpus", 1'500'000'000}, {"PidsLimit", 50},
                           {"CpuShares", 512}, {"CpusetCpus", "1"}, {"CpusetMems", ""},
                           {"RestartPolicy", {{"Name", "on-failure"}, {"MaximumRetryCount", 3}}}},
                          host());
  const json& out = plan.host_config;
  EXPECT_EQ(out["Memory"], 48 * MiB);
  EXPECT_EQ(out["MemorySwap"], 64 * MiB);
  EXPECT_EQ(out["NanoCpus"], 1'500'000'000);
  EXPECT_EQ(out["PidsLimit"], 50);
  EXPECT_EQ(out["CpuShares"], 512);
  EXPECT_EQ(out["CpusetCpus"], "1");
  EXPECT_FALSE(out.contains("CpusetMems"));
  EXPECT_EQ(out["RestartPolicy"], json({{"Name", "on-failure"}, {"MaximumRetryCount", 3}}));
  EXPECT_TRUE(plan.warnings.empty());
  // Zero means "leave it"; PidsLimit 0 and -1 mean unlimited; an empty policy name leaves the policy.
  auto again = plan_update("abc", out, {{"Memory", 0}, {"PidsLimit", -1}, {"RestartPolicy", {{"Name", ""}}}}, host());
  EXPECT_EQ(again.host_config["Memory"], 48 * MiB);
  EXPECT_EQ(again.host_config["PidsLimit"], 0);
  EXPECT_EQ(again.host_config["RestartPolicy"]["Name"], "on-failure");
  // An empty request changes nothing.
  EXPECT_EQ(plan_update("abc", out, json::object(), host()).host_config, out);
}

TEST(Update, RefusesWhatDockerdRefuses) {
  json hc = stored();
  EXPECT_EQ(error_of(hc, {{"Memory", 4 * MiB}}), "400 Minimum memory limit allowed is 6MB");
  EXPECT_EQ(error_of(hc, {{"Memory", 64 * MiB}, {"MemorySwap", 32 * MiB}}),
            "400 Minimum memoryswap limit should be larger than memory limit, see usage");
  EXPECT_EQ(error_of(hc, {{"MemoryReservation", MiB}}), "400 Minimum memory reservation allowed is 6MB");
  EXPECT_EQ(error_of(hc, {{"Memory", 16 * MiB}, {"MemorySwap", -1}, {"MemoryReservation", 32 * MiB}}),
            "400 Minimum memory limit can not be less than memory reservation limit, see usage");
  EXPECT_EQ(error_of(hc, {{"NanoCpus", 3'000'000'000}}),
            "400 Range of CPUs is from 0.01 to 2.00, as there are only 2 CPUs available");
  EXPECT_EQ(error_of(hc, {{"NanoCpus", 1'000'000'000}, {"CpuPeriod", 50000}}),
            "400 Conflicting options: Nano CPUs and CPU Period cannot both be set");
  EXPECT_EQ(error_of(hc, {{"NanoCpus", 1'000'000'000}, {"CpuQuota", 50000}}),
            "400 Conflicting options: Nano CPUs and CPU Quota cannot both be set");
  EXPECT_EQ(error_of(hc, {{"CpuPeriod", 500}}),
            "400 CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)");
  EXPECT_EQ(error_of(hc, {{"CpuQuota", 999}}), "400 CPU cfs quota can not be less than 1ms (i.e. 1000)");
  EXPECT_EQ(error_of(hc, {{"CpusetCpus", "5"}}), "400 Requested CPUs are not available - requested 5, available: 0-1");
  EXPECT_EQ(error_of(hc, {{"CpusetCpus", "a-b"}}), "400 Invalid value a-b for cpuset cpus: invalid format: a-b");
  EXPECT_EQ(error_of(hc, {{"CpusetMems", "1"}}),
            "400 Requested memory nodes are not available - requested 1, available: 0");
  EXPECT_EQ(error_of(hc, {{"BlkioWeight", 5}}), "400 Range of blkio weight is from 10 to 1000");
  EXPECT_EQ(error_of(hc, {{"RestartPolicy", {{"Name", "always"}, {"MaximumRetryCount", 2}}}}),
            "400 invalid restart policy: maximum retry count can only be used with 'on-failure'");
  EXPECT_EQ(error_of(hc, {{"Memory", "64m"}}),
            "400 invalid JSON: json: cannot unmarshal string into Go struct field UpdateConfig.Memory of type int64");
  EXPECT_EQ(error_of(hc, {{"CpusetCpus", 1}}),
            "400 invalid JSON: json: cannot unmarshal number 1 into Go struct field UpdateConfig.CpusetCpus of type string");
  EXPECT_NE(error_of(hc, json::array()), "");
}

TEST(Update, ConflictsWithWhatIsSetAre409) {
  json hc = stored();
  // No memory limit, so no swap limit: dockerd refuses -m alone (moby #47874).
  EXPECT_EQ(error_of(hc, {{"Memory", 64 * MiB}}),
            "409 Cannot update container abc: Memory limit should be smaller than already set memoryswap "
            "limit, update the memoryswap at the same time");
  EXPECT_EQ(error_of(hc, {{"Memory", 64 * MiB}, {"MemorySwap", 128 * MiB}}), "");
  hc["Memory"] = 32 * MiB;
  EXPECT_EQ(error_of(hc, {{"Memory", 64 * MiB}}), "") << "up to the swap dockerd stored (2 x 32m)";
  EXPECT_NE(error_of(hc, {{"Memory", 65 * MiB}}), "");
  json nano = stored();
  nano["NanoCpus"] = 1'000'000'000;
  EXPECT_EQ(error_of(nano, {{"CpuQuota", 50000}}),
            "409 Cannot update container abc: Conflicting options: CPU Quota cannot be updated as NanoCPUs has "
            "already been set");
  EXPECT_EQ(error_of(nano, {{"CpuPeriod", 50000}}),
            "409 Cannot update container abc: Conflicting options: CPU Period cannot be updated as NanoCPUs has "
            "already been set");
  json quota = stored();
  quota["CpuQuota"] = 50000;
  EXPECT_EQ(error_of(quota, {{"NanoCpus", 1'000'000'000}}),
            "409 Cannot update container abc: Conflicting options: Nano CPUs cannot be updated as CPU Quota has "
            "already been set");
  json rm = stored();
  rm["AutoRemove"] = true;
  EXPECT_EQ(error_of(rm, {{"RestartPolicy", {{"Name", "always"}}}}),
            "409 Cannot update container abc: Restart policy cannot be updated because AutoRemove is enabled "
            "for the container");
  EXPECT_EQ(error_of(rm, {{"RestartPolicy", {{"Name", "no"}}}}), "");
}

TEST(Update, AnUnsupportedBlkioWeightIsAWarning) {
  HostResources h = host();
  h.blkio_weight = false;
  auto plan = plan_update("abc", stored(), {{"BlkioWeight", 300}}, h);
  ASSERT_EQ(plan.warnings.size(), 1u);
  EXPECT_EQ(plan.warnings[0],
            "Your kernel does not support Block I/O weight or the cgroup is not mounted. Weight discarded.");
  EXPECT_FALSE(plan.host_config.contains("BlkioWeight"));
}

TEST(Update, WeightsConvertAsCrunDoes) {
  EXPECT_EQ(cpu_shares_to_weight(2), 1u);
  EXPECT_EQ(cpu_shares_to_weight(1024), 39u);
  EXPECT_EQ(cpu_shares_to_weight(512), 20u);
  EXPECT_EQ(cpu_shares_to_weight(262144), 10000u);
  EXPECT_EQ(cpu_shares_to_weight(0), 0u);
  EXPECT_EQ(blkio_weight_to_io_weight(10), 1u);
  EXPECT_EQ(blkio_weight_to_io_weight(1000), 10000u);
  EXPECT_EQ(blkio_weight_to_io_weight(500), 4950u);
  EXPECT_EQ(parse_cpu_list("0-2,4"), (std::vector<int>{0, 1, 2, 4}));
  EXPECT_FALSE(parse_cpu_list("2-1"));
  EXPECT_FALSE(parse_cpu_list("1,,2"));
}

class CgroupWrites : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/bup.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    for (const char* f : {"memory.max", "memory.swap.max", "memory.low", "cpu.max", "cpu.weight",
                          "cpuset.cpus", "pids.max", "io.weight"})
      std::ofstream(dir_ / f) << "old\n";
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string file(const char* f) { return read_file(dir_ / f).value_or("<none>"); }
  fs::path dir_;
};

TEST_F(CgroupWrites, OnlyWhatTheRequestSetsWithTheMergedValues) {
  json hc = stored();
  hc["Memory"] = 32 * MiB;
  json request = {{"Memory", 48 * MiB}, {"NanoCpus", 1'500'000'000}, {"PidsLimit", 50},
                  {"CpuShares", 1024}, {"CpusetCpus", "1"}, {"BlkioWeight", 500}};
  auto plan = plan_update("abc", hc, request, host());
  auto writes = cgroup_writes(plan.host_config, request, dir_);
  apply_cgroup_writes(dir_, writes);
  EXPECT_EQ(file("memory.max"), std::to_string(48 * MiB));
  EXPECT_EQ(file("memory.swap.max"), std::to_string(16 * MiB)) << "64m of memory+swap";
  EXPECT_EQ(file("cpu.max"), "150000 100000");
  EXPECT_EQ(file("cpu.weight"), "39");
  EXPECT_EQ(file("cpuset.cpus"), "1");
  EXPECT_EQ(file("pids.max"), "50");
  EXPECT_EQ(file("io.weight"), "4950");
  EXPECT_EQ(file("memory.low"), "old\n") << "not in the request";
}

TEST_F(CgroupWrites, UnlimitedValuesAndQuotaWithPeriod) {
  json hc = stored();
  hc["Memory"] = 64 * MiB;
  hc["MemorySwap"] = -1;
  hc["CpuQuota"] = 25000;
  hc["CpuPeriod"] = 50000;
  hc["PidsLimit"] = 0;
  auto writes = cgroup_writes(hc, {{"MemorySwap", -1}, {"CpuQuota", 25000}, {"PidsLimit", 0}}, dir_);
  apply_cgroup_writes(dir_, writes);
  EXPECT_EQ(file("memory.max"), std::to_string(64 * MiB));
  EXPECT_EQ(file("memory.swap.max"), "max");
  EXPECT_EQ(file("cpu.max"), "25000 50000");
  EXPECT_EQ(file("pids.max"), "max");
}

TEST_F(CgroupWrites, AMissingFileNamesIt) {
  fs::remove(dir_ / "pids.max");
  try {
    apply_cgroup_writes(dir_, {{"pids.max", "10"}});
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("failed to write 10 to " + (dir_ / "pids.max").string()),
              std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace berth::agent::runtime
