#include <gtest/gtest.h>
#include <libxml/parser.h>
#include <libxml/relaxng.h>
#include <libxml/xpath.h>
#include <libxml/xpathInternals.h>

#include <cstdarg>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "drivers/libvirt/domain_xml.h"

namespace berth::virt {
namespace {

struct DocFree {
  void operator()(xmlDoc* d) const { xmlFreeDoc(d); }
};
struct XPathCtxFree {
  void operator()(xmlXPathContext* c) const { xmlXPathFreeContext(c); }
};
struct XPathObjFree {
  void operator()(xmlXPathObject* o) const { xmlXPathFreeObject(o); }
};

// A parsed document queried with XPath (the qemu: prefix is registered).
class Xml {
 public:
  explicit Xml(const std::string& text)
      : doc_(xmlReadMemory(text.data(), static_cast<int>(text.size()), "domain.xml", nullptr, XML_PARSE_NONET)) {
    if (!doc_) throw std::runtime_error("not well-formed XML:\n" + text);
    ctx_.reset(xmlXPathNewContext(doc_.get()));
    xmlXPathRegisterNs(ctx_.get(), BAD_CAST "qemu", BAD_CAST "http://libvirt.org/schemas/domain/qemu/1.0");
  }
  std::vector<std::string> all(const std::string& xpath) const {
    std::unique_ptr<xmlXPathObject, XPathObjFree> o(xmlXPathEvalExpression(BAD_CAST xpath.c_str(), ctx_.get()));
    std::vector<std::string> out;
    if (!o || !o->nodesetval) return out;
    for (int i = 0; i < o->nodesetval->nodeNr; ++i) {
      xmlChar* s = xmlNodeGetContent(o->nodesetval->nodeTab[i]);
      out.emplace_back(s ? reinterpret_cast<const char*>(s) : "");
      xmlFree(s);
    }
    return out;
  }
  std::string one(const std::string& xpath) const {
    auto v = all(xpath);
    if (v.size() != 1) return "<" + std::to_string(v.size()) + " matches for " + xpath + ">";
    return v[0];
  }
  size_t count(const std::string& xpath) const { return all(xpath).size(); }
  xmlDoc* doc() const { return doc_.get(); }

 private:
  std::unique_ptr<xmlDoc, DocFree> doc_;
  std::unique_ptr<xmlXPathContext, XPathCtxFree> ctx_;
};

std::string g_schema_errors;
extern "C" void collect_error(void*, const char* fmt, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  g_schema_errors += buf;
}
extern "C" void ignore_warning(void*, const char*, ...) {}

// Fails the test unless `xml` is valid against libvirt's own RelaxNG schema
// `rng` (skipped quietly when the schemas are not installed).
void expect_valid(const std::string& rng, const Xml& xml) {
  const std::string path = "/usr/share/libvirt/schemas/" + rng;
  if (!std::filesystem::exists(path)) return;
  std::unique_ptr<xmlRelaxNGParserCtxt, decltype(&xmlRelaxNGFreeParserCtxt)> pctx(
      xmlRelaxNGNewParserCtxt(path.c_str()), xmlRelaxNGFreeParserCtxt);
  std::unique_ptr<xmlRelaxNG, decltype(&xmlRelaxNGFree)> schema(xmlRelaxNGParse(pctx.get()), xmlRelaxNGFree);
  ASSERT_TRUE(schema) << "cannot parse " << path;
  std::unique_ptr<xmlRelaxNGValidCtxt, decltype(&xmlRelaxNGFreeValidCtxt)> vctx(
      xmlRelaxNGNewValidCtxt(schema.get()), xmlRelaxNGFreeValidCtxt);
  g_schema_errors.clear();
  xmlRelaxNGSetValidErrors(vctx.get(), collect_error, ignore_warning, nullptr);
  EXPECT_EQ(xmlRelaxNGValidateDoc(vctx.get(), xml.doc()), 0) << rng << ": " << g_schema_errors;
}

DomainSpec berth_os_spec() {
  DomainSpec s;
  s.name = "berth-dev-0123abcd";
  s.machine = "dev";
  s.type = "qemu";
  s.memory_mb = 1536;
  s.cpus = 2;
  s.boot = BootMode::Kernel;
  s.kernel = "/opt/berth-os/vmlinuz";
  s.initrd = "/opt/berth-os/initrd";
  s.cmdline = "console=ttyS0 quiet";
  s.data_disk = "/store/pool/berth-dev-0123abcd-data.qcow2";
  s.cidata_iso = "/store/machines/dev/cidata.iso";
  s.console_log = "/store/machines/dev/console.log";
  s.network = "user";
  s.ssh_port = 40022;
  s.agent_port = 40376;
  s.mac = "52:54:00:aa:bb:cc";
  s.dac_label = "+0:+0";
  return s;
}

TEST(DomainXml, BerthOsKernelBootWithUserNetworking) {
  const DomainSpec s = berth_os_spec();
  Xml x(domain_xml(s));
  EXPECT_EQ(x.one("/domain/@type"), "qemu");
  EXPECT_EQ(x.one("/domain/name"), "berth-dev-0123abcd");
  EXPECT_EQ(x.one("/domain/memory"), "1536");
  EXPECT_EQ(x.one("/domain/memory/@unit"), "MiB");
  EXPECT_EQ(x.one("/domain/vcpu"), "2");
  EXPECT_EQ(x.one("/domain/os/type/@machine"), "q35");
  EXPECT_EQ(x.one("/domain/os/kernel"), "/opt/berth-os/vmlinuz");
  EXPECT_EQ(x.one("/domain/os/initrd"), "/opt/berth-os/initrd");
  EXPECT_EQ(x.one("/domain/os/cmdline"), "console=ttyS0 quiet");
  EXPECT_EQ(x.count("/domain/features/acpi"), 1u);
  EXPECT_EQ(x.one("/domain/on_poweroff"), "destroy");
  // The data disk is the first virtio disk; cidata is a read-only SATA CD-ROM.
  EXPECT_EQ(x.one("/domain/devices/disk[@device='disk']/target/@dev"), "vda");
  EXPECT_EQ(x.one("/domain/devices/disk[@device='disk']/target/@bus"), "virtio");
  EXPECT_EQ(x.one("/domain/devices/disk[@device='disk']/driver/@type"), "qcow2");
  EXPECT_EQ(x.one("/domain/devices/disk[@device='disk']/source/@file"), s.data_disk.string());
  EXPECT_EQ(x.one("/domain/devices/disk[@device='cdrom']/source/@file"), s.cidata_iso.string());
  EXPECT_EQ(x.one("/domain/devices/disk[@device='cdrom']/target/@bus"), "sata");
  EXPECT_EQ(x.count("/domain/devices/disk[@device='cdrom']/readonly"), 1u);
  EXPECT_EQ(x.one("/domain/devices/serial/@type"), "file");
  EXPECT_EQ(x.one("/domain/devices/serial/source/@path"), s.console_log.string());
  EXPECT_EQ(x.one("/domain/devices/rng/@model"), "virtio");
  EXPECT_EQ(x.count("/domain/devices/interface"), 0u);
  // User networking goes to QEMU directly, with forwards on 127.0.0.1 only.
  EXPECT_EQ(x.all("/domain/qemu:commandline/qemu:arg/@value"),
            (std::vector<std::string>{"-netdev",
                                      "user,id=n0,hostfwd=tcp:127.0.0.1:40022-:22,hostfwd=tcp:127.0.0.1:40376-:2376",
                                      "-device",
                                      "virtio-net-pci,netdev=n0,bus=pcie.0,addr=0x10,mac=52:54:00:aa:bb:cc"}));
  EXPECT_EQ(x.one("/domain/seclabel/@model"), "dac");
  EXPECT_EQ(x.one("/domain/seclabel/label"), "+0:+0");
  EXPECT_EQ(x.one("/domain/metadata/*[local-name()='machine']/@name"), "dev");
  expect_valid("domain.rng", x);
}

TEST(DomainXml, AClusterMemberGetsASecondNicOnItsVdeSwitch) {
  DomainSpec s = berth_os_spec();
  s.cluster_vde = "/store/clusters/lab/vde";
  s.cluster_mac = "52:54:00:be:c8:0b";
  Xml x(domain_xml(s));
  EXPECT_EQ(x.all("/domain/qemu:commandline/qemu:arg/@value"),
            (std::vector<std::string>{"-netdev",
                                      "user,id=n0,hostfwd=tcp:127.0.0.1:40022-:22,hostfwd=tcp:127.0.0.1:40376-:2376",
                                      "-device", "virtio-net-pci,netdev=n0,bus=pcie.0,addr=0x10,mac=52:54:00:aa:bb:cc",
                                      "-netdev", "vde,id=n1,sock=/store/clusters/lab/vde", "-device",
                                      "virtio-net-pci,netdev=n1,bus=pcie.0,addr=0x11,mac=52:54:00:be:c8:0b"}));
  expect_valid("domain.rng", x);
  // On a libvirt network the VDE NIC still goes to QEMU directly.
  s.network = "berthnet";
  Xml named(domain_xml(s));
  EXPECT_EQ(named.count("/domain/devices/interface"), 1u);
  EXPECT_EQ(named.all("/domain/qemu:commandline/qemu:arg/@value").size(), 4u);
}

TEST(DomainXml, EachShareIsAMappedVirtio9pFilesystemWithItsTag) {
  DomainSpec s = berth_os_spec();
  EXPECT_EQ(Xml(domain_xml(s)).count("/domain/devices/filesystem"), 0u);
  s.shares = {{"berth0", "/home/me", "/home/me"}, {"berth1", "/srv/a b&c", "/mnt/host"}};
  Xml x(domain_xml(s));
  ASSERT_EQ(x.count("/domain/devices/filesystem"), 2u);
  EXPECT_EQ(x.all("/domain/devices/filesystem/@type"), (std::vector<std::string>{"mount", "mount"}));
  // mapped: QEMU works as the user it runs as, so guest root can write and the user reads back.
  EXPECT_EQ(x.all("/domain/devices/filesystem/@accessmode"), (std::vector<std::string>{"mapped", "mapped"}));
  EXPECT_EQ(x.all("/domain/devices/filesystem/source/@dir"), (std::vector<std::string>{"/home/me", "/srv/a b&c"}));
  EXPECT_EQ(x.all("/domain/devices/filesystem/target/@dir"), (std::vector<std::string>{"berth0", "berth1"}));
  EXPECT_EQ(x.count("/domain/devices/filesystem/readonly"), 0u);
  // The guest path is not libvirt's business: berth-os learns it from cidata.
  EXPECT_EQ(domain_xml(s).find("/mnt/host"), std::string::npos);
  expect_valid("domain.rng", x);
}

TEST(DomainXml, SessionUriHasNoSeclabelAndKvmPassesTheCpu) {
  DomainSpec s = berth_os_spec();
  s.dac_label.clear();
  s.type = "kvm";
  Xml x(domain_xml(s));
  EXPECT_EQ(x.count("/domain/seclabel"), 0u);
  EXPECT_EQ(x.one("/domain/@type"), "kvm");
  EXPECT_EQ(x.one("/domain/cpu/@mode"), "host-passthrough");
  expect_valid("domain.rng", x);
}

TEST(DomainXml, IsoBootsFromItsCdromAndCidataIsTheSecond) {
  DomainSpec s = berth_os_spec();
  s.boot = BootMode::Cdrom;
  s.boot_iso = "/images/berth-os.iso";
  Xml x(domain_xml(s));
  EXPECT_EQ(x.count("/domain/os/kernel"), 0u);
  EXPECT_EQ(x.one("/domain/devices/disk[boot/@order='1']/source/@file"), "/images/berth-os.iso");
  EXPECT_EQ(x.one("/domain/devices/disk[boot/@order='1']/@device"), "cdrom");
  EXPECT_EQ(x.one("/domain/devices/disk[source/@file='/store/machines/dev/cidata.iso']/target/@dev"), "sdb");
  EXPECT_EQ(x.one("/domain/devices/disk[@device='disk']/target/@dev"), "vda");
  expect_valid("domain.rng", x);
}

TEST(DomainXml, CloudImageBootsItsOverlayAndTheDataDiskComesSecond) {
  DomainSpec s = berth_os_spec();
  s.boot = BootMode::Disk;
  s.boot_disk = "/store/pool/berth-dev-0123abcd-boot.qcow2";
  Xml x(domain_xml(s));
  EXPECT_EQ(x.one("/domain/devices/disk[target/@dev='vda']/source/@file"), s.boot_disk.string());
  EXPECT_EQ(x.one("/domain/devices/disk[target/@dev='vda']/boot/@order"), "1");
  EXPECT_EQ(x.one("/domain/devices/disk[target/@dev='vdb']/source/@file"), s.data_disk.string());
  expect_valid("domain.rng", x);
}

TEST(DomainXml, NamedNetworkIsAnOrdinaryInterface) {
  DomainSpec s = berth_os_spec();
  s.network = "lab";
  Xml x(domain_xml(s));
  EXPECT_EQ(x.one("/domain/devices/interface/@type"), "network");
  EXPECT_EQ(x.one("/domain/devices/interface/source/@network"), "lab");
  EXPECT_EQ(x.one("/domain/devices/interface/mac/@address"), "52:54:00:aa:bb:cc");
  EXPECT_EQ(x.one("/domain/devices/interface/model/@type"), "virtio");
  EXPECT_EQ(x.count("/domain/qemu:commandline"), 0u);
  expect_valid("domain.rng", x);
}

TEST(DomainXml, EscapesPaths) {
  DomainSpec s = berth_os_spec();
  s.console_log = "/home/a&b/<x>/'q'/console.log";
  Xml x(domain_xml(s));
  EXPECT_EQ(x.one("/domain/devices/serial/source/@path"), s.console_log.string());
}

TEST(DomainXml, PoolAndVolumes) {
  Xml pool(pool_xml("berth-1234abcd", "/root/.berth/pool"));
  EXPECT_EQ(pool.one("/pool/@type"), "dir");
  EXPECT_EQ(pool.one("/pool/name"), "berth-1234abcd");
  EXPECT_EQ(pool.one("/pool/target/path"), "/root/.berth/pool");
  EXPECT_EQ(pool.one("/pool/target/permissions/mode"), "0700");
  expect_valid("storagepool.rng", pool);

  Xml data(volume_xml("m-data.qcow2", 5000ull << 20));
  EXPECT_EQ(data.one("/volume/capacity"), std::to_string(5000ull << 20));
  EXPECT_EQ(data.one("/volume/target/format/@type"), "qcow2");
  EXPECT_EQ(data.count("/volume/backingStore"), 0u);
  expect_valid("storagevol.rng", data);

  Xml overlay(volume_xml("m-boot.qcow2", 2ull << 30, std::filesystem::path("/images/debian.qcow2")));
  EXPECT_EQ(overlay.one("/volume/backingStore/path"), "/images/debian.qcow2");
  EXPECT_EQ(overlay.one("/volume/backingStore/format/@type"), "qcow2");
  expect_valid("storagevol.rng", overlay);
}

TEST(DomainXml, KvmProbeIsATinyDisklessKvmGuest) {
  Xml x(kvm_probe_xml("berth-kvm-probe-1", "/opt/berth-os/vmlinuz", "/tmp/p/console.log", "+1000:+1000"));
  EXPECT_EQ(x.one("/domain/@type"), "kvm");
  EXPECT_EQ(x.one("/domain/os/kernel"), "/opt/berth-os/vmlinuz");
  EXPECT_EQ(x.count("/domain/devices/disk"), 0u);
  EXPECT_EQ(x.count("/domain/devices/interface"), 0u);
  EXPECT_EQ(x.one("/domain/devices/serial/source/@path"), "/tmp/p/console.log");
  EXPECT_NE(x.one("/domain/os/cmdline").find("console=ttyS0"), std::string::npos);
  EXPECT_EQ(x.one("/domain/on_reboot"), "destroy");
  EXPECT_EQ(x.one("/domain/seclabel/label"), "+1000:+1000");
  expect_valid("domain.rng", x);
}

}  // namespace
}  // namespace berth::virt
