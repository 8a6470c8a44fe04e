#include "drivers/libvirt/boot_diagnosis.h"

#include <array>

namespace berth::virt {
namespace {

// The rest of the line after `marker`, trimmed of '\r' and spaces.
std::string rest_of_line(std::string_view text, std::size_t at) {
  std::size_t end = text.find('\n', at);
  std::string_view line = text.substr(at, end == std::string_view::npos ? std::string_view::npos : end - at);
  while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.remove_suffix(1);
  while (!line.empty() && line.front() == ' ') line.remove_prefix(1);
  if (line.size() > 160) line = line.substr(0, 160);
  return std::string(line);
}

// The whole line holding position `at`.
std::string line_at(std::string_view text, std::size_t at) {
  std::size_t begin = text.rfind('\n', at);
  begin = begin == std::string_view::npos ? 0 : begin + 1;
  return rest_of_line(text, begin);
}

struct Rule {
  std::string_view marker;
  bool fatal;
  std::string_view cause;  // {} is replaced by what follows the marker, or the line
  bool whole_line;
};

constexpr std::array kRules = {
    Rule{"Kernel panic - not syncing:", true, "the guest's kernel panicked: {}; the image is broken or not made for this VM", false},
    Rule{"; dropping to a shell", true, "berth-os gave up at boot ({}); rebuild the image with image/build.sh", true},
    Rule{"Out of memory: Killed process", false, "the guest ran out of memory ({}); give it more with --libvirt-memory", true},
    Rule{"No space left on device", false, "the guest's disk is full ({}); give it a bigger one with --libvirt-disk-size", true},
    Rule{"Failed to start cloud-init", false, "cloud-init failed in the guest ({}); check the image's cloud-init and the cidata", true},
    Rule{"No DHCPOFFERS received", false, "the guest got no DHCP lease ({}); its network is not working", true},
    Rule{"No lease, failing", false, "the guest got no DHCP lease ({}); its network is not working", true},
};

}  // namespace

BootDiagnosis diagnose_console(std::string_view console) {
  for (const Rule& rule : kRules) {
    const std::size_t at = console.find(rule.marker);
    if (at == std::string_view::npos) continue;
    const std::string detail = rule.whole_line ? line_at(console, at) : rest_of_line(console, at + rule.marker.size());
    std::string cause(rule.cause);
    cause.replace(cause.find("{}"), 2, detail);
    return {cause, rule.fatal};
  }
  if (console.find("berth-os: ") != std::string_view::npos && console.find("up in ") != std::string_view::npos &&
      console.find("SSH host key:") == std::string_view::npos)
    return {"berth-os booted but printed no SSH host key: sshd did not start", false};
  if (console.find("SSH host key:") != std::string_view::npos)
    return {"the guest booted and sshd started, so SSH's forwarded port on 127.0.0.1 or the host firewall is in the way",
            false};
  return {};
}

}  // namespace berth::virt
