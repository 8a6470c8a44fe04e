#include "drivers/cloud/amazonec2/ec2_client.h"

#include <openssl/evp.h>

#include "core/error.h"

namespace berth::cloud::ec2 {
namespace {

std::string base64(std::string_view data) {
  std::string out(4 * ((data.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(data.data()), static_cast<int>(data.size()));
  out.resize(n < 0 ? 0 : static_cast<size_t>(n));
  return out;
}

void add_tags(Params& p, const std::string& prefix, const Tags& tags) {
  int i = 1;
  for (const auto& [k, v] : tags) {
    p.emplace_back(prefix + std::to_string(i) + ".Key", k);
    p.emplace_back(prefix + std::to_string(i) + ".Value", v);
    ++i;
  }
}

void add_tag_spec(Params& p, int index, const std::string& resource_type, const Tags& tags) {
  if (tags.empty()) return;
  const std::string prefix = "TagSpecification." + std::to_string(index) + ".";
  p.emplace_back(prefix + "ResourceType", resource_type);
  add_tags(p, prefix + "Tag.", tags);
}

bool is_code(const ApiError& e, std::initializer_list<const char*> codes) {
  for (const char* c : codes)
    if (e.code() == c) return true;
  return false;
}

std::string one_line(std::string s) {
  for (char& c : s)
    if (c == '\n' || c == '\r' || c == '\t') c = ' ';
  if (s.size() > 300) s = s.substr(0, 300) + "...";
  return s;
}

Instance parse_instance(const xml::Node& item) {
  Instance i;
  i.id = item.text_at("instanceId");
  i.state = item.text_at("instanceState/name");
  i.public_ip = item.text_at("ipAddress");
  i.private_ip = item.text_at("privateIpAddress");
  for (const auto& g : item.path("groupSet").children("item")) i.security_group_ids.push_back(g.text_at("groupId"));
  for (const auto& t : item.path("tagSet").children("item")) i.tags.emplace_back(t.text_at("key"), t.text_at("value"));
  return i;
}

}  // namespace

// application/x-www-form-urlencoded as the AWS SDKs send it (space as '+'), so
// servers that re-encode the parsed form to check the signature (moto) agree.
std::string form_encode(std::string_view s) {
  std::string out;
  for (char c : s) out += c == ' ' ? std::string("+") : url_encode(std::string_view(&c, 1));
  return out;
}

std::string form_body(const std::string& action, const Params& params) {
  std::string body = "Action=" + form_encode(action) + "&Version=" + form_encode(kApiVersion);
  for (const auto& [k, v] : params) body += "&" + form_encode(k) + "=" + form_encode(v);
  return body;
}

ApiError parse_error(long status, const std::string& body, const std::string& action, const std::string& context) {
  std::string code, message, request_id;
  try {
    auto doc = xml::Document::parse(body, "EC2 error");
    xml::Node root = doc.root();
    // <Response><Errors><Error> (EC2), <ErrorResponse><Error> (Query services),
    // <ErrorResponse><Errors><Error> (moto's EC2 auth failures).
    xml::Node error = root.path("Errors/Error");
    if (!error) error = root.child("Error");
    request_id = root.text_at("RequestID");
    if (request_id.empty()) request_id = root.text_at("RequestId");
    code = error.text_at("Code");
    message = error.text_at("Message");
  } catch (const std::exception&) {
    // Not XML (a proxy's HTML page, a truncated answer): say what came back.
  }
  if (message.empty()) message = body.empty() ? "no details" : "the answer was: " + one_line(body);
  std::string what =
      context + ": EC2 " + action + " failed with HTTP " + std::to_string(status) + ": " + one_line(message);
  if (!code.empty() || !request_id.empty()) {
    what += " (";
    if (!code.empty()) what += code;
    if (!request_id.empty()) what += (code.empty() ? "" : ", ") + std::string("request id ") + request_id;
    what += ")";
  }
  return ApiError(what, status, code, request_id);
}

std::vector<Instance> parse_instances(const xml::Node& root) {
  std::vector<Instance> out;
  if (xml::Node reservations = root.child("reservationSet")) {
    for (const auto& r : reservations.children("item"))
      for (const auto& item : r.path("instancesSet").children("item")) out.push_back(parse_instance(item));
  } else {
    for (const auto& item : root.path("instancesSet").children("item")) out.push_back(parse_instance(item));
  }
  return out;
}

std::vector<SecurityGroup> parse_security_groups(const xml::Node& root) {
  std::vector<SecurityGroup> out;
  for (const auto& item : root.path("securityGroupInfo").children("item")) {
    SecurityGroup g;
    g.id = item.text_at("groupId");
    g.name = item.text_at("groupName");
    g.vpc_id = item.text_at("vpcId");
    for (const auto& t : item.path("tagSet").children("item"))
      g.tags.emplace_back(t.text_at("key"), t.text_at("value"));
    for (const auto& perm : item.path("ipPermissions").children("item")) {
      if (perm.text_at("ipProtocol") != "tcp") continue;
      bool world = false;
      for (const auto& range : perm.path("ipRanges").children("item"))
        if (range.text_at("cidrIp") == "0.0.0.0/0") world = true;
      if (!world) continue;
      try {
        int from = std::stoi(perm.text_at("fromPort"));
        int to = std::stoi(perm.text_at("toPort"));
        for (int p = from; p <= to && p - from < 65536; ++p) g.open_tcp_ports.push_back(p);
      } catch (const std::exception&) {
      }
    }
    out.push_back(std::move(g));
  }
  return out;
}

Client::Client(HttpClient& http, std::string endpoint, std::string region, sigv4::Credentials creds,
               std::string context)
    : http_(http),
      endpoint_(std::move(endpoint)),
      region_(std::move(region)),
      creds_(std::move(creds)),
      context_(std::move(context)) {
  http_.set_signer([this](HttpRequest& r) { sigv4::sign_request(r, creds_, region_, "ec2", http_.clock().now()); });
}

xml::Document Client::call(const std::string& action, const Params& params, Retry retry) {
  HttpRequest req;
  req.method = "POST";
  req.url = endpoint_ + "/";
  req.headers = {{"Content-Type", "application/x-www-form-urlencoded; charset=utf-8"}};
  req.body = form_body(action, params);
  // Throttling (RequestLimitExceeded) means EC2 did not act, so even an unsafe
  // call is sent again; the HTTP layer already retried safe ones.
  constexpr int kThrottledTries = 6;
  for (int attempt = 1;; ++attempt) {
    HttpResponse resp;
    try {
      resp = http_.send(req, retry);
    } catch (const TransportError& e) {
      throw TransportError(context_ + ": EC2 " + action + " at " + endpoint_ + ": " + e.what(), e.timed_out(),
                           e.may_have_arrived());
    }
    if (resp.status >= 200 && resp.status < 300) return xml::Document::parse(resp.body, context_ + ": EC2 " + action);
    ApiError error = parse_error(resp.status, resp.body, action, context_);
    if (retry == Retry::Unsafe && error.code() == "RequestLimitExceeded" && attempt < kThrottledTries) {
      http_.clock().sleep(http_.retry_delay(attempt, &resp), http_.cancel());
      continue;
    }
    throw error;
  }
}

std::optional<std::string> Client::image_root_device(const std::string& image_id) {
  auto doc = call("DescribeImages", {{"ImageId.1", image_id}}, Retry::Safe);
  for (const auto& item : doc.root().path("imagesSet").children("item")) {
    if (item.text_at("imageId") != image_id) continue;
    std::string dev = item.text_at("rootDeviceName");
    return dev.empty() ? std::string("/dev/sda1") : dev;
  }
  return std::nullopt;
}

std::string Client::subnet_vpc(const std::string& subnet_id) {
  auto doc = call("DescribeSubnets", {{"SubnetId.1", subnet_id}}, Retry::Safe);
  for (const auto& item : doc.root().path("subnetSet").children("item"))
    if (item.text_at("subnetId") == subnet_id) return item.text_at("vpcId");
  throw ApiError(context_ + ": EC2 has no subnet " + subnet_id + "; check --amazonec2-subnet-id", 400,
                 "InvalidSubnetID.NotFound", "");
}

std::optional<std::string> Client::default_vpc() {
  auto doc = call("DescribeVpcs", {{"Filter.1.Name", "is-default"}, {"Filter.1.Value.1", "true"}}, Retry::Safe);
  for (const auto& item : doc.root().path("vpcSet").children("item")) {
    std::string id = item.text_at("vpcId");
    if (!id.empty()) return id;
  }
  return std::nullopt;
}

std::optional<SecurityGroup> Client::find_security_group(const std::string& name, const std::string& vpc_id) {
  Params p{{"Filter.1.Name", "group-name"}, {"Filter.1.Value.1", name}};
  if (!vpc_id.empty()) {
    p.emplace_back("Filter.2.Name", "vpc-id");
    p.emplace_back("Filter.2.Value.1", vpc_id);
  }
  auto doc = call("DescribeSecurityGroups", p, Retry::Safe);
  for (auto& g : parse_security_groups(doc.root()))
    if (g.name == name && (vpc_id.empty() || g.vpc_id.empty() || g.vpc_id == vpc_id)) return g;
  return std::nullopt;
}

std::string Client::create_security_group(const std::string& name, const std::string& description,
                                          const std::string& vpc_id, const Tags& tags) {
  Params p{{"GroupName", name}, {"GroupDescription", description}};
  if (!vpc_id.empty()) p.emplace_back("VpcId", vpc_id);
  add_tag_spec(p, 1, "security-group", tags);
  auto doc = call("CreateSecurityGroup", p, Retry::Unsafe);
  std::string id = doc.root().text_at("groupId");
  if (id.empty()) throw DriverError(context_ + ": EC2 CreateSecurityGroup answered without a groupId");
  return id;
}

void Client::authorize_tcp_ingress(const std::string& group_id, const std::vector<int>& ports) {
  if (ports.empty()) return;
  Params p{{"GroupId", group_id}};
  int i = 1;
  for (int port : ports) {
    const std::string prefix = "IpPermissions." + std::to_string(i++) + ".";
    p.emplace_back(prefix + "IpProtocol", "tcp");
    p.emplace_back(prefix + "FromPort", std::to_string(port));
    p.emplace_back(prefix + "ToPort", std::to_string(port));
    p.emplace_back(prefix + "IpRanges.1.CidrIp", "0.0.0.0/0");
  }
  try {
    call("AuthorizeSecurityGroupIngress", p, Retry::Safe);
  } catch (const ApiError& e) {
    if (!is_code(e, {"InvalidPermission.Duplicate"})) throw;
  }
}

void Client::delete_security_group(const std::string& group_id) {
  try {
    call("DeleteSecurityGroup", {{"GroupId", group_id}}, Retry::Safe);
  } catch (const ApiError& e) {
    if (!is_code(e, {"InvalidGroup.NotFound", "InvalidGroupId.Malformed"})) throw;
  }
}

void Client::import_key_pair(const std::string& name, const std::string& public_key_line, const Tags& tags) {
  Params p{{"KeyName", name}, {"PublicKeyMaterial", base64(public_key_line)}};
  add_tag_spec(p, 1, "key-pair", tags);
  call("ImportKeyPair", p, Retry::Unsafe);
}

void Client::delete_key_pair(const std::string& name) {
  try {
    call("DeleteKeyPair", {{"KeyName", name}}, Retry::Safe);
  } catch (const ApiError& e) {
    if (!is_code(e, {"InvalidKeyPair.NotFound"})) throw;
  }
}

bool Client::key_pair_exists(const std::string& name) {
  try {
    auto doc = call("DescribeKeyPairs", {{"KeyName.1", name}}, Retry::Safe);
    for (const auto& item : doc.root().path("keySet").children("item"))
      if (item.text_at("keyName") == name) return true;
    return false;
  } catch (const ApiError& e) {
    if (is_code(e, {"InvalidKeyPair.NotFound"})) return false;
    throw;
  }
}

Instance Client::run_instance(const RunSpec& s) {
  Params p{{"ImageId", s.image_id},
           {"InstanceType", s.instance_type},
           {"MinCount", "1"},
           {"MaxCount", "1"},
           {"KeyName", s.key_name},
           {"ClientToken", s.client_token},
           {"SecurityGroupId.1", s.security_group_id}};
  if (!s.subnet_id.empty()) p.emplace_back("SubnetId", s.subnet_id);
  if (!s.root_device_name.empty()) {
    p.emplace_back("BlockDeviceMapping.1.DeviceName", s.root_device_name);
    p.emplace_back("BlockDeviceMapping.1.Ebs.VolumeSize", std::to_string(s.root_size_gb));
    p.emplace_back("BlockDeviceMapping.1.Ebs.VolumeType", "gp3");
    p.emplace_back("BlockDeviceMapping.1.Ebs.DeleteOnTermination", "true");
  }
  if (!s.user_data.empty()) p.emplace_back("UserData", base64(s.user_data));
  add_tag_spec(p, 1, "instance", s.tags);
  // Safe: the ClientToken makes EC2 answer a repeated call with the first call's instance.
  auto doc = call("RunInstances", p, s.client_token.empty() ? Retry::Unsafe : Retry::Safe);
  auto instances = parse_instances(doc.root());
  if (instances.empty() || instances.front().id.empty())
    throw DriverError(context_ + ": EC2 RunInstances answered without an instance");
  return instances.front();
}

std::optional<Instance> Client::describe_instance(const std::string& id) {
  try {
    auto doc = call("DescribeInstances", {{"InstanceId.1", id}}, Retry::Safe);
    for (auto& i : parse_instances(doc.root()))
      if (i.id == id) return i;
    return std::nullopt;
  } catch (const ApiError& e) {
    if (is_code(e, {"InvalidInstanceID.NotFound"})) return std::nullopt;
    throw;
  }
}

std::vector<Instance> Client::find_instances(
    const std::vector<std::pair<std::string, std::vector<std::string>>>& filters) {
  Params p;
  int i = 1;
  for (const auto& [name, values] : filters) {
    const std::string prefix = "Filter." + std::to_string(i++) + ".";
    p.emplace_back(prefix + "Name", name);
    int j = 1;
    for (const auto& v : values) p.emplace_back(prefix + "Value." + std::to_string(j++), v);
  }
  std::vector<Instance> out;
  std::string next;
  for (int page = 0; page < 100; ++page) {
    Params pp = p;
    if (!next.empty()) pp.emplace_back("NextToken", next);
    auto doc = call("DescribeInstances", pp, Retry::Safe);
    for (auto& inst : parse_instances(doc.root())) out.push_back(std::move(inst));
    next = doc.root().text_at("nextToken");
    if (next.empty()) break;
  }
  return out;
}

void Client::create_tags(const std::vector<std::string>& resource_ids, const Tags& tags) {
  Params p;
  int i = 1;
  for (const auto& id : resource_ids) p.emplace_back("ResourceId." + std::to_string(i++), id);
  add_tags(p, "Tag.", tags);
  call("CreateTags", p, Retry::Safe);
}

void Client::start_instance(const std::string& id) { call("StartInstances", {{"InstanceId.1", id}}, Retry::Safe); }

void Client::stop_instance(const std::string& id, bool force) {
  Params p{{"InstanceId.1", id}};
  if (force) p.emplace_back("Force", "true");
  call("StopInstances", p, Retry::Safe);
}

void Client::reboot_instance(const std::string& id) { call("RebootInstances", {{"InstanceId.1", id}}, Retry::Safe); }

void Client::terminate_instance(const std::string& id) {
  try {
    call("TerminateInstances", {{"InstanceId.1", id}}, Retry::Safe);
  } catch (const ApiError& e) {
    if (!is_code(e, {"InvalidInstanceID.NotFound"})) throw;
  }
}

}  // namespace berth::cloud::ec2
