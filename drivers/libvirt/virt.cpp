#include "drivers/libvirt/virt.h"

#include <libvirt/virterror.h>

#include <cstdlib>
#include <mutex>

#include "core/error.h"

namespace berth::virt {
namespace {

// libvirt prints every error to stderr unless a handler is set; ours go into exceptions.
void quiet_libvirt() {
  static std::once_flag once;
  std::call_once(once, [] { virSetErrorFunc(nullptr, [](void*, virErrorPtr) {}); });
}

}  // namespace

void fail(const std::string& machine, const std::string& what) {
  const char* msg = virGetLastErrorMessage();
  throw DriverError("machine '" + machine + "': cannot " + what + ": " + (msg ? msg : "unknown libvirt error"));
}

int last_error_code() {
  virErrorPtr e = virGetLastError();
  return e ? e->code : VIR_ERR_OK;
}

Connection connect(const std::string& uri, const std::string& machine) {
  quiet_libvirt();
  Connection conn(virConnectOpen(uri.c_str()));
  if (!conn) {
    const char* msg = virGetLastErrorMessage();
    throw DriverError("machine '" + machine + "': cannot connect to libvirt at " + uri + ": " +
                      (msg ? msg : "unknown error") +
                      "; is libvirtd running? start it with 'libvirtd -d' and 'virtlogd -d' "
                      "(or systemctl start libvirtd)");
  }
  return conn;
}

Domain find_domain(virConnectPtr conn, const std::string& name, const std::string& machine) {
  Domain d(virDomainLookupByName(conn, name.c_str()));
  if (!d && last_error_code() != VIR_ERR_NO_DOMAIN) fail(machine, "look up domain " + name);
  return d;
}

Pool find_pool(virConnectPtr conn, const std::string& name, const std::string& machine) {
  Pool p(virStoragePoolLookupByName(conn, name.c_str()));
  if (!p && last_error_code() != VIR_ERR_NO_STORAGE_POOL) fail(machine, "look up storage pool " + name);
  return p;
}

Volume find_volume(virStoragePoolPtr pool, const std::string& name, const std::string& machine) {
  Volume v(virStorageVolLookupByName(pool, name.c_str()));
  if (!v && last_error_code() != VIR_ERR_NO_STORAGE_VOL) fail(machine, "look up volume " + name);
  return v;
}

Network find_network(virConnectPtr conn, const std::string& name, const std::string& machine) {
  Network n(virNetworkLookupByName(conn, name.c_str()));
  if (!n && last_error_code() != VIR_ERR_NO_NETWORK) fail(machine, "look up libvirt network " + name);
  return n;
}

std::string domain_xml(virDomainPtr dom, const std::string& machine) {
  char* xml = virDomainGetXMLDesc(dom, 0);
  if (!xml) fail(machine, "read the domain XML");
  std::string out(xml);
  std::free(xml);
  return out;
}

}  // namespace berth::virt
