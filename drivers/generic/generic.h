#pragma once
#include "drivers/driver.h"

namespace berth {

// Any host that runs sshd. berth provisions it; its power is not ours to control.
class GenericDriverFactory final : public DriverFactory {
 public:
  std::string name() const override { return "generic"; }
  std::string description() const override { return "an existing host reached over SSH"; }
  std::vector<FlagSpec> flags() const override;
  Capabilities capabilities() const override;
  std::unique_ptr<Driver> make(const FlagValues& flags, const DriverContext& ctx) const override;
  std::unique_ptr<Driver> load(const nlohmann::json& state, const DriverContext& ctx) const override;
};

}  // namespace berth
