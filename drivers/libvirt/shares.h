#pragma once
// Host folders inside the VM (--libvirt-share HOSTDIR[:GUESTDIR], the home folder by
// default): each one a virtio-9p device with a mount tag that berth-os mounts at boot.
// Pure functions, unit-tested without libvirt.
#include <filesystem>
#include <string>
#include <vector>

namespace berth::virt {

struct Share {
  std::string tag;    // the 9p mount tag: berth0, berth1, ... (QEMU allows up to 31 bytes)
  std::string host;   // absolute, normalized
  std::string guest;  // absolute, normalized; where berth-os mounts it
};

// "HOSTDIR" or "HOSTDIR:GUESTDIR" (GUESTDIR defaults to HOSTDIR); both must be absolute.
// Throws UserError naming the flag. The tag is left empty.
Share parse_share(const std::string& spec);

// Why berth-os cannot mount a host folder on `guest` ("" when it can): its own
// system directories, root's SSH keys (/root) and the data disk.
std::string reserved_guest_path(const std::string& guest);

struct SharePlan {
  std::vector<Share> shares;  // sorted by guest path (parents mount first), tagged berth0...
  std::string note;           // why the home folder is not shared, when it is skipped
};

// The machine's shares: `home` at the same path when `share_home` (skipped, with a
// note, when it is missing or a reserved guest path), then every --libvirt-share spec.
// Throws UserError for a bad spec or two folders on one guest path.
SharePlan plan_shares(const std::vector<std::string>& specs, bool share_home, const std::filesystem::path& home);

// Throws UserError naming the machine when a host folder is missing or not a directory.
void check_share_dirs(const std::vector<Share>& shares, const std::string& machine);

}  // namespace berth::virt
