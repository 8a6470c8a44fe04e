#include "drivers/libvirt/image.h"

#include <cstdlib>
#include <fstream>

#include "core/error.h"
#include "core/fs.h"

namespace berth::virt {
namespace {

std::string read_bytes(const fs::path& p, std::streamoff offset, size_t n) {
  std::ifstream in(p, std::ios::binary);
  if (!in) return {};
  in.seekg(offset);
  std::string buf(n, '\0');
  in.read(buf.data(), static_cast<std::streamsize>(n));
  buf.resize(static_cast<size_t>(in.gcount()));
  return buf;
}

std::uint64_t big_endian_u64(const std::string& b, size_t at) {
  std::uint64_t v = 0;
  for (size_t i = 0; i < 8; ++i) v = (v << 8) | static_cast<unsigned char>(b[at + i]);
  return v;
}

std::string trimmed(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
  return s;
}

}  // namespace

std::string to_string(ImageKind kind) {
  switch (kind) {
    case ImageKind::BerthOs: return "berth-os";
    case ImageKind::Iso: return "iso";
    case ImageKind::Qcow2: return "qcow2";
  }
  return "berth-os";
}

ImageKind image_kind_from_string(const std::string& s) {
  if (s == "berth-os") return ImageKind::BerthOs;
  if (s == "iso") return ImageKind::Iso;
  if (s == "qcow2") return ImageKind::Qcow2;
  throw Error("unknown image kind '" + s + "' in the machine's driver state");
}

std::vector<fs::path> berth_os_candidates() {
  std::vector<fs::path> out;
  if (const char* dir = std::getenv("BERTH_OS_DIR"); dir && *dir) out.emplace_back(dir);
  std::error_code ec;
  const fs::path self = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    out.push_back((self.parent_path() / ".." / "image" / "out").lexically_normal());
    out.push_back((self.parent_path() / ".." / ".." / "image" / "out").lexically_normal());
  }
#if defined(BERTH_SOURCE_DIR) && defined(BERTH_BINARY_DIR)
  // The source tree only for a berth run from its build tree: an installed one uses its own copy.
  const std::string build_dir = BERTH_BINARY_DIR "/";
  if (!ec && self.string().starts_with(build_dir)) out.push_back(fs::path(BERTH_SOURCE_DIR) / "image" / "out");
#endif
  // Installed: <prefix>/bin/berth next to <prefix>/share/berth/os (the Debian package's /usr).
  if (!ec) out.push_back((self.parent_path() / ".." / "share" / "berth" / "os").lexically_normal());
  if (out.empty() || out.back() != "/usr/share/berth/os") out.emplace_back("/usr/share/berth/os");
  return out;
}

fs::path find_berth_os() {
  for (const auto& dir : berth_os_candidates()) {
    std::error_code ec;
    if (fs::is_regular_file(dir / "vmlinuz", ec) && fs::is_regular_file(dir / "initrd", ec))
      return fs::absolute(dir, ec);
  }
  return {};
}

Image inspect_image(const fs::path& path, const std::string& machine) {
  std::error_code ec;
  Image img;
  img.path = fs::absolute(path, ec).lexically_normal();
  if (fs::is_directory(img.path, ec)) {
    if (!fs::is_regular_file(img.kernel(), ec) || !fs::is_regular_file(img.initrd(), ec))
      throw UserError("machine '" + machine + "': " + img.path.string() +
                      " is a directory without vmlinuz and initrd; pass a berth-os build directory "
                      "(image/build.sh makes one), an ISO or a qcow2 image");
    img.kind = ImageKind::BerthOs;
    img.cmdline = "console=ttyS0 quiet";
    if (fs::is_regular_file(img.path / "cmdline", ec)) img.cmdline = trimmed(read_file(img.path / "cmdline"));
    return img;
  }
  if (!fs::is_regular_file(img.path, ec))
    throw UserError("machine '" + machine + "': image " + img.path.string() +
                    " does not exist; pass --libvirt-image PATH|URL, or build berth-os with image/build.sh");
  const std::string head = read_bytes(img.path, 0, 32);
  if (head.size() >= 32 && head.compare(0, 4, "QFI\xfb") == 0) {
    img.kind = ImageKind::Qcow2;
    img.virtual_size = big_endian_u64(head, 24);
    return img;
  }
  if (read_bytes(img.path, 32769, 5) == "CD001") {
    img.kind = ImageKind::Iso;
    return img;
  }
  throw UserError("machine '" + machine + "': " + img.path.string() +
                  " is neither an ISO nor a qcow2 image; convert it with 'qemu-img convert -O qcow2'");
}

}  // namespace berth::virt
