#include "drivers/libvirt/hostfwd.h"

#include <libvirt/libvirt-qemu.h>
#include <libvirt/virterror.h>

#include <cstdlib>
#include <fmt/format.h>

namespace berth::virt {
namespace {

// Runs one HMP command; "" when QEMU printed nothing (success), else the text.
std::string hmp(virDomainPtr dom, const std::string& command) {
  char* out = nullptr;
  if (virDomainQemuMonitorCommand(dom, command.c_str(), &out, VIR_DOMAIN_QEMU_MONITOR_COMMAND_HMP) < 0) {
    const virError* e = virGetLastError();
    return std::string("libvirt: ") + (e && e->message ? e->message : "monitor command failed");
  }
  std::string text = out ? out : "";
  std::free(out);
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r' || text.back() == ' ')) text.pop_back();
  return text;
}

}  // namespace

std::string add_hostfwd(virDomainPtr dom, int port) {
  return hmp(dom, fmt::format("hostfwd_add n0 tcp:127.0.0.1:{}-:{}", port, port));
}

void remove_hostfwd(virDomainPtr dom, int port) { hmp(dom, fmt::format("hostfwd_remove n0 tcp:127.0.0.1:{}", port)); }

}  // namespace berth::virt
