#include "drivers/libvirt/shares.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <system_error>

#include "core/error.h"

namespace berth::virt {
namespace fs = std::filesystem;
namespace {

constexpr const char* kFlag = "--libvirt-share";

bool has_control_chars(const std::string& s) {
  return std::any_of(s.begin(), s.end(), [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; });
}

// Absolute and normalized, without a trailing slash ("/" stays "/").
std::string normal_path(const std::string& p, const std::string& spec, const char* what) {
  if (p.empty() || p.front() != '/')
    throw UserError(fmt::format("{} '{}': {} must be an absolute path (e.g. {} /home/me/src:/src)", kFlag, spec,
                                what, kFlag));
  if (has_control_chars(p))
    throw UserError(fmt::format("{} '{}': {} must not contain control characters", kFlag, spec, what));
  std::string out = fs::path(p).lexically_normal().string();
  while (out.size() > 1 && out.back() == '/') out.pop_back();
  return out;
}

bool same_or_under(const std::string& path, const std::string& dir) {
  return path == dir || (path.size() > dir.size() && path.compare(0, dir.size(), dir) == 0 && path[dir.size()] == '/');
}

}  // namespace

Share parse_share(const std::string& spec) {
  if (spec.empty()) throw UserError(fmt::format("{} needs HOSTDIR or HOSTDIR:GUESTDIR", kFlag));
  // The guest part starts at the last ":/"; a ':' not followed by '/' is a relative GUESTDIR.
  const auto split = spec.rfind(":/");
  if (split == std::string::npos && spec.find(':') != std::string::npos)
    throw UserError(fmt::format("{} '{}': GUESTDIR must be an absolute path (e.g. {} /home/me/src:/src)", kFlag, spec,
                                kFlag));
  Share s;
  s.host = normal_path(split == std::string::npos ? spec : spec.substr(0, split), spec, "HOSTDIR");
  s.guest = split == std::string::npos ? s.host : normal_path(spec.substr(split + 1), spec, "GUESTDIR");
  if (const auto why = reserved_guest_path(s.guest); !why.empty())
    throw UserError(fmt::format("{} '{}': cannot mount a host folder on {} in the guest ({}); choose another GUESTDIR",
                                kFlag, spec, s.guest, why));
  return s;
}

std::string reserved_guest_path(const std::string& guest) {
  if (guest == "/") return "it is the guest's root";
  static const std::array<const char*, 12> system = {"/proc", "/sys", "/dev", "/run",  "/etc",  "/usr",
                                                     "/bin",  "/sbin", "/lib", "/lib64", "/var/log", "/newroot"};
  for (const char* d : system)
    if (same_or_under(guest, d)) return fmt::format("berth-os uses {}", d);
  if (same_or_under(guest, "/root")) return "/root holds the SSH keys berth logs in with";
  if (same_or_under(guest, "/var/lib/berth")) return "/var/lib/berth is the data disk";
  return "";
}

SharePlan plan_shares(const std::vector<std::string>& specs, bool share_home, const fs::path& home) {
  SharePlan plan;
  bool home_shared = false;  // then plan.shares[0] is the home folder until the sort
  if (share_home) {
    std::string dir = home.is_absolute() ? home.lexically_normal().string() : "";
    while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
    std::error_code ec;
    if (dir.empty() || !fs::is_directory(dir, ec)) {
      plan.note = fmt::format("the home folder '{}' is not a directory, so it is not shared", home.string());
    } else if (const auto why = reserved_guest_path(dir); !why.empty()) {
      plan.note = fmt::format("the home folder {} is not shared ({}); share it elsewhere with {} {}:/host{}", dir, why,
                              kFlag, dir, dir == "/" ? "" : dir);
    } else {
      plan.shares.push_back({"", dir, dir});
      home_shared = true;
    }
  }
  for (const auto& spec : specs) {
    Share s = parse_share(spec);
    bool again = false;  // the same share twice: kept once
    for (size_t i = 0; i < plan.shares.size() && !again; ++i) {
      const Share& other = plan.shares[i];
      if (other.guest != s.guest) continue;
      if (other.host == s.host) {
        again = true;
        continue;
      }
      throw UserError(fmt::format("{}: {} and {} would both be mounted on {} in the guest; give one another "
                                  "GUESTDIR{}",
                                  kFlag, other.host, s.host, s.guest,
                                  home_shared && i == 0 ? " (the home folder is shared by default; "
                                                          "--libvirt-no-share turns that off)"
                                                        : ""));
    }
    if (!again) plan.shares.push_back(std::move(s));
  }
  // Parents before children, so a nested share mounts on top of its parent.
  std::stable_sort(plan.shares.begin(), plan.shares.end(),
                   [](const Share& a, const Share& b) { return a.guest < b.guest; });
  for (size_t i = 0; i < plan.shares.size(); ++i) plan.shares[i].tag = "berth" + std::to_string(i);
  return plan;
}

void check_share_dirs(const std::vector<Share>& shares, const std::string& machine) {
  for (const auto& s : shares) {
    std::error_code ec;
    const auto st = fs::status(s.host, ec);
    if (!fs::exists(st))
      throw UserError(fmt::format("machine '{}': the folder to share, {}, does not exist; create it, fix {} or pass "
                                  "--libvirt-no-share",
                                  machine, s.host, kFlag));
    if (!fs::is_directory(st))
      throw UserError(fmt::format("machine '{}': the folder to share, {}, is not a directory; fix {}", machine,
                                  s.host, kFlag));
  }
}

}  // namespace berth::virt
