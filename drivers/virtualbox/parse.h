#pragma once
// Parsers for VBoxManage's output, and the host-only network arithmetic.
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace berth::vbox {

struct Version {
  int major = 0, minor = 0, patch = 0;
  std::string text;  // as printed, e.g. "7.0.14r161095"
  bool at_least(int ma, int mi) const { return major > ma || (major == ma && minor >= mi); }
};

// `VBoxManage --version`: the last line that starts with "N.N" ("7.0.14r161095",
// "6.1.50_Ubuntur161033"); VBoxManage may print kernel-module warnings before it.
std::optional<Version> parse_version(const std::string& out);

// `showvminfo --machinereadable`: key="value" / key=number / "quoted key"="value"
// lines; \" and \\ inside quotes are unescaped, quoted values may span lines.
std::map<std::string, std::string> parse_machinereadable(const std::string& out);

struct HostOnlyIf {
  std::string name;  // vboxnet0, "VirtualBox Host-Only Ethernet Adapter #2"
  std::string guid;
  bool dhcp = false;
  std::string ip;            // IPAddress
  std::string netmask;       // NetworkMask
  std::string status;        // Up / Down
  std::string network_name;  // VBoxNetworkName
};
// `list hostonlyifs`: blank-line separated "Key:   value" blocks.
std::vector<HostOnlyIf> parse_hostonlyifs(const std::string& out);

struct DhcpServer {
  std::string network_name;  // NetworkName: HostInterfaceNetworking-vboxnet0
  std::string ip, netmask, lower_ip, upper_ip;
  bool enabled = false;
};
// `list dhcpservers` (the 5.x/6.0 "IP:"/"lowerIPAddress:" and the 6.1+ "Dhcpd IP:"/"LowerIPAddress:" forms).
std::vector<DhcpServer> parse_dhcpservers(const std::string& out);

// IPv4 in host byte order.
std::optional<std::uint32_t> parse_ipv4(const std::string& s);
std::string format_ipv4(std::uint32_t ip);

struct Cidr {
  std::uint32_t ip = 0;  // as given (the host side, e.g. 192.168.56.1)
  int prefix = 0;
  std::uint32_t mask() const { return prefix == 0 ? 0 : ~std::uint32_t{0} << (32 - prefix); }
  std::uint32_t network() const { return ip & mask(); }
  bool contains(const Cidr& inner) const { return inner.prefix >= prefix && (inner.ip & mask()) == network(); }
};
std::optional<Cidr> parse_cidr(const std::string& s);  // "192.168.56.1/24"

// VirtualBox 6.1.28+ on Linux/macOS allows host-only addresses in 192.168.56.0/21
// only, plus the ranges listed on "* a.b.c.d/n ..." lines of /etc/vbox/networks.conf.
bool hostonly_range_allowed(const Cidr& cidr, const std::string& networks_conf);

// The host-only network berth uses for a CIDR: the host's address and mask, and a
// DHCP server at .100 handing out .101 - .254 (docker-machine's layout, clipped to the net).
struct HostOnlyPlan {
  std::string host_ip, netmask, dhcp_ip, lower_ip, upper_ip;
};
HostOnlyPlan plan_hostonly(const Cidr& cidr);

}  // namespace berth::vbox
