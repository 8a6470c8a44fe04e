#pragma once
// The EC2 Query API (Version 2016-11-15): form-encoded POSTs signed with
// SigV4, XML answers. Only the calls berth needs, typed.
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "drivers/cloud/amazonec2/sigv4.h"
#include "drivers/cloud/amazonec2/xml.h"
#include "drivers/cloud/http.h"

namespace berth::cloud::ec2 {

inline constexpr const char* kApiVersion = "2016-11-15";

using Params = std::vector<std::pair<std::string, std::string>>;
using Tags = std::vector<std::pair<std::string, std::string>>;

struct Instance {
  std::string id;
  std::string state;      // pending, running, shutting-down, terminated, stopping, stopped
  std::string public_ip;  // "" until it has one
  std::string private_ip;
  std::vector<std::string> security_group_ids;
  Tags tags;
};

struct SecurityGroup {
  std::string id;
  std::string name;
  std::string vpc_id;
  std::vector<int> open_tcp_ports;  // single TCP ports open to 0.0.0.0/0
  Tags tags;
};

struct RunSpec {
  std::string image_id;
  std::string instance_type;
  std::string key_name;
  std::string security_group_id;
  std::string subnet_id;         // "" for the default VPC's default subnet
  std::string root_device_name;  // e.g. /dev/sda1
  int root_size_gb = 16;
  std::string user_data;     // raw; sent base64-encoded
  std::string client_token;  // makes a retried RunInstances return the same instance
  Tags tags;                 // applied to the instance at launch
};

// The error EC2 sent, from either <Response><Errors><Error> or <ErrorResponse><Error>.
// `context` starts the message (e.g. "machine 'dev'"). Never throws.
ApiError parse_error(long status, const std::string& body, const std::string& action, const std::string& context);

std::vector<Instance> parse_instances(const xml::Node& root);  // DescribeInstances / RunInstances
std::vector<SecurityGroup> parse_security_groups(const xml::Node& root);

class Client {
 public:
  // `endpoint` without a trailing '/', e.g. https://ec2.us-east-1.amazonaws.com.
  // Installs the SigV4 signer on `http` (every attempt is signed afresh).
  Client(HttpClient& http, std::string endpoint, std::string region, sigv4::Credentials creds, std::string context);
  Client(const Client&) = delete;  // the signer installed on `http` points here
  Client& operator=(const Client&) = delete;

  // One call. Throws ApiError for an error answer, TransportError when nothing came back.
  xml::Document call(const std::string& action, const Params& params, Retry retry);

  // Root device name of an image; nullopt when the region has no such image
  // (EC2 may also answer ApiError InvalidAMIID.*).
  std::optional<std::string> image_root_device(const std::string& image_id);
  std::string subnet_vpc(const std::string& subnet_id);  // throws ApiError when it does not exist
  std::optional<std::string> default_vpc();
  std::optional<SecurityGroup> find_security_group(const std::string& name, const std::string& vpc_id);
  std::string create_security_group(const std::string& name, const std::string& description, const std::string& vpc_id,
                                    const Tags& tags);
  // Opens each TCP port to 0.0.0.0/0; ports already open are fine.
  void authorize_tcp_ingress(const std::string& group_id, const std::vector<int>& ports);
  void delete_security_group(const std::string& group_id);  // gone already is fine

  void import_key_pair(const std::string& name, const std::string& public_key_line, const Tags& tags);
  void delete_key_pair(const std::string& name);  // gone already is fine
  bool key_pair_exists(const std::string& name);

  Instance run_instance(const RunSpec& spec);
  std::optional<Instance> describe_instance(const std::string& id);  // nullopt for NotFound
  // Instances matching all filters (name -> values).
  std::vector<Instance> find_instances(const std::vector<std::pair<std::string, std::vector<std::string>>>& filters);
  void create_tags(const std::vector<std::string>& resource_ids, const Tags& tags);
  void start_instance(const std::string& id);
  void stop_instance(const std::string& id, bool force);
  void reboot_instance(const std::string& id);
  void terminate_instance(const std::string& id);  // gone already is fine

  HttpClient& http() { return http_; }

 private:
  HttpClient& http_;
  std::string endpoint_;
  std::string region_;
  sigv4::Credentials creds_;
  std::string context_;
};

// Encodes a Query API body: Action, Version, then params (form-encoded, space as '+').
std::string form_body(const std::string& action, const Params& params);

}  // namespace berth::cloud::ec2
