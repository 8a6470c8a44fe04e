#pragma once
// Amazon EC2 through its Query API: an instance with berth's own key pair and
// a security group that lets SSH and the engine port in.
#include <functional>

#include "drivers/cloud/http.h"
#include "drivers/driver.h"

namespace berth {

// What tests inject; the defaults talk to AWS for real.
struct AmazonEc2Deps {
  cloud::Transport* transport = nullptr;  // not owned; nullptr: libcurl
  cloud::Clock* clock = nullptr;          // nullptr: the real clock
  std::function<double()> random;         // jitter in [0,1); empty: the HTTP layer's own
  cloud::RetryPolicy policy;
};

class AmazonEc2DriverFactory final : public DriverFactory {
 public:
  AmazonEc2DriverFactory() = default;
  explicit AmazonEc2DriverFactory(AmazonEc2Deps deps) : deps_(std::move(deps)) {}

  std::string name() const override { return "amazonec2"; }
  std::string description() const override { return "an Amazon EC2 instance"; }
  std::vector<FlagSpec> flags() const override;
  Capabilities capabilities() const override;
  std::unique_ptr<Driver> make(const FlagValues& flags, const DriverContext& ctx) const override;
  std::unique_ptr<Driver> load(const nlohmann::json& state, const DriverContext& ctx) const override;

 private:
  AmazonEc2Deps deps_;
};

namespace cloud::ec2 {
// The AMI docker-machine used for `region` (Ubuntu 16.04, old; may be gone), or "".
std::string default_ami(const std::string& region);
// --amazonec2-tags: "k1,v1,k2,v2" (docker-machine) or "k1=v1,k2=v2", over one or more values.
std::vector<std::pair<std::string, std::string>> parse_tags(const std::vector<std::string>& values);
}  // namespace cloud::ec2

}  // namespace berth
