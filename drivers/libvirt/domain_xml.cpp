#include "drivers/libvirt/domain_xml.h"

#include <fmt/format.h>

namespace berth::virt {
namespace {

std::string disk(const fs::path& file, const std::string& format, const std::string& dev,
                 const std::string& bus, bool cdrom, int boot_order) {
  std::string out = fmt::format("    <disk type='file' device='{}'>\n", cdrom ? "cdrom" : "disk");
  out += fmt::format("      <driver name='qemu' type='{}'{}/>\n", format, cdrom ? "" : " discard='unmap'");
  out += fmt::format("      <source file='{}'/>\n", xml_escape(file.string()));
  out += fmt::format("      <target dev='{}' bus='{}'/>\n", dev, bus);
  if (cdrom) out += "      <readonly/>\n";
  if (boot_order > 0) out += fmt::format("      <boot order='{}'/>\n", boot_order);
  out += "    </disk>\n";
  return out;
}

// A host folder over virtio-9p. 'mapped': QEMU does every file operation as the user it
// runs as (root here; the laptop user under qemu:///session, and under qemu:///system
// through the seclabel), so what the guest writes, even as root, is the user's own file
// on the host (mode 0600, directories 0700); the guest's owner and mode live in
// user.virtfs.* xattrs. 'passthrough' would chown files to the guest's uid, which
// fails (EPERM) for a QEMU that is not root.
std::string filesystem(const Share& s) {
  std::string out = "    <filesystem type='mount' accessmode='mapped'>\n";
  out += fmt::format("      <source dir='{}'/>\n", xml_escape(s.host));
  out += fmt::format("      <target dir='{}'/>\n", xml_escape(s.tag));
  out += "    </filesystem>\n";
  return out;
}

std::string seclabel(const std::string& dac_label) {
  if (dac_label.empty()) return "";
  return fmt::format("  <seclabel type='static' model='dac' relabel='no'>\n    <label>{}</label>\n  </seclabel>\n",
                     xml_escape(dac_label));
}

}  // namespace

std::string xml_escape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '\'': out += "&apos;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string user_netdev(int ssh_port, int agent_port, int guest_agent_port) {
  return fmt::format("user,id=n0,hostfwd=tcp:127.0.0.1:{}-:22,hostfwd=tcp:127.0.0.1:{}-:{}", ssh_port, agent_port,
                     guest_agent_port);
}

std::string domain_xml(const DomainSpec& s) {
  const bool user_net = s.network == "user";
  std::string x;
  x += fmt::format("<domain type='{}'{}>\n", s.type,
                   user_net || !s.cluster_vde.empty() ? " xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'"
                                                      : "");
  x += fmt::format("  <name>{}</name>\n", xml_escape(s.name));
  if (!s.uuid.empty()) x += fmt::format("  <uuid>{}</uuid>\n", s.uuid);
  x += fmt::format("  <title>berth machine {}</title>\n", xml_escape(s.machine));
  x += "  <metadata>\n";
  x += fmt::format("    <berth:machine xmlns:berth='https://berth.dev/xmlns/libvirt/1' name='{}'/>\n",
                   xml_escape(s.machine));
  x += "  </metadata>\n";
  x += fmt::format("  <memory unit='MiB'>{}</memory>\n", s.memory_mb);
  x += fmt::format("  <vcpu>{}</vcpu>\n", s.cpus);
  x += "  <os>\n    <type arch='x86_64' machine='q35'>hvm</type>\n";
  if (s.boot == BootMode::Kernel) {
    x += fmt::format("    <kernel>{}</kernel>\n", xml_escape(s.kernel.string()));
    x += fmt::format("    <initrd>{}</initrd>\n", xml_escape(s.initrd.string()));
    x += fmt::format("    <cmdline>{}</cmdline>\n", xml_escape(s.cmdline));
  }
  x += "  </os>\n";
  x += "  <features>\n    <acpi/>\n    <apic/>\n  </features>\n";
  if (s.type == "kvm") x += "  <cpu mode='host-passthrough'/>\n";
  x += "  <clock offset='utc'/>\n";
  x += "  <on_poweroff>destroy</on_poweroff>\n  <on_reboot>restart</on_reboot>\n  <on_crash>destroy</on_crash>\n";
  x += "  <devices>\n";
  // Disks: the boot disk first (vda) for cloud images, then the data disk; berth-os
  // takes the first virtio disk that is not cidata as its data disk.
  if (s.boot == BootMode::Disk) {
    x += disk(s.boot_disk, "qcow2", "vda", "virtio", false, 1);
    x += disk(s.data_disk, "qcow2", "vdb", "virtio", false, 0);
  } else {
    x += disk(s.data_disk, "qcow2", "vda", "virtio", false, 0);
  }
  if (s.boot == BootMode::Cdrom) x += disk(s.boot_iso, "raw", "sda", "sata", true, 1);
  x += disk(s.cidata_iso, "raw", s.boot == BootMode::Cdrom ? "sdb" : "sda", "sata", true, 0);
  for (const auto& share : s.shares) x += filesystem(share);
  if (!user_net) {
    x += "    <interface type='network'>\n";
    x += fmt::format("      <source network='{}'/>\n", xml_escape(s.network));
    if (!s.mac.empty()) x += fmt::format("      <mac address='{}'/>\n", s.mac);
    x += "      <model type='virtio'/>\n    </interface>\n";
  }
  x += "    <serial type='file'>\n";
  x += fmt::format("      <source path='{}' append='off'/>\n", xml_escape(s.console_log.string()));
  x += "      <target port='0'/>\n    </serial>\n";
  x += "    <rng model='virtio'>\n      <backend model='random'>/dev/urandom</backend>\n    </rng>\n";
  x += "    <controller type='usb' model='none'/>\n";
  x += "    <memballoon model='none'/>\n";
  x += "    <video>\n      <model type='none'/>\n    </video>\n";
  x += "  </devices>\n";
  x += seclabel(s.dac_label);
  if (user_net || !s.cluster_vde.empty()) {
    // libvirt 9.0 has no user-mode networking with port forwards (passt is rejected)
    // and no VDE, so QEMU gets those netdevs directly. q35 needs the explicit PCI address.
    x += "  <qemu:commandline>\n";
    if (user_net) {
      x += "    <qemu:arg value='-netdev'/>\n";
      x += fmt::format("    <qemu:arg value='{}'/>\n", user_netdev(s.ssh_port, s.agent_port, s.guest_agent_port));
      x += "    <qemu:arg value='-device'/>\n";
      x += fmt::format("    <qemu:arg value='virtio-net-pci,netdev=n0,bus=pcie.0,addr=0x10{}'/>\n",
                       s.mac.empty() ? "" : ",mac=" + s.mac);
    }
    if (!s.cluster_vde.empty()) {
      x += "    <qemu:arg value='-netdev'/>\n";
      x += fmt::format("    <qemu:arg value='vde,id=n1,sock={}'/>\n", xml_escape(s.cluster_vde));
      x += "    <qemu:arg value='-device'/>\n";
      x += fmt::format("    <qemu:arg value='virtio-net-pci,netdev=n1,bus=pcie.0,addr=0x11{}'/>\n",
                       s.cluster_mac.empty() ? "" : ",mac=" + s.cluster_mac);
    }
    x += "  </qemu:commandline>\n";
  }
  x += "</domain>\n";
  return x;
}

std::string pool_xml(const std::string& name, const fs::path& path) {
  return fmt::format(
      "<pool type='dir'>\n  <name>{}</name>\n  <target>\n    <path>{}</path>\n"
      "    <permissions>\n      <mode>0700</mode>\n    </permissions>\n  </target>\n</pool>\n",
      xml_escape(name), xml_escape(path.string()));
}

std::string volume_xml(const std::string& name, std::uint64_t capacity_bytes, const std::optional<fs::path>& backing) {
  std::string x = fmt::format("<volume>\n  <name>{}</name>\n  <capacity unit='bytes'>{}</capacity>\n", xml_escape(name),
                              capacity_bytes);
  x += "  <allocation unit='bytes'>0</allocation>\n";
  x += "  <target>\n    <format type='qcow2'/>\n    <permissions>\n      <mode>0600</mode>\n    </permissions>\n";
  x += "  </target>\n";
  if (backing)
    x += fmt::format("  <backingStore>\n    <path>{}</path>\n    <format type='qcow2'/>\n  </backingStore>\n",
                     xml_escape(backing->string()));
  x += "</volume>\n";
  return x;
}

std::string kvm_probe_xml(const std::string& name, const fs::path& kernel, const fs::path& console_log,
                          const std::string& dac_label) {
  std::string x = "<domain type='kvm'>\n";
  x += fmt::format("  <name>{}</name>\n", xml_escape(name));
  x += "  <memory unit='MiB'>128</memory>\n  <vcpu>1</vcpu>\n";
  x += "  <os>\n    <type arch='x86_64' machine='q35'>hvm</type>\n";
  x += fmt::format("    <kernel>{}</kernel>\n", xml_escape(kernel.string()));
  x += "    <cmdline>console=ttyS0 panic=-1</cmdline>\n  </os>\n";
  x += "  <features>\n    <acpi/>\n    <apic/>\n  </features>\n";
  x += "  <cpu mode='host-passthrough'/>\n";
  x += "  <on_poweroff>destroy</on_poweroff>\n  <on_reboot>destroy</on_reboot>\n  <on_crash>destroy</on_crash>\n";
  x += "  <devices>\n    <serial type='file'>\n";
  x += fmt::format("      <source path='{}'/>\n", xml_escape(console_log.string()));
  x += "      <target port='0'/>\n    </serial>\n";
  x += "    <controller type='usb' model='none'/>\n";
  x += "    <memballoon model='none'/>\n    <video>\n      <model type='none'/>\n    </video>\n  </devices>\n";
  x += seclabel(dac_label);
  x += "</domain>\n";
  return x;
}

}  // namespace berth::virt
