// The DigitalOcean driver against an in-memory DigitalOcean (a Transport
// double with droplets, keys and actions that change state as they are
// polled) and a fake clock, so nothing sleeps and every request is seen.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>

#include "core/error.h"
#include "drivers/cloud/digitalocean/digitalocean.h"
#include "drivers/cloud/http.h"

namespace berth {
namespace {

using cloud::HttpRequest;
using cloud::HttpResponse;
using nlohmann::json;
using std::chrono::milliseconds;

constexpr const char* kBase = "https://api.test";
constexpr const char* kToken = "dop_v1_supersecrettoken";

struct TempDir {
  TempDir() {
    char t[] = "/tmp/berth-do-XXXXXX";
    path = ::mkdtemp(t);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
  std::filesystem::path path;
};

class FakeClock final : public cloud::Clock {
 public:
  std::chrono::system_clock::time_point now() override { return t; }
  void sleep(milliseconds d, const CancelToken& cancel) override {
    cancel.throw_if_cancelled();
    sleeps.push_back(d);
    t += d;
  }
  std::chrono::system_clock::time_point t{std::chrono::seconds(1'700'000'000)};
  std::vector<milliseconds> sleeps;
};

// Reversible and obviously not clear text.
class FakeSealer final : public SecretSealer {
 public:
  std::string seal(const std::string& p) const override { return "sealed:" + std::string(p.rbegin(), p.rend()); }
  std::string open(const std::string& s) const override {
    if (s.rfind("sealed:", 0) != 0) throw Error("cannot open");
    std::string p = s.substr(7);
    return std::string(p.rbegin(), p.rend());
  }
};

HttpResponse reply(long status, const json& body = nullptr, cloud::Headers extra = {}) {
  HttpResponse r;
  r.status = status;
  r.headers = {{"Content-Type", "application/json"}, {"x-request-id", "req-" + std::to_string(status)}};
  for (auto& h : extra) r.headers.push_back(h);
  if (!body.is_null()) r.body = body.dump();
  return r;
}

HttpResponse do_error(long status, const std::string& id, const std::string& message) {
  return reply(status, {{"id", id}, {"message", message}});
}

// An in-memory DigitalOcean API v2.
class FakeDo final : public cloud::Transport {
 public:
  FakeDo() {
    for (const char* r : {"ams3", "fra1", "lon1", "nyc1", "nyc3", "sfo3"})
      regions.push_back({{"slug", r}, {"name", r}, {"available", std::string(r) != "nyc1"},
                         {"sizes", {"s-1vcpu-1gb", "s-2vcpu-2gb"}}, {"features", json::array()}});
    sizes.push_back({{"slug", "s-1vcpu-1gb"}, {"available", true}, {"regions", {"ams3", "fra1", "nyc3", "sfo3"}}});
    sizes.push_back({{"slug", "s-2vcpu-2gb"}, {"available", true}, {"regions", {"ams3"}}});
    sizes.push_back({{"slug", "s-8vcpu-16gb"}, {"available", true}, {"regions", {"nyc3"}}});
    images = {{{"slug", "ubuntu-24-04-x64"}, {"id", 111}}, {{"slug", "debian-12-x64"}, {"id", 222}}};
  }

  HttpResponse send(const HttpRequest& req, milliseconds timeout) override {
    timeouts.push_back(timeout);
    requests.push_back(req);
    const std::string line = req.method + " " + req.url.substr(std::string(kBase).size());
    log.push_back(line);
    if (fault)
      if (auto r = fault(req, line)) return *r;
    return route(req, line);
  }

  // The requests' "METHOD path" lines.
  std::vector<std::string> log;
  std::vector<HttpRequest> requests;
  std::vector<milliseconds> timeouts;
  // Called before routing; a response (or a throw) overrides the fake.
  std::function<std::optional<HttpResponse>(const HttpRequest&, const std::string&)> fault;

  int page_size = 100;
  int polls_new = 2;        // droplet GETs that still see "new"
  int action_polls = 1;     // action GETs that still see "in-progress"
  std::string action_end = "completed";
  bool shutdown_powers_off = true;

  std::vector<json> regions, sizes, images;
  std::map<long long, json> keys;
  struct Droplet {
    json body;
    int gets = 0;
  };
  std::map<long long, Droplet> droplets;
  struct Action {
    json body;
    long long droplet;
    int gets = 0;
  };
  std::map<long long, Action> actions;
  long long next_id = 1000;

  HttpResponse route(const HttpRequest& req, const std::string& line);

 private:
  static std::string path_of(const std::string& line) {
    auto sp = line.find(' ');
    std::string p = line.substr(sp + 1);
    return p.substr(0, p.find('?'));
  }
  static std::string query(const std::string& line, const std::string& name) {
    auto q = line.find('?');
    if (q == std::string::npos) return "";
    std::string qs = line.substr(q + 1);
    size_t pos = 0;
    while (pos < qs.size()) {
      size_t amp = qs.find('&', pos);
      std::string kv = qs.substr(pos, amp == std::string::npos ? std::string::npos : amp - pos);
      if (kv.rfind(name + "=", 0) == 0) return kv.substr(name.size() + 1);
      if (amp == std::string::npos) break;
      pos = amp + 1;
    }
    return "";
  }
  HttpResponse page(const std::string& line, const std::string& key, const std::vector<json>& items) {
    std::string p = query(line, "page");
    int n = p.empty() ? 1 : std::stoi(p);
    json out = {{key, json::array()}, {"links", json::object()}, {"meta", {{"total", items.size()}}}};
    for (size_t i = (n - 1) * page_size; i < items.size() && i < size_t(n) * page_size; ++i)
      out[key].push_back(items[i]);
    if (size_t(n) * page_size < items.size()) {
      std::string path = path_of(line);
      std::string rest;
      for (const char* k : {"tag_name", "type", "per_page"})
        if (auto v = query(line, k); !v.empty()) rest += std::string("&") + k + "=" + v;
      out["links"]["pages"] = {{"next", std::string(kBase) + path + "?page=" + std::to_string(n + 1) + rest}};
    }
    return reply(200, out);
  }
  json droplet_view(Droplet& d) {
    json b = d.body;
    if (b["status"] == "new" && d.gets > polls_new) b["status"] = d.body["status"] = "active";
    if (b["status"] == "new") b["networks"] = {{"v4", json::array()}, {"v6", json::array()}};
    return b;
  }
};

HttpResponse FakeDo::route(const HttpRequest& req, const std::string& line) {
  const std::string path = path_of(line);
  auto starts = [&](const std::string& p) { return path.rfind(p, 0) == 0; };
  auto tail_id = [&](const std::string& p) { return std::stoll(path.substr(p.size())); };
  if (req.method == "GET" && path == "/v2/regions") return page(line, "regions", regions);
  if (req.method == "GET" && path == "/v2/sizes") return page(line, "sizes", sizes);
  if (req.method == "GET" && path == "/v2/images") return page(line, "images", images);
  if (req.method == "GET" && starts("/v2/images/")) {
    std::string slug = path.substr(11);
    for (auto& i : images)
      if (i["slug"] == slug || std::to_string(i["id"].get<int>()) == slug) return reply(200, {{"image", i}});
    return do_error(404, "not_found", "The resource you were accessing could not be found.");
  }
  if (req.method == "POST" && path == "/v2/account/keys") {
    json b = json::parse(req.body);
    for (auto& [id, k] : keys)
      if (k["public_key"] == b["public_key"])
        return do_error(422, "unprocessable_entity", "SSH Key is already in use on your account");
    long long id = ++next_id;
    keys[id] = {{"id", id}, {"name", b["name"]}, {"public_key", b["public_key"]}, {"fingerprint", "aa:bb"}};
    return reply(201, {{"ssh_key", keys[id]}});
  }
  if (req.method == "GET" && path == "/v2/account/keys") {
    std::vector<json> all;
    for (auto& [id, k] : keys) all.push_back(k);
    return page(line, "ssh_keys", all);
  }
  if (starts("/v2/account/keys/")) {
    std::string ref = path.substr(17);
    for (size_t at; (at = ref.find("%3A")) != std::string::npos;) ref.replace(at, 3, ":");
    for (auto& [id, k] : keys)
      if (std::to_string(id) == ref || k["fingerprint"] == ref) {
        if (req.method == "DELETE") {
          keys.erase(id);
          return reply(204);
        }
        return reply(200, {{"ssh_key", k}});
      }
    return do_error(404, "not_found", "The resource you were accessing could not be found.");
  }
  if (req.method == "POST" && path == "/v2/droplets") {
    json b = json::parse(req.body);
    long long id = ++next_id;
    json d = {{"id", id}, {"name", b["name"]}, {"status", "new"}, {"tags", b["tags"]},
              {"networks", {{"v4", {{{"ip_address", "10.0.0.5"}, {"type", "private"}},
                                    {{"ip_address", "203.0.113.7"}, {"type", "public"}}}},
                            {"v6", json::array()}}}};
    droplets[id] = {d, 0};
    return reply(202, {{"droplet", d}, {"links", {{"actions", json::array()}}}});
  }
  if (req.method == "GET" && path == "/v2/droplets") {
    std::string tag = query(line, "tag_name");
    std::vector<json> all;
    for (auto& [id, d] : droplets)
      for (auto& t : d.body["tags"])
        if (t == tag) all.push_back(droplet_view(d));
    return page(line, "droplets", all);
  }
  if (starts("/v2/droplets/") && path.find("/actions") != std::string::npos) {
    long long id = std::stoll(path.substr(13));
    if (!droplets.count(id)) return do_error(404, "not_found", "The resource you were accessing could not be found.");
    json b = json::parse(req.body);
    long long aid = ++next_id;
    json a = {{"id", aid}, {"status", "in-progress"}, {"type", b["type"]}, {"resource_id", id}};
    actions[aid] = {a, id, 0};
    return reply(201, {{"action", a}});
  }
  if (starts("/v2/droplets/")) {
    long long id = tail_id("/v2/droplets/");
    auto it = droplets.find(id);
    if (it == droplets.end()) return do_error(404, "not_found", "The resource you were accessing could not be found.");
    if (req.method == "DELETE") {
      droplets.erase(it);
      return reply(204);
    }
    ++it->second.gets;
    return reply(200, {{"droplet", droplet_view(it->second)}});
  }
  if (req.method == "GET" && starts("/v2/actions/")) {
    auto it = actions.find(tail_id("/v2/actions/"));
    if (it == actions.end()) return do_error(404, "not_found", "The resource you were accessing could not be found.");
    Action& a = it->second;
    if (++a.gets > action_polls && a.body["status"] == "in-progress") {
      a.body["status"] = action_end;
      if (action_end == "completed" && droplets.count(a.droplet)) {
        std::string type = a.body["type"];
        auto& status = droplets[a.droplet].body["status"];
        if (type == "power_off" || (type == "shutdown" && shutdown_powers_off)) status = "off";
        if (type == "power_on" || type == "reboot") status = "active";
      }
    }
    return reply(200, {{"action", a.body}});
  }
  return do_error(404, "not_found", "no route " + line);
}

class DigitalOceanTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* v : {"BERTH_CLOUD_POLL_MS", "BERTH_CLOUD_DEADLINE_MS", "BERTH_CLOUD_TIMEOUT_MS"}) ::unsetenv(v);
    fake = std::make_shared<FakeDo>();
    DigitalOceanDriverFactory::Io io;
    io.transport = [this] { return fake; };
    io.clock = &clock;
    io.random = [] { return 0.0; };
    factory = std::make_unique<DigitalOceanDriverFactory>(io);
  }

  DriverContext context() {
    DriverContext c{"dev", dir.path, CancelToken{&cancelled}, 2376};
    c.secrets = &sealer;
    c.checkpoint = [this](const json& s) { checkpoints.push_back(s); };
    return c;
  }

  FlagValues flags(std::map<std::string, std::vector<std::string>> extra = {}) {
    FlagValues v;
    for (const auto& spec : factory->flags())
      if (!spec.default_value.empty()) v.set(spec.name, {spec.default_value});
    v.set("digitalocean-access-token", {kToken});
    v.set("digitalocean-api-url", {kBase});
    for (auto& [k, vals] : extra) v.set(k, vals);
    return v;
  }

  std::unique_ptr<Driver> make(std::map<std::string, std::vector<std::string>> extra = {}) {
    return factory->make(flags(std::move(extra)), context());
  }

  static std::string berth_id(const Driver& d) { return d.save_state()["berth_id"]; }

  size_t count(const std::string& line) const {
    return std::count(fake->log.begin(), fake->log.end(), line);
  }
  std::vector<std::string> log_from(size_t start) const {
    return {fake->log.begin() + static_cast<long>(start), fake->log.end()};
  }

  TempDir dir;
  FakeClock clock;
  FakeSealer sealer;
  std::atomic<bool> cancelled{false};
  std::vector<json> checkpoints;
  std::shared_ptr<FakeDo> fake;
  std::unique_ptr<DigitalOceanDriverFactory> factory;
};

TEST_F(DigitalOceanTest, FlagsHaveEnvVarsDefaultsAndTheTokenIsSecret) {
  std::map<std::string, FlagSpec> by_name;
  for (const auto& f : factory->flags()) by_name[f.name] = f;
  const std::map<std::string, std::pair<std::string, std::string>> want = {
      {"digitalocean-access-token", {"DIGITALOCEAN_ACCESS_TOKEN", ""}},
      {"digitalocean-region", {"DIGITALOCEAN_REGION", "nyc3"}},
      {"digitalocean-size", {"DIGITALOCEAN_SIZE", "s-1vcpu-1gb"}},
      {"digitalocean-image", {"DIGITALOCEAN_IMAGE", "ubuntu-24-04-x64"}},
      {"digitalocean-ssh-user", {"DIGITALOCEAN_SSH_USER", "root"}},
      {"digitalocean-ssh-key-fingerprint", {"DIGITALOCEAN_SSH_KEY_FINGERPRINT", ""}},
      {"digitalocean-ssh-key-path", {"DIGITALOCEAN_SSH_KEY_PATH", ""}},
      {"digitalocean-userdata", {"DIGITALOCEAN_USERDATA", ""}},
      {"digitalocean-tags", {"DIGITALOCEAN_TAGS", ""}},
      {"digitalocean-ipv6", {"DIGITALOCEAN_IPV6", ""}},
      {"digitalocean-monitoring", {"DIGITALOCEAN_MONITORING", ""}},
      {"digitalocean-backups", {"DIGITALOCEAN_BACKUPS", ""}},
      {"digitalocean-private-networking", {"DIGITALOCEAN_PRIVATE_NETWORKING", ""}},
      {"digitalocean-api-url", {"DIGITALOCEAN_API_URL", "https://api.digitalocean.com"}},
  };
  EXPECT_EQ(by_name.size(), want.size());
  for (const auto& [name, env_default] : want) {
    ASSERT_TRUE(by_name.count(name)) << name;
    EXPECT_EQ(by_name[name].env_var, env_default.first) << name;
    EXPECT_EQ(by_name[name].default_value, env_default.second) << name;
    EXPECT_EQ(by_name[name].secret, name == "digitalocean-access-token") << name;
  }
  EXPECT_EQ(by_name["digitalocean-ipv6"].kind, FlagSpec::Kind::Bool);
  EXPECT_EQ(by_name["digitalocean-tags"].kind, FlagSpec::Kind::StringList);
  EXPECT_EQ(factory->name(), "digitalocean");
  auto caps = factory->capabilities();
  EXPECT_TRUE(caps.can_start && caps.can_stop && caps.can_kill && caps.can_restart && caps.remove_destroys_host);
}

TEST_F(DigitalOceanTest, MakeRefusesBadFlags) {
  FlagValues no_token = flags();
  no_token.set("digitalocean-access-token", {});
  try {
    factory->make(no_token, context());
    FAIL() << "no error";
  } catch (const UserError& e) {
    EXPECT_STREQ(e.what(),
                 "machine 'dev': the digitalocean driver needs an API token; pass --digitalocean-access-token or "
                 "set DIGITALOCEAN_ACCESS_TOKEN");
  }
  EXPECT_THROW(make({{"digitalocean-api-url", {"http://api.example.com"}}}), UserError);
  EXPECT_NO_THROW(make({{"digitalocean-api-url", {"http://127.0.0.1:8080/"}}}));
  EXPECT_THROW(make({{"digitalocean-ssh-key-fingerprint", {"aa:bb"}}}), UserError);
  EXPECT_THROW(make({{"digitalocean-ssh-key-path", {"/etc/hostname"}}}), UserError);
  EXPECT_THROW(make({{"digitalocean-tags", {"ok,not ok"}}}), UserError);
  EXPECT_THROW(make({{"digitalocean-userdata", {"/nonexistent/file"}}}), UserError);
}

TEST_F(DigitalOceanTest, CreateSendsKeyDropletAndPollsInOrder) {
  auto d = make({{"digitalocean-tags", {"team:web,prod", "extra"}}, {"digitalocean-ipv6", {"true"}}});
  const std::string id = berth_id(*d);
  ASSERT_EQ(id.size(), 8u);
  d->create();

  const long long key_id = 1001, droplet_id = 1002;
  EXPECT_EQ(fake->log, (std::vector<std::string>{"POST /v2/account/keys", "POST /v2/droplets",
                                                 "GET /v2/droplets/1002", "GET /v2/droplets/1002",
                                                 "GET /v2/droplets/1002"}));
  // Two polls saw "new": two sleeps of the default 2 s interval.
  EXPECT_EQ(clock.sleeps, (std::vector<milliseconds>{milliseconds(2000), milliseconds(2000)}));

  for (const auto& r : fake->requests) {
    EXPECT_EQ(r.url.rfind(kBase, 0), 0u);
    bool auth = false;
    for (const auto& [n, v] : r.headers) auth = auth || (n == "Authorization" && v == std::string("Bearer ") + kToken);
    EXPECT_TRUE(auth) << r.url;
  }
  json key = json::parse(fake->requests[0].body);
  EXPECT_EQ(key["name"], "berth-dev-" + id);
  const std::string pub = key["public_key"];
  EXPECT_EQ(pub.rfind("ssh-ed25519 ", 0), 0u);
  EXPECT_EQ(pub.find('\n'), std::string::npos);
  json body = json::parse(fake->requests[1].body);
  EXPECT_EQ(body, (json{{"name", "dev"},
                        {"region", "nyc3"},
                        {"size", "s-1vcpu-1gb"},
                        {"image", "ubuntu-24-04-x64"},
                        {"ssh_keys", {key_id}},
                        {"backups", false},
                        {"ipv6", true},
                        {"monitoring", false},
                        {"tags", {"berth", "berth-machine-" + id, "team:web", "prod", "extra"}}}));

  struct stat st {};
  ASSERT_EQ(::stat((dir.path / "id_ed25519").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(d->ip(), "203.0.113.7");
  EXPECT_EQ(d->url(2376), "tcp://203.0.113.7:2376");
  auto ep = d->ssh_endpoint();
  ASSERT_TRUE(ep);
  EXPECT_EQ(ep->host, "203.0.113.7");
  EXPECT_EQ(ep->port, 22);
  EXPECT_EQ(ep->user, "root");
  EXPECT_EQ(ep->key_path, dir.path / "id_ed25519");

  // Checkpoints: the key id first, then the droplet id, before the droplet was ready.
  ASSERT_GE(checkpoints.size(), 2u);
  EXPECT_EQ(checkpoints[0]["ssh_key_id"], key_id);
  EXPECT_EQ(checkpoints[0]["droplet_id"], 0);
  EXPECT_EQ(checkpoints[1]["droplet_id"], droplet_id);
  EXPECT_EQ(checkpoints[1]["ip_address"], "");
  json state = d->save_state();
  EXPECT_EQ(state["droplet_id"], droplet_id);
  EXPECT_EQ(state["ip_address"], "203.0.113.7");
}

TEST_F(DigitalOceanTest, TokenIsStoredOnlySealedAndLoadUsesIt) {
  auto d = make();
  d->create();
  json state = d->save_state();
  EXPECT_EQ(state.dump().find(kToken), std::string::npos);
  for (const auto& c : checkpoints) EXPECT_EQ(c.dump().find(kToken), std::string::npos);
  EXPECT_EQ(sealer.open(state["access_token_sealed"]), kToken);
  for (auto& [k, v] : state.items()) {
    if (v.is_string() && v.get<std::string>().find("sealed:") == 0) {
      EXPECT_EQ(k, "access_token_sealed");
    }
  }

  auto loaded = factory->load(state, context());
  EXPECT_EQ(loaded->ip(), "203.0.113.7");
  EXPECT_EQ(loaded->state(milliseconds(5000)), MachineState::Running);
  bool auth = false;
  for (const auto& [n, v] : fake->requests.back().headers) auth = auth || v == std::string("Bearer ") + kToken;
  EXPECT_TRUE(auth);
}

TEST_F(DigitalOceanTest, ExistingKeyByFingerprintIsUsedAndNeverDeleted) {
  TempDir other;
  std::ofstream(other.path / "mykey") << "PRIVATE KEY\n";
  fake->keys[7] = {{"id", 7}, {"name", "mine"}, {"public_key", "ssh-ed25519 AAAA mine"}, {"fingerprint", "aa:bb"}};
  auto d = make({{"digitalocean-ssh-key-fingerprint", {"aa:bb"}},
                 {"digitalocean-ssh-key-path", {(other.path / "mykey").string()}}});
  d->pre_create_check();
  EXPECT_EQ(count("GET /v2/account/keys/aa%3Abb"), 1u);
  d->create();
  EXPECT_EQ(count("POST /v2/account/keys"), 0u);
  json body = json::parse(fake->requests[fake->log.size() - 4].body);
  EXPECT_EQ(body["ssh_keys"], json({"aa:bb"}));
  EXPECT_EQ(d->ssh_endpoint()->key_path, dir.path / "id_digitalocean");
  d->remove();
  EXPECT_TRUE(fake->droplets.empty());
  EXPECT_EQ(fake->keys.size(), 1u);   // the user's key stays
}

TEST_F(DigitalOceanTest, CreateThatFailsBeforeAnyPostCallsNothing) {
  TempDir other;
  std::ofstream(other.path / "mykey") << "PRIVATE KEY\n";
  auto d = make({{"digitalocean-ssh-key-fingerprint", {"aa:bb"}},
                 {"digitalocean-ssh-key-path", {(other.path / "mykey").string()}}});
  std::filesystem::remove(other.path / "mykey");
  EXPECT_THROW(d->create(), Error);
  EXPECT_TRUE(fake->log.empty());
}

TEST_F(DigitalOceanTest, PreCreateCheckFollowsPaginationEverywhere) {
  fake->page_size = 2;
  auto d = make();
  d->pre_create_check();
  EXPECT_EQ(fake->log, (std::vector<std::string>{
                           "GET /v2/regions?per_page=200", "GET /v2/regions?page=2&per_page=200",
                           "GET /v2/regions?page=3&per_page=200", "GET /v2/sizes?per_page=200",
                           "GET /v2/sizes?page=2&per_page=200", "GET /v2/images/ubuntu-24-04-x64"}));
}

TEST_F(DigitalOceanTest, PreCreateCheckNamesValidChoices) {
  auto expect_fail = [&](std::map<std::string, std::vector<std::string>> f, const std::string& want) {
    try {
      make(std::move(f))->pre_create_check();
      ADD_FAILURE() << "no error for " << want;
    } catch (const PreCreateCheckFailed& e) {
      EXPECT_NE(std::string(e.what()).find(want), std::string::npos) << e.what();
      EXPECT_EQ(e.exit_code(), kExitPreCreateCheck);
    }
  };
  expect_fail({{"digitalocean-region", {"mars1"}}},
              "machine 'dev': digitalocean: region 'mars1' does not exist; pass --digitalocean-region with one of: "
              "ams3, fra1, lon1, nyc3, sfo3");
  expect_fail({{"digitalocean-region", {"nyc1"}}}, "region 'nyc1' does not take new droplets now");
  expect_fail({{"digitalocean-size", {"s-2vcpu-2gb"}}},
              "size 's-2vcpu-2gb' is not available in region 'nyc3'; pass --digitalocean-size with one of: s-1vcpu-1gb");
  expect_fail({{"digitalocean-size", {"huge"}}}, "size 'huge' does not exist");
  expect_fail({{"digitalocean-image", {"ubuntu-99-04-x64"}}},
              "image 'ubuntu-99-04-x64' does not exist; pass --digitalocean-image with an image id or one of: "
              "ubuntu-24-04-x64, debian-12-x64");
  expect_fail({{"digitalocean-ssh-key-fingerprint", {"cc:dd"}}, {"digitalocean-ssh-key-path", {"/etc/hostname"}}},
              "no SSH key with fingerprint 'cc:dd'");
  fake->fault = [](const HttpRequest&, const std::string&) -> std::optional<HttpResponse> {
    return do_error(401, "unauthorized", "Unable to authenticate you");
  };
  expect_fail({}, "digitalocean: 401 unauthorized: Unable to authenticate you; check --digitalocean-access-token");
}

TEST_F(DigitalOceanTest, ErrorsCarryMessageCodeAndRequestId) {
  fake->fault = [](const HttpRequest&, const std::string& line) -> std::optional<HttpResponse> {
    if (line != "POST /v2/droplets") return std::nullopt;
    return reply(422, {{"id", "unprocessable_entity"}, {"message", "Region is not available"}});
  };
  auto d = make();
  try {
    d->create();
    FAIL() << "no error";
  } catch (const cloud::ApiError& e) {
    EXPECT_STREQ(e.what(),
                 "machine 'dev': digitalocean: 422 unprocessable_entity: Region is not available (request req-422)");
    EXPECT_EQ(e.status(), 422);
    EXPECT_EQ(e.code(), "unprocessable_entity");
  }
  // Without an x-request-id header the body's request_id is used.
  fake->fault = [](const HttpRequest&, const std::string& line) -> std::optional<HttpResponse> {
    if (line != "POST /v2/droplets") return std::nullopt;
    HttpResponse r;
    r.status = 422;
    r.body = json{{"id", "unprocessable_entity"}, {"message", "Region is not available"}, {"request_id", "7a1b"}}.dump();
    return r;
  };
  try {
    make()->create();
    FAIL() << "no error";
  } catch (const cloud::ApiError& e) {
    EXPECT_STREQ(e.what(),
                 "machine 'dev': digitalocean: 422 unprocessable_entity: Region is not available (request 7a1b)");
    EXPECT_EQ(e.request_id(), "7a1b");
  }
  EXPECT_TRUE(fake->keys.empty());   // rolled back
}

TEST_F(DigitalOceanTest, RateLimitRetryAfterIsHonouredOnTheClock) {
  int n = 0;
  fake->fault = [&](const HttpRequest&, const std::string& line) -> std::optional<HttpResponse> {
    if (line == "POST /v2/droplets" && n++ == 0)
      return reply(429, {{"id", "too_many_requests"}, {"message", "API Rate limit exceeded."}},
                   {{"Retry-After", "7"}, {"RateLimit-Remaining", "0"}});
    return std::nullopt;
  };
  auto d = make();
  d->create();
  EXPECT_EQ(count("POST /v2/droplets"), 2u);
  EXPECT_EQ(fake->droplets.size(), 1u);
  ASSERT_FALSE(clock.sleeps.empty());
  EXPECT_EQ(clock.sleeps[0], milliseconds(7000));
}

TEST_F(DigitalOceanTest, RateLimitResetIsHonouredWithoutRetryAfter) {
  int n = 0;
  const long long reset = std::chrono::duration_cast<std::chrono::seconds>(clock.t.time_since_epoch()).count() + 11;
  fake->fault = [&](const HttpRequest&, const std::string& line) -> std::optional<HttpResponse> {
    if (line == "GET /v2/regions?per_page=200" && n++ == 0)
      return reply(429, {{"id", "too_many_requests"}, {"message", "slow down"}},
                   {{"RateLimit-Remaining", "0"}, {"RateLimit-Reset", std::to_string(reset)}});
    return std::nullopt;
  };
  make()->pre_create_check();
  ASSERT_FALSE(clock.sleeps.empty());
  EXPECT_EQ(clock.sleeps[0], milliseconds(11000));
}

TEST_F(DigitalOceanTest, LostCreateAnswerAdoptsTheDropletFoundByTag) {
  // The droplet is made, but the answer is a 500.
  fake->fault = [&](const HttpRequest& req, const std::string& line) -> std::optional<HttpResponse> {
    if (line != "POST /v2/droplets") return std::nullopt;
    fake->route(req, line);
    return do_error(500, "server_error", "Server Error");
  };
  auto d = make();
  const std::string tag = "berth-machine-" + berth_id(*d);
  d->create();
  EXPECT_EQ(count("POST /v2/droplets"), 1u);
  EXPECT_EQ(count("GET /v2/droplets?tag_name=" + tag + "&per_page=200"), 2u);   // adopt, then stray check
  ASSERT_EQ(fake->droplets.size(), 1u);
  EXPECT_EQ(d->save_state()["droplet_id"], fake->droplets.begin()->first);
  EXPECT_EQ(d->ip(), "203.0.113.7");
}

TEST_F(DigitalOceanTest, CreateAnswerLostOnTheWireAdoptsToo) {
  fake->fault = [&](const HttpRequest& req, const std::string& line) -> std::optional<HttpResponse> {
    if (line != "POST /v2/droplets") return std::nullopt;
    fake->route(req, line);
    throw cloud::TransportError("POST /v2/droplets: connection reset", false, true);
  };
  auto d = make();
  d->create();
  EXPECT_EQ(count("POST /v2/droplets"), 1u);
  EXPECT_EQ(fake->droplets.size(), 1u);
}

TEST_F(DigitalOceanTest, FailedCreateWithNothingMadeIsSentAgain) {
  int n = 0;
  fake->fault = [&](const HttpRequest&, const std::string& line) -> std::optional<HttpResponse> {
    if (line == "POST /v2/droplets" && n++ < 2) return do_error(503, "service_unavailable", "try later");
    return std::nullopt;
  };
  auto d = make();
  d->create();
  EXPECT_EQ(count("POST /v2/droplets"), 3u);
  EXPECT_EQ(fake->droplets.size(), 1u);
}

TEST_F(DigitalOceanTest, TruncatedCreateAnswerIsFoundNotSentAgain) {
  int lists = 0;
  fake->fault = [&](const HttpRequest& req, const std::string& line) -> std::optional<HttpResponse> {
    if (line == "POST /v2/droplets") {
      HttpResponse r = fake->route(req, line);
      r.body = r.body.substr(0, r.body.size() / 2);
      return r;
    }
    // The new droplet shows up in the tag list only on the second look.
    if (line.rfind("GET /v2/droplets?tag_name=", 0) == 0 && lists++ == 0)
      return reply(200, {{"droplets", json::array()}, {"links", json::object()}, {"meta", {{"total", 0}}}});
    return std::nullopt;
  };
  auto d = make();
  d->create();
  EXPECT_EQ(count("POST /v2/droplets"), 1u);
  EXPECT_EQ(fake->droplets.size(), 1u);
}

TEST_F(DigitalOceanTest, TruncatedJsonOnAGetIsRetried) {
  int n = 0;
  fake->fault = [&](const HttpRequest& req, const std::string& line) -> std::optional<HttpResponse> {
    if (line == "GET /v2/sizes?per_page=200" && n++ == 0) {
      HttpResponse r = fake->route(req, line);
      r.body.resize(10);
      return r;
    }
    return std::nullopt;
  };
  make()->pre_create_check();
  EXPECT_EQ(count("GET /v2/sizes?per_page=200"), 2u);
}

TEST_F(DigitalOceanTest, NotFoundJustAfterCreateIsEventualConsistency) {
  int n = 0;
  fake->fault = [&](const HttpRequest&, const std::string& line) -> std::optional<HttpResponse> {
    if (line.rfind("GET /v2/droplets/", 0) == 0 && n++ < 2)
      return do_error(404, "not_found", "The resource you were accessing could not be found.");
    return std::nullopt;
  };
  auto d = make();
  d->create();
  EXPECT_EQ(d->ip(), "203.0.113.7");
  EXPECT_EQ(fake->droplets.size(), 1u);
}

TEST_F(DigitalOceanTest, DropletNeverActiveIsRolledBackAtTheDeadline) {
  fake->polls_new = 1'000'000;
  auto d = make();
  const std::string tag = "berth-machine-" + berth_id(*d);
  try {
    d->create();
    FAIL() << "no error";
  } catch (const DriverError& e) {
    EXPECT_NE(std::string(e.what()).find("droplet 1002 becoming active with a public IPv4 address did not happen "
                                         "within 300 s"),
              std::string::npos)
        << e.what();
  }
  EXPECT_TRUE(fake->droplets.empty());
  EXPECT_TRUE(fake->keys.empty());
  // 5 minutes of 2 s polls on the fake clock, then the cleanup.
  EXPECT_EQ(count("GET /v2/droplets/1002"), 152u);
  // The cleanup: every droplet with our tag, the wait for its 404, then the key.
  EXPECT_EQ(log_from(fake->log.size() - 4),
            (std::vector<std::string>{"GET /v2/droplets?tag_name=" + tag + "&per_page=200", "DELETE /v2/droplets/1002",
                                      "GET /v2/droplets/1002", "DELETE /v2/account/keys/1001"}));
}

TEST_F(DigitalOceanTest, RollbackWaitsUntilTheDropletIsGone) {
  fake->polls_new = 1'000'000;
  ::setenv("BERTH_CLOUD_DEADLINE_MS", "10000", 1);
  // DELETE is accepted, but the droplet lingers for two more GETs.
  int lingering = 2;
  fake->fault = [&](const HttpRequest&, const std::string& line) -> std::optional<HttpResponse> {
    if (line == "DELETE /v2/droplets/1002") {
      fake->droplets[1002].body["status"] = "off";
      return reply(204);
    }
    if (line == "GET /v2/droplets/1002" && fake->droplets[1002].body["status"] == "off" && lingering-- == 0)
      fake->droplets.erase(1002);
    return std::nullopt;
  };
  auto d = make();
  EXPECT_THROW(d->create(), DriverError);
  ::unsetenv("BERTH_CLOUD_DEADLINE_MS");
  auto tail = log_from(fake->log.size() - 5);
  EXPECT_EQ(tail, (std::vector<std::string>{"DELETE /v2/droplets/1002", "GET /v2/droplets/1002", "GET /v2/droplets/1002",
                                            "GET /v2/droplets/1002", "DELETE /v2/account/keys/1001"}));
  EXPECT_TRUE(fake->droplets.empty());
  EXPECT_TRUE(fake->keys.empty());
}

TEST_F(DigitalOceanTest, InterruptedCreateCleansUpEvenThoughCancelled) {
  fake->fault = [&](const HttpRequest&, const std::string& line) -> std::optional<HttpResponse> {
    if (line == "GET /v2/droplets/1002") cancelled = true;   // Ctrl-C during the poll
    return std::nullopt;
  };
  auto d = make();
  EXPECT_THROW(d->create(), Interrupted);
  EXPECT_TRUE(fake->droplets.empty());
  EXPECT_TRUE(fake->keys.empty());
}

TEST_F(DigitalOceanTest, KeyCreateAnswerLostIsAdoptedByName) {
  fake->fault = [&](const HttpRequest& req, const std::string& line) -> std::optional<HttpResponse> {
    if (line != "POST /v2/account/keys") return std::nullopt;
    fake->route(req, line);
    return do_error(502, "bad_gateway", "Bad Gateway");
  };
  auto d = make();
  d->create();
  EXPECT_EQ(count("POST /v2/account/keys"), 1u);
  ASSERT_EQ(fake->keys.size(), 1u);
  EXPECT_EQ(d->save_state()["ssh_key_id"], fake->keys.begin()->first);
  d->remove();
  EXPECT_TRUE(fake->keys.empty());
}

TEST_F(DigitalOceanTest, RemoveDeletesDropletTaggedStraysAndOwnKey) {
  auto d = make();
  d->create();
  // A droplet left by a killed earlier attempt carries the same tag.
  fake->droplets[5000] = {{{"id", 5000}, {"status", "active"}, {"tags", {"berth", "berth-machine-" + berth_id(*d)}}},
                          0};
  fake->droplets[6000] = {{{"id", 6000}, {"status", "active"}, {"tags", {"berth", "someone-else"}}}, 0};
  size_t start = fake->log.size();
  d->remove();
  EXPECT_EQ(log_from(start),
            (std::vector<std::string>{"GET /v2/droplets?tag_name=berth-machine-" + berth_id(*d) + "&per_page=200",
                                      "DELETE /v2/droplets/1002", "DELETE /v2/droplets/5000", "DELETE /v2/account/keys/1001"}));
  EXPECT_EQ(fake->droplets.size(), 1u);   // only the stranger's
  EXPECT_TRUE(fake->keys.empty());
  // Again, with everything gone: still fine.
  EXPECT_NO_THROW(d->remove());
}

TEST_F(DigitalOceanTest, RemoveAfterAKilledCreateFindsByTagAndName) {
  auto d = make();
  d->create();
  json state = d->save_state();
  state["droplet_id"] = 0;    // the create was killed before the ids were saved
  state["ssh_key_id"] = 0;
  factory->load(state, context())->remove();
  EXPECT_TRUE(fake->droplets.empty());
  EXPECT_TRUE(fake->keys.empty());
}

TEST_F(DigitalOceanTest, StateMapsStatusesAndNeverThrows) {
  auto d = make();
  d->create();
  auto& status = fake->droplets[1002].body["status"];
  const std::vector<std::pair<std::string, MachineState>> cases = {{"new", MachineState::Starting},
                                                                   {"active", MachineState::Running},
                                                                   {"off", MachineState::Stopped},
                                                                   {"archive", MachineState::Stopped},
                                                                   {"weird", MachineState::Error}};
  for (const auto& [s, want] : cases) {
    status = s;
    fake->polls_new = 1'000'000;
    EXPECT_EQ(d->state(milliseconds(1000)), want) << s;
  }
  EXPECT_EQ(fake->timeouts.back(), milliseconds(1000));
  fake->fault = [](const HttpRequest&, const std::string&) -> std::optional<HttpResponse> {
    return do_error(500, "server_error", "boom");
  };
  EXPECT_EQ(d->state(milliseconds(1000)), MachineState::Error);
  fake->fault = [](const HttpRequest&, const std::string&) -> std::optional<HttpResponse> {
    throw cloud::TransportError("timed out", true, true);
  };
  EXPECT_EQ(d->state(milliseconds(1000)), MachineState::Timeout);
  fake->fault = nullptr;
  fake->droplets.clear();
  EXPECT_EQ(d->state(milliseconds(1000)), MachineState::NotFound);
  json broken = d->save_state();
  broken["access_token_sealed"] = "garbage";
  EXPECT_EQ(factory->load(broken, context())->state(milliseconds(1000)), MachineState::Error);
}

TEST_F(DigitalOceanTest, PowerActionsWaitForCompletion) {
  auto d = make();
  d->create();
  size_t start = fake->log.size();
  d->kill();
  EXPECT_EQ(log_from(start), (std::vector<std::string>{"POST /v2/droplets/1002/actions", "GET /v2/actions/1003",
                                                      "GET /v2/actions/1003"}));
  EXPECT_EQ(json::parse(fake->requests[start].body), (json{{"type", "power_off"}}));
  EXPECT_EQ(d->state(milliseconds(1000)), MachineState::Stopped);

  start = fake->log.size();
  d->start();
  EXPECT_EQ(json::parse(fake->requests[start].body), (json{{"type", "power_on"}}));
  EXPECT_EQ(fake->log.back(), "GET /v2/droplets/1002");
  EXPECT_EQ(d->state(milliseconds(1000)), MachineState::Running);

  start = fake->log.size();
  d->restart();
  EXPECT_EQ(json::parse(fake->requests[start].body), (json{{"type", "reboot"}}));

  fake->action_end = "errored";
  EXPECT_THROW(d->restart(), DriverError);
}

TEST_F(DigitalOceanTest, StopShutsDownGracefully) {
  auto d = make();
  d->create();
  size_t start = fake->log.size();
  d->stop();
  EXPECT_EQ(log_from(start), (std::vector<std::string>{"POST /v2/droplets/1002/actions", "GET /v2/actions/1003",
                                                      "GET /v2/actions/1003", "GET /v2/droplets/1002"}));
  EXPECT_EQ(json::parse(fake->requests[start].body), (json{{"type", "shutdown"}}));
  EXPECT_EQ(fake->droplets[1002].body["status"], "off");
}

TEST_F(DigitalOceanTest, StopFallsBackToPowerOff) {
  auto d = make();
  d->create();
  // The shutdown action is refused.
  fake->fault = [](const HttpRequest& req, const std::string&) -> std::optional<HttpResponse> {
    if (req.body.find("shutdown") != std::string::npos)
      return do_error(422, "unprocessable_entity", "Droplet already has a pending event.");
    return std::nullopt;
  };
  auto posted_types = [&](size_t from) {
    std::vector<std::string> types;
    for (size_t i = from; i < fake->requests.size(); ++i)
      if (fake->requests[i].method == "POST") types.push_back(json::parse(fake->requests[i].body)["type"]);
    return types;
  };
  size_t start = fake->log.size();
  d->stop();
  EXPECT_EQ(posted_types(start), (std::vector<std::string>{"shutdown", "power_off"}));
  EXPECT_EQ(fake->droplets[1002].body["status"], "off");

  // The shutdown completes but the OS ignores it: power_off after the deadline.
  fake->fault = nullptr;
  fake->droplets[1002].body["status"] = "active";
  fake->shutdown_powers_off = false;
  start = fake->log.size();
  auto t0 = clock.t;
  d->stop();
  EXPECT_EQ(fake->droplets[1002].body["status"], "off");
  EXPECT_GE(clock.t - t0, std::chrono::seconds(120));
  EXPECT_EQ(posted_types(start), (std::vector<std::string>{"shutdown", "power_off"}));
}

TEST_F(DigitalOceanTest, NextLinksToAnotherHostStayOnTheApiUrl) {
  fake->page_size = 2;
  fake->fault = [&](const HttpRequest& req, const std::string& line) -> std::optional<HttpResponse> {
    if (line != "GET /v2/regions?per_page=200") return std::nullopt;
    HttpResponse r = fake->route(req, line);
    json j = json::parse(r.body);
    j["links"]["pages"]["next"] = "https://evil.example/v2/regions?page=2&per_page=200";
    r.body = j.dump();
    return r;
  };
  make()->pre_create_check();
  for (const auto& r : fake->requests) EXPECT_EQ(r.url.rfind(kBase, 0), 0u) << r.url;
  EXPECT_EQ(count("GET /v2/regions?page=2&per_page=200"), 1u);
}

TEST_F(DigitalOceanTest, UserDataAndOptionsGoIntoTheCreateBody) {
  TempDir t;
  std::ofstream(t.path / "ud") << "#cloud-config\nruncmd: [touch /x]\n";
  auto d = make({{"digitalocean-userdata", {(t.path / "ud").string()}},
                 {"digitalocean-backups", {"true"}},
                 {"digitalocean-monitoring", {"true"}},
                 {"digitalocean-private-networking", {"true"}},
                 {"digitalocean-image", {"222"}},
                 {"digitalocean-region", {"ams3"}},
                 {"digitalocean-size", {"s-2vcpu-2gb"}},
                 {"digitalocean-ssh-user", {"ubuntu"}}});
  d->pre_create_check();
  d->create();
  json body;
  for (const auto& r : fake->requests)
    if (r.method == "POST" && r.url == std::string(kBase) + "/v2/droplets") body = json::parse(r.body);
  EXPECT_EQ(body["user_data"], "#cloud-config\nruncmd: [touch /x]\n");
  EXPECT_EQ(body["image"], 222);
  EXPECT_EQ(body["backups"], true);
  EXPECT_EQ(body["monitoring"], true);
  EXPECT_EQ(body["private_networking"], true);
  EXPECT_EQ(body["region"], "ams3");
  EXPECT_EQ(d->ssh_endpoint()->user, "ubuntu");
}

TEST_F(DigitalOceanTest, PollIntervalComesFromTheEnvironment) {
  ::setenv("BERTH_CLOUD_POLL_MS", "50", 1);
  auto d = make();
  d->create();
  ::unsetenv("BERTH_CLOUD_POLL_MS");
  EXPECT_EQ(clock.sleeps, (std::vector<milliseconds>{milliseconds(50), milliseconds(50)}));
}

}  // namespace
}  // namespace berth
