// The driver (real libcurl, real clock) against tests/fakes/digitalocean in
// --no-hosts mode: every request and answer is checked by the fake against
// DigitalOcean's OpenAPI spec, with faults injected. What it proves: the
// driver's requests are valid DO requests and it leaves nothing behind.
// (End to end with SSH hosts and the berth binary: tests/integration/digitalocean.)
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "drivers/cloud/digitalocean/digitalocean.h"
#include "drivers/cloud/http.h"
#include "tests/integration/support/run.h"

namespace berth {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

constexpr const char* kToken = "contract-token";

class PlainSealer final : public SecretSealer {
 public:
  std::string seal(const std::string& p) const override { return "s:" + p; }
  std::string open(const std::string& s) const override { return s.substr(2); }
};

class FakeServer {
 public:
  static std::unique_ptr<FakeServer> start(std::string* why) {
    const auto script = it::source_dir() / "tests/fakes/digitalocean/fake_do.py";
    if (!std::filesystem::exists(script)) {
      *why = script.string() + " is missing";
      return nullptr;
    }
    if (!it::run({"python3", "-c", "import openapi_schema_validator, jsonschema_path, yaml"}).ok()) {
      *why = "python3 with openapi-schema-validator, jsonschema-path and yaml is not on PATH";
      return nullptr;
    }
    auto s = std::unique_ptr<FakeServer>(new FakeServer);
    s->proc_.emplace(it::Process::start({"python3", script.string(), "--no-hosts", "--port", "0", "--port-file",
                                         (s->dir_ / "port").string(), "--token", kToken, "--new-polls", "2",
                                         "--action-polls", "1"}));
    if (!it::eventually([&] { return std::filesystem::exists(s->dir_ / "port"); }, 60s)) {
      *why = "the fake did not start: " + s->proc_->stderr_so_far();
      return nullptr;
    }
    s->url_ = "http://127.0.0.1:" + it::read_text(s->dir_ / "port");
    while (!s->url_.empty() && std::isspace(static_cast<unsigned char>(s->url_.back()))) s->url_.pop_back();
    return s;
  }

  const std::string& url() const { return url_; }

  json call(const std::string& method, const std::string& path, const json& body = nullptr) {
    cloud::HttpRequest r;
    r.method = method;
    r.url = url_ + path;
    if (!body.is_null()) {
      r.body = body.dump();
      r.headers = {{"Content-Type", "application/json"}};
    }
    auto resp = transport_->send(r, 10s);
    if (resp.status / 100 != 2) throw std::runtime_error(method + " " + path + ": " + std::to_string(resp.status));
    return resp.body.empty() ? json() : json::parse(resp.body);
  }
  json state() { return call("GET", "/_fake/state"); }
  json violations() { return call("GET", "/_fake/violations"); }
  void faults(const json& list) { call("POST", "/_fake/faults", list); }

 private:
  FakeServer() = default;
  it::TempDir dir_{"berth-do-contract"};
  std::optional<it::Process> proc_;
  std::string url_;
  std::unique_ptr<cloud::Transport> transport_ = cloud::make_curl_transport();
};

class DigitalOceanContract : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ::setenv("BERTH_CLOUD_POLL_MS", "50", 1);
    ::setenv("BERTH_CLOUD_TIMEOUT_MS", "2000", 1);
    ::setenv("BERTH_CLOUD_DEADLINE_MS", "30000", 1);
    server_ = FakeServer::start(&why_).release();
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }
  void SetUp() override {
    if (!server_) GTEST_SKIP() << "fake DigitalOcean API not available: " << why_;
    server_->call("POST", "/_fake/reset");
  }
  void TearDown() override {
    if (!server_) return;
    json v = server_->violations();
    EXPECT_TRUE(v.empty()) << "spec violations: " << v.dump(2);
    json st = server_->state();
    EXPECT_TRUE(st["droplets"].empty()) << st["droplets"].dump();
    EXPECT_TRUE(st["keys"].empty()) << st["keys"].dump();
  }

  std::unique_ptr<Driver> make(const std::string& name = "contract") {
    DriverContext ctx{name, dir_.path(), CancelToken{}, 2376};
    ctx.secrets = &sealer_;
    FlagValues flags;
    for (const auto& spec : factory_.flags())
      if (!spec.default_value.empty()) flags.set(spec.name, {spec.default_value});
    flags.set("digitalocean-access-token", {kToken});
    flags.set("digitalocean-api-url", {server_->url()});
    return factory_.make(flags, ctx);
  }

  static inline FakeServer* server_ = nullptr;
  static inline std::string why_;
  it::TempDir dir_{"berth-do-machine"};
  PlainSealer sealer_;
  DigitalOceanDriverFactory factory_;
};

TEST_F(DigitalOceanContract, LifecycleIsValidAgainstTheSpec) {
  auto d = make();
  d->pre_create_check();
  d->create();
  EXPECT_FALSE(d->ip().empty());
  EXPECT_EQ(d->state(5s), MachineState::Running);
  json st = server_->state();
  ASSERT_EQ(st["droplets"].size(), 1u);
  EXPECT_EQ(st["keys"].size(), 1u);
  d->stop();
  EXPECT_EQ(d->state(5s), MachineState::Stopped);
  d->start();
  EXPECT_EQ(d->state(5s), MachineState::Running);
  d->restart();
  d->kill();
  EXPECT_EQ(d->state(5s), MachineState::Stopped);
  d->remove();
  EXPECT_EQ(d->state(5s), MachineState::NotFound);
  EXPECT_NO_THROW(d->remove());
  std::cout << "requests per create+lifecycle+rm: " << server_->state()["total_requests"] << "\n";
}

TEST_F(DigitalOceanContract, RequestsPerCreate) {
  auto d = make();
  d->pre_create_check();
  const auto t0 = std::chrono::steady_clock::now();
  d->create();
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
  json st = server_->state();
  std::cout << "pre-create check + create: " << st["total_requests"] << " requests, create " << ms.count()
            << " ms (poll 50 ms), counts " << st["counts"].dump() << "\n";
  d->remove();
}

struct FaultCase {
  const char* name;
  json faults;
};

class DigitalOceanFaults : public DigitalOceanContract, public ::testing::WithParamInterface<FaultCase> {};

TEST_P(DigitalOceanFaults, CreateSurvivesAndLeavesOneDroplet) {
  server_->faults(GetParam().faults);
  auto d = make();
  d->create();
  json st = server_->state();
  EXPECT_EQ(st["droplets"].size(), 1u) << st["droplets"].dump();
  EXPECT_EQ(st["keys"].size(), 1u);
  EXPECT_TRUE(st["pending_faults"].empty()) << "a fault never fired: " << st["pending_faults"].dump();
  EXPECT_EQ(st["created_total"], 1) << "a second droplet was made";
  EXPECT_EQ(d->state(5s), MachineState::Running);
  d->remove();
}

INSTANTIATE_TEST_SUITE_P(
    Faults, DigitalOceanFaults,
    ::testing::Values(
        FaultCase{"rate_limited", json::array({{{"method", "POST"}, {"path", "^/v2/droplets$"}, {"kind", "429"},
                                                {"times", 1}, {"retry_after", 1}}})},
        FaultCase{"server_errors", json::array({{{"method", "GET"}, {"path", "^/v2/droplets/"}, {"kind", "503"},
                                                 {"times", 2}},
                                                {{"method", "POST"}, {"path", "^/v2/account/keys$"}, {"kind", "502"},
                                                 {"times", 1}}})},
        FaultCase{"create_then_500", json::array({{{"method", "POST"}, {"path", "^/v2/droplets$"},
                                                   {"kind", "create-then-500"}, {"times", 1}}})},
        FaultCase{"create_dropped", json::array({{{"method", "POST"}, {"path", "^/v2/droplets$"}, {"kind", "drop"},
                                                  {"times", 1}}})},
        FaultCase{"create_slow", json::array({{{"method", "POST"}, {"path", "^/v2/droplets$"}, {"kind", "slow"},
                                               {"seconds", 4}, {"times", 1}}})},
        FaultCase{"create_truncated", json::array({{{"method", "POST"}, {"path", "^/v2/droplets$"},
                                                    {"kind", "truncated-json"}, {"times", 1}}})},
        FaultCase{"get_truncated", json::array({{{"method", "GET"}, {"path", "^/v2/droplets/"},
                                                 {"kind", "truncated-json"}, {"times", 1}}})},
        FaultCase{"not_found_after_create", json::array({{{"method", "GET"}, {"path", "^/v2/droplets/"},
                                                          {"kind", "404-after-create"}, {"times", 2}}})},
        FaultCase{"key_create_then_500", json::array({{{"method", "POST"}, {"path", "^/v2/account/keys$"},
                                                       {"kind", "create-then-500"}, {"times", 1}}})}),
    [](const auto& info) { return std::string(info.param.name); });

TEST_F(DigitalOceanContract, RefusedCreateRollsBackTheKey) {
  server_->faults(json::array({{{"method", "POST"}, {"path", "^/v2/droplets$"}, {"kind", "422"}, {"times", 1}}}));
  auto d = make();
  try {
    d->create();
    ADD_FAILURE() << "no error";
  } catch (const cloud::ApiError& e) {
    EXPECT_EQ(e.status(), 422);
    EXPECT_NE(std::string(e.what()).find("machine 'contract': digitalocean: 422 "), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("(request "), std::string::npos) << e.what();
  }
}

TEST_F(DigitalOceanContract, PreCreateCheckRefusesAnUnknownRegion) {
  DriverContext ctx{"contract", dir_.path(), CancelToken{}, 2376};
  ctx.secrets = &sealer_;
  FlagValues flags;
  for (const auto& spec : factory_.flags())
    if (!spec.default_value.empty()) flags.set(spec.name, {spec.default_value});
  flags.set("digitalocean-access-token", {kToken});
  flags.set("digitalocean-api-url", {server_->url()});
  flags.set("digitalocean-region", {"mars1"});
  EXPECT_THROW(factory_.make(flags, ctx)->pre_create_check(), PreCreateCheckFailed);
  flags.set("digitalocean-region", {"nyc3"});
  flags.set("digitalocean-access-token", {"wrong"});
  EXPECT_THROW(factory_.make(flags, ctx)->pre_create_check(), PreCreateCheckFailed);
}

}  // namespace
}  // namespace berth
