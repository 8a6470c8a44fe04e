#pragma once
// KVM or TCG. /dev/kvm existing is not enough on some hosts (guests hang while
// the kernel loads), so `auto` boots a tiny probe guest once per host kernel
// and caches the answer.
#include <filesystem>
#include <functional>
#include <optional>
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

// /dev/kvm as libvirtd judges it for QEMU's user (libvirt-qemu, group kvm).
struct KvmNode {
  unsigned mode = 0;       // permission bits
  unsigned gid = 0;        // the node's group
  unsigned kvm_gid = 0;    // the kvm group's id (0 when there is none)
};
std::optional<KvmNode> read_kvm_node();

// Why libvirtd may take tens of seconds on every domain define, with the fix;
// "" when no known cause applies. libvirtd's QEMU probe (as root) finds KVM,
// but a /dev/kvm closed to QEMU's user makes it judge KVM unusable, so it
// throws the cached capabilities away and probes QEMU again on every define.
std::string slow_define_reason(const std::optional<KvmNode>& node);

}  // namespace berth::virt
