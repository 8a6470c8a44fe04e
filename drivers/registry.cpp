#include "drivers/driver.h"
#include "drivers/generic/generic.h"
#include "drivers/libvirt/libvirt.h"
#include "drivers/none/none.h"

namespace berth {

DriverRegistry make_default_registry() {
  DriverRegistry r;
  r.add(std::make_unique<LibvirtDriverFactory>());
  r.add(std::make_unique<GenericDriverFactory>());
  r.add(std::make_unique<NoneDriverFactory>());
  return r;
}

}  // namespace berth
