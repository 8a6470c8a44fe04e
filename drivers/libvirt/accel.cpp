#include "drivers/libvirt/accel.h"

#include <grp.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <optional>

#include "core/error.h"
#include "core/fs.h"
#include "core/machine.h"

namespace berth::virt {

std::string host_kernel_key() {
  utsname u{};
  if (::uname(&u) != 0) return "unknown";
  return std::string(u.nodename) + " " + u.release + " " + u.version;
}

bool kvm_device_usable() { return ::access("/dev/kvm", R_OK | W_OK) == 0; }

std::optional<KvmNode> read_kvm_node() {
  struct stat st {};
  if (::stat("/dev/kvm", &st) != 0 || !S_ISCHR(st.st_mode)) return std::nullopt;
  KvmNode node{st.st_mode & 07777u, static_cast<unsigned>(st.st_gid), 0};
  if (const struct group* g = ::getgrnam("kvm")) node.kvm_gid = static_cast<unsigned>(g->gr_gid);
  return node;
}

std::string slow_define_reason(const std::optional<KvmNode>& node) {
  if (!node) return "";
  const bool others_rw = (node->mode & 06u) == 06u;
  const bool group_rw = (node->mode & 060u) == 060u && node->kvm_gid != 0 && node->gid == node->kvm_gid;
  if (others_rw || group_rw) return "";
  return fmt::format(
      "libvirtd probes QEMU again on every define because /dev/kvm (mode {:04o}, group {}) is closed to QEMU's "
      "user while its probe, run as root, found KVM; run 'chgrp kvm /dev/kvm && chmod 0660 /dev/kvm' as root "
      "(udev does this on most hosts) and defines take well under a second",
      node->mode, node->gid == node->kvm_gid && node->kvm_gid != 0 ? std::string("kvm") : std::to_string(node->gid));
}

AccelDecision decide_accel(const std::string& wanted, bool kvm_device, const fs::path& cache_file,
                           const std::string& host_key, const std::function<bool()>& probe,
                           const std::string& machine) {
  if (wanted == "tcg") return {"tcg", false, false};
  if (!kvm_device) {
    if (wanted == "kvm")
      throw PreCreateCheckFailed("machine '" + machine +
                                 "': --libvirt-accel kvm needs /dev/kvm, which is missing or not usable by this "
                                 "user; use --libvirt-accel tcg");
    return {"tcg", false, false};
  }

  // A cached verdict for this host and kernel?
  nlohmann::json cache = nlohmann::json::object();
  std::error_code ec;
  if (fs::exists(cache_file, ec)) {
    try {
      cache = nlohmann::json::parse(read_file(cache_file));
    } catch (const std::exception&) {
      cache = nlohmann::json::object();  // unreadable: probe again
    }
  }
  std::optional<bool> works;
  bool from_cache = false;
  if (cache.is_object() && cache.value("host", "") == host_key && cache.contains("kvm_works") &&
      cache["kvm_works"].is_boolean()) {
    works = cache["kvm_works"].get<bool>();
    from_cache = true;
  }
  if (!works) {
    works = probe();
    ensure_private_dir(cache_file.parent_path());
    nlohmann::json j = {{"host", host_key}, {"kvm_works", *works}, {"checked_at", now_rfc3339()}};
    write_file_atomic(cache_file, j.dump(2) + "\n", 0600);
  }
  if (*works) return {"kvm", false, from_cache};
  if (wanted == "kvm")
    throw PreCreateCheckFailed("machine '" + machine +
                               "': --libvirt-accel kvm, but a KVM guest does not boot on this host (it hangs before "
                               "the kernel prints anything); use --libvirt-accel tcg or auto (cached verdict in " +
                               cache_file.string() + "; delete it to probe again)");
  return {"tcg", true, from_cache};
}

}  // namespace berth::virt
