#pragma once
// The berth-os VM that the agent suites (it_containers, it_forward,
// it_security) share within one ctest run, so that this kind of VM boots once:
// the fixture test it_vm_up makes it (FIXTURES_SETUP berth_vm) and it_vm_down
// removes it. A suite run on its own, outside ctest, makes one and removes it
// when it ends. The state lives in BUILD/it-vm: the berth store, the test
// image, and a docker-registry on 127.0.0.1 that the guest sees as 10.0.2.2.
#include <memory>
#include <string>

#include "tests/integration/containers/harness.h"

namespace berth::it::containers {

inline const std::string kSharedVmName = "agents";

struct SharedVm {
  std::unique_ptr<Machine> machine;
  TestImage image;  // busybox:latest: loaded on the machine and pushed to the registry
  int registry_port = 0;
  std::string registry_guest() const { return "10.0.2.2:" + std::to_string(registry_port); }
  std::string registry_host() const { return "127.0.0.1:" + std::to_string(registry_port); }
};

// Makes the registry and the VM and records them. Throws with the reason.
void shared_vm_up();
// Removes the VM and stops the registry; best effort, and a no-op when there is none.
void shared_vm_down();

// What a suite holds: the fixture's VM, or one it made itself (removed with the lease).
class SharedVmLease {
 public:
  SharedVmLease();  // throws std::runtime_error with the reason
  ~SharedVmLease();
  SharedVmLease(const SharedVmLease&) = delete;
  SharedVmLease& operator=(const SharedVmLease&) = delete;
  SharedVm& vm() { return vm_; }

 private:
  SharedVm vm_;
  bool owned_ = false;
};

}  // namespace berth::it::containers
