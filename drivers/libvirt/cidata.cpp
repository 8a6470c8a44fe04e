#include "drivers/libvirt/cidata.h"

#define LIBISOFS_WITHOUT_LIBBURN 1
#include <libisofs/libisofs.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <sstream>

#include "core/error.h"
#include "core/fs.h"

namespace berth::virt {
namespace {

// A YAML double-quoted scalar (what cloud-init and berth-os's cidata.awk both read).
std::string quoted(const std::string& v) {
  std::string out = "\"";
  for (char c : v) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

std::string first_line(const std::string& s) { return s.substr(0, s.find('\n')); }

struct ImageUnref {
  void operator()(IsoImage* p) const { iso_image_unref(p); }
};
struct WriteOptsFree {
  void operator()(IsoWriteOpts* p) const { iso_write_opts_free(p); }
};
struct StreamUnref {
  void operator()(IsoStream* p) const { iso_stream_unref(p); }
};
// The writer runs in a libisofs thread until everything was read or it was cancelled.
struct BurnSourceFree {
  void operator()(burn_source* p) const {
    if (!p) return;
    p->free_data(p);
    std::free(p);
  }
};

void init_libisofs() {
  static std::once_flag once;
  static int rc = 0;
  std::call_once(once, [] {
    rc = iso_init();
    char queue[] = "NEVER", print[] = "NEVER", id[] = "libisofs";
    if (rc == 1) iso_set_msgs_severities(queue, print, id);
  });
  if (rc != 1) throw Error(std::string("cannot initialize libisofs: ") + iso_error_to_msg(rc));
}

[[noreturn]] void iso_fail(const std::filesystem::path& iso, const char* what, int rc) {
  throw Error("cannot write " + iso.string() + ": " + what + ": " + iso_error_to_msg(rc));
}

void add_file(IsoDir* root, const std::filesystem::path& iso, const char* name, const std::string& content) {
  auto* buf = static_cast<unsigned char*>(std::malloc(content.size() ? content.size() : 1));
  if (!buf) throw Error("cannot write " + iso.string() + ": out of memory");
  std::memcpy(buf, content.data(), content.size());
  IsoStream* raw = nullptr;
  int rc = iso_memory_stream_new(buf, content.size(), &raw);  // owns buf from here
  if (rc < 0) {
    std::free(buf);
    iso_fail(iso, name, rc);
  }
  std::unique_ptr<IsoStream, StreamUnref> stream(raw);
  IsoFile* file = nullptr;
  rc = iso_tree_add_new_file(root, name, stream.get(), &file);
  if (rc < 0) iso_fail(iso, name, rc);
  stream.release();  // the file holds the reference now
  iso_node_set_permissions(reinterpret_cast<IsoNode*>(file), 0400);
}

}  // namespace

std::string cidata_meta_data(const CidataSpec& s) {
  return "instance-id: " + s.instance_id + "\nlocal-hostname: " + s.hostname + "\n";
}

std::string cidata_user_data(const CidataSpec& s) {
  std::ostringstream out;
  out << "#cloud-config\n";
  out << "hostname: " << s.hostname << "\n";
  out << "disable_root: false\n";  // cloud-init images: berth logs in as root
  out << "ssh_authorized_keys:\n";
  for (const auto& key : s.authorized_keys) out << "  - " << quoted(first_line(key)) << "\n";
  if (!s.host_private_key.empty()) {
    out << "ssh_keys:\n  ed25519_private: |\n";
    std::istringstream pem(s.host_private_key);
    for (std::string line; std::getline(pem, line);)
      if (!line.empty()) out << "    " << line << "\n";
    out << "  ed25519_public: " << quoted(first_line(s.host_public_key)) << "\n";
  }
  if (!s.data_device.empty()) {
    out << "fs_setup:\n  - label: berth-data\n    filesystem: ext4\n    device: " << s.data_device
        << "\n    overwrite: false\n";
    out << "mounts:\n  - [" << s.data_device << ", /var/lib/berth, ext4, \"defaults,nofail\", \"0\", \"2\"]\n";
  }
  return out.str();
}

std::string cidata_mounts(const CidataSpec& s) {
  std::string out;
  for (const auto& m : s.mounts) out += m.tag + " " + m.path + "\n";
  return out;
}

void write_cidata_iso(const std::filesystem::path& iso, const CidataSpec& spec) {
  init_libisofs();
  IsoImage* raw_image = nullptr;
  int rc = iso_image_new("CIDATA", &raw_image);
  if (rc < 0) iso_fail(iso, "new image", rc);
  std::unique_ptr<IsoImage, ImageUnref> image(raw_image);
  iso_image_set_volume_id(image.get(), "CIDATA");
  IsoDir* root = iso_image_get_root(image.get());
  add_file(root, iso, "meta-data", cidata_meta_data(spec));
  add_file(root, iso, "user-data", cidata_user_data(spec));
  if (!spec.mounts.empty()) add_file(root, iso, "berth-mounts", cidata_mounts(spec));

  IsoWriteOpts* raw_opts = nullptr;
  rc = iso_write_opts_new(&raw_opts, 1);  // profile 1: Rock Ridge, ready for reading back
  if (rc < 0) iso_fail(iso, "write options", rc);
  std::unique_ptr<IsoWriteOpts, WriteOptsFree> opts(raw_opts);
  iso_write_opts_set_joliet(opts.get(), 1);

  burn_source* raw_src = nullptr;
  rc = iso_image_create_burn_source(image.get(), opts.get(), &raw_src);
  if (rc < 0) iso_fail(iso, "start the writer", rc);
  std::unique_ptr<burn_source, BurnSourceFree> src(raw_src);
  std::string content;
  unsigned char block[2048];
  while (true) {
    int n = src->read_xt(src.get(), block, sizeof block);
    if (n < 0) {
      src->cancel(src.get());
      throw Error("cannot write " + iso.string() + ": libisofs failed while writing the image");
    }
    if (n == 0) break;
    content.append(reinterpret_cast<const char*>(block), static_cast<size_t>(n));
  }
  write_file_atomic(iso, content, 0600);
}

}  // namespace berth::virt
