#include "drivers/cloud/digitalocean/digitalocean.h"

#include <fmt/format.h>

#include <cctype>
#include <cstdlib>
#include <random>
#include <regex>
#include <set>

#include "core/error.h"
#include "core/fs.h"
#include "core/log.h"
#include "core/ssh.h"
#include "drivers/cloud/digitalocean/api.h"

namespace berth {
namespace {

namespace cl = cloud;
using cl::digitalocean::Api;
using nlohmann::json;
using std::chrono::milliseconds;

constexpr const char* kDefaultApiUrl = "https://api.digitalocean.com";
constexpr const char* kKeyFile = "id_ed25519";     // the key berth makes
constexpr const char* kUserKeyFile = "id_digitalocean";   // a copy of the user's key (--digitalocean-ssh-key-path)
constexpr size_t kMaxUserData = 64 * 1024;
constexpr int kCreateAttempts = 3;

milliseconds env_ms(const char* name, milliseconds fallback) {
  const char* v = std::getenv(name);
  if (!v || !*v) return fallback;
  char* end = nullptr;
  long long n = std::strtoll(v, &end, 10);
  return (end && *end == '\0' && n > 0) ? milliseconds(n) : fallback;
}

// Waits, all overridable for tests through the environment.
struct Timing {
  milliseconds poll = env_ms("BERTH_CLOUD_POLL_MS", milliseconds(2000));
  milliseconds deadline = env_ms("BERTH_CLOUD_DEADLINE_MS", milliseconds(5 * 60 * 1000));
  milliseconds request_timeout = env_ms("BERTH_CLOUD_TIMEOUT_MS", milliseconds(30000));
  milliseconds shutdown() const { return std::min(deadline, milliseconds(120 * 1000)); }
  milliseconds cleanup() const { return std::min(deadline, milliseconds(120 * 1000)); }
};

struct Settings {
  std::string api_url = kDefaultApiUrl;
  std::string token_sealed;
  std::string region = "nyc3";
  std::string size = "s-1vcpu-1gb";
  std::string image = "ubuntu-24-04-x64";
  std::string ssh_user = "root";
  std::string key_fingerprint;   // the user's DO key; empty: berth makes and owns one
  std::string key_source;        // the user's private key for key_fingerprint
  std::string user_data_file;
  std::vector<std::string> tags;
  bool ipv6 = false, monitoring = false, backups = false, private_networking = false;
  std::string berth_id;          // 8 hex digits: the droplet tag and key name carry it
  long long droplet_id = 0;
  long long key_id = 0;
  std::string ip;
  std::string ip6;

  bool owns_key() const { return key_fingerprint.empty(); }
  std::string machine_tag() const { return "berth-machine-" + berth_id; }
};

std::string random_id() {
  std::random_device rd;
  return fmt::format("{:08x}", static_cast<uint32_t>(rd()));
}

bool all_digits(const std::string& s) {
  return !s.empty() && s.find_first_not_of("0123456789") == std::string::npos;
}

MachineState map_status(const std::string& s) {
  if (s == "new") return MachineState::Starting;
  if (s == "active") return MachineState::Running;
  if (s == "off" || s == "archive") return MachineState::Stopped;
  return MachineState::Unknown;
}

// The droplet's first address of `type` ("public"/"private") in networks.<family>.
std::string address(const json& droplet, const char* family, const char* type) {
  auto n = droplet.find("networks");
  if (n == droplet.end() || !n->is_object()) return "";
  auto list = n->find(family);
  if (list == n->end() || !list->is_array()) return "";
  for (const auto& net : *list)
    if (net.is_object() && net.value("type", "") == type && net.contains("ip_address") &&
        net["ip_address"].is_string())
      return net["ip_address"].get<std::string>();
  return "";
}

long long id_of(const json& o) {
  auto it = o.find("id");
  return it != o.end() && it->is_number_integer() ? it->get<long long>() : 0;
}

class DigitalOceanDriver final : public Driver {
 public:
  DigitalOceanDriver(Settings s, DriverContext ctx, DigitalOceanDriverFactory::Io io)
      : s_(std::move(s)), ctx_(std::move(ctx)), io_(std::move(io)) {}

  void pre_create_check() override {
    Api a = api(ctx_.cancel);
    try {
      check_region_and_size(a);
      check_image(a);
      if (!s_.owns_key() && !a.get_or_404("/v2/account/keys/" + cl::url_encode(s_.key_fingerprint)))
        throw PreCreateCheckFailed(a.prefix() + "no SSH key with fingerprint '" + s_.key_fingerprint +
                                   "' in the account; check --digitalocean-ssh-key-fingerprint");
    } catch (const cl::ApiError& e) {
      if (e.status() == 401 || e.status() == 403) throw PreCreateCheckFailed(e.what());
      throw;
    }
  }

  void create() override {
    Api a = api(ctx_.cancel);
    try {
      prepare_ssh_key();
      if (s_.owns_key()) upload_key(a);
      create_droplet(a);
      wait_until_active(a);
      if (uncertain_create_) remove_stray_droplets(a);
    } catch (...) {
      if (posted_) rollback();
      throw;
    }
  }

  void start() override {
    Api a = api(ctx_.cancel);
    require_droplet();
    run_action(a, "power_on", true);
    wait_until_active(a);
  }

  void stop() override {
    Api a = api(ctx_.cancel);
    require_droplet();
    bool off = false;
    try {
      long long action = post_action(a, "shutdown");
      off = wait_action(a, action, "shutdown", timing_.shutdown(), false) &&
            wait_status(a, "off", timing_.shutdown());
    } catch (const cl::ApiError& e) {
      log::debug("digitalocean", "shutdown failed, powering off: {}", e.what());
    } catch (const Interrupted&) {
      throw;
    } catch (const DriverError& e) {   // the shutdown deadline passed
      log::debug("digitalocean", "shutdown did not finish, powering off: {}", e.what());
    }
    if (!off) run_action(a, "power_off", true);
  }

  void restart() override {
    Api a = api(ctx_.cancel);
    require_droplet();
    run_action(a, "reboot", true);
  }

  void kill() override {
    Api a = api(ctx_.cancel);
    require_droplet();
    run_action(a, "power_off", true);
  }

  void remove() override {
    Api a = api(ctx_.cancel);
    delete_droplets(a, /*wait=*/false);
    delete_key(a);
  }

  MachineState state(milliseconds timeout) override {
    if (s_.droplet_id == 0) return MachineState::NotFound;
    try {
      cl::RetryPolicy p;
      p.max_attempts = 2;
      p.request_timeout = std::max(timeout, milliseconds(1));
      Api a = api(ctx_.cancel, p);
      auto d = a.get_or_404(droplet_path());
      if (!d) return MachineState::NotFound;
      const json& droplet = (*d)["droplet"];
      MachineState st = map_status(droplet.value("status", ""));
      if (st == MachineState::Running) remember_addresses(droplet);
      return st == MachineState::Unknown ? MachineState::Error : st;
    } catch (const cl::TransportError& e) {
      return e.timed_out() ? MachineState::Timeout : MachineState::Error;
    } catch (...) {
      return MachineState::Error;
    }
  }

  std::optional<SshEndpoint> ssh_endpoint() const override {
    if (s_.ip.empty()) return std::nullopt;
    return SshEndpoint{s_.ip, 22, s_.ssh_user, ssh_key_path()};
  }
  std::string ip() const override { return s_.ip; }
  std::string url(int agent_port) const override {
    return s_.ip.empty() ? "" : "tcp://" + s_.ip + ":" + std::to_string(agent_port);
  }

  nlohmann::json save_state() const override {
    return {{"api_url", s_.api_url},
            {"access_token_sealed", s_.token_sealed},
            {"region", s_.region},
            {"size", s_.size},
            {"image", s_.image},
            {"ssh_user", s_.ssh_user},
            {"ssh_key_fingerprint", s_.key_fingerprint},
            {"ssh_key_source", s_.key_source},
            {"userdata", s_.user_data_file},
            {"tags", s_.tags},
            {"ipv6", s_.ipv6},
            {"monitoring", s_.monitoring},
            {"backups", s_.backups},
            {"private_networking", s_.private_networking},
            {"berth_id", s_.berth_id},
            {"droplet_id", s_.droplet_id},
            {"ssh_key_id", s_.key_id},
            {"ip_address", s_.ip},
            {"ipv6_address", s_.ip6}};
  }

 private:
  // --- plumbing ---
  Api api(CancelToken cancel, std::optional<cl::RetryPolicy> policy = std::nullopt) {
    if (!transport_) transport_ = io_.transport();
    cl::RetryPolicy p = policy.value_or(cl::RetryPolicy{});
    if (!policy) p.request_timeout = timing_.request_timeout;
    Api a(*transport_, *io_.clock, p, cancel, s_.api_url, token(), ctx_.machine_name);
    if (io_.random) a.http().set_random(io_.random);
    return a;
  }

  std::string token() const {
    if (!ctx_.secrets) throw DriverError("machine '" + ctx_.machine_name + "': no secret store to open the token with");
    return ctx_.secrets->open(s_.token_sealed);
  }

  void checkpoint() const {
    if (ctx_.checkpoint) ctx_.checkpoint(save_state());
  }

  std::string droplet_path() const { return "/v2/droplets/" + std::to_string(s_.droplet_id); }
  std::string key_name() const { return "berth-" + ctx_.machine_name + "-" + s_.berth_id; }
  fs::path ssh_key_path() const { return ctx_.machine_dir / (s_.owns_key() ? kKeyFile : kUserKeyFile); }

  void require_droplet() const {
    if (s_.droplet_id == 0)
      throw DriverError("machine '" + ctx_.machine_name + "' has no droplet; remove it with 'berth rm -f " +
                        ctx_.machine_name + "'");
  }

  void remember_addresses(const json& droplet) {
    std::string v4 = address(droplet, "v4", "public");
    if (!v4.empty()) s_.ip = v4;
    std::string v6 = address(droplet, "v6", "public");
    if (!v6.empty()) s_.ip6 = v6;
  }

  // --- pre-create check ---
  void check_region_and_size(Api& a) {
    auto regions = a.list("/v2/regions?per_page=200", "regions");
    const json* region = nullptr;
    std::vector<std::string> available;
    for (const auto& r : regions) {
      if (r.value("available", false)) available.push_back(r.value("slug", ""));
      if (r.value("slug", "") == s_.region) region = &r;
    }
    if (!region)
      throw PreCreateCheckFailed(a.prefix() + "region '" + s_.region + "' does not exist; pass --digitalocean-region " +
                                 "with one of: " + join(available));
    if (!region->value("available", false))
      throw PreCreateCheckFailed(a.prefix() + "region '" + s_.region + "' does not take new droplets now; pass " +
                                 "--digitalocean-region with one of: " + join(available));

    auto sizes = a.list("/v2/sizes?per_page=200", "sizes");
    std::set<std::string> in_region;
    if (region->contains("sizes") && (*region)["sizes"].is_array())
      for (const auto& s : (*region)["sizes"])
        if (s.is_string()) in_region.insert(s.get<std::string>());
    const json* size = nullptr;
    std::vector<std::string> choices;
    for (const auto& z : sizes) {
      const std::string slug = z.value("slug", "");
      bool here = z.value("available", false) && in_region.count(slug);
      if (z.contains("regions") && z["regions"].is_array()) {
        bool listed = false;
        for (const auto& r : z["regions"]) listed = listed || (r.is_string() && r.get<std::string>() == s_.region);
        here = here && listed;
      }
      if (here) choices.push_back(slug);
      if (slug == s_.size) size = &z;
    }
    if (!size)
      throw PreCreateCheckFailed(a.prefix() + "size '" + s_.size + "' does not exist; pass --digitalocean-size with " +
                                 "one of: " + join(choices));
    if (std::find(choices.begin(), choices.end(), s_.size) == choices.end())
      throw PreCreateCheckFailed(a.prefix() + "size '" + s_.size + "' is not available in region '" + s_.region +
                                 "'; pass --digitalocean-size with one of: " + join(choices));
  }

  void check_image(Api& a) {
    if (a.get_or_404("/v2/images/" + cl::url_encode(s_.image))) return;
    std::vector<std::string> slugs;
    try {
      for (const auto& i : a.list("/v2/images?type=distribution&per_page=200", "images"))
        if (i.contains("slug") && i["slug"].is_string()) slugs.push_back(i["slug"].get<std::string>());
    } catch (const cl::ApiError&) {
    }
    throw PreCreateCheckFailed(a.prefix() + "image '" + s_.image + "' does not exist; pass --digitalocean-image " +
                               "with an image id or one of: " + join(slugs));
  }

  static std::string join(const std::vector<std::string>& items, size_t max = 20) {
    if (items.empty()) return "(none)";
    std::string out;
    for (size_t i = 0; i < items.size() && i < max; ++i) out += (i ? ", " : "") + items[i];
    if (items.size() > max) out += fmt::format(" and {} more", items.size() - max);
    return out;
  }

  // --- create ---
  void prepare_ssh_key() {
    if (s_.owns_key()) {
      std::error_code ec;
      fs::remove(ssh_key_path(), ec);
      fs::remove(fs::path(ssh_key_path().string() + ".pub"), ec);
      generate_ed25519_key(ssh_key_path(), key_name());
    } else {
      copy_file_private(s_.key_source, ssh_key_path(), 0600);
    }
  }

  void upload_key(Api& a) {
    const std::string name = key_name();
    std::string pub = read_public_key(ssh_key_path());
    while (!pub.empty() && std::isspace(static_cast<unsigned char>(pub.back()))) pub.pop_back();
    json key = post_create(a, "/v2/account/keys", {{"name", name}, {"public_key", pub}}, "ssh_key",
                           [&]() -> std::optional<json> {
                             for (auto& k : a.list("/v2/account/keys?per_page=200", "ssh_keys"))
                               if (k.value("name", "") == name || k.value("public_key", "") == pub) return k;
                             return std::nullopt;
                           });
    s_.key_id = id_of(key);
    checkpoint();
  }

  json droplet_request() const {
    json tags = json::array({"berth", s_.machine_tag()});
    for (const auto& t : s_.tags) tags.push_back(t);
    json body = {{"name", ctx_.machine_name},
                 {"region", s_.region},
                 {"size", s_.size},
                 {"image", all_digits(s_.image) ? json(std::stoll(s_.image)) : json(s_.image)},
                 {"ssh_keys", json::array({s_.owns_key() ? json(s_.key_id) : json(s_.key_fingerprint)})},
                 {"backups", s_.backups},
                 {"ipv6", s_.ipv6},
                 {"monitoring", s_.monitoring},
                 {"tags", tags}};
    if (s_.private_networking) body["private_networking"] = true;
    if (!s_.user_data_file.empty()) body["user_data"] = read_file(s_.user_data_file);
    return body;
  }

  std::optional<json> find_tagged_droplet(Api& a) {
    auto found = a.list("/v2/droplets?tag_name=" + cl::url_encode(s_.machine_tag()) + "&per_page=200", "droplets");
    if (found.empty()) return std::nullopt;
    return found.front();
  }

  void create_droplet(Api& a) {
    json body = droplet_request();
    if (body.contains("user_data") && body["user_data"].get<std::string>().size() > kMaxUserData)
      throw UserError("machine '" + ctx_.machine_name + "': --digitalocean-userdata '" + s_.user_data_file +
                      "' is over 64 KiB, DigitalOcean's limit");
    json droplet = post_create(a, "/v2/droplets", body, "droplet", [&] { return find_tagged_droplet(a); });
    s_.droplet_id = id_of(droplet);
    checkpoint();
  }

  // POSTs a create. When the answer is lost (a transport error after sending,
  // a 5xx, or a 2xx whose body can't be read), looks for the resource with
  // `find` before sending again, so there is never a second one.
  json post_create(Api& a, const std::string& path, const json& body, const std::string& key,
                   const std::function<std::optional<json>()>& find) {
    bool sent_before = false;   // an earlier POST may have made it
    posted_ = true;
    for (int attempt = 1;; ++attempt) {
      std::optional<cl::HttpResponse> r;
      std::exception_ptr lost;
      try {
        r = a.post_raw(path, body, cl::Retry::Unsafe);
      } catch (const cl::TransportError& e) {
        if (!e.may_have_arrived()) throw;
        lost = std::current_exception();
      }
      if (r && r->status / 100 == 2) {
        if (auto j = Api::parse(r->body); j && j->contains(key) && id_of((*j)[key]) != 0) return (*j)[key];
        // Made, but we can't read its id: find it, never POST again.
        uncertain_create_ = true;
        std::optional<json> found;
        cl::poll_until(a.clock(), a.cancel(), timing_.deadline, timing_.poll,
                       a.prefix() + "POST " + path + " answered " + std::to_string(r->status) +
                           " with an unreadable body; the new resource showing up",
                       [&] { return (found = find()).has_value(); });
        return *found;
      }
      // A 422 after a lost answer may be "already in use": our first POST worked.
      if (r && r->status < 500 && !(sent_before && r->status == 422)) throw a.error(*r);
      // Unknown outcome: the server may have made it.
      uncertain_create_ = sent_before = true;
      log::debug("digitalocean", "POST {} outcome unknown (attempt {}); looking for the resource", path, attempt);
      a.clock().sleep(a.http().retry_delay(attempt, r ? &*r : nullptr), a.cancel());
      if (auto found = find()) return *found;
      if (attempt >= kCreateAttempts) {
        if (lost) std::rethrow_exception(lost);
        throw a.error(*r);
      }
    }
  }

  void wait_until_active(Api& a) {
    cl::poll_until(a.clock(), a.cancel(), timing_.deadline, timing_.poll,
                   a.prefix() + "droplet " + std::to_string(s_.droplet_id) +
                       " becoming active with a public IPv4 address",
                   [&] {
                     auto d = a.get_or_404(droplet_path());
                     if (!d) return false;   // just made: not visible everywhere yet
                     const json& droplet = (*d)["droplet"];
                     if (droplet.value("status", "") != "active") return false;
                     remember_addresses(droplet);
                     return !address(droplet, "v4", "public").empty();
                   });
    checkpoint();
  }

  // After a lost create answer two POSTs may both have made a droplet: keep ours.
  void remove_stray_droplets(Api& a) {
    auto found = a.list("/v2/droplets?tag_name=" + cl::url_encode(s_.machine_tag()) + "&per_page=200", "droplets");
    for (const auto& d : found)
      if (long long id = id_of(d); id != 0 && id != s_.droplet_id) a.del("/v2/droplets/" + std::to_string(id));
  }

  // Undoes a failed create; never throws. Runs even after Ctrl-C.
  void rollback() noexcept {
    try {
      Api a = api(CancelToken{});
      delete_droplets(a, /*wait=*/true);
      delete_key(a);
    } catch (const std::exception& e) {
      log::warn("digitalocean", "machine '{}': could not undo the failed create ({}); run 'berth rm -f {}'",
                ctx_.machine_name, e.what(), ctx_.machine_name);
    }
  }

  // --- remove ---
  void delete_droplets(Api& a, bool wait) {
    std::set<long long> ids;
    if (s_.droplet_id) ids.insert(s_.droplet_id);
    if (!s_.berth_id.empty())
      for (const auto& d : a.list("/v2/droplets?tag_name=" + cl::url_encode(s_.machine_tag()) + "&per_page=200",
                                  "droplets"))
        if (long long id = id_of(d)) ids.insert(id);
    for (long long id : ids) a.del("/v2/droplets/" + std::to_string(id));
    if (wait)
      for (long long id : ids)
        cl::poll_until(a.clock(), a.cancel(), timing_.cleanup(), timing_.poll,
                       a.prefix() + "droplet " + std::to_string(id) + " disappearing after DELETE",
                       [&] { return !a.get_or_404("/v2/droplets/" + std::to_string(id)); });
  }

  void delete_key(Api& a) {
    if (!s_.owns_key()) return;
    if (s_.key_id) {
      a.del("/v2/account/keys/" + std::to_string(s_.key_id));
      return;
    }
    if (s_.berth_id.empty()) return;
    const std::string name = key_name();
    for (const auto& k : a.list("/v2/account/keys?per_page=200", "ssh_keys"))
      if (k.value("name", "") == name)
        if (long long id = id_of(k)) a.del("/v2/account/keys/" + std::to_string(id));
  }

  // --- actions ---
  long long post_action(Api& a, const std::string& type) {
    json j = a.post(droplet_path() + "/actions", {{"type", type}}, cl::Retry::Unsafe);
    long long id = j.contains("action") ? id_of(j["action"]) : 0;
    if (!id) throw DriverError(a.prefix() + "the " + type + " action was accepted without an action id");
    return id;
  }

  // Waits until the action is no longer in progress; true when it completed.
  bool wait_action(Api& a, long long id, const std::string& type, milliseconds deadline, bool throw_if_errored) {
    std::string status;
    cl::poll_until(a.clock(), a.cancel(), deadline, timing_.poll,
                   a.prefix() + "the " + type + " action " + std::to_string(id) + " finishing",
                   [&] {
                     json j = a.get("/v2/actions/" + std::to_string(id));
                     status = j.contains("action") ? j["action"].value("status", "") : "";
                     return status == "completed" || status == "errored";
                   });
    if (status == "errored" && throw_if_errored)
      throw DriverError(a.prefix() + "the " + type + " action " + std::to_string(id) + " on droplet " +
                        std::to_string(s_.droplet_id) + " errored; see the droplet's history in the DigitalOcean " +
                        "control panel and try again");
    return status == "completed";
  }

  void run_action(Api& a, const std::string& type, bool throw_if_errored) {
    wait_action(a, post_action(a, type), type, timing_.deadline, throw_if_errored);
  }

  bool wait_status(Api& a, const std::string& want, milliseconds deadline) {
    cl::poll_until(a.clock(), a.cancel(), deadline, timing_.poll,
                   a.prefix() + "droplet " + std::to_string(s_.droplet_id) + " reaching status " + want,
                   [&] {
                     json d = a.get(droplet_path());
                     return d["droplet"].value("status", "") == want;
                   });
    return true;
  }

  Settings s_;
  DriverContext ctx_;
  DigitalOceanDriverFactory::Io io_;
  Timing timing_;
  std::shared_ptr<cl::Transport> transport_;
  bool uncertain_create_ = false;   // a create POST's answer was lost
  bool posted_ = false;             // create sent a POST that makes something
};

void check_tag(const std::string& tag) {
  static const std::regex re("^[a-zA-Z0-9_\\-:]{1,255}$");
  if (!std::regex_match(tag, re))
    throw UserError("--digitalocean-tags '" + tag + "' is not a valid tag; use letters, digits, '_', '-' and ':'");
}

}  // namespace

DigitalOceanDriverFactory::DigitalOceanDriverFactory() {
  io_.transport = [] { return std::shared_ptr<cloud::Transport>(cloud::make_curl_transport()); };
  io_.clock = &cloud::real_clock();
}

std::vector<FlagSpec> DigitalOceanDriverFactory::flags() const {
  using K = FlagSpec::Kind;
  return {
      {"digitalocean-access-token", "DigitalOcean API access token", K::String, "", "DIGITALOCEAN_ACCESS_TOKEN", true},
      {"digitalocean-region", "Region slug", K::String, "nyc3", "DIGITALOCEAN_REGION", false},
      {"digitalocean-size", "Droplet size slug", K::String, "s-1vcpu-1gb", "DIGITALOCEAN_SIZE", false},
      {"digitalocean-image", "Image slug or id", K::String, "ubuntu-24-04-x64", "DIGITALOCEAN_IMAGE", false},
      {"digitalocean-ssh-user", "SSH user", K::String, "root", "DIGITALOCEAN_SSH_USER", false},
      {"digitalocean-ssh-key-fingerprint", "Fingerprint of an SSH key already in the account, to use instead of a new one",
       K::String, "", "DIGITALOCEAN_SSH_KEY_FINGERPRINT", false},
      {"digitalocean-ssh-key-path", "Private key of --digitalocean-ssh-key-fingerprint", K::String, "",
       "DIGITALOCEAN_SSH_KEY_PATH", false},
      {"digitalocean-userdata", "File with user data (cloud-init) for the droplet", K::String, "",
       "DIGITALOCEAN_USERDATA", false},
      {"digitalocean-tags", "Extra droplet tags (comma-separated or repeated)", K::StringList, "",
       "DIGITALOCEAN_TAGS", false},
      {"digitalocean-ipv6", "Enable IPv6", K::Bool, "", "DIGITALOCEAN_IPV6", false},
      {"digitalocean-monitoring", "Install the DigitalOcean monitoring agent", K::Bool, "",
       "DIGITALOCEAN_MONITORING", false},
      {"digitalocean-backups", "Enable backups", K::Bool, "", "DIGITALOCEAN_BACKUPS", false},
      {"digitalocean-private-networking", "Enable private networking", K::Bool, "",
       "DIGITALOCEAN_PRIVATE_NETWORKING", false},
      {"digitalocean-api-url", "API endpoint (plain http only to loopback)", K::String, kDefaultApiUrl,
       "DIGITALOCEAN_API_URL", false},
  };
}

Capabilities DigitalOceanDriverFactory::capabilities() const {
  Capabilities c;
  c.can_start = c.can_stop = c.can_kill = c.can_restart = true;
  return c;
}

std::unique_ptr<Driver> DigitalOceanDriverFactory::make(const FlagValues& flags, const DriverContext& ctx) const {
  const std::string m = "machine '" + ctx.machine_name + "': ";
  Settings s;
  const std::string token = flags.get("digitalocean-access-token");
  if (token.empty())
    throw UserError(m + "the digitalocean driver needs an API token; pass --digitalocean-access-token or set " +
                    "DIGITALOCEAN_ACCESS_TOKEN");
  if (!ctx.secrets) throw DriverError(m + "no secret store to keep the DigitalOcean token in");
  s.token_sealed = ctx.secrets->seal(token);
  s.api_url = cloud::checked_endpoint(flags.get("digitalocean-api-url", kDefaultApiUrl), "digitalocean-api-url");
  s.region = flags.get("digitalocean-region", s.region);
  s.size = flags.get("digitalocean-size", s.size);
  s.image = flags.get("digitalocean-image", s.image);
  s.ssh_user = flags.get("digitalocean-ssh-user", s.ssh_user);
  s.key_fingerprint = flags.get("digitalocean-ssh-key-fingerprint");
  if (!s.key_fingerprint.empty()) {
    s.key_source = flags.get("digitalocean-ssh-key-path");
    if (s.key_source.empty())
      throw UserError(m + "--digitalocean-ssh-key-fingerprint needs the matching private key; pass " +
                      "--digitalocean-ssh-key-path PATH");
    std::error_code ec;
    s.key_source = fs::absolute(s.key_source, ec).string();
    if (!fs::is_regular_file(s.key_source, ec))
      throw UserError(m + "--digitalocean-ssh-key-path '" + s.key_source + "' is not a file");
  } else if (flags.has("digitalocean-ssh-key-path")) {
    throw UserError(m + "--digitalocean-ssh-key-path is used only with --digitalocean-ssh-key-fingerprint");
  }
  s.user_data_file = flags.get("digitalocean-userdata");
  if (!s.user_data_file.empty()) {
    std::error_code ec;
    s.user_data_file = fs::absolute(s.user_data_file, ec).string();
    if (!fs::is_regular_file(s.user_data_file, ec))
      throw UserError(m + "--digitalocean-userdata '" + s.user_data_file + "' is not a file");
    if (fs::file_size(s.user_data_file, ec) > kMaxUserData)
      throw UserError(m + "--digitalocean-userdata '" + s.user_data_file + "' is over 64 KiB, DigitalOcean's limit");
  }
  for (const auto& value : flags.get_list("digitalocean-tags")) {
    size_t start = 0;
    while (start <= value.size()) {
      size_t comma = value.find(',', start);
      std::string tag = value.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
      if (!tag.empty()) {
        check_tag(tag);
        if (std::find(s.tags.begin(), s.tags.end(), tag) == s.tags.end()) s.tags.push_back(tag);
      }
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
  }
  s.ipv6 = flags.get_bool("digitalocean-ipv6");
  s.monitoring = flags.get_bool("digitalocean-monitoring");
  s.backups = flags.get_bool("digitalocean-backups");
  s.private_networking = flags.get_bool("digitalocean-private-networking");
  s.berth_id = random_id();
  return std::make_unique<DigitalOceanDriver>(std::move(s), ctx, io_);
}

std::unique_ptr<Driver> DigitalOceanDriverFactory::load(const nlohmann::json& st, const DriverContext& ctx) const {
  Settings s;
  s.api_url = st.value("api_url", std::string(kDefaultApiUrl));
  s.token_sealed = st.value("access_token_sealed", "");
  s.region = st.value("region", s.region);
  s.size = st.value("size", s.size);
  s.image = st.value("image", s.image);
  s.ssh_user = st.value("ssh_user", s.ssh_user);
  s.key_fingerprint = st.value("ssh_key_fingerprint", "");
  s.key_source = st.value("ssh_key_source", "");
  s.user_data_file = st.value("userdata", "");
  s.tags = st.value("tags", std::vector<std::string>{});
  s.ipv6 = st.value("ipv6", false);
  s.monitoring = st.value("monitoring", false);
  s.backups = st.value("backups", false);
  s.private_networking = st.value("private_networking", false);
  s.berth_id = st.value("berth_id", "");
  s.droplet_id = st.value("droplet_id", 0LL);
  s.key_id = st.value("ssh_key_id", 0LL);
  s.ip = st.value("ip_address", "");
  s.ip6 = st.value("ipv6_address", "");
  return std::make_unique<DigitalOceanDriver>(std::move(s), ctx, io_);
}

}  // namespace berth
