// The EC2 driver against an in-memory EC2 (fake_ec2.h) and a fake clock:
// request sequences, rollback, ClientToken reuse, cleanup after a killed
// create, state mapping, and credentials that never reach driver_state in clear.
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <sys/stat.h>

#include <atomic>
#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "drivers/cloud/amazonec2/amazonec2.h"
#include "tests/unit/amazonec2/fake_ec2.h"

namespace berth {
namespace {

namespace fs = std::filesystem;
using test::FakeEc2;

const std::string kSecret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
const std::string kToken = "FwoGZXIvYXdzEXAMPLESESSIONTOKEN";

std::string b64decode(const std::string& s) {
  std::string out(s.size(), '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(s.data()), static_cast<int>(s.size()));
  if (n < 0) return "";
  out.resize(static_cast<size_t>(n));
  while (!s.empty() && s.back() == '=' && !out.empty() && out.back() == '\0') out.pop_back();
  return out;
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

class ClockWithHook final : public cloud::Clock {
 public:
  test::FakeClock inner;
  std::function<void()> on_sleep;
  std::chrono::system_clock::time_point now() override { return inner.now(); }
  void sleep(std::chrono::milliseconds d, const CancelToken& cancel) override {
    if (on_sleep) on_sleep();
    inner.sleep(d, cancel);
  }
};

class Ec2DriverTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("berth-ec2-test-" + std::to_string(::getpid()) + "-" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    fs::permissions(dir_, fs::perms::owner_all);
    ec2_.clock = &clock_;
    AmazonEc2Deps deps;
    deps.transport = &ec2_;
    deps.clock = &clock_;
    deps.random = [] { return 0.5; };
    factory_ = std::make_unique<AmazonEc2DriverFactory>(deps);
    flags_.set("amazonec2-access-key", {"AKIDEXAMPLE"});
    flags_.set("amazonec2-secret-key", {kSecret});
    flags_.set("amazonec2-ami", {"ami-12345678"});
    flags_.set("amazonec2-endpoint", {"http://127.0.0.1:9/"});
  }
  void TearDown() override { fs::remove_all(dir_); }

  DriverContext ctx() {
    DriverContext c;
    c.machine_name = "dev";
    c.machine_dir = dir_;
    c.cancel = CancelToken{&cancelled_};
    c.secrets = &sealer_;
    c.checkpoint = [this](const nlohmann::json& j) { checkpoints_.push_back(j); };
    c.quiet = true;
    return c;
  }
  std::unique_ptr<Driver> make() { return factory_->make(flags_, ctx()); }
  std::unique_ptr<Driver> load(const nlohmann::json& state) { return factory_->load(state, ctx()); }

  std::vector<std::string> actions_since(size_t from) const {
    auto all = ec2_.actions();
    return {all.begin() + static_cast<long>(from), all.end()};
  }
  void expect_nothing_left() const {
    EXPECT_EQ(ec2_.live_instances(), 0u);
    EXPECT_TRUE(ec2_.keys.empty());
    EXPECT_TRUE(ec2_.groups.empty());
  }

  fs::path dir_;
  ClockWithHook clock_;
  FakeEc2 ec2_;
  test::FakeSealer sealer_;
  std::atomic<bool> cancelled_{false};
  std::vector<nlohmann::json> checkpoints_;
  std::unique_ptr<AmazonEc2DriverFactory> factory_;
  FlagValues flags_;
};

TEST_F(Ec2DriverTest, CreateMakesGroupKeyAndInstanceThenWaitsForRunningWithAnIp) {
  auto d = make();
  d->create();

  EXPECT_EQ(ec2_.actions(), (std::vector<std::string>{"DescribeImages", "DescribeVpcs", "DescribeSecurityGroups",
                                                      "CreateSecurityGroup", "AuthorizeSecurityGroupIngress",
                                                      "ImportKeyPair", "RunInstances", "DescribeInstances",
                                                      "DescribeInstances", "DescribeInstances", "DescribeInstances"}));
  EXPECT_TRUE(ec2_.signature_errors.empty()) << ec2_.signature_errors.front();
  ASSERT_EQ(ec2_.instances.size(), 1u);
  const auto& inst = ec2_.instances.begin()->second;
  EXPECT_EQ(d->ip(), inst.ip);
  EXPECT_EQ(d->url(2376), "tcp://" + inst.ip + ":2376");
  EXPECT_EQ(d->state(std::chrono::seconds(5)), MachineState::Running);

  const auto state = d->save_state();
  const std::string id = state["machine_id"];
  ASSERT_EQ(id.size(), 16u);
  const auto run = ec2_.calls_of("RunInstances").front();
  EXPECT_EQ(run.param("Version"), "2016-11-15");
  EXPECT_EQ(run.param("ClientToken"), "berth-" + id);
  EXPECT_EQ(run.param("KeyName"), "berth-dev-" + id.substr(0, 8));
  EXPECT_EQ(run.param("ImageId"), "ami-12345678");
  EXPECT_EQ(run.param("InstanceType"), "t3.micro");
  EXPECT_EQ(run.param("SecurityGroupId.1"), inst.group);
  EXPECT_EQ(run.param("BlockDeviceMapping.1.DeviceName"), "/dev/sda1");
  EXPECT_EQ(run.param("BlockDeviceMapping.1.Ebs.VolumeSize"), "16");
  EXPECT_EQ(run.param("TagSpecification.1.ResourceType"), "instance");
  EXPECT_EQ(inst.tags, (std::vector<std::pair<std::string, std::string>>{{"Name", "dev"}, {"berth-machine", id}}));

  const auto sg = ec2_.calls_of("CreateSecurityGroup").front();
  EXPECT_EQ(sg.param("GroupName"), "berth-machine");
  EXPECT_EQ(sg.param("VpcId"), ec2_.default_vpc);
  EXPECT_EQ(ec2_.groups.begin()->second.ports, (std::vector<int>{22, 2376}));

  // The key berth generated is the one EC2 got.
  struct stat st {};
  ASSERT_EQ(::stat((dir_ / "id_ed25519").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  std::string pub = slurp(dir_ / "id_ed25519.pub");
  while (!pub.empty() && pub.back() == '\n') pub.pop_back();
  std::string imported = b64decode(ec2_.calls_of("ImportKeyPair").front().param("PublicKeyMaterial"));
  while (!imported.empty() && imported.back() == '\n') imported.pop_back();
  EXPECT_EQ(imported, pub);
  auto ssh = d->ssh_endpoint();
  ASSERT_TRUE(ssh);
  EXPECT_EQ(ssh->user, "ubuntu");
  EXPECT_EQ(ssh->key_path, dir_ / "id_ed25519");

  // Checkpoints: the id before anything existed, then the group, then the instance.
  ASSERT_GE(checkpoints_.size(), 3u);
  EXPECT_EQ(checkpoints_.front()["machine_id"], id);
  EXPECT_EQ(checkpoints_.front()["instance_id"], "");
  bool saw_instance = false;
  for (const auto& c : checkpoints_) saw_instance |= c["instance_id"] == inst.id;
  EXPECT_TRUE(saw_instance);
  // Polling slept on the fake clock, at the 2 s default interval.
  EXPECT_EQ(clock_.inner.slept, std::chrono::seconds(6));
}

TEST_F(Ec2DriverTest, RemoveTerminatesAndDeletesKeyAndTheGroupBerthMade) {
  auto d = make();
  d->create();
  const size_t before = ec2_.calls.size();
  d->remove();
  auto acts = actions_since(before);
  EXPECT_EQ(acts.front(), "DescribeInstances");  // by tag, for instances a killed create left
  EXPECT_NE(std::find(acts.begin(), acts.end(), "TerminateInstances"), acts.end());
  EXPECT_NE(std::find(acts.begin(), acts.end(), "DeleteKeyPair"), acts.end());
  EXPECT_EQ(acts.back(), "DeleteSecurityGroup");
  expect_nothing_left();
  EXPECT_FALSE(fs::exists(dir_ / "id_ed25519"));
  EXPECT_EQ(d->state(std::chrono::seconds(1)), MachineState::NotFound);
  // Removing again: everything is gone already, which is fine.
  EXPECT_NO_THROW(d->remove());
  EXPECT_TRUE(ec2_.signature_errors.empty());
}

TEST_F(Ec2DriverTest, AnExistingGroupIsReusedOnlyMissingPortsOpenedAndItIsKept) {
  ec2_.groups["sg-0existing"] = FakeEc2::Group{"sg-0existing", "berth-machine", ec2_.default_vpc, {22}, {}};
  auto d = make();
  d->create();
  EXPECT_TRUE(ec2_.calls_of("CreateSecurityGroup").empty());
  auto auth = ec2_.calls_of("AuthorizeSecurityGroupIngress");
  ASSERT_EQ(auth.size(), 1u);
  EXPECT_EQ(auth[0].param("IpPermissions.1.FromPort"), "2376");
  EXPECT_EQ(auth[0].param("IpPermissions.2.FromPort"), "");
  d->remove();
  EXPECT_TRUE(ec2_.calls_of("DeleteSecurityGroup").empty());
  EXPECT_EQ(ec2_.groups.size(), 1u);
  EXPECT_EQ(ec2_.live_instances(), 0u);
  EXPECT_TRUE(ec2_.keys.empty());
}

TEST_F(Ec2DriverTest, TheEnginePortIsOpenedNotAFixedOne) {
  auto c = ctx();
  c.engine_port = 12376;
  auto d = factory_->make(flags_, c);
  d->create();
  EXPECT_EQ(ec2_.groups.begin()->second.ports, (std::vector<int>{22, 12376}));
}

TEST_F(Ec2DriverTest, ALaunchThatEndsTerminatedRollsEverythingBack) {
  ec2_.next_launch_fails = true;
  auto d = make();
  try {
    d->create();
    FAIL() << "create succeeded";
  } catch (const DriverError& e) {
    EXPECT_NE(std::string(e.what()).find("terminated"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("machine 'dev'"), std::string::npos) << e.what();
  }
  expect_nothing_left();
  EXPECT_FALSE(fs::exists(dir_ / "id_ed25519"));
}

TEST_F(Ec2DriverTest, AFailedImportRollsBackTheGroupAndNeverLaunches) {
  ec2_.faults.push_back({"ImportKeyPair", 1,
                         FakeEc2::error(400, "InvalidKey.Format", "Key is not in valid OpenSSH public key format"),
                         false, false});
  auto d = make();
  try {
    d->create();
    FAIL() << "create succeeded";
  } catch (const cloud::ApiError& e) {
    EXPECT_EQ(e.code(), "InvalidKey.Format");
    EXPECT_EQ(std::string(e.what()),
              "machine 'dev': EC2 ImportKeyPair failed with HTTP 400: Key is not in valid OpenSSH public key format "
              "(InvalidKey.Format, request id req-InvalidKey.Format)");
  }
  EXPECT_TRUE(ec2_.calls_of("RunInstances").empty());
  expect_nothing_left();
}

TEST_F(Ec2DriverTest, ALostRunInstancesAnswerIsRetriedWithTheSameClientTokenAndMakesOneInstance) {
  // EC2 launched the instance but the answer was a 500; then a reset connection after arrival.
  ec2_.faults.push_back(
      {"RunInstances", 1, FakeEc2::error(500, "InternalError", "An internal error has occurred"), true, false});
  ec2_.faults.push_back({"RunInstances", 2, {}, true, true});
  auto d = make();
  d->create();
  auto runs = ec2_.calls_of("RunInstances");
  ASSERT_EQ(runs.size(), 3u);
  EXPECT_EQ(runs[0].param("ClientToken"), runs[1].param("ClientToken"));
  EXPECT_EQ(runs[1].param("ClientToken"), runs[2].param("ClientToken"));
  EXPECT_EQ(ec2_.instances.size(), 1u);
  EXPECT_EQ(d->state(std::chrono::seconds(1)), MachineState::Running);
  // Each attempt was signed afresh at the clock's time (the fake checks X-Amz-Date).
  EXPECT_TRUE(ec2_.signature_errors.empty()) << ec2_.signature_errors.front();
}

TEST_F(Ec2DriverTest, RunInstancesThatKeepsFailingLeavesNoInstanceBehind) {
  for (int i = 1; i <= 6; ++i)
    ec2_.faults.push_back(
        {"RunInstances", i, FakeEc2::error(503, "Unavailable", "The service is unavailable"), i == 1, false});
  auto d = make();
  EXPECT_THROW(d->create(), cloud::ApiError);
  // The first attempt launched an instance whose answer was lost: rollback found it by its tag.
  EXPECT_EQ(ec2_.instances.size(), 1u);
  expect_nothing_left();
}

TEST_F(Ec2DriverTest, ThrottlingIsRetried) {
  ec2_.faults.push_back({"DescribeSecurityGroups", 1,
                         FakeEc2::error(503, "RequestLimitExceeded", "Request limit exceeded."), false, false});
  auto d = make();
  d->create();
  EXPECT_EQ(ec2_.calls_of("DescribeSecurityGroups").size(), 2u);
  EXPECT_EQ(ec2_.live_instances(), 1u);
}

TEST_F(Ec2DriverTest, ThrottlingIsRetriedForUnsafeCallsToo) {
  const auto throttled = FakeEc2::error(503, "RequestLimitExceeded", "Request limit exceeded.");
  ec2_.faults.push_back({"ImportKeyPair", 1, throttled, false, false});
  ec2_.faults.push_back({"CreateSecurityGroup", 1, throttled, false, false});
  ec2_.faults.push_back({"RunInstances", 1, throttled, false, false});
  ec2_.faults.push_back({"RunInstances", 2, throttled, false, false});
  auto d = make();
  d->create();
  EXPECT_EQ(ec2_.calls_of("ImportKeyPair").size(), 2u);
  EXPECT_EQ(ec2_.calls_of("CreateSecurityGroup").size(), 2u);
  auto runs = ec2_.calls_of("RunInstances");
  ASSERT_EQ(runs.size(), 3u);
  EXPECT_EQ(runs[0].param("ClientToken"), runs[2].param("ClientToken"));
  EXPECT_EQ(ec2_.live_instances(), 1u);
  EXPECT_TRUE(ec2_.signature_errors.empty()) << ec2_.signature_errors.front();
}

TEST_F(Ec2DriverTest, AnUnsafeCallThatMayHaveActedIsNotRepeated) {
  // 503 Unavailable on CreateSecurityGroup: EC2 may have made it, so no blind retry; rollback instead.
  ec2_.faults.push_back(
      {"CreateSecurityGroup", 1, FakeEc2::error(503, "Unavailable", "The server is overloaded"), true, false});
  auto d = make();
  EXPECT_THROW(d->create(), cloud::ApiError);
  EXPECT_EQ(ec2_.calls_of("CreateSecurityGroup").size(), 1u);
  EXPECT_TRUE(ec2_.calls_of("RunInstances").empty());
  expect_nothing_left();  // the group it made anyway was found by its tag and deleted
}

TEST_F(Ec2DriverTest, AMissingAmiIsExplainedWithEc2sCodeAndRequestId) {
  flags_.set("amazonec2-ami", {"ami-00000000"});
  try {
    make()->create();
    FAIL() << "create succeeded";
  } catch (const UserError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("ami-00000000"), std::string::npos) << m;
    EXPECT_NE(m.find("InvalidAMIID.NotFound"), std::string::npos) << m;
    EXPECT_NE(m.find("request id req-InvalidAMIID.NotFound"), std::string::npos) << m;
    EXPECT_NE(m.find("--amazonec2-ami"), std::string::npos) << m;
    EXPECT_EQ(m.find(kSecret), std::string::npos);
  }
  expect_nothing_left();
}

TEST_F(Ec2DriverTest, RemoveAfterAKilledCreateFindsTheInstanceGroupAndKeyByTagAndName) {
  auto a = make();
  a->create();
  // What a create killed right after it began had saved: the id and nothing else.
  nlohmann::json first = checkpoints_.front();
  ASSERT_EQ(first["instance_id"], "");
  ASSERT_EQ(first["security_group_id"], "");
  auto b = load(first);
  b->remove();
  expect_nothing_left();
}

TEST_F(Ec2DriverTest, InterruptingCreateRollsBackAndLeavesNothing) {
  clock_.on_sleep = [this] {
    if (!ec2_.calls_of("RunInstances").empty()) cancelled_ = true;  // Ctrl-C while waiting for running
  };
  auto d = make();
  EXPECT_THROW(d->create(), Interrupted);
  clock_.on_sleep = nullptr;
  expect_nothing_left();
}

TEST_F(Ec2DriverTest, DependencyViolationAfterTerminationIsWaitedOut) {
  auto d = make();
  d->create();
  ec2_.dependency_violations = 3;
  d->remove();
  EXPECT_EQ(ec2_.calls_of("DeleteSecurityGroup").size(), 4u);
  expect_nothing_left();
}

TEST_F(Ec2DriverTest, AGroupAnotherMachineStillUsesIsKept) {
  auto d = make();
  d->create();
  const std::string group = ec2_.groups.begin()->first;
  FakeEc2::Instance other;
  other.id = "i-0other";
  other.state = "running";
  other.group = group;
  ec2_.instances[other.id] = other;
  d->remove();
  EXPECT_TRUE(ec2_.calls_of("DeleteSecurityGroup").empty());
  EXPECT_EQ(ec2_.groups.count(group), 1u);
  EXPECT_TRUE(ec2_.keys.empty());
  EXPECT_EQ(ec2_.instances["i-0other"].state, "running");
}

TEST_F(Ec2DriverTest, TwoMachinesShareTheGroupAndTheLastOneRemovedDeletesIt) {
  auto a = make();
  a->create();
  auto b = make();
  b->create();
  ASSERT_EQ(ec2_.groups.size(), 1u);
  EXPECT_EQ(ec2_.calls_of("CreateSecurityGroup").size(), 1u);
  EXPECT_EQ(ec2_.live_instances(), 2u);
  a->remove();  // b still uses it
  EXPECT_EQ(ec2_.groups.size(), 1u);
  EXPECT_EQ(ec2_.live_instances(), 1u);
  b->remove();
  expect_nothing_left();
}

TEST_F(Ec2DriverTest, StopStartRestartKillAndStates) {
  auto d = make();
  d->create();
  const std::string first_ip = d->ip();
  d->stop();
  EXPECT_EQ(d->state(std::chrono::seconds(1)), MachineState::Stopped);
  d->start();
  EXPECT_EQ(d->state(std::chrono::seconds(1)), MachineState::Running);
  EXPECT_NE(d->ip(), first_ip);  // EC2 gives a new public IP after stop/start
  EXPECT_EQ(checkpoints_.back()["ip_address"], d->ip());
  d->restart();
  EXPECT_EQ(ec2_.calls_of("RebootInstances").size(), 1u);
  d->kill();
  EXPECT_EQ(ec2_.calls_of("StopInstances").back().param("Force"), "true");
  EXPECT_EQ(d->state(std::chrono::seconds(1)), MachineState::Stopped);

  auto& inst = ec2_.instances.begin()->second;
  inst.state = "pending";
  inst.pending_left = 5;
  EXPECT_EQ(d->state(std::chrono::seconds(1)), MachineState::Starting);
  inst.state = "stopping";
  ec2_.faults.clear();
  inst.state = "shutting-down";
  EXPECT_EQ(d->state(std::chrono::seconds(1)), MachineState::NotFound);
  ec2_.instances.clear();
  EXPECT_EQ(d->state(std::chrono::seconds(1)), MachineState::NotFound);
}

TEST_F(Ec2DriverTest, StateNeverThrows) {
  auto d = make();
  d->create();
  const int n = static_cast<int>(ec2_.calls_of("DescribeInstances").size());
  for (int i = 1; i <= 10; ++i) ec2_.faults.push_back({"DescribeInstances", n + i, {}, false, true});
  EXPECT_EQ(d->state(std::chrono::seconds(1)), MachineState::Error);
  ec2_.faults.clear();
  const int m = static_cast<int>(ec2_.calls_of("DescribeInstances").size());
  ec2_.faults.push_back(
      {"DescribeInstances", m + 1,
       FakeEc2::error(401, "AuthFailure", "AWS was not able to validate the provided access credentials"), false,
       false});
  EXPECT_EQ(d->state(std::chrono::seconds(1)), MachineState::Error);
  // No instance recorded at all.
  auto fresh = make();
  EXPECT_EQ(fresh->state(std::chrono::seconds(1)), MachineState::NotFound);
}

TEST_F(Ec2DriverTest, CredentialsAreOnlyStoredSealed) {
  flags_.set("amazonec2-session-token", {kToken});
  auto d = make();
  d->create();
  std::vector<nlohmann::json> all = checkpoints_;
  all.push_back(d->save_state());
  for (const auto& j : all) {
    const std::string text = j.dump();
    EXPECT_EQ(text.find(kSecret), std::string::npos);
    EXPECT_EQ(text.find(kToken), std::string::npos);
    EXPECT_EQ(text.find("AKIDEXAMPLE"), std::string::npos);
  }
  auto state = d->save_state();
  EXPECT_TRUE(state.contains("secret_key_sealed"));
  EXPECT_TRUE(state.contains("access_key_sealed"));
  EXPECT_TRUE(state.contains("session_token_sealed"));
  // The session token was sent, and signed.
  for (const auto& call : ec2_.calls) {
    cloud::HttpResponse view{0, call.headers, ""};
    EXPECT_EQ(view.header("X-Amz-Security-Token"), kToken);
    EXPECT_NE(view.header("Authorization").find("x-amz-security-token"), std::string::npos);
  }
  // A machine loaded from the stored state opens them again and can remove itself.
  auto loaded = load(state);
  loaded->remove();
  expect_nothing_left();
  EXPECT_TRUE(ec2_.signature_errors.empty());
}

TEST_F(Ec2DriverTest, FlagsAreChecked) {
  {
    FlagValues f = flags_;
    f.set("amazonec2-endpoint", {"http://10.1.2.3:5000"});
    EXPECT_THROW(factory_->make(f, ctx()), UserError);
  }
  {
    FlagValues f;
    f.set("amazonec2-ami", {"ami-12345678"});
    EXPECT_THROW(factory_->make(f, ctx()), UserError);  // no credentials
  }
  {
    FlagValues f = flags_;
    f.set("amazonec2-ami", {});
    f.set("amazonec2-region", {"xx-nowhere-1"});
    EXPECT_THROW(factory_->make(f, ctx()), UserError);  // no default AMI there
  }
  {
    FlagValues f = flags_;
    f.set("amazonec2-ami", {});
    EXPECT_EQ(factory_->make(f, ctx())->save_state()["ami"], "ami-927185ef");  // us-east-1's old default
  }
  {
    FlagValues f = flags_;
    f.set("amazonec2-endpoint", {});
    f.set("amazonec2-region", {"eu-west-1"});
    auto d = factory_->make(f, ctx());
    EXPECT_EQ(d->save_state()["endpoint"], "");
    EXPECT_EQ(d->save_state()["region"], "eu-west-1");
  }
  {
    FlagValues f = flags_;
    f.set("amazonec2-tags", {"team,infra,env,dev"});
    auto d = factory_->make(f, ctx());
    d->create();
    const auto& tags = ec2_.instances.begin()->second.tags;
    EXPECT_NE(std::find(tags.begin(), tags.end(), std::make_pair(std::string("team"), std::string("infra"))),
              tags.end());
    EXPECT_NE(std::find(tags.begin(), tags.end(), std::make_pair(std::string("env"), std::string("dev"))), tags.end());
  }
  EXPECT_THROW(factory_->make(
                   [&] {
                     FlagValues f = flags_;
                     f.set("amazonec2-root-size", {"0"});
                     return f;
                   }(),
                   ctx()),
               UserError);
  EXPECT_THROW(factory_->make(
                   [&] {
                     FlagValues f = flags_;
                     f.set("amazonec2-userdata", {"/nonexistent/ud"});
                     return f;
                   }(),
                   ctx()),
               UserError);
}

TEST_F(Ec2DriverTest, PreCreateCheckRefusesAnAmiTheRegionLacks) {
  flags_.set("amazonec2-ami", {"ami-00000000"});
  auto d = make();
  try {
    d->pre_create_check();
    FAIL() << "accepted a missing AMI";
  } catch (const PreCreateCheckFailed& e) {
    EXPECT_NE(std::string(e.what()).find("InvalidAMIID.NotFound"), std::string::npos) << e.what();
  }
  flags_.set("amazonec2-ami", {"ami-12345678"});
  flags_.set("amazonec2-subnet-id", {"subnet-missing"});
  EXPECT_THROW(make()->pre_create_check(), PreCreateCheckFailed);
  flags_.set("amazonec2-subnet-id", {"subnet-9d4a7b6c"});
  EXPECT_NO_THROW(make()->pre_create_check());
  EXPECT_TRUE(ec2_.calls_of("RunInstances").empty());
}

TEST_F(Ec2DriverTest, ASubnetPutsTheGroupInItsVpcAndTheInstanceInIt) {
  flags_.set("amazonec2-subnet-id", {"subnet-9d4a7b6c"});
  auto d = make();
  d->create();
  EXPECT_TRUE(ec2_.calls_of("DescribeVpcs").empty());
  EXPECT_EQ(ec2_.calls_of("CreateSecurityGroup").front().param("VpcId"), "vpc-9d4a7b6c");
  EXPECT_EQ(ec2_.calls_of("RunInstances").front().param("SubnetId"), "subnet-9d4a7b6c");
}

TEST_F(Ec2DriverTest, UserdataIsSentBase64) {
  const fs::path ud = dir_ / "userdata.sh";
  std::ofstream(ud) << "#!/bin/sh\necho hi\n";
  flags_.set("amazonec2-userdata", {ud.string()});
  auto d = make();
  d->create();
  EXPECT_EQ(b64decode(ec2_.calls_of("RunInstances").front().param("UserData")), "#!/bin/sh\necho hi\n");
}

TEST(Ec2Tags, BothSyntaxes) {
  using T = std::vector<std::pair<std::string, std::string>>;
  EXPECT_EQ(cloud::ec2::parse_tags({"a,1,b,2"}), (T{{"a", "1"}, {"b", "2"}}));
  EXPECT_EQ(cloud::ec2::parse_tags({"a=1,b=2"}), (T{{"a", "1"}, {"b", "2"}}));
  EXPECT_EQ(cloud::ec2::parse_tags({"a=1", "b=x=y"}), (T{{"a", "1"}, {"b", "x=y"}}));
  EXPECT_EQ(cloud::ec2::parse_tags({}), T{});
  EXPECT_THROW(cloud::ec2::parse_tags({"a,1,b"}), UserError);
  EXPECT_THROW(cloud::ec2::parse_tags({"berth-machine=x"}), UserError);
}

TEST(Ec2Factory, DeclaresTheIssuesFlagsWithEnvVarsAndSecrets) {
  AmazonEc2DriverFactory f;
  EXPECT_EQ(f.name(), "amazonec2");
  std::map<std::string, FlagSpec> by_name;
  for (const auto& s : f.flags()) by_name[s.name] = s;
  for (const char* n : {"access-key", "secret-key", "session-token", "region", "ami", "instance-type", "ssh-user",
                        "security-group", "subnet-id", "root-size", "tags", "userdata", "endpoint"})
    EXPECT_TRUE(by_name.count(std::string("amazonec2-") + n)) << n;
  EXPECT_EQ(by_name["amazonec2-secret-key"].env_var, "AWS_SECRET_ACCESS_KEY");
  EXPECT_TRUE(by_name["amazonec2-secret-key"].secret);
  EXPECT_TRUE(by_name["amazonec2-session-token"].secret);
  EXPECT_EQ(by_name["amazonec2-access-key"].env_var, "AWS_ACCESS_KEY_ID");
  EXPECT_EQ(by_name["amazonec2-region"].env_var, "AWS_DEFAULT_REGION");
  EXPECT_EQ(by_name["amazonec2-region"].default_value, "us-east-1");
  EXPECT_EQ(by_name["amazonec2-endpoint"].env_var, "AWS_ENDPOINT_URL_EC2");
  EXPECT_EQ(by_name["amazonec2-instance-type"].default_value, "t3.micro");
  EXPECT_EQ(by_name["amazonec2-root-size"].default_value, "16");
  EXPECT_EQ(by_name["amazonec2-security-group"].default_value, "berth-machine");
  auto caps = f.capabilities();
  EXPECT_TRUE(caps.can_start && caps.can_stop && caps.can_restart && caps.can_kill && caps.remove_destroys_host);
}

}  // namespace
}  // namespace berth
