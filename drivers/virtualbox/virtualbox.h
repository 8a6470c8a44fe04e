#pragma once
#include <chrono>
#include <filesystem>

#include "drivers/driver.h"

namespace berth {

// Timings and the lock file; the defaults are what berth uses, tests shorten them.
struct VirtualBoxTuning {
  std::chrono::milliseconds stop_timeout{std::chrono::seconds(60)};  // ACPI power button, then poweroff
  std::chrono::milliseconds poll_interval{std::chrono::seconds(1)};
  std::chrono::milliseconds ssh_timeout{std::chrono::seconds(240)};
  std::chrono::milliseconds retry_delay{std::chrono::seconds(1)};  // after "object is not ready"
  int attempts = 5;
  std::filesystem::path lock_file;  // empty: ~/.berth/vbox.lock
};

// VirtualBox VMs through VBoxManage (no SDK), booting the berth-os ISO like
// docker-machine booted boot2docker. NAT with forwards on 127.0.0.1 for SSH and the
// agent; an optional host-only adapter.
class VirtualBoxDriverFactory final : public DriverFactory {
 public:
  VirtualBoxDriverFactory() = default;
  explicit VirtualBoxDriverFactory(VirtualBoxTuning tuning) : tuning_(std::move(tuning)) {}
  std::string name() const override { return "virtualbox"; }
  std::string description() const override { return "a local VM in VirtualBox (VBoxManage)"; }
  std::vector<FlagSpec> flags() const override;
  Capabilities capabilities() const override;
  std::unique_ptr<Driver> make(const FlagValues& flags, const DriverContext& ctx) const override;
  std::unique_ptr<Driver> load(const nlohmann::json& state, const DriverContext& ctx) const override;

 private:
  VirtualBoxTuning tuning_;
};

}  // namespace berth
