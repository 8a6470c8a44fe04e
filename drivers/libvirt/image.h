#pragma once
// What a machine boots: berth-os by direct kernel boot (a directory holding
// vmlinuz, initrd and cmdline), a bootable ISO, or a qcow2 cloud image.
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace berth::virt {

enum class ImageKind { BerthOs, Iso, Qcow2 };

std::string to_string(ImageKind kind);
ImageKind image_kind_from_string(const std::string& s);  // throws Error

struct Image {
  ImageKind kind = ImageKind::BerthOs;
  std::filesystem::path path;      // the directory (BerthOs) or the file
  std::string cmdline;             // BerthOs
  std::uint64_t virtual_size = 0;  // Qcow2: the disk size the image declares
  std::filesystem::path kernel() const { return path / "vmlinuz"; }
  std::filesystem::path initrd() const { return path / "initrd"; }
};

// Where the locally built berth-os is looked for, in order: $BERTH_OS_DIR,
// <berth binary's dir>/../image/out and ../../image/out, the source tree's
// image/out (only for a binary in the build tree), <binary's dir>/../share/berth/os
// (an install prefix) and /usr/share/berth/os.
std::vector<std::filesystem::path> berth_os_candidates();
// The first candidate holding vmlinuz and initrd; empty when none does.
std::filesystem::path find_berth_os();

// Looks at `path` (a berth-os directory, an ISO or a qcow2 file, by content).
// Throws UserError naming the machine and the file when it is none of these.
Image inspect_image(const std::filesystem::path& path, const std::string& machine);

}  // namespace berth::virt
