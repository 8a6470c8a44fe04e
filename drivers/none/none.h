#pragma once
#include "drivers/driver.h"

namespace berth {

// Records the URL of an existing Docker daemon; berth does not touch the host.
class NoneDriverFactory final : public DriverFactory {
 public:
  std::string name() const override { return "none"; }
  std::string description() const override { return "an existing Docker endpoint, given by --url"; }
  std::vector<FlagSpec> flags() const override;
  Capabilities capabilities() const override;
  std::unique_ptr<Driver> make(const FlagValues& flags, const DriverContext& ctx) const override;
  std::unique_ptr<Driver> load(const nlohmann::json& state, const DriverContext& ctx) const override;
};

}  // namespace berth
