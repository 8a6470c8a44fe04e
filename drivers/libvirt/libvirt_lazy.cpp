// libvirt and libvirt-qemu, opened on the first call (core/lazy_library.h):
// berth links neither, so `env`, `ls` and the other drivers never load them,
// and a machine without libvirt0 gets one line saying what to install.
#include <libvirt/libvirt-qemu.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include "core/lazy_library.h"

namespace {
berth::LazyLibrary& libvirt() {
  static berth::LazyLibrary lib("libvirt.so.0", "the libvirt driver needs libvirt: apt install libvirt-daemon-system");
  return lib;
}
berth::LazyLibrary& libvirt_qemu() {
  static berth::LazyLibrary lib("libvirt-qemu.so.0", "the libvirt driver needs libvirt: apt install libvirt-daemon-system");
  return lib;
}
}  // namespace

#define LIB libvirt()
BERTH_LAZY_FUNCTION(LIB, int, virConnectClose, (virConnectPtr conn), (conn))
BERTH_LAZY_FUNCTION(LIB, virConnectPtr, virConnectOpen, (const char* name), (name))
BERTH_LAZY_FUNCTION(LIB, int, virDomainCreate, (virDomainPtr domain), (domain))
BERTH_LAZY_FUNCTION(LIB, virDomainPtr, virDomainCreateXML, (virConnectPtr conn, const char* xmlDesc, unsigned int flags), (conn, xmlDesc, flags))
BERTH_LAZY_FUNCTION(LIB, virDomainPtr, virDomainDefineXML, (virConnectPtr conn, const char* xml), (conn, xml))
BERTH_LAZY_FUNCTION(LIB, int, virDomainDestroy, (virDomainPtr domain), (domain))
BERTH_LAZY_FUNCTION(LIB, int, virDomainFree, (virDomainPtr domain), (domain))
BERTH_LAZY_FUNCTION(LIB, int, virDomainGetState, (virDomainPtr domain, int* state, int* reason, unsigned int flags), (domain, state, reason, flags))
BERTH_LAZY_FUNCTION(LIB, int, virDomainGetUUIDString, (virDomainPtr domain, char* buf), (domain, buf))
BERTH_LAZY_FUNCTION(LIB, char*, virDomainGetXMLDesc, (virDomainPtr domain, unsigned int flags), (domain, flags))
BERTH_LAZY_FUNCTION(LIB, int, virDomainIsActive, (virDomainPtr dom), (dom))
BERTH_LAZY_FUNCTION(LIB, virDomainPtr, virDomainLookupByName, (virConnectPtr conn, const char* name), (conn, name))
BERTH_LAZY_FUNCTION(LIB, int, virDomainShutdown, (virDomainPtr domain), (domain))
BERTH_LAZY_FUNCTION(LIB, int, virDomainUndefine, (virDomainPtr domain), (domain))
BERTH_LAZY_FUNCTION(LIB, int, virDomainUndefineFlags, (virDomainPtr domain, unsigned int flags), (domain, flags))
BERTH_LAZY_FUNCTION(LIB, virErrorPtr, virGetLastError, (void), ())
BERTH_LAZY_FUNCTION(LIB, const char*, virGetLastErrorMessage, (void), ())
BERTH_LAZY_FUNCTION(LIB, void, virNetworkDHCPLeaseFree, (virNetworkDHCPLeasePtr lease), (lease))
BERTH_LAZY_FUNCTION(LIB, int, virNetworkFree, (virNetworkPtr network), (network))
BERTH_LAZY_FUNCTION(LIB, int, virNetworkGetDHCPLeases, (virNetworkPtr network, const char* mac, virNetworkDHCPLeasePtr** leases, unsigned int flags), (network, mac, leases, flags))
BERTH_LAZY_FUNCTION(LIB, int, virNetworkIsActive, (virNetworkPtr net), (net))
BERTH_LAZY_FUNCTION(LIB, virNetworkPtr, virNetworkLookupByName, (virConnectPtr conn, const char* name), (conn, name))
BERTH_LAZY_FUNCTION(LIB, void, virSetErrorFunc, (void* userData, virErrorFunc handler), (userData, handler))
BERTH_LAZY_FUNCTION(LIB, int, virStoragePoolCreate, (virStoragePoolPtr pool, unsigned int flags), (pool, flags))
BERTH_LAZY_FUNCTION(LIB, virStoragePoolPtr, virStoragePoolDefineXML, (virConnectPtr conn, const char* xmlDesc, unsigned int flags), (conn, xmlDesc, flags))
BERTH_LAZY_FUNCTION(LIB, int, virStoragePoolDestroy, (virStoragePoolPtr pool), (pool))
BERTH_LAZY_FUNCTION(LIB, int, virStoragePoolFree, (virStoragePoolPtr pool), (pool))
BERTH_LAZY_FUNCTION(LIB, int, virStoragePoolIsActive, (virStoragePoolPtr pool), (pool))
BERTH_LAZY_FUNCTION(LIB, virStoragePoolPtr, virStoragePoolLookupByName, (virConnectPtr conn, const char* name), (conn, name))
BERTH_LAZY_FUNCTION(LIB, int, virStoragePoolNumOfVolumes, (virStoragePoolPtr pool), (pool))
BERTH_LAZY_FUNCTION(LIB, int, virStoragePoolRefresh, (virStoragePoolPtr pool, unsigned int flags), (pool, flags))
BERTH_LAZY_FUNCTION(LIB, int, virStoragePoolSetAutostart, (virStoragePoolPtr pool, int autostart), (pool, autostart))
BERTH_LAZY_FUNCTION(LIB, int, virStoragePoolUndefine, (virStoragePoolPtr pool), (pool))
BERTH_LAZY_FUNCTION(LIB, virStorageVolPtr, virStorageVolCreateXML, (virStoragePoolPtr pool, const char* xmldesc, unsigned int flags), (pool, xmldesc, flags))
BERTH_LAZY_FUNCTION(LIB, int, virStorageVolDelete, (virStorageVolPtr vol, unsigned int flags), (vol, flags))
BERTH_LAZY_FUNCTION(LIB, int, virStorageVolFree, (virStorageVolPtr vol), (vol))
BERTH_LAZY_FUNCTION(LIB, virStorageVolPtr, virStorageVolLookupByName, (virStoragePoolPtr pool, const char* name), (pool, name))
#undef LIB

#define LIB libvirt_qemu()
BERTH_LAZY_FUNCTION(LIB, int, virDomainQemuMonitorCommand, (virDomainPtr domain, const char* cmd, char** result, unsigned int flags), (domain, cmd, result, flags))
#undef LIB
