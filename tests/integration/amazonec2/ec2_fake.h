#pragma once
// The EC2 test double from the C++ side: tests/fakes/ec2proxy/ec2fake.py
// (moto_server with signature checking, behind a fault-injecting proxy that
// backs instances with real SSH test hosts). Started in the constructor,
// stopped with SIGTERM (which takes its test hosts down) in the destructor.
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "tests/integration/support/run.h"

namespace berth::it {

class Ec2Fake {
 public:
  // Why the fake cannot run here ("" when it can): no python3, no moto_server, no boto3.
  static std::string unavailable_reason();
  static fs::path script();   // tests/fakes/ec2proxy/ec2fake.py

  Ec2Fake();                  // throws std::runtime_error when it does not come up
  Ec2Fake(const Ec2Fake&) = delete;
  Ec2Fake& operator=(const Ec2Fake&) = delete;
  ~Ec2Fake();

  const std::string& endpoint() const { return endpoint_; }   // the proxy, what berth talks to
  const std::string& moto_url() const { return moto_url_; }   // moto itself, unproxied
  const std::string& access_key() const { return access_key_; }
  const std::string& secret_key() const { return secret_key_; }
  const std::string& region() const { return region_; }
  const std::string& ami() const { return ami_; }             // one moto's DescribeImages knows

  // GET /_fake/state: {"instances": [...not terminated], "key_pairs": [...],
  // "security_groups": [...other than default], "hosts_up": N}
  nlohmann::json state() const;
  // POST /_fake/faults {"kind": ..., "action": ..., "count": ...}
  void add_fault(const nlohmann::json& rule) const;
  nlohmann::json faults() const;          // {"rules": [...], "fired": [...]}
  void clear_faults() const;
  nlohmann::json log() const;             // [{"action","status","fault","client_token","time"}...]
  void clear_log() const;
  nlohmann::json purge() const;           // deletes everything; returns what was there

  // Entries of log() for one action.
  nlohmann::json calls(const std::string& action) const;

 private:
  nlohmann::json control(const std::string& method, const std::string& path,
                         const std::string& body = "") const;

  TempDir dir_;
  std::optional<Process> process_;
  std::string endpoint_, moto_url_, access_key_, secret_key_, region_, ami_;
};

// "3 instances, 1 key pairs, 2 security groups, 0 hosts" for messages; "" when empty.
std::string leftovers(const nlohmann::json& state);

}  // namespace berth::it
