#pragma once
// DigitalOcean droplets through API v2.
#include <functional>
#include <memory>

#include "drivers/cloud/http.h"
#include "drivers/driver.h"

namespace berth {

class DigitalOceanDriverFactory final : public DriverFactory {
 public:
  // What the driver talks through; tests pass a Transport double and a fake clock.
  struct Io {
    std::function<std::shared_ptr<cloud::Transport>()> transport;   // one per driver
    cloud::Clock* clock = nullptr;
    std::function<double()> random;                                   // jitter in [0,1); empty: random
  };

  DigitalOceanDriverFactory();   // libcurl and the real clock
  explicit DigitalOceanDriverFactory(Io io) : io_(std::move(io)) {}

  std::string name() const override { return "digitalocean"; }
  std::string description() const override { return "a DigitalOcean droplet"; }
  std::vector<FlagSpec> flags() const override;
  Capabilities capabilities() const override;
  std::unique_ptr<Driver> make(const FlagValues& flags, const DriverContext& ctx) const override;
  std::unique_ptr<Driver> load(const nlohmann::json& state, const DriverContext& ctx) const override;

 private:
  Io io_;
};

}  // namespace berth
