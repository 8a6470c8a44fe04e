#pragma once
// A container's confinement as dockerd derives it: HostConfig.SecurityOpt,
// seccomp profiles (dockerd's JSON format, made into the OCI spec's
// linux.seccomp for the container's capabilities) and AppArmor.
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace berth::agent::runtime {

struct SecurityOptions {
  enum class Seccomp { Default, Unconfined, Custom };
  Seccomp seccomp = Seccomp::Default;
  nlohmann::json seccomp_profile;         // Custom: the profile the client sent
  std::optional<std::string> apparmor;    // "apparmor=NAME"
  std::optional<bool> no_new_privileges;  // unset: the daemon's default
  bool writable_cgroups = false;
};

// HostConfig.SecurityOpt ("seccomp=unconfined|JSON", "apparmor=NAME",
// "no-new-privileges[=BOOL]", "label=...", "writable-cgroups=BOOL"; ':' is
// accepted as the separator as dockerd still does). Anything else, and options
// this machine cannot apply (an SELinux label without SELinux, an AppArmor
// profile without AppArmor), throw api::HttpError(400) in dockerd's words.
SecurityOptions parse_security_opts(const nlohmann::json& host_config,
                                    bool apparmor_enabled);

// The kernel and CPU the profile is made for.
struct Platform {
  int kernel_major = 0, kernel_minor = 0;
  std::string seccomp_arch = "SCMP_ARCH_X86_64";  // the native SCMP_ARCH_*
  std::string go_arch = "amd64";                  // the name profiles' "arches" use
};
Platform host_platform();  // from uname(2)

// berth-agent's built-in profile (agent/runtime/seccomp_default.json).
const nlohmann::json& default_seccomp_profile();

// A dockerd-format profile as the OCI spec's linux.seccomp for a process whose
// bounding set is `capabilities`: rules whose includes/excludes (caps, arches,
// minKernel) do not match are left out. Throws api::HttpError(400) naming what
// is wrong in a malformed profile.
nlohmann::json oci_seccomp(const nlohmann::json& profile,
                           const std::vector<std::string>& capabilities,
                           const Platform& platform);

// Whether this kernel enforces AppArmor.
bool apparmor_enabled();

}  // namespace berth::agent::runtime
