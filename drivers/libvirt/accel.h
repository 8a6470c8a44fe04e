#pragma once
// KVM or TCG. /dev/kvm existing is not enough on some hosts (guests hang while
// the kernel loads), so `auto` boots a tiny probe guest once per host kernel
// and caches the answer.
#include <filesystem>
#include <functional>
#include <string>

namespace berth::virt {

struct AccelDecision {
  std::string accel;        // "kvm" or "tcg"
  bool kvm_broken = false;  // /dev/kvm is there but the probe guest did not boot
  bool from_cache = false;
};

// What identifies "this host with this kernel" in the cache.
std::string host_kernel_key();

// `wanted` is auto|kvm|tcg. `probe` (called only when needed) returns whether a
// KVM guest boots. The result for `auto` is cached in `cache_file` under `host_key`.
// Throws PreCreateCheckFailed when kvm is forced and does not work.
AccelDecision decide_accel(const std::string& wanted, bool kvm_device, const std::filesystem::path& cache_file,
                           const std::string& host_key, const std::function<bool()>& probe,
                           const std::string& machine);

// /dev/kvm exists and this user can open it.
bool kvm_device_usable();

}  // namespace berth::virt
