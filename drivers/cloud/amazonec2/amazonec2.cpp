#include "drivers/cloud/amazonec2/amazonec2.h"

#include <openssl/rand.h>

#include <algorithm>
#include <cstdlib>
#include <map>

#include "core/error.h"
#include "core/fs.h"
#include "core/log.h"
#include "core/net.h"
#include "core/ssh.h"
#include "drivers/cloud/amazonec2/ec2_client.h"
#include "drivers/cloud/amazonec2/sigv4.h"

namespace berth {
namespace cloud::ec2 {

std::string default_ami(const std::string& region) {
  // docker-machine's table: Ubuntu 16.04 LTS 20180228.1 hvm:ebs-ssd (amd64).
  static const std::map<std::string, std::string> amis = {
      {"ap-northeast-1", "ami-bcb7f6da"}, {"ap-northeast-2", "ami-5073de3e"}, {"ap-southeast-1", "ami-41e4af3d"},
      {"ap-southeast-2", "ami-c1498fa3"}, {"ap-south-1", "ami-1083dc7f"},     {"ca-central-1", "ami-8d9e19e9"},
      {"cn-north-1", "ami-cc4499a1"},     {"cn-northwest-1", "ami-fd0e1a9f"}, {"eu-north-1", "ami-017ff17f"},
      {"eu-central-1", "ami-bc4925d3"},   {"eu-west-1", "ami-0b541372"},      {"eu-west-2", "ami-ff46a298"},
      {"eu-west-3", "ami-9465d3e9"},      {"sa-east-1", "ami-b5501bd9"},      {"me-south-1", "ami-0a09c9586fd4ccb21"},
      {"us-east-1", "ami-927185ef"},      {"us-east-2", "ami-b9daeddc"},      {"us-west-1", "ami-264c4646"},
      {"us-west-2", "ami-78a22900"},      {"us-gov-west-1", "ami-2561ea44"},
  };
  auto it = amis.find(region);
  return it == amis.end() ? "" : it->second;
}

std::vector<std::pair<std::string, std::string>> parse_tags(const std::vector<std::string>& values) {
  std::vector<std::string> items;
  for (const auto& v : values) {
    size_t start = 0;
    while (start <= v.size()) {
      size_t end = v.find(',', start);
      if (end == std::string::npos) end = v.size();
      items.push_back(v.substr(start, end - start));
      start = end + 1;
    }
  }
  std::erase_if(items, [](const std::string& s) { return s.empty(); });
  std::vector<std::pair<std::string, std::string>> tags;
  const bool key_equals_value = !items.empty() && std::all_of(items.begin(), items.end(), [](const std::string& s) {
    return s.find('=') != std::string::npos;
  });
  if (key_equals_value) {
    for (const auto& s : items) tags.emplace_back(s.substr(0, s.find('=')), s.substr(s.find('=') + 1));
  } else {
    if (items.size() % 2 != 0)
      throw UserError("--amazonec2-tags takes key,value pairs (k1,v1,k2,v2) or k1=v1,k2=v2; '" +
                      (values.empty() ? std::string() : values.front()) + "' has a key without a value");
    for (size_t i = 0; i < items.size(); i += 2) tags.emplace_back(items[i], items[i + 1]);
  }
  for (const auto& [k, v] : tags) {
    if (k.empty()) throw UserError("--amazonec2-tags has an empty tag key");
    if (k == "berth-machine" || k == "berth-created-by" || k.rfind("aws:", 0) == 0)
      throw UserError("--amazonec2-tags may not set the tag '" + k + "'; berth or AWS owns it");
  }
  return tags;
}

}  // namespace cloud::ec2

namespace {

using namespace std::chrono_literals;
namespace ec2 = cloud::ec2;
constexpr const char* kLog = "amazonec2";
constexpr const char* kKeyFile = "id_ed25519";
constexpr auto kRunningDeadline = 10min;
constexpr auto kStoppedDeadline = 10min;
constexpr auto kTerminatedDeadline = 10min;
constexpr auto kGroupDeleteDeadline = 3min;  // DependencyViolation lingers after termination
const std::vector<std::string> kLiveStates = {"pending", "running", "stopping", "stopped", "shutting-down"};

struct Ec2State {
  std::string machine_id;  // 16 hex, random, made once
  std::string region = "us-east-1";
  std::string endpoint;  // "" for the region's own
  std::string ami;
  std::string instance_type = "t3.micro";
  std::string ssh_user = "ubuntu";
  std::string security_group = "berth-machine";
  std::string subnet_id;
  int root_size = 16;
  ec2::Tags tags;
  std::string userdata;  // a file path
  // Sealed by ctx.secrets; never in clear.
  std::string access_key_sealed, secret_key_sealed, session_token_sealed;
  // What exists in EC2.
  std::string vpc_id;
  std::string security_group_id;
  bool security_group_created = false;
  std::string key_name;
  std::string instance_id;
  std::string ip;
  std::string private_ip;
};

nlohmann::json to_json(const Ec2State& s) {
  nlohmann::json tags = nlohmann::json::array();
  for (const auto& [k, v] : s.tags) tags.push_back({{"key", k}, {"value", v}});
  nlohmann::json j = {{"machine_id", s.machine_id},
                      {"region", s.region},
                      {"endpoint", s.endpoint},
                      {"ami", s.ami},
                      {"instance_type", s.instance_type},
                      {"ssh_user", s.ssh_user},
                      {"security_group", s.security_group},
                      {"subnet_id", s.subnet_id},
                      {"root_size", s.root_size},
                      {"tags", tags},
                      {"userdata", s.userdata},
                      {"access_key_sealed", s.access_key_sealed},
                      {"secret_key_sealed", s.secret_key_sealed},
                      {"vpc_id", s.vpc_id},
                      {"security_group_id", s.security_group_id},
                      {"security_group_created", s.security_group_created},
                      {"key_name", s.key_name},
                      {"instance_id", s.instance_id},
                      {"ip_address", s.ip},
                      {"private_ip_address", s.private_ip}};
  if (!s.session_token_sealed.empty()) j["session_token_sealed"] = s.session_token_sealed;
  return j;
}

Ec2State from_json(const nlohmann::json& j) {
  Ec2State s;
  s.machine_id = j.value("machine_id", "");
  s.region = j.value("region", "us-east-1");
  s.endpoint = j.value("endpoint", "");
  s.ami = j.value("ami", "");
  s.instance_type = j.value("instance_type", "t3.micro");
  s.ssh_user = j.value("ssh_user", "ubuntu");
  s.security_group = j.value("security_group", "berth-machine");
  s.subnet_id = j.value("subnet_id", "");
  s.root_size = j.value("root_size", 16);
  if (j.contains("tags") && j["tags"].is_array())
    for (const auto& t : j["tags"]) s.tags.emplace_back(t.value("key", ""), t.value("value", ""));
  s.userdata = j.value("userdata", "");
  s.access_key_sealed = j.value("access_key_sealed", "");
  s.secret_key_sealed = j.value("secret_key_sealed", "");
  s.session_token_sealed = j.value("session_token_sealed", "");
  s.vpc_id = j.value("vpc_id", "");
  s.security_group_id = j.value("security_group_id", "");
  s.security_group_created = j.value("security_group_created", false);
  s.key_name = j.value("key_name", "");
  s.instance_id = j.value("instance_id", "");
  s.ip = j.value("ip_address", "");
  s.private_ip = j.value("private_ip_address", "");
  return s;
}

std::string random_hex(size_t bytes) {
  std::string raw(bytes, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(raw.data()), static_cast<int>(bytes)) != 1)
    throw Error("OpenSSL could not make random bytes");
  return cloud::sigv4::to_hex(raw);
}

std::chrono::milliseconds poll_interval() {
  if (const char* v = std::getenv("BERTH_CLOUD_POLL_MS")) {
    try {
      int ms = std::stoi(v);
      if (ms > 0) return std::chrono::milliseconds(ms);
    } catch (const std::exception&) {
    }
  }
  return 2s;
}

// BERTH_CLOUD_REQUEST_TIMEOUT_MS bounds one HTTP request (tests shorten it).
void apply_env_timeout(cloud::RetryPolicy& policy) {
  if (const char* v = std::getenv("BERTH_CLOUD_REQUEST_TIMEOUT_MS")) {
    try {
      int ms = std::stoi(v);
      if (ms > 0) policy.request_timeout = std::chrono::milliseconds(ms);
    } catch (const std::exception&) {
    }
  }
}

bool has_code(const cloud::ApiError& e, std::initializer_list<const char*> codes) {
  for (const char* c : codes)
    if (e.code() == c) return true;
  return false;
}

// One HTTP client + EC2 client pair for an operation; not movable (the signer points into it).
struct Session {
  Session(cloud::Transport& transport, cloud::Clock& clock, const cloud::RetryPolicy& policy, CancelToken cancel,
          const std::function<double()>& random, std::string endpoint, std::string region,
          cloud::sigv4::Credentials creds, std::string context)
      : http(transport, clock, policy, cancel),
        client(http, std::move(endpoint), std::move(region), std::move(creds), std::move(context)) {
    if (random) http.set_random(random);
  }
  cloud::HttpClient http;
  ec2::Client client;
};

class AmazonEc2Driver final : public Driver {
 public:
  AmazonEc2Driver(Ec2State s, DriverContext ctx, AmazonEc2Deps deps)
      : s_(std::move(s)), ctx_(std::move(ctx)), deps_(std::move(deps)), interval_(poll_interval()) {
    if (!deps_.transport) {
      owned_transport_ = cloud::make_curl_transport();
      deps_.transport = owned_transport_.get();
    }
    if (!deps_.clock) deps_.clock = &cloud::real_clock();
    apply_env_timeout(deps_.policy);
  }

  void pre_create_check() override {
    run_pre_create_check([&] {
      auto session = open(ctx_.cancel);
      auto& c = session->client;
      if (s_.ami.empty())
        throw PreCreateCheckFailed(context() + ": berth has no default AMI for region " + s_.region +
                                   "; pass --amazonec2-ami");
      root_device_of_ami(c);
      if (!s_.subnet_id.empty()) c.subnet_vpc(s_.subnet_id);
    });
  }

  void create() override {
    try {
      if (s_.ami.empty())
        throw UserError(context() + ": berth has no default AMI for region " + s_.region + "; pass --amazonec2-ami");
      s_.key_name = key_name();
      checkpoint();  // the machine id (and so every name and tag) is on disk before anything exists
      auto session = open(ctx_.cancel);
      auto& c = session->client;

      const std::string root_device = root_device_of_ami(c);
      if (!s_.subnet_id.empty()) {
        s_.vpc_id = c.subnet_vpc(s_.subnet_id);
      } else {
        auto vpc = c.default_vpc();
        if (!vpc)
          throw UserError(context() + ": region " + s_.region +
                          " has no default VPC; pass --amazonec2-subnet-id of a subnet with public IPs");
        s_.vpc_id = *vpc;
      }
      ensure_security_group(c);

      ensure_private_dir(ctx_.machine_dir);
      std::error_code ec;
      fs::remove(key_path(), ec);
      fs::remove(key_path().string() + ".pub", ec);
      generate_ed25519_key(key_path(), "berth@" + ctx_.machine_name);
      ctx_.cancel.throw_if_cancelled();
      c.import_key_pair(s_.key_name, read_public_key(key_path()), {{"berth-machine", s_.machine_id}});

      ec2::RunSpec spec;
      spec.image_id = s_.ami;
      spec.instance_type = s_.instance_type;
      spec.key_name = s_.key_name;
      spec.security_group_id = s_.security_group_id;
      spec.subnet_id = s_.subnet_id;
      spec.root_device_name = root_device;
      spec.root_size_gb = s_.root_size;
      if (!s_.userdata.empty()) spec.user_data = read_file(s_.userdata);
      spec.client_token = "berth-" + s_.machine_id;
      spec.tags = {{"Name", ctx_.machine_name}, {"berth-machine", s_.machine_id}};
      for (const auto& t : s_.tags) spec.tags.push_back(t);
      ctx_.cancel.throw_if_cancelled();
      ec2::Instance inst = c.run_instance(spec);
      s_.instance_id = inst.id;
      checkpoint();
      log::debug(kLog, "machine {}: instance {} launched", ctx_.machine_name, s_.instance_id);
      wait_running(c);
    } catch (...) {
      log::debug(kLog, "create of {} failed; removing what it made", ctx_.machine_name);
      try {
        remove_resources(CancelToken{});
      } catch (const std::exception& e) {
        log::warn(kLog, "{}: cleanup after the failed create: {}; run `berth rm -f {}` to finish it", context(),
                  e.what(), ctx_.machine_name);
      }
      throw;
    }
  }

  void start() override {
    auto session = open(ctx_.cancel);
    require_instance();
    session->client.start_instance(s_.instance_id);
    wait_running(session->client, /*just_started=*/true);  // the public IP changes across stop/start
  }

  void stop() override { stop_instance(false); }
  void kill() override { stop_instance(true); }

  void restart() override {
    auto session = open(ctx_.cancel);
    require_instance();
    session->client.reboot_instance(s_.instance_id);
  }

  void remove() override { remove_resources(ctx_.cancel); }

  MachineState state(std::chrono::milliseconds timeout) override {
    if (s_.instance_id.empty()) return MachineState::NotFound;
    try {
      cloud::RetryPolicy policy = deps_.policy;
      policy.max_attempts = 2;
      policy.request_timeout = std::max<std::chrono::milliseconds>(timeout / 2, 1000ms);
      auto session = open(ctx_.cancel, &policy);
      auto inst = session->client.describe_instance(s_.instance_id);
      if (!inst) return MachineState::NotFound;
      const std::string& st = inst->state;
      if (st == "pending") return MachineState::Starting;
      if (st == "running") return MachineState::Running;
      if (st == "stopping") return MachineState::Stopping;
      if (st == "stopped") return MachineState::Stopped;
      if (st == "shutting-down" || st == "terminated") return MachineState::NotFound;
      return MachineState::Unknown;
    } catch (const cloud::TransportError& e) {
      log::debug(kLog, "state of {}: {}", ctx_.machine_name, e.what());
      return e.timed_out() ? MachineState::Timeout : MachineState::Error;
    } catch (const std::exception& e) {
      log::debug(kLog, "state of {}: {}", ctx_.machine_name, e.what());
      return MachineState::Error;
    }
  }

  std::optional<SshEndpoint> ssh_endpoint() const override { return SshEndpoint{s_.ip, 22, s_.ssh_user, key_path()}; }
  std::string ip() const override { return s_.ip; }
  std::string url(int agent_port) const override {
    return "tcp://" + host_for_url(s_.ip) + ":" + std::to_string(agent_port);
  }
  nlohmann::json save_state() const override { return to_json(s_); }

 private:
  std::string context() const { return "machine '" + ctx_.machine_name + "'"; }
  fs::path key_path() const { return ctx_.machine_dir / kKeyFile; }
  std::string key_name() const { return "berth-" + ctx_.machine_name + "-" + s_.machine_id.substr(0, 8); }

  void checkpoint() const {
    if (ctx_.checkpoint) ctx_.checkpoint(save_state());
  }

  std::string endpoint() const {
    return s_.endpoint.empty() ? "https://ec2." + s_.region + ".amazonaws.com" : s_.endpoint;
  }

  cloud::sigv4::Credentials credentials() const {
    if (!ctx_.secrets)
      throw DriverError(context() + ": berth cannot open the stored AWS credentials (no secret store)");
    cloud::sigv4::Credentials c;
    c.access_key = ctx_.secrets->open(s_.access_key_sealed);
    c.secret_key = ctx_.secrets->open(s_.secret_key_sealed);
    if (!s_.session_token_sealed.empty()) c.session_token = ctx_.secrets->open(s_.session_token_sealed);
    return c;
  }

  std::unique_ptr<Session> open(CancelToken cancel, const cloud::RetryPolicy* policy = nullptr) const {
    return std::make_unique<Session>(*deps_.transport, *deps_.clock, policy ? *policy : deps_.policy, cancel,
                                     deps_.random, endpoint(), s_.region, credentials(), context());
  }

  void require_instance() const {
    if (s_.instance_id.empty())
      throw DriverError(context() + " has no EC2 instance; remove it with `berth rm -f " + ctx_.machine_name + "`");
  }

  // The AMI's root device; a missing AMI is a UserError carrying EC2's message and request id.
  std::string root_device_of_ami(ec2::Client& c) const {
    const std::string what = context() + ": AMI " + s_.ami + " is not available in region " + s_.region +
                             "; pass an AMI of this region with --amazonec2-ami";
    try {
      auto dev = c.image_root_device(s_.ami);
      if (!dev) throw UserError(what + " (EC2 DescribeImages found no such image)");
      return *dev;
    } catch (const cloud::ApiError& e) {
      if (e.code().rfind("InvalidAMIID", 0) == 0) throw UserError(what + " [" + e.what() + "]");
      throw;
    }
  }

  void ensure_security_group(ec2::Client& c) {
    auto group = c.find_security_group(s_.security_group, s_.vpc_id);
    std::vector<int> open_ports;
    if (group) {
      s_.security_group_id = group->id;
      open_ports = group->open_tcp_ports;
    } else {
      try {
        s_.security_group_id = c.create_security_group(s_.security_group, "berth machines: SSH and the Docker engine",
                                                       s_.vpc_id, {{"berth-created-by", s_.machine_id}});
        s_.security_group_created = true;
      } catch (const cloud::ApiError& e) {
        // Another create made it meanwhile (or our lost answer did): use it.
        if (!has_code(e, {"InvalidGroup.Duplicate"})) throw;
        group = c.find_security_group(s_.security_group, s_.vpc_id);
        if (!group) throw;
        s_.security_group_id = group->id;
        open_ports = group->open_tcp_ports;
        // Made by our own call whose answer was lost? Its tag says so.
        for (const auto& [k, v] : group->tags)
          if (k == "berth-created-by" && v == s_.machine_id) s_.security_group_created = true;
      }
      checkpoint();
    }
    std::vector<int> missing;
    for (int port : {22, ctx_.engine_port})
      if (std::find(open_ports.begin(), open_ports.end(), port) == open_ports.end() &&
          std::find(missing.begin(), missing.end(), port) == missing.end())
        missing.push_back(port);
    c.authorize_tcp_ingress(s_.security_group_id, missing);
  }

  // Polls until running with a public IP. A new instance that ends stopped
  // failed; right after StartInstances, EC2 may still report it stopped.
  void wait_running(ec2::Client& c, bool just_started = false) {
    cloud::poll_until(*deps_.clock, ctx_.cancel, kRunningDeadline, interval_,
                      context() + ": EC2 instance " + s_.instance_id + " running with a public IP", [&] {
                        auto inst = c.describe_instance(s_.instance_id);
                        if (!inst) return false;  // NotFound right after RunInstances: eventual consistency
                        const bool stopped = inst->state == "stopped" || inst->state == "stopping";
                        if (inst->state == "terminated" || inst->state == "shutting-down" || (stopped && !just_started))
                          throw DriverError(context() + ": EC2 instance " + s_.instance_id + " is " + inst->state +
                                            " instead of starting; see its state reason in the EC2 console");
                        if (inst->state != "running" || inst->public_ip.empty()) return false;
                        const bool changed = s_.ip != inst->public_ip;
                        s_.ip = inst->public_ip;
                        s_.private_ip = inst->private_ip;
                        if (changed) checkpoint();
                        return true;
                      });
  }

  void stop_instance(bool force) {
    auto session = open(ctx_.cancel);
    require_instance();
    session->client.stop_instance(s_.instance_id, force);
    cloud::poll_until(*deps_.clock, ctx_.cancel, kStoppedDeadline, interval_,
                      context() + ": EC2 instance " + s_.instance_id + " stopping", [&] {
                        auto inst = session->client.describe_instance(s_.instance_id);
                        if (!inst) throw DriverError(context() + ": EC2 instance " + s_.instance_id + " is gone");
                        return inst->state == "stopped";
                      });
  }

  // Terminates the instance(s), deletes the key pair and (when berth made it
  // and nothing else uses it) the security group. What is gone already is fine.
  void remove_resources(CancelToken cancel) {
    auto session = open(cancel);
    auto& c = session->client;

    std::vector<std::string> ids;
    if (!s_.instance_id.empty()) ids.push_back(s_.instance_id);
    if (!s_.machine_id.empty()) {
      // A create killed before it saved the id (or whose RunInstances answer was lost).
      for (const auto& inst :
           c.find_instances({{"tag:berth-machine", {s_.machine_id}}, {"instance-state-name", kLiveStates}}))
        if (std::find(ids.begin(), ids.end(), inst.id) == ids.end()) ids.push_back(inst.id);
    }
    for (const auto& id : ids) c.terminate_instance(id);

    if (!s_.machine_id.empty()) c.delete_key_pair(s_.key_name.empty() ? key_name() : s_.key_name);

    std::string group_id = s_.security_group_id;
    bool created = s_.security_group_created;
    if (!s_.machine_id.empty() && (group_id.empty() || !created)) {
      // CreateSecurityGroup may have answered after the last checkpoint: its tag tells.
      auto doc =
          c.call("DescribeSecurityGroups",
                 {{"Filter.1.Name", "tag:berth-created-by"}, {"Filter.1.Value.1", s_.machine_id}}, cloud::Retry::Safe);
      for (const auto& g : ec2::parse_security_groups(doc.root())) {
        group_id = g.id;
        created = true;
      }
    }
    if (!created && !group_id.empty()) {
      // Another berth machine made the group we share: the last one to go takes it along.
      try {
        auto doc = c.call("DescribeSecurityGroups", {{"GroupId.1", group_id}}, cloud::Retry::Safe);
        for (const auto& g : ec2::parse_security_groups(doc.root()))
          for (const auto& [k, v] : g.tags)
            if (k == "berth-created-by") created = true;
      } catch (const cloud::ApiError& e) {
        if (!has_code(e, {"InvalidGroup.NotFound", "InvalidGroupId.Malformed"})) throw;
        group_id.clear();
      }
    }
    const bool delete_group = created && !group_id.empty();

    // Wait for termination when the group must go (EC2 refuses while an instance holds it)
    // and, in any case, so that `rm` returning means the instance is gone.
    if (!ids.empty()) {
      cloud::poll_until(*deps_.clock, cancel, kTerminatedDeadline, interval_,
                        context() + ": termination of EC2 instance " + ids.front(), [&] {
                          for (const auto& id : ids) {
                            auto inst = c.describe_instance(id);
                            if (inst && inst->state != "terminated") return false;
                          }
                          return true;
                        });
    }
    s_.instance_id.clear();
    s_.ip.clear();
    checkpoint();

    if (delete_group) {
      auto users = c.find_instances({{"instance.group-id", {group_id}}, {"instance-state-name", kLiveStates}});
      if (!users.empty()) {
        log::debug(kLog, "{}: security group {} is still used by {}; leaving it", context(), group_id,
                   users.front().id);
      } else {
        cloud::poll_until(*deps_.clock, cancel, kGroupDeleteDeadline, interval_,
                          context() + ": deletion of security group " + group_id +
                              " (EC2 kept answering DependencyViolation; delete it yourself later)",
                          [&] {
                            try {
                              c.delete_security_group(group_id);
                              return true;
                            } catch (const cloud::ApiError& e) {
                              if (has_code(e, {"DependencyViolation"})) return false;
                              throw;
                            }
                          });
      }
      s_.security_group_id.clear();
      s_.security_group_created = false;
      checkpoint();
    }

    std::error_code ec;
    fs::remove(key_path(), ec);
    fs::remove(key_path().string() + ".pub", ec);
  }

  Ec2State s_;
  DriverContext ctx_;
  AmazonEc2Deps deps_;
  std::unique_ptr<cloud::Transport> owned_transport_;
  std::chrono::milliseconds interval_;
};

std::string seal(const DriverContext& ctx, const std::string& plain) {
  if (plain.empty()) return "";
  if (!ctx.secrets)
    throw DriverError("machine '" + ctx.machine_name + "': berth cannot store the AWS credentials (no secret store)");
  return ctx.secrets->seal(plain);
}

}  // namespace

std::vector<FlagSpec> AmazonEc2DriverFactory::flags() const {
  using K = FlagSpec::Kind;
  return {
      {"amazonec2-access-key", "AWS access key ID", K::String, "", "AWS_ACCESS_KEY_ID", true},
      {"amazonec2-secret-key", "AWS secret access key", K::String, "", "AWS_SECRET_ACCESS_KEY", true},
      {"amazonec2-session-token", "AWS session token (temporary credentials)", K::String, "", "AWS_SESSION_TOKEN",
       true},
      {"amazonec2-region", "AWS region", K::String, "us-east-1", "AWS_DEFAULT_REGION", false},
      {"amazonec2-ami", "AMI ID (default: an Ubuntu AMI for the region, when berth knows one)", K::String, "",
       "AWS_AMI", false},
      {"amazonec2-instance-type", "instance type", K::String, "t3.micro", "AWS_INSTANCE_TYPE", false},
      {"amazonec2-ssh-user", "SSH user of the AMI", K::String, "ubuntu", "AWS_SSH_USER", false},
      {"amazonec2-security-group", "security group name (found or created in the VPC)", K::String, "berth-machine",
       "AWS_SECURITY_GROUP", false},
      {"amazonec2-subnet-id", "subnet ID (default: the default VPC's)", K::String, "", "AWS_SUBNET_ID", false},
      {"amazonec2-root-size", "root disk size in GB", K::Int, "16", "AWS_ROOT_SIZE", false},
      {"amazonec2-tags", "instance tags: key1,value1,key2,value2 or key1=value1,key2=value2", K::StringList, "",
       "AWS_TAGS", false},
      {"amazonec2-userdata", "file with user data for the instance", K::String, "", "AWS_USERDATA", false},
      {"amazonec2-endpoint", "EC2 endpoint URL (default https://ec2.REGION.amazonaws.com; http only to loopback)",
       K::String, "", "AWS_ENDPOINT_URL_EC2", false},
  };
}

Capabilities AmazonEc2DriverFactory::capabilities() const {
  Capabilities c;
  c.can_start = c.can_stop = c.can_kill = c.can_restart = true;
  return c;
}

std::unique_ptr<Driver> AmazonEc2DriverFactory::make(const FlagValues& flags, const DriverContext& ctx) const {
  const std::string m = "machine '" + ctx.machine_name + "'";
  Ec2State s;
  s.machine_id = random_hex(8);
  s.region = flags.get("amazonec2-region", "us-east-1");
  if (s.region.empty() || s.region.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789-") != std::string::npos)
    throw UserError("--amazonec2-region '" + s.region + "' is not a region name (like us-east-1)");
  s.ami = flags.get("amazonec2-ami", ec2::default_ami(s.region));
  if (s.ami.empty())
    throw UserError(m + ": berth has no default AMI for region " + s.region + "; pass --amazonec2-ami");
  s.instance_type = flags.get("amazonec2-instance-type", "t3.micro");
  s.ssh_user = flags.get("amazonec2-ssh-user", "ubuntu");
  s.security_group = flags.get("amazonec2-security-group", "berth-machine");
  if (s.security_group.empty()) throw UserError("--amazonec2-security-group needs a name");
  s.subnet_id = flags.get("amazonec2-subnet-id");
  s.root_size = flags.get_int("amazonec2-root-size", 16);
  if (s.root_size < 1 || s.root_size > 16384) throw UserError("--amazonec2-root-size must be between 1 and 16384 (GB)");
  s.tags = ec2::parse_tags(flags.get_list("amazonec2-tags"));
  s.userdata = flags.get("amazonec2-userdata");
  if (!s.userdata.empty()) {
    std::error_code ec;
    if (!fs::is_regular_file(s.userdata, ec))
      throw UserError("--amazonec2-userdata: '" + s.userdata + "' is not a file");
    s.userdata = fs::absolute(s.userdata, ec).string();
  }
  if (flags.has("amazonec2-endpoint"))
    s.endpoint = cloud::checked_endpoint(flags.get("amazonec2-endpoint"), "--amazonec2-endpoint");

  const std::string access = flags.get("amazonec2-access-key");
  const std::string secret = flags.get("amazonec2-secret-key");
  if (access.empty() || secret.empty())
    throw UserError(m +
                    ": the amazonec2 driver needs AWS credentials; pass --amazonec2-access-key and "
                    "--amazonec2-secret-key (or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)");
  s.access_key_sealed = seal(ctx, access);
  s.secret_key_sealed = seal(ctx, secret);
  s.session_token_sealed = seal(ctx, flags.get("amazonec2-session-token"));
  return std::make_unique<AmazonEc2Driver>(std::move(s), ctx, deps_);
}

std::unique_ptr<Driver> AmazonEc2DriverFactory::load(const nlohmann::json& state, const DriverContext& ctx) const {
  return std::make_unique<AmazonEc2Driver>(from_json(state), ctx, deps_);
}

}  // namespace berth
