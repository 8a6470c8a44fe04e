#pragma once
// The XML berth hands libvirt, as pure functions of plain structs (unit-tested
// without libvirt).
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "drivers/libvirt/shares.h"

namespace berth::virt {

namespace fs = std::filesystem;

enum class BootMode {
  Kernel,  // direct kernel boot (berth-os: vmlinuz + initrd + cmdline)
  Cdrom,   // a bootable ISO
  Disk,    // a qcow2 overlay on a cloud image
};

struct DomainSpec {
  std::string name;             // libvirt domain name
  std::string uuid;             // fixed per machine, so redefining updates the same domain
  std::string machine;          // berth machine name (kept in <metadata>)
  std::string type = "qemu";    // "qemu" (TCG) or "kvm"
  int memory_mb = 1024;
  int cpus = 1;
  BootMode boot = BootMode::Kernel;
  fs::path kernel, initrd;      // Kernel
  std::string cmdline;          // Kernel
  fs::path boot_iso;            // Cdrom
  fs::path boot_disk;           // Disk: qcow2 overlay
  fs::path data_disk;           // qcow2, always present
  fs::path cidata_iso;
  fs::path console_log;
  // "user": QEMU user-mode networking with forwards on 127.0.0.1; else a libvirt network name.
  std::string network = "user";
  int ssh_port = 0;             // host side, user networking only
  int agent_port = 0;           // host side, user networking only
  int guest_agent_port = 2376;
  std::string mac;              // 52:54:00:xx:xx:xx
  // "+UID:+GID" QEMU runs as, so it can enter the 0700 machine dir (the system daemon
  // would run it as libvirt-qemu); empty: the daemon's default (session daemons).
  std::string dac_label;
  // Host folders: one virtio-9p device each (accessmode mapped), mounted by tag in the guest.
  std::vector<Share> shares;
  // A second NIC (eth1) on a cluster's VDE switch: its socket dir and MAC; empty for none.
  std::string cluster_vde;
  std::string cluster_mac;
};

std::string domain_xml(const DomainSpec& spec);

// A persistent dir pool at `path`.
std::string pool_xml(const std::string& name, const fs::path& path);

// A qcow2 volume; with `backing`, a copy-on-write overlay on that qcow2 file.
std::string volume_xml(const std::string& name, std::uint64_t capacity_bytes,
                       const std::optional<fs::path>& backing = std::nullopt);

// A transient guest with no disks that boots `kernel` with its console in `console_log`;
// used to see whether KVM really runs guests here.
std::string kvm_probe_xml(const std::string& name, const fs::path& kernel, const fs::path& console_log,
                          const std::string& dac_label);

std::string xml_escape(std::string_view text);

// The -netdev argument for user networking.
std::string user_netdev(int ssh_port, int agent_port, int guest_agent_port);

}  // namespace berth::virt
