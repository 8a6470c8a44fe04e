#pragma once
// Fixed host facts for the /version and /info handlers.
#include "agent/host_info.h"

namespace berth::agent::testing {

class FakeSystemInfo : public SystemInfoProvider {
 public:
  FakeSystemInfo() {
    facts_.engine_id = "0f0e0d0c-0b0a-4908-8706-050403020100";
    facts_.hostname = "berth-host";
    facts_.kernel_version = "6.1.0-18-amd64";
    facts_.machine = "x86_64";
    facts_.operating_system = "Debian GNU/Linux 12 (bookworm)";
    facts_.os_version = "12";
    facts_.ncpu = 4;
    facts_.mem_total = 8LL << 30;
    facts_.cgroup_version = "2";
    facts_.cgroups = {true, true, false, true, true, true, true, true, false};
    facts_.system_time = "2025-01-02T03:04:05.000000006+00:00";
  }
  HostFacts facts() const override { return facts_; }
  HostFacts& mutable_facts() { return facts_; }

 private:
  HostFacts facts_;
};

}  // namespace berth::agent::testing
