// The amazonec2 driver end to end: the real berth and berth-agent against
// moto_server (signature checking on, a real IAM access key) behind a proxy
// that injects faults and backs each instance with a real SSH test host
// (tests/fakes/ec2proxy/ec2fake.py). After every test moto must hold no
// instance (not terminated), key pair or security group, and no test host may
// be left up.
#include <gtest/gtest.h>
#include <signal.h>

#include <memory>
#include <regex>

#include "tests/integration/amazonec2/ec2_fake.h"
#include "tests/integration/generic/berth_cli.h"

namespace berth::it {
namespace {

class Ec2 : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    why_not_ = testhost_unavailable_reason();
    if (!why_not_.empty()) return;
    why_not_ = Ec2Fake::unavailable_reason();
    if (!why_not_.empty()) return;
    try {
      fake_ = std::make_unique<Ec2Fake>();
    } catch (const std::exception& e) {
      start_error_ = e.what();
    }
  }
  static void TearDownTestSuite() { fake_.reset(); }

  void SetUp() override {
    if (!why_not_.empty()) GTEST_SKIP() << "EC2 integration tests skipped: " << why_not_;
    ASSERT_TRUE(fake_) << start_error_;
    ASSERT_TRUE(fs::exists(berth_binary())) << "no berth binary at " << berth_binary() << "; build 'berth'";
    fake().clear_faults();
    fake().clear_log();
    auto left = leftovers(fake().state());
    ASSERT_EQ(left, "") << "moto is not empty before the test";
  }

  // Nothing berth made may outlive a test, whatever happened in it.
  void TearDown() override {
    if (!fake_) return;
    fake().clear_faults();
    std::string left;
    eventually([&] { return (left = leftovers(fake().state())).empty(); }, 30s, 250ms);
    EXPECT_EQ(left, "") << "left behind in moto after the test";
    if (!left.empty()) fake().purge();   // so the next test starts clean
  }

  static const Ec2Fake& fake() { return *fake_; }

  // berth's environment plus the fake's credentials; nothing of the caller's AWS setup.
  Env env(const Env& extra = {}) const {
    Env e = cli.env();
    for (const char* var : {"AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_REGION", "AWS_ENDPOINT_URL",
                            "AWS_ENDPOINT_URL_EC2", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE",
                            "AWS_INSTANCE_TYPE", "AWS_SSH_USER", "AWS_AMI", "AWS_SUBNET_ID", "AWS_ROOT_SIZE",
                            "AWS_USERDATA", "AWS_SECURITY_GROUP", "AWS_TAGS"})
      e[var] = std::nullopt;
    e["AWS_ACCESS_KEY_ID"] = fake().access_key();
    e["AWS_SECRET_ACCESS_KEY"] = fake().secret_key();
    e["AWS_DEFAULT_REGION"] = fake().region();
    e["BERTH_CLOUD_POLL_MS"] = "200";
    e["BERTH_CLOUD_REQUEST_TIMEOUT_MS"] = std::to_string(kRequestTimeoutMs);
    for (const auto& [k, v] : extra) e[k] = v;
    return e;
  }

  std::vector<std::string> berth_argv(const std::vector<std::string>& args) const {
    std::vector<std::string> argv = {berth_binary().string()};
    argv.insert(argv.end(), args.begin(), args.end());
    return argv;
  }
  RunResult berth(const std::vector<std::string>& args, std::chrono::milliseconds timeout = 120s) const {
    return run(berth_argv(args), env(), timeout);
  }
  Process start_berth(const std::vector<std::string>& args) const {
    SpawnOptions options;
    options.env = env();
    return Process::start(berth_argv(args), options);
  }
  RunResult bash(const std::string& script, std::chrono::milliseconds timeout = 120s) const {
    return run({"bash", "-c", script}, env(), timeout);
  }

  std::vector<std::string> create_args(const std::string& name, const std::vector<std::string>& extra = {}) const {
    std::vector<std::string> args = {"create", "-d", "amazonec2", "--amazonec2-endpoint", fake().endpoint(),
                                     "--amazonec2-ami", fake().ami(), "--amazonec2-ssh-user", "root",
                                     "--amazonec2-region", fake().region()};
    args.insert(args.end(), extra.begin(), extra.end());
    args.push_back(name);
    return args;
  }
  RunResult create(const std::string& name, const std::vector<std::string>& extra = {}) const {
    return berth(create_args(name, extra), 240s);
  }
  RunResult rm(const std::string& name) const { return berth({"rm", "-y", name}, 180s); }

  RunResult docker_version(const std::string& name) const {
    return bash("set -e; eval \"$(berth env " + name + ")\"; docker version --format '{{.Server.Version}}'");
  }
  std::string status(const std::string& name) const { return trim(berth({"status", name}, 60s).out); }
  std::string ls_state(const std::string& name) const {
    auto r = berth({"ls", "--format", "json"}, 60s);
    for (const auto& line : lines(r.out)) {
      auto j = nlohmann::json::parse(line, nullptr, false);
      if (!j.is_discarded() && j.value("Name", "") == name) return j.value("State", "");
    }
    return "(not listed: " + r.describe() + ")";
  }

  // Starts a create and returns once `ready` holds (checked against the fake).
  template <typename Ready>
  std::optional<Process> create_until(const std::string& name, Ready ready) const {
    Process p = start_berth(create_args(name));
    const bool reached = eventually([&] { return ready() || !p.running(); }, 120s, 20ms);
    if (!reached || !p.running()) {
      ADD_FAILURE() << "create ended before it could be interrupted:\n" << p.wait(1s).describe();
      return std::nullopt;
    }
    return p;
  }

  static constexpr int kRequestTimeoutMs = 3000;
  BerthCli cli;

 private:
  static inline std::unique_ptr<Ec2Fake> fake_;
  static inline std::string why_not_;
  static inline std::string start_error_;
};

// ---------------------------------------------------------------- the fake itself

// The fake's own checks (tests/fakes/ec2proxy/selftest.py): signatures,
// ClientToken replay, IP mapping to SSH hosts, faults, power, SIGTERM clean-up.
TEST_F(Ec2, FakeSelfTestPasses) {
  auto r = run({"python3", (Ec2Fake::script().parent_path() / "selftest.py").string(), "--testhost-script",
                testhost_script().string()},
               {}, 180s);
  EXPECT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_NE(r.out.find("all checks passed"), std::string::npos) << r.out;
}

// moto checks signatures: curl's own SigV4 (independent of boto3 and of berth)
// gets in with the key, and is refused with a wrong secret.
TEST_F(Ec2, FakeRefusesWrongSignature) {
  auto call = [&](const std::string& secret) {
    return run({"curl", "-sS", "--max-time", "30", "-w", "\n%{http_code}", "--aws-sigv4",
                "aws:amz:" + fake().region() + ":ec2", "--user", fake().access_key() + ":" + secret, "-H",
                "Content-Type: application/x-www-form-urlencoded; charset=utf-8", "--data",
                "Action=DescribeKeyPairs&Version=2016-11-15", fake().endpoint() + "/"},
               {}, 60s);
  };
  auto good = call(fake().secret_key());
  ASSERT_TRUE(good.ok()) << good.describe();
  EXPECT_TRUE(good.out.ends_with("\n200")) << good.out;
  EXPECT_NE(good.out.find("DescribeKeyPairsResponse"), std::string::npos) << good.out;

  auto bad = call("wrong-" + fake().secret_key());
  ASSERT_TRUE(bad.ok()) << bad.describe();
  EXPECT_TRUE(bad.out.ends_with("\n401")) << bad.out;
  EXPECT_NE(bad.out.find("<Code>AuthFailure</Code>"), std::string::npos) << bad.out;
}

// ---------------------------------------------------------------- the life of a machine

TEST_F(Ec2, CreateEnvLsStopStartRm) {
  auto created = create("ec2-life");
  ASSERT_EQ(created.exit_code, 0) << created.describe();

  auto st = fake().state();
  ASSERT_EQ(st["instances"].size(), 1u) << st.dump();
  EXPECT_EQ(st["key_pairs"].size(), 1u) << st.dump();
  EXPECT_EQ(st["security_groups"].size(), 1u) << st.dump();
  EXPECT_EQ(st["instances"][0]["tags"].value("Name", ""), "ec2-life") << st.dump();
  EXPECT_EQ(st["hosts_up"], 1) << st.dump();

  // The secret never lands in the store in clear.
  for (const auto& file : regular_files(cli.machine_dir("ec2-life"))) {
    const auto text = read_text(cli.machine_dir("ec2-life") / file);
    EXPECT_EQ(text.find(fake().secret_key()), std::string::npos) << file << " holds the secret key in clear";
  }

  auto version = docker_version("ec2-life");
  ASSERT_EQ(version.exit_code, 0) << version.describe();
  EXPECT_FALSE(trim(version.out).empty()) << version.describe();
  EXPECT_EQ(ls_state("ec2-life"), "Running");
  EXPECT_EQ(status("ec2-life"), "Running");
  auto ip = berth({"ip", "ec2-life"}, 60s);
  EXPECT_TRUE(std::regex_match(trim(ip.out), std::regex(R"(10\.231\.\d+\.2)"))) << ip.describe();

  auto stopped = berth({"stop", "ec2-life"}, 180s);
  ASSERT_EQ(stopped.exit_code, 0) << stopped.describe();
  EXPECT_EQ(status("ec2-life"), "Stopped");
  EXPECT_EQ(ls_state("ec2-life"), "Stopped");
  EXPECT_NE(docker_version("ec2-life").exit_code, 0) << "the agent still answers on a stopped instance";

  auto started = berth({"start", "ec2-life"}, 180s);
  ASSERT_EQ(started.exit_code, 0) << started.describe();
  EXPECT_EQ(status("ec2-life"), "Running");
  auto again = docker_version("ec2-life");
  EXPECT_EQ(again.exit_code, 0) << again.describe();

  // RebootInstances: the fake kills everything but sshd and boots the host again.
  auto restarted = berth({"restart", "ec2-life"}, 180s);
  ASSERT_EQ(restarted.exit_code, 0) << restarted.describe();
  EXPECT_EQ(fake().calls("RebootInstances").size(), 1u);
  auto after_reboot = docker_version("ec2-life");
  EXPECT_EQ(after_reboot.exit_code, 0) << after_reboot.describe();

  auto removed = rm("ec2-life");
  EXPECT_EQ(removed.exit_code, 0) << removed.describe();
  EXPECT_FALSE(fs::exists(cli.machine_dir("ec2-life")));
  // TearDown: zero instances, key pairs, groups and hosts.
}

// ---------------------------------------------------------------- faults

TEST_F(Ec2, ThrottlingAnd5xxAreRetried) {
  fake().add_fault({{"kind", "throttle"}, {"action", "RunInstances"}, {"count", 2}});
  fake().add_fault({{"kind", "throttle"}, {"action", "ImportKeyPair"}, {"count", 1}});
  fake().add_fault({{"kind", "error"}, {"status", 500}, {"action", "DescribeInstances"}, {"count", 1}});
  fake().add_fault({{"kind", "error"}, {"status", 503}, {"code", "Unavailable"}, {"action", "DescribeImages"},
                    {"count", 1}});
  auto created = create("ec2-throttle");
  ASSERT_EQ(created.exit_code, 0) << created.describe();
  EXPECT_EQ(fake().faults()["fired"].size(), 5u) << fake().faults().dump();
  EXPECT_EQ(fake().faults()["rules"].size(), 0u) << "not every fault was met: " << fake().faults().dump();

  auto runs = fake().calls("RunInstances");
  ASSERT_EQ(runs.size(), 3u) << runs.dump();
  for (const auto& r : runs) EXPECT_EQ(r["client_token"], runs[0]["client_token"]) << runs.dump();
  EXPECT_FALSE(runs[0]["client_token"].get<std::string>().empty()) << "RunInstances without a ClientToken";
  EXPECT_EQ(fake().state()["instances"].size(), 1u);

  EXPECT_EQ(rm("ec2-throttle").exit_code, 0);
}

// RunInstances runs but its answer is lost: the retry carries the same
// ClientToken, so there is still exactly one instance.
TEST_F(Ec2, LostRunInstancesResponseMakesOneInstance) {
  fake().add_fault({{"kind", "drop"}, {"action", "RunInstances"}, {"count", 1}});
  auto created = create("ec2-lost");
  ASSERT_EQ(created.exit_code, 0) << created.describe();
  auto st = fake().state();
  EXPECT_EQ(st["instances"].size(), 1u) << "a lost RunInstances answer left a second instance: " << st.dump();
  auto runs = fake().calls("RunInstances");
  ASSERT_EQ(runs.size(), 2u) << runs.dump();
  EXPECT_EQ(runs[0]["fault"], "drop");
  EXPECT_EQ(runs[1]["client_token"], runs[0]["client_token"]);
  EXPECT_TRUE(runs[1].value("idempotent_replay", false)) << runs.dump();
  auto version = docker_version("ec2-lost");
  EXPECT_EQ(version.exit_code, 0) << version.describe();
  EXPECT_EQ(rm("ec2-lost").exit_code, 0);
}

// Eventual consistency: DescribeInstances does not know the new instance yet.
TEST_F(Ec2, NotFoundRightAfterCreateIsWaitedOut) {
  fake().add_fault({{"kind", "not_found"}, {"action", "DescribeInstances"}, {"count", 3}});
  auto created = create("ec2-nf");
  ASSERT_EQ(created.exit_code, 0) << created.describe();
  EXPECT_EQ(fake().faults()["fired"].size(), 3u) << fake().faults().dump();
  EXPECT_EQ(fake().state()["instances"].size(), 1u);
  EXPECT_EQ(rm("ec2-nf").exit_code, 0);
}

// One DescribeInstances answers after the request timeout: berth gives up on
// it and asks again instead of waiting.
TEST_F(Ec2, SlowResponsePastTheTimeoutIsRetried) {
  const int delay_ms = kRequestTimeoutMs + 3000;
  fake().add_fault({{"kind", "slow"}, {"action", "DescribeInstances"}, {"count", 1}, {"delay_ms", delay_ms}});
  auto created = create("ec2-slow");
  ASSERT_EQ(created.exit_code, 0) << created.describe();
  auto describes = fake().calls("DescribeInstances");
  auto slow = std::find_if(describes.begin(), describes.end(), [](const auto& e) { return e["fault"] == "slow"; });
  ASSERT_NE(slow, describes.end()) << describes.dump();
  ASSERT_NE(std::next(slow), describes.end()) << "no DescribeInstances after the slow one";
  const double gap = (*std::next(slow))["time"].get<double>() - (*slow)["time"].get<double>();
  EXPECT_LT(gap, delay_ms / 1000.0 - 0.5) << "berth waited for the slow answer instead of timing out";
  EXPECT_EQ(rm("ec2-slow").exit_code, 0);
}

// A bad AMI: AWS's code and request id in one clear line, nothing left.
TEST_F(Ec2, BadAmiIsAClearErrorAndLeavesNothing) {
  auto args = create_args("ec2-badami");
  auto ami = std::find(args.begin(), args.end(), fake().ami());
  *ami = "ami-00000000";
  auto r = berth(args, 120s);
  EXPECT_NE(r.exit_code, 0) << r.describe();
  EXPECT_NE(r.err.find("InvalidAMIID"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("ami-00000000"), std::string::npos) << r.err;
  // The id AWS (here moto, through the proxy) gave the failed call.
  std::string request_id;
  for (const auto& call : fake().log())
    if (call.value("status", 0) >= 400) request_id = call.value("request_id", "");
  ASSERT_FALSE(request_id.empty()) << fake().log().dump();
  EXPECT_NE(r.err.find(request_id), std::string::npos) << "no request id " << request_id << " in: " << r.err;
  EXPECT_EQ(r.err.find(fake().secret_key()), std::string::npos) << "the secret key is in the error";
  EXPECT_FALSE(fs::exists(cli.machine_dir("ec2-badami")));
}

// RunInstances refused after the key pair and group exist: both are rolled back.
TEST_F(Ec2, RefusedRunInstancesRollsBackKeyAndGroup) {
  fake().add_fault({{"kind", "error"}, {"status", 400}, {"code", "InstanceLimitExceeded"},
                    {"message", "You have requested more instances than your current instance limit allows"},
                    {"action", "RunInstances"}, {"count", 1}});
  auto r = create("ec2-refused");
  EXPECT_NE(r.exit_code, 0) << r.describe();
  EXPECT_NE(r.err.find("InstanceLimitExceeded"), std::string::npos) << r.err;
  auto runs = fake().calls("RunInstances");
  ASSERT_EQ(runs.size(), 1u) << runs.dump();
  EXPECT_NE(r.err.find(runs[0].value("request_id", "?")), std::string::npos) << "no request id in: " << r.err;
  EXPECT_EQ(fake().calls("ImportKeyPair").size(), 1u) << "the key pair was never made: rollback is not tested";
  EXPECT_FALSE(fs::exists(cli.machine_dir("ec2-refused")));
}

// A failure once the instance exists: it is terminated along with the rest.
TEST_F(Ec2, FailureAfterTheInstanceExistsTerminatesIt) {
  fake().add_fault({{"kind", "error"}, {"status", 403}, {"code", "UnauthorizedOperation"},
                    {"message", "You are not authorized to perform this operation."},
                    {"action", "DescribeInstances"}, {"count", 1}});
  auto r = create("ec2-fail-late");
  EXPECT_NE(r.exit_code, 0) << r.describe();
  EXPECT_NE(r.err.find("UnauthorizedOperation"), std::string::npos) << r.err;
  EXPECT_EQ(fake().calls("TerminateInstances").size() >= 1, true) << fake().log().dump();
  EXPECT_FALSE(fs::exists(cli.machine_dir("ec2-fail-late")));
}

// ---------------------------------------------------------------- interruptions

// Ctrl-C while berth waits for the new instance: berth undoes the create itself.
TEST_F(Ec2, SigintDuringCreateLeavesNothing) {
  fake().add_fault({{"kind", "not_found"}, {"action", "DescribeInstances"}, {"count", 100000}});
  auto create = create_until("ec2-int", [&] { return fake().calls("DescribeInstances").size() >= 2; });
  ASSERT_TRUE(create);
  ASSERT_EQ(fake().state()["instances"].size(), 1u);
  create->signal(SIGINT);
  auto r = create->wait(120s);
  EXPECT_FALSE(r.timed_out) << "berth did not stop after SIGINT";
  EXPECT_EQ(r.exit_code, 130) << r.describe();
  fake().clear_faults();
  // Cleaned up by the interrupted create itself, before any rm.
  std::string left;
  eventually([&] { return (left = leftovers(fake().state())).empty(); }, 20s, 250ms);
  EXPECT_EQ(left, "") << "SIGINT left this behind";
  auto rm = berth({"rm", "-f", "-y", "ec2-int"}, 120s);   // harmless when nothing is left
  EXPECT_FALSE(fs::exists(cli.machine_dir("ec2-int"))) << rm.describe();
}

// SIGKILL while RunInstances is in flight (the instance exists, its id never
// reached berth): `berth rm -f` finds it by its tag and removes everything.
TEST_F(Ec2, SigkillDuringCreateThenRmForceLeavesNothing) {
  fake().add_fault({{"kind", "slow"}, {"action", "RunInstances"}, {"count", 1}, {"delay_ms", 2500}});
  auto create = create_until("ec2-kill", [&] { return !fake().calls("RunInstances").empty(); });
  ASSERT_TRUE(create);
  ASSERT_TRUE(eventually([&] { return fake().state()["instances"].size() == 1; }, 5s, 50ms));
  create->signal(SIGKILL);
  auto killed = create->wait(10s);
  ASSERT_EQ(killed.term_signal, SIGKILL) << killed.describe();
  fake().clear_faults();
  ASSERT_TRUE(fs::exists(cli.machine_dir("ec2-kill"))) << "nothing recorded before the kill: rm cannot find it";

  auto rm = berth({"rm", "-f", "-y", "ec2-kill"}, 180s);
  EXPECT_EQ(rm.exit_code, 0) << rm.describe();
  EXPECT_FALSE(fs::exists(cli.machine_dir("ec2-kill")));
  // TearDown: zero instances, key pairs, groups and hosts.
}

// ---------------------------------------------------------------- real AWS

// Only with real credentials (AWS_ACCESS_KEY_ID_LIVE, AWS_SECRET_ACCESS_KEY_LIVE,
// AWS_AMI_LIVE, optional AWS_REGION_LIVE and AWS_SSH_USER_LIVE); never in CI.
TEST(Ec2Live, CreateDockerVersionRm) {
  const char* key = std::getenv("AWS_ACCESS_KEY_ID_LIVE");
  if (!key || !*key) GTEST_SKIP() << "live EC2 test skipped: AWS_ACCESS_KEY_ID_LIVE is not set";
  const char* secret = std::getenv("AWS_SECRET_ACCESS_KEY_LIVE");
  const char* ami = std::getenv("AWS_AMI_LIVE");
  ASSERT_TRUE(secret && *secret) << "AWS_SECRET_ACCESS_KEY_LIVE is not set";
  ASSERT_TRUE(ami && *ami) << "AWS_AMI_LIVE is not set";
  const char* region = std::getenv("AWS_REGION_LIVE");
  const char* user = std::getenv("AWS_SSH_USER_LIVE");
  BerthCli cli;
  Env e = cli.env();
  e["AWS_ACCESS_KEY_ID"] = key;
  e["AWS_SECRET_ACCESS_KEY"] = secret;
  const std::string name = "berth-live-" + std::to_string(::getpid());
  auto r = run({berth_binary().string(), "create", "-d", "amazonec2", "--amazonec2-ami", ami, "--amazonec2-region",
                region ? region : "us-east-1", "--amazonec2-ssh-user", user ? user : "ubuntu", name},
               e, 900s);
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  auto v = run({"bash", "-c", "set -e; eval \"$(berth env " + name + ")\"; docker version"}, e, 120s);
  EXPECT_EQ(v.exit_code, 0) << v.describe();
  auto gone = run({berth_binary().string(), "rm", "-f", "-y", name}, e, 600s);
  EXPECT_EQ(gone.exit_code, 0) << gone.describe();
}

}  // namespace
}  // namespace berth::it
