#include "drivers/driver.h"
#include "drivers/cloud/amazonec2/amazonec2.h"
#include "drivers/cloud/digitalocean/digitalocean.h"
#include "drivers/generic/generic.h"
#include "drivers/libvirt/libvirt.h"
#include "drivers/none/none.h"
#include "drivers/virtualbox/virtualbox.h"

namespace berth {

DriverRegistry make_default_registry() {
  DriverRegistry r;
  r.add(std::make_unique<LibvirtDriverFactory>());
  r.add(std::make_unique<GenericDriverFactory>());
  r.add(std::make_unique<NoneDriverFactory>());
  r.add(std::make_unique<DigitalOceanDriverFactory>());
  r.add(std::make_unique<AmazonEc2DriverFactory>());
  r.add(std::make_unique<VirtualBoxDriverFactory>());
  return r;
}

}  // namespace berth
