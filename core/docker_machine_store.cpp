#include "core/docker_machine_store.h"

#include <openssl/rand.h>

#include <algorithm>
#include <cstdlib>

#include "core/error.h"
#include "core/fs.h"
#include "core/store.h"

namespace berth::docker_machine {

using nlohmann::json;

namespace {

std::string str(const json& j, const char* key, const std::string& fallback = "") {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : fallback;
}

long long num(const json& j, const char* key, long long fallback = 0) {
  auto it = j.find(key);
  return it != j.end() && it->is_number_integer() ? it->get<long long>() : fallback;
}

bool flag(const json& j, const char* key, bool fallback = false) {
  auto it = j.find(key);
  return it != j.end() && it->is_boolean() ? it->get<bool>() : fallback;
}

std::vector<std::string> strings(const json& j, const char* key) {
  std::vector<std::string> out;
  auto it = j.find(key);
  if (it == j.end() || !it->is_array()) return out;
  for (const auto& v : *it)
    if (v.is_string()) out.push_back(v.get<std::string>());
  return out;
}

std::string env_or_empty(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

// One line, whatever the parser said.
std::string one_line(std::string s) {
  std::replace_if(s.begin(), s.end(), [](char c) { return c == '\n' || c == '\r'; }, ' ');
  return s;
}

std::vector<std::string> split_commas(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= s.size()) {
    size_t end = s.find(',', start);
    if (end == std::string::npos) end = s.size();
    std::string item = s.substr(start, end - start);
    item.erase(0, item.find_first_not_of(" \t"));
    item.erase(item.find_last_not_of(" \t") + 1);
    if (!item.empty()) out.push_back(item);
    start = end + 1;
  }
  return out;
}

bool is_file(const fs::path& p) {
  std::error_code ec;
  return !p.empty() && fs::is_regular_file(p, ec);
}

// Finds a file docker-machine recorded by absolute path. The named places in
// the host's own directory come first (what DOCKER_CERT_PATH pointed at), then
// the recorded path re-rooted under `root` (the store may have been moved or
// copied: --from), then the recorded path itself.
class Locator {
 public:
  explicit Locator(const Host& h) : h_(h), original_root_(str(h.driver, "StorePath")) {}

  fs::path find(const std::string& recorded, std::vector<fs::path> fallbacks) const {
    std::vector<fs::path> candidates = std::move(fallbacks);
    if (!recorded.empty()) {
      if (!original_root_.empty()) {
        auto rel = fs::path(recorded).lexically_normal().lexically_relative(fs::path(original_root_).lexically_normal());
        if (!rel.empty() && *rel.begin() != "..") candidates.push_back(h_.root / rel);
      }
      candidates.push_back(recorded);
    }
    for (const auto& c : candidates)
      if (is_file(c)) return c;
    return {};
  }

 private:
  const Host& h_;
  std::string original_root_;
};

std::string random_hex(size_t bytes) {
  std::string raw(bytes, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(raw.data()), static_cast<int>(bytes)) != 1)
    throw Error("OpenSSL could not make random bytes");
  static const char* digits = "0123456789abcdef";
  std::string hex;
  for (unsigned char c : raw) {
    hex += digits[c >> 4];
    hex += digits[c & 15];
  }
  return hex;
}

class Planner {
 public:
  Planner(const Host& h, const fs::path& machine_dir, const SecretSealer& secrets, const Environment& env)
      : h_(h), d_(h.driver), dir_(machine_dir), secrets_(secrets), env_(env), locate_(h) {}

  ImportPlan plan() {
    const auto& known = supported_drivers();
    if (std::find(known.begin(), known.end(), h_.driver_name) == known.end())
      throw UserError(where() + "uses the docker-machine driver '" + h_.driver_name +
                      "', which berth cannot import (it imports " + joined(known) + "); skipped");
    MachineRecord& r = plan_.record;
    r.name = h_.name;
    r.driver = h_.driver_name;
    r.created_at = now_rfc3339();
    r.phase = "ready";
    r.engine_kind = kEngineDockerd;
    r.imported_from.tool = "docker-machine";
    r.imported_from.path = h_.dir.string();
    r.imported_from.driver = h_.driver_name;
    r.agent_host = str(d_, "IPAddress");
    engine_options();
    tls();
    if (h_.driver_name == "generic") generic();
    else if (h_.driver_name == "none") none();
    else if (h_.driver_name == "virtualbox") virtualbox();
    else if (h_.driver_name == "digitalocean") digitalocean();
    else amazonec2();
    return std::move(plan_);
  }

 private:
  std::string where() const { return "docker-machine host '" + h_.name + "' (" + h_.config_file.string() + ") "; }

  static std::string joined(const std::vector<std::string>& v) {
    std::string s;
    for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
    return s;
  }

  void copy(const fs::path& from, const std::string& to) { plan_.files.push_back({from, to}); }

  void engine_options() {
    const json eo = h_.host_options.value("EngineOptions", json::object());
    if (!eo.is_object()) return;
    EngineOptions& e = plan_.record.engine;
    e.labels = strings(eo, "Labels");
    e.env = strings(eo, "Env");
    e.opts = strings(eo, "ArbitraryFlags");
    e.insecure_registries = strings(eo, "InsecureRegistry");
    e.registry_mirrors = strings(eo, "RegistryMirror");
  }

  // The client material docker used (DOCKER_CERT_PATH was the machine dir),
  // copied to where berth's env points DOCKER_CERT_PATH.
  void tls() {
    const json auth = h_.host_options.value("AuthOptions", json::object());
    struct Want {
      const char* field;
      const char* file;
      const char* store_file;
      std::string* target;
    };
    TlsConfig& t = plan_.record.tls;
    t.key_type = "rsa";   // what docker-machine makes
    const Want wants[] = {{"CaCertPath", "ca.pem", "ca.pem", &t.ca_cert},
                          {"ClientCertPath", "cert.pem", "cert.pem", &t.client_cert},
                          {"ClientKeyPath", "key.pem", "key.pem", &t.client_key}};
    for (const auto& w : wants) {
      const std::string recorded = auth.is_object() ? str(auth, w.field) : "";
      fs::path found = locate_.find(recorded, {h_.dir / w.file, h_.root / "certs" / w.store_file});
      if (found.empty())
        throw UserError(where() + "has no " + w.file + " (looked in " + h_.dir.string() + ", " +
                        (h_.root / "certs").string() + (recorded.empty() ? "" : " and " + recorded) +
                        "); without its TLS client material berth cannot reach its dockerd");
      copy(found, w.file);
      *w.target = (dir_ / w.file).string();
    }
  }

  // The private key docker-machine logs in with, copied to `to`.
  fs::path ssh_key(const std::string& to, const std::string& user_key_field = "") {
    const std::string recorded = str(d_, "SSHKeyPath");
    std::vector<fs::path> fallbacks;
    if (!recorded.empty()) fallbacks.push_back(h_.dir / fs::path(recorded).filename());
    if (!user_key_field.empty()) {
      const std::string user_key = str(d_, user_key_field.c_str());
      if (!user_key.empty()) fallbacks.push_back(h_.dir / fs::path(user_key).filename());
    }
    fallbacks.push_back(h_.dir / "id_rsa");
    fs::path found = locate_.find(recorded, fallbacks);
    if (found.empty())
      throw UserError(where() + "has no SSH private key file (docker-machine may have used your ssh-agent); " +
                      "berth needs one: put it at " + (h_.dir / "id_rsa").string() + " and import again");
    copy(found, to);
    return dir_ / to;
  }

  std::string ip() const {
    const std::string ip = str(d_, "IPAddress");
    if (ip.empty()) throw UserError(where() + "has no IPAddress; start it with docker-machine first, then import");
    return ip;
  }

  int ssh_port(int fallback) const {
    const int port = static_cast<int>(num(d_, "SSHPort", fallback));
    return port > 0 ? port : fallback;
  }

  void generic() {
    const std::string user_key = str(d_, "SSHKey");
    ssh_key("id_generic", "SSHKey");   // the file berth's generic driver logs in with
    const int engine_port = static_cast<int>(num(d_, "EnginePort", 2376));
    plan_.record.engine.port = engine_port > 0 ? engine_port : 2376;
    plan_.record.driver_state = {{"ip_address", ip()},
                                 {"ssh_port", ssh_port(22)},
                                 {"ssh_user", str(d_, "SSHUser", "root")},
                                 {"ssh_key_source", user_key}};
  }

  void none() {
    const std::string url = str(d_, "URL");
    if (url.empty()) throw UserError(where() + "has no URL in its Driver section");
    plan_.record.driver_state = {{"url", url}};
  }

  void virtualbox() {
    ImportOrigin& o = plan_.record.imported_from;
    // boot2docker: user "docker", NAT forward 127.0.0.1:SSHPort -> 22, dockerd on the host-only IP.
    o.ssh_user = str(d_, "SSHUser", "docker");
    o.ssh_key = ssh_key("id_rsa").string();
    const std::string addr = str(d_, "IPAddress");
    if (!addr.empty()) o.docker_url = "tcp://" + addr + ":2376";
    const std::string vm = str(d_, "MachineName", h_.name);
    plan_.record.driver_state = {{"vm", vm},
                                 {"cpus", num(d_, "CPU", 1)},
                                 {"memory_mb", num(d_, "Memory", 1024)},
                                 {"disk_mb", num(d_, "DiskSize", 20000)},
                                 {"image", ""},
                                 {"image_url", ""},
                                 {"image_sha256", ""},
                                 // docker-machine set up the host-only NIC; berth leaves it as it is.
                                 {"hostonly", false},
                                 {"hostonly_cidr", str(d_, "HostOnlyCIDR", "192.168.99.1/24")},
                                 {"hostonly_nictype", str(d_, "HostOnlyNicType", "82540EM")},
                                 {"hostonly_adapter", ""},
                                 {"nat_nictype", str(d_, "NatNicType", "82540EM")},
                                 {"share", false},
                                 {"share_path", ""},
                                 {"share_name", ""},
                                 {"vtx_check", !flag(d_, "NoVTXCheck")},
                                 {"ui_type", str(d_, "UIType", "headless")},
                                 {"ssh_port", static_cast<int>(num(d_, "SSHPort", 0))},
                                 {"agent_port", 0},
                                 {"guest_agent_port", 2376},
                                 // createvm --basefolder machines/NAME: the VM's settings live there.
                                 {"vm_base_dir", h_.dir.string()}};
  }

  std::string seal(const std::string& secret) const { return secrets_.seal(secret); }

  void digitalocean() {
    std::string token = str(d_, "AccessToken");
    if (token.empty()) token = env_.digitalocean_token;
    if (token.empty())
      throw UserError(where() + "has no AccessToken; set DIGITALOCEAN_ACCESS_TOKEN and import again");
    const std::string fingerprint = str(d_, "SSHKeyFingerprint");
    // docker-machine made (and deletes) its own DigitalOcean key unless a fingerprint was given.
    const bool owns_key = fingerprint.empty();
    ssh_key(owns_key ? "id_ed25519" : "id_digitalocean", "SSHKey");
    const int port = ssh_port(22);
    if (port != 22) plan_.record.imported_from.ssh_port = port;
    plan_.record.driver_state = {{"api_url", "https://api.digitalocean.com"},
                                 {"access_token_sealed", seal(token)},
                                 {"region", str(d_, "Region", "nyc3")},
                                 {"size", str(d_, "Size", "s-1vcpu-1gb")},
                                 {"image", str(d_, "Image", "")},
                                 {"ssh_user", str(d_, "SSHUser", "root")},
                                 {"ssh_key_fingerprint", fingerprint},
                                 {"ssh_key_source", str(d_, "SSHKey")},
                                 {"userdata", str(d_, "UserDataFile")},
                                 {"tags", split_commas(str(d_, "Tags"))},
                                 {"ipv6", flag(d_, "IPv6")},
                                 {"monitoring", flag(d_, "Monitoring")},
                                 {"backups", flag(d_, "Backups")},
                                 {"private_networking", flag(d_, "PrivateNetworking")},
                                 {"berth_id", ""},   // no berth tags on a docker-machine droplet
                                 {"droplet_id", num(d_, "DropletID")},
                                 {"ssh_key_id", owns_key ? num(d_, "SSHKeyID") : 0},
                                 {"ip_address", ip()},
                                 {"ipv6_address", ""}};
    if (num(d_, "DropletID") == 0) throw UserError(where() + "has no DropletID; it was never created");
  }

  void amazonec2() {
    std::string access = str(d_, "AccessKey"), secret = str(d_, "SecretKey"), session = str(d_, "SessionToken");
    if (access.empty() && secret.empty()) {   // docker-machine read them from the environment or ~/.aws
      access = env_.aws_access_key;
      secret = env_.aws_secret_key;
      session = env_.aws_session_token;
    }
    if (access.empty() || secret.empty())
      throw UserError(where() + "has no AccessKey/SecretKey; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY and "
                      "import again");
    const std::string instance = str(d_, "InstanceId");
    if (instance.empty()) throw UserError(where() + "has no InstanceId; it was never created");
    ssh_key("id_ed25519", "SSHPrivateKeyPath");
    const int port = ssh_port(22);
    if (port != 22) plan_.record.imported_from.ssh_port = port;

    std::string endpoint = str(d_, "Endpoint");
    if (!endpoint.empty() && endpoint.find("://") == std::string::npos)
      endpoint = (flag(d_, "DisableSSL") ? "http://" : "https://") + endpoint;
    auto first = [&](const char* list, const char* single) {
      auto v = strings(d_, list);
      return v.empty() ? str(d_, single) : v.front();
    };
    json tags = json::array();
    auto items = split_commas(str(d_, "Tags"));   // docker-machine: "k1,v1,k2,v2"
    for (size_t i = 0; i + 1 < items.size(); i += 2) tags.push_back({{"key", items[i]}, {"value", items[i + 1]}});
    const bool existing_key = flag(d_, "ExistingKey");
    json s = {
        // berth's rm deletes the key pair only for a machine id; docker-machine deleted
        // the pair it made (not an --amazonec2-keypair-name one). Nothing carries this id.
        {"machine_id", existing_key ? "" : random_hex(8)},
        {"region", str(d_, "Region", "us-east-1")},
        {"endpoint", endpoint},
        {"ami", str(d_, "AMI")},
        {"instance_type", str(d_, "InstanceType", "t2.micro")},
        {"ssh_user", str(d_, "SSHUser", "ubuntu")},
        {"security_group", first("SecurityGroupNames", "SecurityGroupName")},
        {"subnet_id", str(d_, "SubnetId")},
        {"root_size", num(d_, "RootSize", 16)},
        {"tags", tags},
        {"userdata", str(d_, "UserDataFile")},
        {"access_key_sealed", seal(access)},
        {"secret_key_sealed", seal(secret)},
        {"vpc_id", str(d_, "VpcId")},
        {"security_group_id", first("SecurityGroupIds", "SecurityGroupId")},
        {"security_group_created", false},   // docker-machine never deleted its group: neither does berth
        {"key_name", str(d_, "KeyName")},
        {"instance_id", instance},
        {"ip_address", str(d_, "IPAddress")},
        {"private_ip_address", str(d_, "PrivateIPAddress")}};
    if (!session.empty()) s["session_token_sealed"] = seal(session);
    plan_.record.driver_state = std::move(s);
  }

  const Host& h_;
  const json& d_;
  fs::path dir_;
  const SecretSealer& secrets_;
  const Environment& env_;
  Locator locate_;
  ImportPlan plan_;
};

}  // namespace

fs::path default_root() {
  if (const char* p = std::getenv("MACHINE_STORAGE_PATH"); p && *p) return p;
  return home_dir() / ".docker" / "machine";
}

const std::vector<std::string>& supported_drivers() {
  static const std::vector<std::string> drivers = {"generic", "none", "virtualbox", "digitalocean", "amazonec2"};
  return drivers;
}

std::vector<std::string> list_hosts(const fs::path& root) {
  std::error_code ec;
  const fs::path machines = root / "machines";
  if (!fs::is_directory(machines, ec))
    throw UserError("no docker-machine store at " + root.string() + " (no machines directory); pass --from DIR or " +
                    "set MACHINE_STORAGE_PATH");
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(machines, ec))
    if (entry.is_directory(ec) && fs::exists(entry.path() / "config.json", ec))
      names.push_back(entry.path().filename().string());
  if (ec) throw Error("cannot list " + machines.string() + ": " + ec.message());
  std::sort(names.begin(), names.end());
  return names;
}

Host read_host(const fs::path& root, const std::string& name) {
  Host h;
  h.name = name;
  h.root = root;
  h.dir = root / "machines" / name;
  h.config_file = h.dir / "config.json";
  std::error_code ec;
  if (!fs::exists(h.config_file, ec))
    throw NotFound("docker-machine host '" + name + "' not found: no " + h.config_file.string() +
                   " (see 'docker-machine ls', or pass --from DIR)");
  json j;
  try {
    j = json::parse(read_file(h.config_file));
  } catch (const json::exception& e) {
    throw Error(h.config_file.string() + " is not valid JSON (" + one_line(e.what()) +
                "); fix or remove docker-machine host '" + name + "'");
  }
  if (!j.is_object()) throw Error(h.config_file.string() + " is not a JSON object; not a docker-machine host config");
  const long long version = num(j, "ConfigVersion", -1);
  if (version != kConfigVersion)
    throw Error(h.config_file.string() + " has ConfigVersion " + std::to_string(version) +
                "; berth imports version 3 (docker-machine 0.6 and newer), so run 'docker-machine ls' with a " +
                "current docker-machine to upgrade it first");
  h.driver_name = str(j, "DriverName");
  if (h.driver_name.empty()) throw Error(h.config_file.string() + " has no DriverName; not a docker-machine host config");
  h.driver = j.value("Driver", json::object());
  h.host_options = j.value("HostOptions", json::object());
  if (!h.driver.is_object() || !h.host_options.is_object())
    throw Error(h.config_file.string() + ": \"Driver\" and \"HostOptions\" must be JSON objects");
  return h;
}

Environment Environment::from_process() {
  Environment e;
  e.digitalocean_token = env_or_empty("DIGITALOCEAN_ACCESS_TOKEN");
  e.aws_access_key = env_or_empty("AWS_ACCESS_KEY_ID");
  e.aws_secret_key = env_or_empty("AWS_SECRET_ACCESS_KEY");
  e.aws_session_token = env_or_empty("AWS_SESSION_TOKEN");
  return e;
}

ImportPlan plan_import(const Host& host, const fs::path& berth_machine_dir, const SecretSealer& secrets,
                       const Environment& env) {
  if (auto why = machine_name_problem(host.name); !why.empty())
    throw UserError("docker-machine host '" + host.name + "' has a name berth can't keep (" + why + "); skipped");
  return Planner(host, berth_machine_dir, secrets, env).plan();
}

void write_import(const Store& store, const ImportPlan& plan) {
  const std::string& name = plan.record.name;
  if (store.exists(name))
    throw UserError("machine '" + name + "' already exists in berth's store; left as it is");
  auto lock = store.create_machine_dir(name);
  const fs::path dir = store.machine_dir(name);
  try {
    for (const auto& f : plan.files) copy_file_private(f.from, dir / f.to, 0600);
    store.save(plan.record);
  } catch (...) {
    std::error_code ec;
    fs::remove_all(dir, ec);
    throw;
  }
}

}  // namespace berth::docker_machine
