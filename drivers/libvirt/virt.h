#pragma once
// libvirt behind RAII: one unique_ptr per handle type, and one helper that turns
// a failed call into DriverError carrying libvirt's own message and the machine.
#include <libvirt/libvirt.h>

#include <memory>
#include <string>

namespace berth::virt {

struct ConnectClose {
  void operator()(virConnectPtr p) const { virConnectClose(p); }
};
struct DomainFree {
  void operator()(virDomainPtr p) const { virDomainFree(p); }
};
struct PoolFree {
  void operator()(virStoragePoolPtr p) const { virStoragePoolFree(p); }
};
struct VolumeFree {
  void operator()(virStorageVolPtr p) const { virStorageVolFree(p); }
};
struct NetworkFree {
  void operator()(virNetworkPtr p) const { virNetworkFree(p); }
};

using Connection = std::unique_ptr<virConnect, ConnectClose>;
using Domain = std::unique_ptr<virDomain, DomainFree>;
using Pool = std::unique_ptr<virStoragePool, PoolFree>;
using Volume = std::unique_ptr<virStorageVol, VolumeFree>;
using Network = std::unique_ptr<virNetwork, NetworkFree>;

// Throws DriverError: "machine 'M': cannot WHAT: <virGetLastErrorMessage()>".
[[noreturn]] void fail(const std::string& machine, const std::string& what);

// A libvirt int result: negative means failure.
inline int check(int rc, const std::string& machine, const std::string& what) {
  if (rc < 0) fail(machine, what);
  return rc;
}

// The code of the last libvirt error on this thread (VIR_ERR_OK when none).
int last_error_code();

// Opens `uri`; the error says how to start libvirtd/virtlogd when it is not running.
Connection connect(const std::string& uri, const std::string& machine);

// nullptr when there is no such domain/pool/volume/network; throws for any other failure.
Domain find_domain(virConnectPtr conn, const std::string& name, const std::string& machine);
Pool find_pool(virConnectPtr conn, const std::string& name, const std::string& machine);
Volume find_volume(virStoragePoolPtr pool, const std::string& name, const std::string& machine);
Network find_network(virConnectPtr conn, const std::string& name, const std::string& machine);

// The XML description of a domain (as libvirt stores it).
std::string domain_xml(virDomainPtr dom, const std::string& machine);

}  // namespace berth::virt
