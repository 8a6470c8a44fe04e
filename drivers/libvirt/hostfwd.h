#pragma once
// QEMU user-mode networking's host forwards, changed at run time through
// libvirt's monitor passthrough (HMP hostfwd_add / hostfwd_remove on netdev n0).
#include <libvirt/libvirt.h>

#include <string>

namespace berth::virt {

// 127.0.0.1:port here -> the guest's own address, same port. "" on success,
// else QEMU's or libvirt's reason (e.g. the port is in use here).
std::string add_hostfwd(virDomainPtr dom, int port);
// Quietly does nothing when there is no such forward.
void remove_hostfwd(virDomainPtr dom, int port);

}  // namespace berth::virt
