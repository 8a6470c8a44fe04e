#pragma once
#include "drivers/driver.h"

namespace berth {

// Local VMs through libvirt (QEMU, KVM or TCG): berth-os by default, or any ISO
// or qcow2 cloud image. User-mode networking with forwards on 127.0.0.1 by
// default, so it needs no root and no bridge.
class LibvirtDriverFactory final : public DriverFactory {
 public:
  std::string name() const override { return "libvirt"; }
  std::string description() const override { return "a local VM through libvirt (QEMU/KVM)"; }
  std::vector<FlagSpec> flags() const override;
  Capabilities capabilities() const override;
  std::unique_ptr<Driver> make(const FlagValues& flags, const DriverContext& ctx) const override;
  std::unique_ptr<Driver> load(const nlohmann::json& state, const DriverContext& ctx) const override;
};

}  // namespace berth
