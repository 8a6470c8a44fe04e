// `berth -d digitalocean` end to end against the fake DigitalOcean API (a test
// double: tests/fakes/digitalocean/fake_do.py). The real berth binary creates a
// droplet, provisions it (each droplet is a netns SSH host) and the real docker
// CLI talks to it. Faults are injected per test through the fake's control API.
// After EVERY test the fake must hold zero droplets and zero keys, and must
// have recorded zero violations of DigitalOcean's OpenAPI spec.
#include <gtest/gtest.h>
#include <signal.h>

#include <cstdlib>
#include <memory>

#include "tests/integration/digitalocean/fake_do.h"
#include "tests/integration/generic/berth_cli.h"

namespace berth::it {
namespace {

using nlohmann::json;

// The driver's knobs (env vars it reads): a per-request timeout short enough
// that a "slow" fault costs seconds, not the default 30 s, and quick polls.
constexpr int kRequestTimeoutMs = 3000;
constexpr int kTruncatedPolls = 10;   // more cut-off answers in a row than the driver retries
const Env kDriverKnobs = {{"BERTH_CLOUD_TIMEOUT_MS", std::to_string(kRequestTimeoutMs)},
                          {"BERTH_CLOUD_POLL_MS", "250"},
                          {"BERTH_CLOUD_DEADLINE_MS", "120000"}};

std::string dump_violations(const json& v) {
  std::string out;
  for (const auto& item : v) out += "\n  " + item.value("request", "") + ": " + item.value("message", "");
  return out;
}

class DigitalOcean : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    skip_reason_ = testhost_unavailable_reason();
    if (skip_reason_.empty()) skip_reason_ = fake_do_unavailable_reason();
    if (!skip_reason_.empty()) return;
    fake_ = std::make_unique<FakeDo>();
  }
  static void TearDownTestSuite() { fake_.reset(); }

  void SetUp() override {
    if (!skip_reason_.empty()) GTEST_SKIP() << skip_reason_;
    ASSERT_TRUE(fs::exists(berth_binary())) << "no berth binary at " << berth_binary() << "; build 'berth'";
    ASSERT_TRUE(fs::exists(agent_binary())) << "no berth-agent at " << agent_binary();
    fake().reset();
    fake().config({{"new_polls", 3}, {"action_polls", 2}});
  }

  // After every test: nothing left in the fake, and every exchange followed the spec.
  void TearDown() override {
    if (!fake_) return;
    fake().clear_faults();
    json st;
    const bool clean = eventually([&] {
      st = fake().state();
      return st.at("droplets").empty() && st.at("keys").empty();
    }, 30s, 200ms);
    EXPECT_TRUE(clean) << "left in the fake after the test: droplets " << st.at("droplets").dump()
                       << ", keys " << st.at("keys").dump();
    const bool hosts_gone = eventually([&] { return fake().state().at("hosts").empty(); }, 60s, 200ms);
    EXPECT_TRUE(hosts_gone) << "droplet hosts still up: " << fake().state().at("hosts").dump();
    auto v = fake().violations();
    EXPECT_TRUE(v.empty()) << v.size() << " OpenAPI spec violations:" << dump_violations(v);
    EXPECT_TRUE(st.at("host_errors").empty()) << "the fake failed to back a droplet: " << st.at("host_errors").dump();
    if (HasFailure()) std::cerr << "--- fake log (tail) ---\n" << tail(fake().log(), 6000) << "\n";
    fake().reset();   // whatever a failing test left must not spoil the next one
  }

  static FakeDo& fake() { return *fake_; }
  static std::string tail(const std::string& s, size_t n) { return s.size() > n ? s.substr(s.size() - n) : s; }

  std::vector<std::string> create_args(const std::string& name, const std::vector<std::string>& extra = {}) const {
    std::vector<std::string> args = {"create", "-d", "digitalocean", "--digitalocean-api-url", fake().url(),
                                     "--digitalocean-access-token", FakeDo::kToken};
    args.insert(args.end(), extra.begin(), extra.end());
    args.push_back(name);
    return args;
  }
  RunResult create(const std::string& name, const std::vector<std::string>& extra = {}) const {
    return cli(create_args(name, extra), 300s);
  }
  RunResult cli(const std::vector<std::string>& args, std::chrono::milliseconds timeout = 180s) const {
    std::vector<std::string> argv = {berth_binary().string()};
    argv.insert(argv.end(), args.begin(), args.end());
    return run(argv, berth_env(), timeout);
  }
  Process start(const std::vector<std::string>& args) const {
    std::vector<std::string> argv = {berth_binary().string()};
    argv.insert(argv.end(), args.begin(), args.end());
    SpawnOptions options;
    options.env = berth_env();
    return Process::start(argv, options);
  }
  Env berth_env() const {
    Env env = cli_.env();
    for (const auto& [k, v] : kDriverKnobs) env[k] = v;
    for (const auto& [k, v] : extra_env_) env[k] = v;
    env["DIGITALOCEAN_ACCESS_TOKEN"] = std::nullopt;   // only what a test passes
    env["DIGITALOCEAN_API_URL"] = std::nullopt;
    return env;
  }
  RunResult rm(const std::string& name) const { return cli({"rm", "-f", "-y", name}, 180s); }
  std::string status(const std::string& name) const { return trim(cli({"status", name}, 60s).out); }
  RunResult docker_version(const std::string& name) const {
    return cli_.bash("eval \"$(berth env " + name + ")\" && docker version --format '{{.Server.Version}}'", 120s);
  }

  json droplets() const { return fake().state().at("droplets"); }
  int created_total() const { return fake().state().at("created_total").get<int>(); }

  // Waits until the fake has made a droplet (POST /v2/droplets was answered or is being answered).
  bool droplet_exists_soon(Process& p) const {
    return eventually([&] { return !droplets().empty() || !p.running(); }, 120s, 50ms) && p.running();
  }

  BerthCli cli_;
  Env extra_env_;   // a test's own driver knobs
  static inline std::unique_ptr<FakeDo> fake_;
  static inline std::string skip_reason_;
};

// Create, use through `berth env` + the docker CLI, stop, start, rm.
TEST_F(DigitalOcean, CreateUseStopStartRemove) {
  auto created = create("do-life");
  ASSERT_EQ(created.exit_code, 0) << created.describe();
  const json after_create = fake().state();
  std::cerr << "API calls for one create: " << after_create.at("total_requests") << " "
            << after_create.at("counts").dump() << "\n";
  RecordProperty("api_calls_per_create", after_create.at("total_requests").get<int>());

  auto ds = droplets();
  ASSERT_EQ(ds.size(), 1u) << ds.dump();
  const json d = ds[0];
  EXPECT_EQ(d.at("status"), "active");
  EXPECT_EQ(d.at("name"), "do-life");
  EXPECT_EQ(d.at("region"), "nyc3");
  EXPECT_EQ(d.at("size"), "s-1vcpu-1gb");
  EXPECT_EQ(d.at("image"), "ubuntu-24-04-x64");
  EXPECT_EQ(d.at("ssh_key_count"), 1) << "the droplet was not given berth's key";
  bool berth_tag = false, machine_tag = false;
  for (const auto& t : d.at("tags")) {
    berth_tag |= t == "berth";
    machine_tag |= t.get<std::string>().rfind("berth-machine-", 0) == 0;
  }
  EXPECT_TRUE(berth_tag && machine_tag) << "tags: " << d.at("tags").dump();
  EXPECT_EQ(fake().state().at("keys").size(), 1u);
  EXPECT_EQ(fake().count("POST /v2/droplets"), 1);

  const std::string config = read_text(cli_.machine_dir("do-life") / "config.json");
  EXPECT_EQ(config.find(FakeDo::kToken), std::string::npos) << "the access token is stored in clear";
  EXPECT_EQ(created.out.find(FakeDo::kToken), std::string::npos);
  EXPECT_EQ(created.err.find(FakeDo::kToken), std::string::npos);

  auto version = docker_version("do-life");
  EXPECT_EQ(version.exit_code, 0) << version.describe();
  EXPECT_FALSE(trim(version.out).empty());
  EXPECT_EQ(status("do-life"), "Running");
  auto ls = cli_.ls_json();
  ASSERT_TRUE(ls.count("do-life"));
  EXPECT_EQ(ls.at("do-life").at("State"), "Running") << ls.at("do-life").dump();
  EXPECT_EQ(ls.at("do-life").at("DriverName"), "digitalocean") << ls.at("do-life").dump();
  auto inspect = cli({"inspect", "do-life"}, 60s);
  EXPECT_EQ(inspect.out.find(FakeDo::kToken), std::string::npos) << "inspect prints the token";

  auto stop = cli({"stop", "do-life"}, 180s);
  EXPECT_EQ(stop.exit_code, 0) << stop.describe();
  EXPECT_EQ(droplets()[0].at("status"), "off");
  EXPECT_EQ(status("do-life"), "Stopped");

  auto start = cli({"start", "do-life"}, 180s);
  EXPECT_EQ(start.exit_code, 0) << start.describe();
  EXPECT_EQ(droplets()[0].at("status"), "active");
  EXPECT_EQ(status("do-life"), "Running");
  auto again = docker_version("do-life");
  EXPECT_EQ(again.exit_code, 0) << "docker after stop/start: " << again.describe();

  auto removed = rm("do-life");
  EXPECT_EQ(removed.exit_code, 0) << removed.describe();
  EXPECT_FALSE(fs::exists(cli_.machine_dir("do-life")));
  EXPECT_TRUE(droplets().empty());
  EXPECT_TRUE(fake().state().at("keys").empty()) << "berth's key was not deleted";
}

// 429 storms, 5xx and a droplet that is not found right after its create are
// all retried: the create succeeds with exactly one droplet.
TEST_F(DigitalOcean, RetriesThrottlingServerErrorsAndEarly404) {
  fake().faults(json::array({
      {{"method", "POST"}, {"path", "^/v2/account/keys$"}, {"kind", "429"}, {"retry_after", 1}, {"times", 3}},
      {{"method", "GET"}, {"path", "^/v2/regions$"}, {"kind", "503"}},
      {{"method", "GET"}, {"path", "^/v2/sizes$"}, {"kind", "502"}},
      {{"method", "POST"}, {"path", "^/v2/droplets$"}, {"kind", "429"}, {"retry_after", 1}, {"times", 2}},
      {{"method", "GET"}, {"path", "^/v2/droplets/\\d+$"}, {"kind", "404-after-create"}, {"times", 2}},
      {{"method", "GET"}, {"path", "^/v2/droplets/\\d+$"}, {"kind", "500"}},
      {{"method", "GET"}, {"path", "^/v2/droplets/\\d+$"}, {"kind", "502"}},
      {{"method", "GET"}, {"path", "^/v2/droplets/\\d+$"}, {"kind", "503"}},
  }));
  auto created = create("do-flaky");
  ASSERT_EQ(created.exit_code, 0) << created.describe();
  auto st = fake().state();
  EXPECT_TRUE(st.at("pending_faults").empty()) << "faults never hit: " << st.at("pending_faults").dump();
  EXPECT_EQ(st.at("droplets").size(), 1u);
  EXPECT_EQ(st.at("created_total"), 1);
  EXPECT_EQ(st.at("counts").value("POST /v2/droplets", 0), 3) << "2 throttled + 1 accepted";
  // Retry-After: 1 honoured: no throttled call is repeated sooner than a second later.
  for (const std::string op : {"POST /v2/account/keys", "POST /v2/droplets"}) {
    std::vector<json> calls;
    for (const auto& h : st.at("history"))
      if (h.at("op") == op) calls.push_back(h);
    for (size_t i = 1; i < calls.size(); ++i) {
      if (calls[i - 1].at("status") != 429) continue;
      const double gap = calls[i].at("t").get<double>() - calls[i - 1].at("t").get<double>();
      EXPECT_GE(gap, 0.95) << op << " sent again " << gap << " s after a 429 with Retry-After: 1";
    }
  }
  EXPECT_EQ(status("do-flaky"), "Running");
  auto removed = rm("do-flaky");
  EXPECT_EQ(removed.exit_code, 0) << removed.describe();
}

// The create is done but its answer is a 500: berth must find the droplet by
// its tag and not leave a second one.
TEST_F(DigitalOcean, CreateWhoseAnswerIsLostLeavesOneDroplet) {
  fake().faults(json::array({{{"method", "POST"}, {"path", "^/v2/droplets$"}, {"kind", "create-then-500"}}}));
  auto created = create("do-lost");
  EXPECT_EQ(created.exit_code, 0) << created.describe();
  EXPECT_EQ(created_total(), 1) << "a second droplet was made";
  EXPECT_EQ(droplets().size(), 1u);
  auto removed = rm("do-lost");
  EXPECT_EQ(removed.exit_code, 0) << removed.describe();
  EXPECT_TRUE(droplets().empty());
}

// A create whose answer comes after the request timeout (the droplet exists),
// and a droplet poll that times out once. Either berth recovers the droplet by
// tag and goes on, or it fails saying so and rolls back: never two droplets,
// never a leak.
TEST_F(DigitalOcean, SlowAnswersPastTheRequestTimeout) {
  fake().faults(json::array({
      {{"method", "POST"}, {"path", "^/v2/droplets$"}, {"kind", "slow"}, {"seconds", kRequestTimeoutMs / 1000 + 3}},
      {{"method", "GET"}, {"path", "^/v2/droplets/\\d+$"}, {"kind", "slow"}, {"seconds", kRequestTimeoutMs / 1000 + 3}},
  }));
  const auto t0 = std::chrono::steady_clock::now();
  auto created = create("do-slow");
  const auto took = std::chrono::steady_clock::now() - t0;
  EXPECT_LE(created_total(), 1) << "a second droplet was made";
  std::cerr << "slow create answer: berth " << (created.ok() ? "recovered the droplet" : "failed and rolled back")
            << " in " << std::chrono::duration_cast<std::chrono::milliseconds>(took).count() << " ms\n";
  if (created.ok()) {
    EXPECT_EQ(droplets().size(), 1u);
    auto removed = rm("do-slow");
    EXPECT_EQ(removed.exit_code, 0) << removed.describe();
  } else {
    EXPECT_TRUE(contains_icase(created.err, "time")) << "no word of the timeout: " << created.err;
    EXPECT_TRUE(droplets().empty()) << "failed create left its droplet: " << droplets().dump();
    EXPECT_FALSE(fs::exists(cli_.machine_dir("do-slow")));
  }
  EXPECT_LT(took, 120s) << "the request timeout was not applied";
}

// Every poll of the droplet hangs past the request timeout: berth gives up at
// its deadline with a clear error and deletes the droplet and key by itself.
TEST_F(DigitalOcean, SlowPollsPastTheDeadlineFailClearlyAndRollBack) {
  extra_env_["BERTH_CLOUD_DEADLINE_MS"] = "12000";
  fake().faults(json::array({{{"method", "GET"}, {"path", "^/v2/droplets/\\d+$"}, {"kind", "slow"},
                              {"seconds", kRequestTimeoutMs / 1000 + 2}, {"times", 1000}}}));
  const auto t0 = std::chrono::steady_clock::now();
  auto created = create("do-hang");
  const auto took = std::chrono::steady_clock::now() - t0;
  std::cerr << "polls that hang: failed after "
            << std::chrono::duration_cast<std::chrono::milliseconds>(took).count() << " ms: " << trim(created.err)
            << "\n";
  EXPECT_NE(created.exit_code, 0) << created.describe();
  EXPECT_TRUE(contains_icase(created.err, "time")) << "no word of the timeout: " << created.err;
  const auto last = lines(created.err).empty() ? std::string() : lines(created.err).back();
  EXPECT_NE(last.find("do-hang"), std::string::npos) << "the error does not name the machine: " << last;
  EXPECT_LT(took, 120s) << "the deadline was not applied";
  fake().clear_faults();
  EXPECT_TRUE(droplets().empty()) << "failed create left its droplet: " << droplets().dump();
  EXPECT_TRUE(fake().state().at("keys").empty()) << "failed create left its key";
  EXPECT_FALSE(fs::exists(cli_.machine_dir("do-hang")));
}

// A create answered with cut-off JSON (the droplet exists): a clear error and a
// What create printed on stderr less its progress lines ("NAME: step ...").
std::vector<std::string> error_lines(const std::string& err, const std::string& machine) {
  std::vector<std::string> out;
  for (const auto& line : lines(err))
    if (line.rfind(machine + ": ", 0) != 0) out.push_back(line);
  return out;
}

// rollback, or a recovery by tag. A cut-off GET is simply sent again.
TEST_F(DigitalOcean, TruncatedJson) {
  fake().faults(json::array({
      {{"method", "GET"}, {"path", "^/v2/regions$"}, {"kind", "truncated-json"}},
      {{"method", "POST"}, {"path", "^/v2/droplets$"}, {"kind", "truncated-json"}},
  }));
  auto created = create("do-cut");
  EXPECT_LE(created_total(), 1) << "a second droplet was made";
  std::cerr << "truncated create answer: berth "
            << (created.ok() ? "recovered the droplet" : "failed and rolled back: " + trim(created.err)) << "\n";
  if (created.ok()) {
    EXPECT_EQ(droplets().size(), 1u);
    auto removed = rm("do-cut");
    EXPECT_EQ(removed.exit_code, 0) << removed.describe();
  } else {
    EXPECT_NE(created.exit_code, 0);
    EXPECT_TRUE(contains_icase(created.err, "json") || contains_icase(created.err, "truncat") ||
                contains_icase(created.err, "invalid"))
        << "unclear error: " << created.err;
    EXPECT_LE(error_lines(created.err, "do-cut").size(), 2u) << "error should be short: " << created.err;
    EXPECT_TRUE(droplets().empty()) << "failed create left its droplet: " << droplets().dump();
    EXPECT_FALSE(fs::exists(cli_.machine_dir("do-cut")));
  }
}

// The droplet's polls keep answering cut-off JSON: berth gives up with a clear
// error and deletes the droplet and key it made, by itself.
TEST_F(DigitalOcean, TruncatedJsonThatPersistsFailsClearlyAndRollsBack) {
  fake().faults(json::array(
      {{{"method", "GET"}, {"path", "^/v2/droplets/\\d+$"}, {"kind", "truncated-json"}, {"times", kTruncatedPolls}}}));
  auto created = create("do-cut2");
  std::cerr << "persistently truncated polls: " << trim(created.err) << "\n";
  EXPECT_NE(created.exit_code, 0) << created.describe();
  EXPECT_TRUE(contains_icase(created.err, "json") || contains_icase(created.err, "truncat") ||
              contains_icase(created.err, "invalid"))
      << "unclear error: " << created.err;
  EXPECT_TRUE(contains_icase(created.err, "do-cut2")) << "the error does not name the machine: " << created.err;
  EXPECT_LE(error_lines(created.err, "do-cut2").size(), 2u) << "error should be short: " << created.err;
  EXPECT_TRUE(droplets().empty()) << "failed create left its droplet: " << droplets().dump();
  EXPECT_TRUE(fake().state().at("keys").empty()) << "failed create left its key";
  EXPECT_FALSE(fs::exists(cli_.machine_dir("do-cut2")));
}

// Bad region, size or image: the pre-create check refuses (exit 3) before
// anything is made.
TEST_F(DigitalOcean, PreCreateCheckRefusesBadRegionSizeImage) {
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"--digitalocean-region", "atlantis1"}, "atlantis1"},
      {{"--digitalocean-region", "nyc2"}, "nyc2"},   // exists, but not available
      {{"--digitalocean-size", "s-99vcpu-1tb"}, "s-99vcpu-1tb"},
      {{"--digitalocean-image", "no-such-os-x64"}, "no-such-os-x64"},
  };
  for (const auto& [flags, word] : cases) {
    auto r = create("do-bad", flags);
    EXPECT_EQ(r.exit_code, 3) << word << ": " << r.describe();
    EXPECT_NE(r.err.find(word), std::string::npos) << "the error does not name " << word << ": " << r.err;
    EXPECT_FALSE(fs::exists(cli_.machine_dir("do-bad")));
  }
  EXPECT_EQ(fake().count("POST /v2/droplets"), 0);
  EXPECT_EQ(fake().count("POST /v2/account/keys"), 0);
}

// A wrong token: DigitalOcean's 401 message and request id, and nothing made.
TEST_F(DigitalOcean, WrongTokenIsAClearError) {
  std::vector<std::string> args = {"create", "-d", "digitalocean", "--digitalocean-api-url", fake().url(),
                                   "--digitalocean-access-token", "dop_v1_wrongwrongwrong", "do-token"};
  auto r = cli(args, 120s);
  EXPECT_NE(r.exit_code, 0) << r.describe();
  EXPECT_TRUE(contains_icase(r.err, "Unable to authenticate you")) << r.err;
  EXPECT_EQ(r.err.find("dop_v1_wrongwrongwrong"), std::string::npos) << "the token is printed";
  EXPECT_EQ(fake().count("POST /v2/droplets"), 0);
  EXPECT_FALSE(fs::exists(cli_.machine_dir("do-token")));
}

// Ctrl-C while the droplet is being created: berth deletes what it made itself.
TEST_F(DigitalOcean, SigintDuringCreateRollsBack) {
  fake().config({{"new_polls", 100000}});   // the droplet stays "new"
  Process p = start(create_args("do-int"));
  ASSERT_TRUE(droplet_exists_soon(p)) << "create ended before the droplet existed:\n" << p.wait(1s).describe();
  std::this_thread::sleep_for(500ms);   // into the poll
  p.signal(SIGINT);
  auto r = p.wait(120s);
  EXPECT_FALSE(r.timed_out) << "berth did not stop after SIGINT";
  EXPECT_EQ(r.exit_code, 130) << r.describe();
  EXPECT_TRUE(droplets().empty()) << "interrupted create left " << droplets().dump();
  EXPECT_TRUE(fake().state().at("keys").empty()) << "interrupted create left its key";
  EXPECT_FALSE(fs::exists(cli_.machine_dir("do-int")));
}

// SIGKILL mid-create leaves a record; `berth rm -f` finds the droplet and key from it.
TEST_F(DigitalOcean, SigkillDuringCreateThenRmForceLeavesNothing) {
  fake().config({{"new_polls", 100000}});
  Process p = start(create_args("do-kill"));
  ASSERT_TRUE(droplet_exists_soon(p)) << "create ended before the droplet existed:\n" << p.wait(1s).describe();
  p.signal(SIGKILL);
  auto r = p.wait(10s);
  ASSERT_EQ(r.term_signal, SIGKILL) << r.describe();
  ASSERT_FALSE(droplets().empty());
  auto removed = rm("do-kill");
  EXPECT_EQ(removed.exit_code, 0) << removed.describe();
  EXPECT_FALSE(fs::exists(cli_.machine_dir("do-kill")));
  EXPECT_TRUE(droplets().empty()) << "rm -f after a killed create left " << droplets().dump();
  EXPECT_TRUE(fake().state().at("keys").empty()) << "rm -f after a killed create left the key";
}

// SIGKILL right after the POST went out, before berth could record the
// droplet's id: rm -f must find it by tag.
TEST_F(DigitalOcean, SigkillBeforeTheCreateAnswerThenRmForceFindsByTag) {
  fake().faults(json::array({{{"method", "POST"}, {"path", "^/v2/droplets$"}, {"kind", "slow"}, {"seconds", 2}}}));
  Process p = start(create_args("do-kill2"));
  ASSERT_TRUE(droplet_exists_soon(p)) << "create ended before the droplet existed:\n" << p.wait(1s).describe();
  p.signal(SIGKILL);   // the answer is still 2 s away
  auto r = p.wait(10s);
  ASSERT_EQ(r.term_signal, SIGKILL) << r.describe();
  auto removed = rm("do-kill2");
  EXPECT_EQ(removed.exit_code, 0) << removed.describe();
  EXPECT_TRUE(droplets().empty()) << "rm -f did not find the droplet by tag: " << droplets().dump();
  EXPECT_TRUE(fake().state().at("keys").empty());
}

// Against the real DigitalOcean API, only with a real token in DIGITALOCEAN_ACCESS_TOKEN_LIVE.
TEST(DigitalOceanLive, CreateDockerVersionRemove) {
  const char* token = std::getenv("DIGITALOCEAN_ACCESS_TOKEN_LIVE");
  if (!token || !*token) GTEST_SKIP() << "DIGITALOCEAN_ACCESS_TOKEN_LIVE is not set: no live DigitalOcean test";
  ASSERT_TRUE(fs::exists(berth_binary()));
  BerthCli cli;
  const std::string name = "berth-live-" + std::to_string(::getpid());
  Env env = cli.env();
  env["DIGITALOCEAN_ACCESS_TOKEN"] = token;
  auto created = run({berth_binary().string(), "create", "-d", "digitalocean", name}, env, 900s);
  auto version = cli.bash("eval \"$(berth env " + name + ")\" && docker version", 120s);
  auto removed = run({berth_binary().string(), "rm", "-f", "-y", name}, env, 600s);
  ASSERT_EQ(created.exit_code, 0) << created.describe();
  EXPECT_EQ(version.exit_code, 0) << version.describe();
  EXPECT_EQ(removed.exit_code, 0) << removed.describe();
}

}  // namespace
}  // namespace berth::it
