#include "drivers/libvirt/boot_diagnosis.h"

#include <gtest/gtest.h>

namespace berth::virt {
namespace {

bool has(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

TEST(BootDiagnosis, AKernelPanicIsFatalAndQuoted) {
  auto d = diagnose_console(
      "[    1.2] Initramfs unpacking failed: junk in compressed archive\n"
      "[    1.9] Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)\r\n"
      "[    1.9] CPU: 0 PID: 1\n");
  EXPECT_TRUE(d.fatal);
  EXPECT_TRUE(has(d.cause, "kernel panicked: VFS: Unable to mount root fs on unknown-block(0,0);")) << d.cause;
}

TEST(BootDiagnosis, BerthOsGivingUpIsFatal) {
  auto d = diagnose_console("berth-os: cannot mount a tmpfs on /newroot; dropping to a shell\n/ # ");
  EXPECT_TRUE(d.fatal);
  EXPECT_TRUE(has(d.cause, "cannot mount a tmpfs on /newroot")) << d.cause;
}

TEST(BootDiagnosis, FullDiskMemoryCloudInitAndDhcpNameTheFix) {
  auto disk = diagnose_console("cp: write error: No space left on device\n");
  EXPECT_FALSE(disk.fatal);
  EXPECT_TRUE(has(disk.cause, "--libvirt-disk-size")) << disk.cause;
  EXPECT_TRUE(has(diagnose_console("[ 9.1] Out of memory: Killed process 412 (agent)\n").cause, "--libvirt-memory"));
  EXPECT_TRUE(has(diagnose_console("[FAILED] Failed to start cloud-init.service - Initial cloud-init job.\n").cause,
                  "cloud-init failed"));
  EXPECT_TRUE(has(diagnose_console("No DHCPOFFERS received.\n").cause, "no DHCP lease"));
}

TEST(BootDiagnosis, BootedWithoutAHostKeyOrWithOne) {
  EXPECT_TRUE(has(diagnose_console("berth-os: 0.1.0 up in 8.1 s: hostname x\n").cause, "no SSH host key"));
  EXPECT_TRUE(has(diagnose_console("berth-os: 0.1.0 up in 8.1 s\nberth-os: SSH host key: ssh-ed25519 AAAA\n").cause,
                  "sshd started"));
}

TEST(BootDiagnosis, AnOrdinaryConsoleHasNoCause) {
  auto d = diagnose_console("[    0.000000] Linux version 6.1.0\n[    0.5] Freeing unused kernel memory\n");
  EXPECT_EQ(d.cause, "");
  EXPECT_FALSE(d.fatal);
  EXPECT_EQ(diagnose_console("").cause, "");
}

}  // namespace
}  // namespace berth::virt
