#pragma once
// Why a VM did not come up, read from its serial console: the cause in words
// with what to do, so that create says more than "timed out".
#include <string>
#include <string_view>

namespace berth::virt {

struct BootDiagnosis {
  std::string cause;   // "" when nothing known shows on the console
  bool fatal = false;  // waiting longer cannot help (a panic, berth-os giving up)
};

BootDiagnosis diagnose_console(std::string_view console);

}  // namespace berth::virt
