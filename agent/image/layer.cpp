#include "agent/image/layer.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string_view>
#include <system_error>
#include <vector>

#include "agent/image/beneath.h"
#include "agent/image/digest.h"

namespace berth::agent::image {
namespace fs = std::filesystem;
namespace {

constexpr std::string_view kWhiteoutPrefix = ".wh.";
constexpr std::string_view kOpaque = ".wh..wh..opq";
constexpr std::string_view kMetaPrefix = ".wh..wh.";

struct ReadArchive {
  archive* a = archive_read_new();
  ~ReadArchive() { archive_read_free(a); }
};

std::string archive_message(archive* a, std::string_view what) {
  const char* msg = archive_error_string(a);
  return std::string(what) + ": " + (msg ? msg : "unknown archive error");
}

// The compressed input, decompressed by libarchive's "raw" format.
struct Decompressor {
  const ReadFn& input;
  const ProgressFn& progress;
  std::vector<char> in_buf = std::vector<char>(128 * 1024);
  std::uint64_t consumed = 0;
  std::string error;
  ReadArchive raw;

  Decompressor(const ReadFn& in, const ProgressFn& prog) : input(in), progress(prog) {
    archive_read_support_filter_all(raw.a);
    archive_read_support_format_raw(raw.a);
    archive_read_support_format_empty(raw.a);
    if (archive_read_open(raw.a, this, nullptr, &Decompressor::read_cb, nullptr) != ARCHIVE_OK)
      throw std::runtime_error(error.empty() ? archive_message(raw.a, "layer") : error);
    archive_entry* e = nullptr;
    int r = archive_read_next_header(raw.a, &e);
    at_end = r == ARCHIVE_EOF;
    if (r != ARCHIVE_OK && r != ARCHIVE_EOF)
      throw std::runtime_error(error.empty() ? archive_message(raw.a, "layer") : error);
  }
  bool at_end = false;

  static la_ssize_t read_cb(archive*, void* self_p, const void** buf) {
    auto* self = static_cast<Decompressor*>(self_p);
    try {
      std::size_t n = self->input(self->in_buf.data(), self->in_buf.size());
      self->consumed += n;
      if (self->progress) self->progress(self->consumed);
      *buf = self->in_buf.data();
      return static_cast<la_ssize_t>(n);
    } catch (const std::exception& e) {
      self->error = e.what();
      return -1;
    }
  }

  // Uncompressed bytes; 0 at the end.
  std::size_t read(char* buf, std::size_t n) {
    if (at_end) return 0;
    la_ssize_t r = archive_read_data(raw.a, buf, n);
    if (r < 0) throw std::runtime_error(error.empty() ? archive_message(raw.a, "layer") : error);
    if (r == 0) at_end = true;
    return static_cast<std::size_t>(r);
  }
};

// The tar stream over the decompressed bytes, hashing them as they pass.
struct HashingSource {
  explicit HashingSource(Decompressor& d) : dec(d) {}
  Decompressor& dec;
  Sha256 hash;
  std::uint64_t size = 0;
  std::vector<char> buf = std::vector<char>(128 * 1024);
  std::string error;

  static la_ssize_t read_cb(archive*, void* self_p, const void** out) {
    auto* self = static_cast<HashingSource*>(self_p);
    try {
      std::size_t n = self->dec.read(self->buf.data(), self->buf.size());
      self->hash.update(self->buf.data(), n);
      self->size += n;
      *out = self->buf.data();
      return static_cast<la_ssize_t>(n);
    } catch (const std::exception& e) {
      self->error = e.what();
      return -1;
    }
  }
  void drain() {
    while (std::size_t n = dec.read(buf.data(), buf.size())) {
      hash.update(buf.data(), n);
      size += n;
    }
  }
};

// The input failed (or is malformed) while an entry's content was read.
class InputError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

[[noreturn]] void throw_errno(const std::string& what) {
  throw std::system_error(errno, std::generic_category(), what);
}

// "./a//b/" -> "a/b"; throws for names with "..", calling the name `what`.
std::string clean_member(const char* raw, std::string_view what) {
  if (!raw) throw std::runtime_error(std::string(what) + " without a name");
  std::vector<std::string> parts;
  try {
    parts = split_beneath(raw);
  } catch (const BreakoutError&) {
    throw BreakoutError(std::string(what) + " escapes the layer: " + raw);
  }
  std::string out;
  for (const auto& part : parts) out += (out.empty() ? "" : "/") + part;
  return out;
}

std::string parent_of(const std::string& member) {
  auto slash = member.rfind('/');
  return slash == std::string::npos ? "" : member.substr(0, slash);
}

std::string base_of(const std::string& member) {
  auto slash = member.rfind('/');
  return slash == std::string::npos ? member : member.substr(slash + 1);
}

// dockerd's check: a relative link target, read from the link's directory,
// must stay inside the layer. Absolute targets resolve in the container.
void check_symlink_target(const std::string& member, const std::string& target) {
  if (target.empty()) throw std::runtime_error("symlink without a target");
  if (target.front() == '/') return;
  std::size_t depth = split_beneath(parent_of(member)).size();
  std::size_t start = 0;
  while (start <= target.size()) {
    std::size_t slash = target.find('/', start);
    if (slash == std::string::npos) slash = target.size();
    std::string_view part = std::string_view(target).substr(start, slash - start);
    if (part == "..") {
      if (depth == 0) throw BreakoutError("symlink target " + target + " points outside the layer");
      --depth;
    } else if (!part.empty() && part != ".") {
      ++depth;
    }
    start = slash + 1;
  }
}

// Owner, mode, times and xattrs of an entry, applied after its content.
struct Meta {
  uid_t uid = 0;
  gid_t gid = 0;
  mode_t perm = 0;
  bool has_times = false;
  timespec times[2] = {};  // atime, mtime
  std::vector<std::pair<std::string, std::string>> xattrs;
};

Meta meta_of(archive_entry* e) {
  Meta m;
  la_int64_t uid = archive_entry_uid(e), gid = archive_entry_gid(e);
  constexpr la_int64_t kMaxId = 0xfffffffe;  // (uid_t)-1 means "unchanged" to chown
  if (uid < 0 || uid > kMaxId || gid < 0 || gid > kMaxId) throw std::runtime_error("invalid owner");
  m.uid = static_cast<uid_t>(uid);
  m.gid = static_cast<gid_t>(gid);
  m.perm = archive_entry_perm(e) & 07777;
  m.has_times = archive_entry_mtime_is_set(e);
  m.times[1] = {archive_entry_mtime(e), archive_entry_mtime_nsec(e)};
  m.times[0] = archive_entry_atime_is_set(e) ? timespec{archive_entry_atime(e), archive_entry_atime_nsec(e)} : m.times[1];
  const char* name = nullptr;
  const void* value = nullptr;
  std::size_t size = 0;
  archive_entry_xattr_reset(e);
  while (archive_entry_xattr_next(e, &name, &value, &size) == ARCHIVE_OK) {
    // overlayfs' own attributes (opaque, redirect, metacopy) come from whiteouts only.
    if (std::string_view(name).rfind("trusted.overlay.", 0) == 0) continue;
    m.xattrs.emplace_back(name, std::string(static_cast<const char*>(value), size));
  }
  return m;
}

// Not root, or the id is not mapped in this user namespace: the entry keeps
// our ids, as libarchive did.
bool owner_unsettable(int err) { return err == EPERM || err == EINVAL; }
// The filesystem has no xattrs, or not this namespace (dockerd skips them too).
bool xattr_unsupported(int err) { return err == ENOTSUP || err == EPERM; }

void apply_meta(int fd, const Meta& m, bool with_times) {
  if (::fchown(fd, m.uid, m.gid) != 0 && !owner_unsettable(errno)) throw_errno("chown");
  if (::fchmod(fd, m.perm) != 0) throw_errno("chmod");
  for (const auto& [name, value] : m.xattrs)
    if (::fsetxattr(fd, name.c_str(), value.data(), value.size(), 0) != 0 && !xattr_unsupported(errno))
      throw_errno("xattr " + name);
  if (with_times && m.has_times && ::futimens(fd, m.times) != 0) throw_errno("times");
}

// For what cannot be opened safely: symlinks, devices, fifos.
void apply_meta_at(int dir, const std::string& name, const Meta& m, bool is_symlink) {
  if (::fchownat(dir, name.c_str(), m.uid, m.gid, AT_SYMLINK_NOFOLLOW) != 0 && !owner_unsettable(errno))
    throw_errno("chown");
  if (!is_symlink && ::fchmodat(dir, name.c_str(), m.perm, AT_SYMLINK_NOFOLLOW) != 0) throw_errno("chmod");
  std::string path = "/proc/self/fd/" + std::to_string(dir) + "/" + name;  // the entry itself, not followed
  for (const auto& [key, value] : m.xattrs)
    if (::lsetxattr(path.c_str(), key.c_str(), value.data(), value.size(), 0) != 0 && !xattr_unsupported(errno))
      throw_errno("xattr " + key);
  if (m.has_times && ::utimensat(dir, name.c_str(), m.times, AT_SYMLINK_NOFOLLOW) != 0) throw_errno("times");
}

void pwrite_all(int fd, const void* data, std::size_t size, la_int64_t offset) {
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    ssize_t n = ::pwrite(fd, p, size, offset);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_errno("write");
    }
    p += n;
    size -= static_cast<std::size_t>(n);
    offset += n;
  }
}

// Writes the entries of a layer beneath its root, never through a symlink.
class LayerWriter {
 public:
  LayerWriter(const fs::path& root, const std::string& input_error) : tree_(root), input_error_(input_error) {}

  // A file, directory, link or device; its content is read from `tar`.
  void entry(archive* tar, archive_entry* e, const std::string& member) {
    Meta meta = meta_of(e);
    if (const char* link = archive_entry_hardlink(e)) return hardlink(member, clean_member(link, "hardlink target"));
    Beneath::Slot slot = tree_.open_parent(member, MissingDirs::kCreate);
    switch (archive_entry_filetype(e)) {
      case AE_IFDIR:
        return directory(slot, member, meta);
      case AE_IFREG:
        return regular(slot, tar, e, meta);
      case AE_IFLNK: {
        const char* target = archive_entry_symlink(e);
        check_symlink_target(member, target ? target : "");
        make_room(slot, false);
        if (::symlinkat(target, slot.dir.get(), slot.name.c_str()) != 0) throw_errno("symlink");
        return apply_meta_at(slot.dir.get(), slot.name, meta, true);
      }
      case AE_IFCHR:
      case AE_IFBLK:
      case AE_IFIFO: {
        make_room(slot, false);
        mode_t type = archive_entry_filetype(e);
        dev_t rdev = type == AE_IFIFO ? 0 : archive_entry_rdev(e);
        if (::mknodat(slot.dir.get(), slot.name.c_str(), type | (meta.perm & 0777), rdev) != 0) throw_errno("mknod");
        return apply_meta_at(slot.dir.get(), slot.name, meta, false);
      }
      default:
        throw std::runtime_error("unsupported entry type " + std::to_string(archive_entry_filetype(e)));
    }
  }

  // `.wh.NAME` in `dir`: NAME as a 0:0 character device.
  void whiteout(const std::string& dir, const std::string& name) {
    Beneath::Slot slot{tree_.open_dir(dir, MissingDirs::kCreate), name};
    make_room(slot, false);
    if (::mknodat(slot.dir.get(), name.c_str(), S_IFCHR, makedev(0, 0)) != 0) throw_errno("mknod");
    if (::fchownat(slot.dir.get(), name.c_str(), 0, 0, AT_SYMLINK_NOFOLLOW) != 0 && !owner_unsettable(errno))
      throw_errno("chown");
  }

  // `.wh..wh..opq` in `dir`.
  void opaque(const std::string& dir) {
    Fd fd = tree_.open_dir(dir, MissingDirs::kCreate);
    if (::fsetxattr(fd.get(), "trusted.overlay.opaque", "y", 1, 0) != 0) throw_errno("cannot mark it opaque");
  }

  // Directory times last, since their entries changed them.
  void finish() {
    for (const auto& [dir, times] : dir_times_) {
      Fd fd;
      try {
        fd = tree_.open_dir(dir);
      } catch (const std::exception&) {
        continue;  // a later entry replaced it
      }
      if (::futimens(fd.get(), times.data()) != 0) throw_errno("layer: " + dir + ": times");
    }
  }

 private:
  // Clears the way for a new entry: a directory is kept for a directory
  // (returns true), anything else is removed, without following symlinks.
  static bool make_room(const Beneath::Slot& slot, bool keep_dir) {
    struct stat st {};
    if (::fstatat(slot.dir.get(), slot.name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno == ENOENT) return false;
      throw_errno("stat");
    }
    if (keep_dir && S_ISDIR(st.st_mode)) return true;
    remove_at(slot.dir.get(), slot.name);
    return false;
  }

  void directory(const Beneath::Slot& slot, const std::string& member, const Meta& meta) {
    if (slot.name.empty()) return;  // the root keeps its own metadata
    if (!make_room(slot, true) && ::mkdirat(slot.dir.get(), slot.name.c_str(), 0700) != 0) throw_errno("mkdir");
    Fd fd(::openat(slot.dir.get(), slot.name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!fd) throw_errno("open");
    apply_meta(fd.get(), meta, false);
    if (meta.has_times) dir_times_.emplace_back(member, std::array<timespec, 2>{meta.times[0], meta.times[1]});
  }

  void regular(const Beneath::Slot& slot, archive* tar, archive_entry* e, const Meta& meta) {
    make_room(slot, false);
    Fd fd(::openat(slot.dir.get(), slot.name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (!fd) throw_errno("create");
    la_int64_t end = 0;
    while (true) {
      const void* buf = nullptr;
      std::size_t size = 0;
      la_int64_t offset = 0;
      int r = archive_read_data_block(tar, &buf, &size, &offset);
      if (r == ARCHIVE_EOF) break;
      if (r < ARCHIVE_WARN) throw InputError(input_error_.empty() ? archive_message(tar, "layer") : input_error_);
      pwrite_all(fd.get(), buf, size, offset);
      end = std::max(end, offset + static_cast<la_int64_t>(size));
    }
    // A sparse file may end in a hole. (Only then: ext4 flushes a file truncated to 0 when it is closed.)
    if (archive_entry_size_is_set(e) && archive_entry_size(e) > end && ::ftruncate(fd.get(), archive_entry_size(e)) != 0)
      throw_errno("truncate");
    apply_meta(fd.get(), meta, true);
  }

  void hardlink(const std::string& member, const std::string& target) {
    Beneath::Slot from;
    try {
      from = tree_.open_parent(target);
    } catch (const BreakoutError& e) {
      throw BreakoutError("hardlink target " + target + ": " + e.what());
    }
    struct stat src {};
    if (from.name.empty() || ::fstatat(from.dir.get(), from.name.c_str(), &src, AT_SYMLINK_NOFOLLOW) != 0)
      throw std::runtime_error("hardlink target " + target + " does not exist");
    if (S_ISDIR(src.st_mode)) throw std::runtime_error("hardlink target " + target + " is a directory");
    Beneath::Slot slot = tree_.open_parent(member, MissingDirs::kCreate);
    struct stat here {};
    if (::fstatat(slot.dir.get(), slot.name.c_str(), &here, AT_SYMLINK_NOFOLLOW) == 0 && here.st_dev == src.st_dev &&
        here.st_ino == src.st_ino)
      return;  // already that file
    make_room(slot, false);
    if (::linkat(from.dir.get(), from.name.c_str(), slot.dir.get(), slot.name.c_str(), 0) != 0) throw_errno("link");
  }

  Beneath tree_;
  const std::string& input_error_;
  std::vector<std::pair<std::string, std::array<timespec, 2>>> dir_times_;
};

}  // namespace

UnpackedLayer unpack_layer(const ReadFn& input, const fs::path& dest_in, const ProgressFn& progress) {
  const fs::path dest = fs::canonical(dest_in);
  Decompressor dec(input, progress);
  HashingSource src(dec);
  ReadArchive tar;
  archive_read_support_format_tar(tar.a);
  archive_read_support_format_empty(tar.a);
  if (archive_read_open(tar.a, &src, nullptr, &HashingSource::read_cb, nullptr) != ARCHIVE_OK)
    throw std::runtime_error(src.error.empty() ? archive_message(tar.a, "layer") : src.error);

  LayerWriter writer(dest, src.error);
  UnpackedLayer out;
  archive_entry* entry = nullptr;
  while (true) {
    int r = archive_read_next_header(tar.a, &entry);
    if (r == ARCHIVE_EOF) break;
    if (r < ARCHIVE_WARN)
      throw std::runtime_error(src.error.empty() ? archive_message(tar.a, "layer") : src.error);
    std::string member = clean_member(archive_entry_pathname(entry), "layer: entry");
    if (member.empty()) continue;  // "./" itself
    std::string base = base_of(member);
    if (member.rfind(kMetaPrefix, 0) == 0 && base != kOpaque) continue;  // aufs metadata (.wh..wh.plnk/...)
    try {
      if (base == kOpaque) {
        writer.opaque(parent_of(member));
      } else if (base.rfind(kWhiteoutPrefix, 0) == 0) {
        if (base.rfind(kMetaPrefix, 0) == 0) continue;  // aufs metadata (.wh..wh.plnk)
        std::string hidden = base.substr(kWhiteoutPrefix.size());
        if (hidden.empty() || hidden == "." || hidden == "..")
          throw std::runtime_error("invalid whiteout");
        writer.whiteout(parent_of(member), hidden);
      } else {
        if (archive_entry_filetype(entry) == AE_IFREG)
          out.size += static_cast<std::uint64_t>(std::max<la_int64_t>(0, archive_entry_size(entry)));
        writer.entry(tar.a, entry, member);
      }
    } catch (const InputError&) {
      throw;
    } catch (const BreakoutError& e) {
      throw BreakoutError("layer: " + member + ": breakout: " + e.what());
    } catch (const std::exception& e) {
      throw std::runtime_error("layer: " + member + ": " + e.what());
    }
  }
  writer.finish();
  src.drain();
  out.diff_id = src.hash.digest();
  out.tar_size = src.size;
  return out;
}

UnpackedLayer decompress_stream(const ReadFn& input,
                                const std::function<void(const char*, std::size_t)>& output) {
  ProgressFn none;
  Decompressor dec(input, none);
  Sha256 hash;
  UnpackedLayer out;
  std::vector<char> buf(128 * 1024);
  while (std::size_t n = dec.read(buf.data(), buf.size())) {
    hash.update(buf.data(), n);
    out.tar_size += n;
    output(buf.data(), n);
  }
  out.diff_id = hash.digest();
  return out;
}

ReadFn file_reader(const fs::path& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw std::runtime_error("cannot open " + path.string() + ": " + std::strerror(errno));
  auto owned = std::shared_ptr<int>(new int(fd), [](int* p) {
    ::close(*p);
    delete p;
  });
  return [owned](char* buf, std::size_t n) -> std::size_t {
    while (true) {
      ssize_t r = ::read(*owned, buf, n);
      if (r >= 0) return static_cast<std::size_t>(r);
      if (errno != EINTR) throw std::runtime_error(std::string("read: ") + std::strerror(errno));
    }
  };
}

}  // namespace berth::agent::image
