#include "drivers/virtualbox/parse.h"

#include <gtest/gtest.h>

#include "fake_vboxmanage.h"

namespace berth::vbox {
namespace {

std::string sample(const std::string& name) {
  auto text = vboxtest::read_text(std::filesystem::path(BERTH_VBOX_SAMPLES) / name);
  EXPECT_FALSE(text.empty()) << name;
  return text;
}

TEST(VBoxVersion, ParsesReleaseAndDistributionBuilds) {
  auto v = parse_version("7.0.14r161095\n");
  ASSERT_TRUE(v);
  EXPECT_EQ(v->major, 7);
  EXPECT_EQ(v->minor, 0);
  EXPECT_EQ(v->patch, 14);
  EXPECT_EQ(v->text, "7.0.14r161095");
  auto u = parse_version("6.1.50_Ubuntur161033\n");
  ASSERT_TRUE(u);
  EXPECT_EQ(u->major, 6);
  EXPECT_EQ(u->minor, 1);
  EXPECT_EQ(u->patch, 50);
  EXPECT_TRUE(u->at_least(6, 1));
  EXPECT_FALSE(parse_version("5.2.44r139111")->at_least(6, 1));
  EXPECT_TRUE(parse_version("10.0.0r1")->at_least(6, 1));
}

TEST(VBoxVersion, SkipsKernelModuleWarningsBeforeTheVersion) {
  // What VBoxManage prints on Linux when vboxdrv is not loaded.
  const std::string out =
      "WARNING: The vboxdrv kernel module is not loaded. Either there is no module\n"
      "         available for the current kernel (6.1.0-18-amd64) or it failed to\n"
      "         load. Please recompile the kernel module and install it by\n"
      "\n"
      "           sudo /sbin/vboxconfig\n"
      "\n"
      "         You will not be able to start VMs until this problem is fixed.\n"
      "7.0.14r161095\n";
  auto v = parse_version(out);
  ASSERT_TRUE(v);
  EXPECT_EQ(v->text, "7.0.14r161095");
  EXPECT_FALSE(parse_version("VBoxManage: error: something broke\n"));
  EXPECT_FALSE(parse_version(""));
}

TEST(VBoxMachineReadable, RunningVmFromToolbox219) {
  auto kv = parse_machinereadable(sample("showvminfo-running-toolbox-219.txt"));
  EXPECT_EQ(kv["VMState"], "running");
  EXPECT_EQ(kv["VMStateChangeTime"], "2015-10-06T19:12:25.202000000");
  EXPECT_EQ(kv["memory"], "6144");
  EXPECT_EQ(kv["cpus"], "8");
  EXPECT_EQ(kv["teleporteraddress"], "");
  EXPECT_EQ(kv["storagecontrollername0"], "SATA");
  EXPECT_EQ(kv["SATA-0-0"], "/Users/satheessh/.docker/machine/machines/default/boot2docker.iso");
  EXPECT_EQ(kv["SATA-ImageUUID-1-0"], "dd2f3fdd-8016-416f-a646-55a9cbd4c1bd");
}

TEST(VBoxMachineReadable, PoweredOffVmFromMinikube12765) {
  auto kv = parse_machinereadable(sample("showvminfo-poweroff-minikube-12765.txt"));
  EXPECT_EQ(kv["VMState"], "poweroff");
  EXPECT_EQ(kv["name"], "minikube");
  EXPECT_EQ(kv["CfgFile"], "/home/tpmccallum/.minikube/machines/minikube/minikube/minikube.vbox");
  EXPECT_EQ(kv["ostype"], "Linux 2.6 / 3.x / 4.x (64-bit)");
  EXPECT_EQ(kv["cpu-profile"], "host");
}

TEST(VBoxMachineReadable, ForwardingRulesAndHostOnlyNicFromKitematic4037) {
  auto kv = parse_machinereadable(sample("showvminfo-nat-forwarding-kitematic-4037.txt"));
  EXPECT_EQ(kv["Forwarding(0)"], "ssh,tcp,127.0.0.1,49772,,22");
  EXPECT_EQ(kv["hostonlyadapter2"], "VirtualBox Host-Only Ethernet Adapter #5");
  EXPECT_EQ(kv["nic2"], "hostonly");
  EXPECT_EQ(kv["nictype1"], "82540EM");
  EXPECT_EQ(kv["SATA-29-0"], "none");
  EXPECT_EQ(kv.count("VMState"), 0u);
}

TEST(VBoxMachineReadable, UnescapesWindowsPathsFromToolbox630) {
  auto kv = parse_machinereadable(sample("showvminfo-windows-toolbox-630.txt"));
  EXPECT_EQ(kv["CfgFile"], "C:\\Users\\Administrator\\.docker\\machine\\machines\\default\\default\\default.vbox");
  EXPECT_EQ(kv["hardwareuuid"], "05294aac-fce7-4a18-abbf-fbdf17055721");
  EXPECT_EQ(kv["x2apic"], "off");
}

TEST(VBoxMachineReadable, QuotedValuesMaySpanLinesAndHoldQuotes) {
  auto kv =
      parse_machinereadable("description=\"line one\nline \\\"two\\\"\"\nVMState=\"saved\"\nnot a pair\ncpus=2\n");
  EXPECT_EQ(kv["description"], "line one\nline \"two\"");
  EXPECT_EQ(kv["VMState"], "saved");
  EXPECT_EQ(kv["cpus"], "2");
  EXPECT_EQ(kv.size(), 3u);
}

TEST(VBoxHostOnlyIfs, TwoAdaptersWithTheSameNameFromDockerMachine2624) {
  auto ifs = parse_hostonlyifs(sample("hostonlyifs-windows-docker-machine-2624.txt"));
  ASSERT_EQ(ifs.size(), 2u);
  EXPECT_EQ(ifs[0].name, "VirtualBox NDIS 6.0 Miniport Driver");
  EXPECT_EQ(ifs[0].ip, "192.168.99.1");
  EXPECT_EQ(ifs[1].name, "VirtualBox NDIS 6.0 Miniport Driver");
  EXPECT_EQ(ifs[1].guid, "f6050f89-457e-40a5-9c8c-7436fa4f299c");
  EXPECT_EQ(ifs[1].ip, "192.168.56.1");
  EXPECT_EQ(ifs[1].netmask, "255.255.255.0");
  EXPECT_FALSE(ifs[1].dhcp);
  EXPECT_EQ(ifs[1].status, "Up");
  EXPECT_EQ(ifs[1].network_name, "HostInterfaceNetworking-VirtualBox NDIS 6.0 Miniport Driver");
}

TEST(VBoxHostOnlyIfs, NamesWithHashFromToolbox692) {
  auto ifs = parse_hostonlyifs(sample("hostonlyifs-windows-toolbox-692.txt"));
  ASSERT_EQ(ifs.size(), 2u);
  EXPECT_EQ(ifs[1].name, "VirtualBox Host-Only Ethernet Adapter #2");
  EXPECT_EQ(ifs[1].ip, "192.168.99.1");
  EXPECT_EQ(ifs[1].network_name, "HostInterfaceNetworking-VirtualBox Host-Only Ethernet Adapter #2");
  EXPECT_TRUE(parse_hostonlyifs("").empty());
}

TEST(VBoxDhcpServers, OldFormFromKitematic1539AndTheNewForm) {
  auto all = parse_dhcpservers(sample("dhcpservers-windows-kitematic-1539.txt"));
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[0].network_name, "HostInterfaceNetworking-VirtualBox Host-Only Ethernet Adapter");
  EXPECT_EQ(all[0].ip, "192.168.56.100");
  EXPECT_EQ(all[0].lower_ip, "192.168.56.101");
  EXPECT_EQ(all[0].upper_ip, "192.168.56.254");
  EXPECT_TRUE(all[0].enabled);
  EXPECT_FALSE(all[1].enabled);
  EXPECT_EQ(all[2].ip, "192.168.99.6");
  // VirtualBox 6.1+: "Dhcpd IP:" and "LowerIPAddress:", with indented option blocks.
  auto now = parse_dhcpservers(
      "NetworkName:    HostInterfaceNetworking-vboxnet0\nDhcpd IP:       192.168.56.100\n"
      "LowerIPAddress: 192.168.56.101\nUpperIPAddress: 192.168.56.254\nNetworkMask:    255.255.255.0\n"
      "Enabled:        Yes\nGlobal Configuration:\n    minLeaseTime:     default\n    1/legacy: 192.168.56.1\n\n");
  ASSERT_EQ(now.size(), 1u);
  EXPECT_EQ(now[0].ip, "192.168.56.100");
  EXPECT_EQ(now[0].lower_ip, "192.168.56.101");
  EXPECT_EQ(now[0].netmask, "255.255.255.0");
  EXPECT_TRUE(now[0].enabled);
}

TEST(VBoxCidr, ParsesAndRefusesJunk) {
  auto c = parse_cidr("192.168.56.1/24");
  ASSERT_TRUE(c);
  EXPECT_EQ(format_ipv4(c->ip), "192.168.56.1");
  EXPECT_EQ(format_ipv4(c->mask()), "255.255.255.0");
  EXPECT_EQ(format_ipv4(c->network()), "192.168.56.0");
  for (const char* bad : {"192.168.56.1", "192.168.56.1/33", "192.168.256.1/24", "a.b.c.d/24", "192.168.56.1/",
                          "192.168.56.1/2x", "1.2.3/24"})
    EXPECT_FALSE(parse_cidr(bad)) << bad;
}

TEST(VBoxCidr, HostOnlyRangeMustSitInside192_168_56_0_21UnlessNetworksConfAllowsIt) {
  EXPECT_TRUE(hostonly_range_allowed(*parse_cidr("192.168.56.1/24"), ""));
  EXPECT_TRUE(hostonly_range_allowed(*parse_cidr("192.168.63.1/24"), ""));
  EXPECT_FALSE(hostonly_range_allowed(*parse_cidr("192.168.64.1/24"), ""));
  EXPECT_FALSE(hostonly_range_allowed(*parse_cidr("192.168.99.1/24"), ""));  // docker-machine's old default
  EXPECT_FALSE(hostonly_range_allowed(*parse_cidr("192.168.56.1/20"), ""));  // wider than the /21
  const std::string conf = "# allowed ranges\n* 10.0.0.0/8 192.168.0.0/16\n* 2001::/64\n";
  EXPECT_TRUE(hostonly_range_allowed(*parse_cidr("192.168.99.1/24"), conf));
  EXPECT_TRUE(hostonly_range_allowed(*parse_cidr("10.5.0.1/16"), conf));
  EXPECT_FALSE(hostonly_range_allowed(*parse_cidr("172.16.0.1/24"), conf));
  EXPECT_FALSE(hostonly_range_allowed(*parse_cidr("172.16.0.1/24"), "# * 172.16.0.0/12\n"));
}

TEST(VBoxCidr, DhcpPlanFollowsDockerMachine) {
  auto p = plan_hostonly(*parse_cidr("192.168.56.1/24"));
  EXPECT_EQ(p.host_ip, "192.168.56.1");
  EXPECT_EQ(p.netmask, "255.255.255.0");
  EXPECT_EQ(p.dhcp_ip, "192.168.56.100");
  EXPECT_EQ(p.lower_ip, "192.168.56.101");
  EXPECT_EQ(p.upper_ip, "192.168.56.254");
  auto w = plan_hostonly(*parse_cidr("192.168.56.1/21"));
  EXPECT_EQ(w.netmask, "255.255.248.0");
  EXPECT_EQ(w.upper_ip, "192.168.63.254");
}

}  // namespace
}  // namespace berth::vbox
