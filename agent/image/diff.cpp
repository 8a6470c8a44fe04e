#include "agent/image/diff.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <exception>
#include <map>
#include <stdexcept>
#include <system_error>

#include "agent/image/beneath.h"
#include "agent/image/digest.h"

namespace berth::agent::image {
namespace fs = std::filesystem;

// --- LayerTarWriter

struct LayerTarWriter::Impl {
  std::function<void(const char*, std::size_t)> out;
  Sha256 hash;
  LayerTar result;
  std::exception_ptr out_failed;  // what `out` threw, rethrown as is
  std::uint64_t remaining = 0;    // content the current member still expects
  std::unique_ptr<archive, decltype(&archive_write_free)> a{archive_write_new(), archive_write_free};
  bool finished = false;

  static la_ssize_t write_cb(archive*, void* self_p, const void* buf, std::size_t n) {
    auto* self = static_cast<Impl*>(self_p);
    try {
      self->out(static_cast<const char*>(buf), n);
      self->hash.update(buf, n);
      self->result.tar_size += n;
      return static_cast<la_ssize_t>(n);
    } catch (...) {
      self->out_failed = std::current_exception();
      return -1;
    }
  }

  [[noreturn]] void fail(const std::string& what) {
    if (out_failed) std::rethrow_exception(out_failed);
    const char* msg = archive_error_string(a.get());
    throw std::runtime_error("layer tar: " + what + ": " + (msg ? msg : "unknown archive error"));
  }
};

LayerTarWriter::LayerTarWriter(std::function<void(const char*, std::size_t)> out) : impl_(std::make_unique<Impl>()) {
  impl_->out = std::move(out);
  archive* a = impl_->a.get();
  if (!a) throw std::bad_alloc();
  // PAX only where ustar cannot say it (long names, xattrs); no padding past the end marker.
  if (archive_write_set_format_pax_restricted(a) != ARCHIVE_OK ||
      archive_write_set_bytes_in_last_block(a, 1) != ARCHIVE_OK ||
      archive_write_open(a, impl_.get(), nullptr, &Impl::write_cb, nullptr) != ARCHIVE_OK)
    impl_->fail("open");
}

LayerTarWriter::~LayerTarWriter() = default;

void LayerTarWriter::add(const TarMember& m) {
  Impl& w = *impl_;
  if (w.finished) throw std::logic_error("layer tar: add after finish");
  std::unique_ptr<archive_entry, decltype(&archive_entry_free)> e(archive_entry_new(), archive_entry_free);
  if (!e) throw std::bad_alloc();
  archive_entry* entry = e.get();
  archive_entry_set_pathname(entry, m.name.c_str());
  archive_entry_set_perm(entry, static_cast<mode_t>(m.mode & 07777));
  archive_entry_set_uid(entry, m.uid);
  archive_entry_set_gid(entry, m.gid);
  archive_entry_set_mtime(entry, m.mtime, 0);
  archive_entry_set_size(entry, 0);
  switch (m.type) {
    case TarMember::Type::kFile:
      archive_entry_set_filetype(entry, AE_IFREG);
      archive_entry_set_size(entry, static_cast<la_int64_t>(m.size));
      break;
    case TarMember::Type::kDir:
      archive_entry_set_filetype(entry, AE_IFDIR);
      break;
    case TarMember::Type::kSymlink:
      archive_entry_set_filetype(entry, AE_IFLNK);
      archive_entry_set_symlink(entry, m.link.c_str());
      break;
    case TarMember::Type::kHardlink:
      archive_entry_set_filetype(entry, AE_IFREG);
      archive_entry_set_hardlink(entry, m.link.c_str());
      break;
    case TarMember::Type::kCharDevice:
    case TarMember::Type::kBlockDevice:
      archive_entry_set_filetype(entry, m.type == TarMember::Type::kCharDevice ? AE_IFCHR : AE_IFBLK);
      archive_entry_set_rdevmajor(entry, m.dev_major);
      archive_entry_set_rdevminor(entry, m.dev_minor);
      break;
    case TarMember::Type::kFifo:
      archive_entry_set_filetype(entry, AE_IFIFO);
      break;
  }
  for (const auto& [name, value] : m.xattrs)
    archive_entry_xattr_add_entry(entry, name.c_str(), value.data(), value.size());
  w.remaining = 0;
  if (archive_write_header(w.a.get(), entry) < ARCHIVE_WARN) w.fail(m.name);
  ++w.result.entries;
  if (m.type == TarMember::Type::kFile) {
    w.remaining = m.size;
    w.result.size += m.size;
  }
}

void LayerTarWriter::data(const void* bytes, std::size_t size) {
  Impl& w = *impl_;
  size = static_cast<std::size_t>(std::min<std::uint64_t>(size, w.remaining));
  if (size == 0) return;
  if (archive_write_data(w.a.get(), bytes, size) < 0) w.fail("data");
  w.remaining -= size;
}

void LayerTarWriter::data_from_fd(int fd, Sha256* content) {
  std::vector<char> buf(128 * 1024);
  while (impl_->remaining > 0) {
    std::size_t want = static_cast<std::size_t>(std::min<std::uint64_t>(buf.size(), impl_->remaining));
    ssize_t n = ::read(fd, buf.data(), want);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw std::system_error(errno, std::generic_category(), "read");
    }
    if (n == 0) break;  // it shrank: the rest is padded with zeros
    if (content) content->update(buf.data(), static_cast<std::size_t>(n));
    data(buf.data(), static_cast<std::size_t>(n));
  }
}

LayerTar LayerTarWriter::finish() {
  Impl& w = *impl_;
  if (w.finished) throw std::logic_error("layer tar: finished twice");
  w.finished = true;
  if (archive_write_close(w.a.get()) != ARCHIVE_OK) w.fail("close");
  w.result.diff_id = w.hash.digest();
  return w.result;
}

// --- write_layer_tar

namespace {

constexpr std::string_view kOverlayXattrs = "trusted.overlay.";

[[noreturn]] void throw_errno(const std::string& what) {
  throw std::system_error(errno, std::generic_category(), what);
}

// The names in a directory, sorted.
std::vector<std::string> list_dir(int dir) {
  Fd listed(::fcntl(dir, F_DUPFD_CLOEXEC, 0));
  if (!listed) throw_errno("dup");
  std::unique_ptr<DIR, int (*)(DIR*)> list(::fdopendir(listed.get()), ::closedir);
  if (!list) throw_errno("list");
  listed.release();         // the DIR owns it now
  ::rewinddir(list.get());  // a dup shares its offset with `dir`, which may have been listed before
  std::vector<std::string> names;
  errno = 0;
  while (const dirent* d = ::readdir(list.get())) {
    std::string name = d->d_name;
    if (name != "." && name != "..") names.push_back(std::move(name));
  }
  if (errno != 0) throw_errno("list");
  std::sort(names.begin(), names.end());
  return names;
}

// The xattrs of the entry `path` names (not followed), trusted.overlay.* left
// out, sorted by name. `path` is /proc/self/fd/DIR/NAME, so no symlink on the
// way is followed either.
std::vector<std::pair<std::string, std::string>> xattrs_of(const std::string& path) {
  std::vector<std::pair<std::string, std::string>> out;
  std::string names;
  for (int attempt = 0; attempt < 8; ++attempt) {
    ssize_t n = ::llistxattr(path.c_str(), nullptr, 0);
    if (n < 0) {
      if (errno == ENOTSUP) return out;
      throw_errno("list xattrs");
    }
    names.resize(static_cast<std::size_t>(n));
    n = ::llistxattr(path.c_str(), names.data(), names.size());
    if (n >= 0) {
      names.resize(static_cast<std::size_t>(n));
      break;
    }
    if (errno != ERANGE) throw_errno("list xattrs");
  }
  std::size_t start = 0;
  while (start < names.size()) {
    std::size_t end = names.find('\0', start);
    if (end == std::string::npos) end = names.size();
    std::string name = names.substr(start, end - start);
    start = end + 1;
    if (name.empty() || name.rfind(kOverlayXattrs, 0) == 0) continue;
    std::string value;
    ssize_t n = -1;
    for (int attempt = 0; attempt < 8; ++attempt) {
      n = ::lgetxattr(path.c_str(), name.c_str(), nullptr, 0);
      if (n < 0) break;
      value.resize(static_cast<std::size_t>(n));
      n = ::lgetxattr(path.c_str(), name.c_str(), value.data(), value.size());
      if (n >= 0 || errno != ERANGE) break;
    }
    if (n < 0) {
      if (errno == ENODATA) continue;  // removed meanwhile
      throw_errno("xattr " + name);
    }
    value.resize(static_cast<std::size_t>(n));
    out.emplace_back(std::move(name), std::move(value));
  }
  std::sort(out.begin(), out.end());
  return out;
}

bool is_opaque(const std::string& path) {
  char value[2];
  ssize_t n = ::lgetxattr(path.c_str(), "trusted.overlay.opaque", value, sizeof value);
  return n == 1 && value[0] == 'y';
}

// Walks an overlayfs upper directory into a LayerTarWriter.
class UpperWalker {
 public:
  UpperWalker(const fs::path& upper, LayerTarWriter& tar) : upper_(upper), tar_(tar) {}

  void walk(int dir, const std::string& prefix) {
    for (const std::string& name : list_dir(dir)) {
      const std::string path = prefix + name;
      try {
        entry(dir, name, path);
      } catch (const std::system_error& e) {
        throw std::runtime_error((upper_ / path).string() + ": " + e.what());
      }
    }
  }

 private:
  void entry(int dir, const std::string& name, const std::string& path) {
    struct stat st {};
    if (::fstatat(dir, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno == ENOENT) return;  // gone meanwhile
      throw_errno("stat");
    }
    if (S_ISSOCK(st.st_mode)) return;  // a tar cannot hold one (dockerd skips them too)
    const std::string proc = "/proc/self/fd/" + std::to_string(dir) + "/" + name;
    TarMember m;
    m.name = path;
    m.mode = st.st_mode & 07777;
    m.uid = st.st_uid;
    m.gid = st.st_gid;
    m.mtime = st.st_mtim.tv_sec;

    if (S_ISCHR(st.st_mode) && st.st_rdev == makedev(0, 0)) {  // a whiteout
      m.name = path.substr(0, path.size() - name.size()) + ".wh." + name;
      m.type = TarMember::Type::kFile;
      m.mode = 0600;
      return tar_.add(m);
    }
    if (S_ISDIR(st.st_mode)) {
      Fd sub(::openat(dir, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (!sub) throw_errno("open");
      m.type = TarMember::Type::kDir;
      m.xattrs = xattrs_of(proc);
      tar_.add(m);
      if (is_opaque(proc)) {
        TarMember marker = m;
        marker.name = path + "/.wh..wh..opq";
        marker.type = TarMember::Type::kFile;
        marker.xattrs.clear();
        tar_.add(marker);
      }
      return walk(sub.get(), path + "/");
    }
    if (st.st_nlink > 1) {  // a hard link of something already written?
      auto [it, first] = links_.try_emplace({st.st_dev, st.st_ino}, path);
      if (!first) {
        m.type = TarMember::Type::kHardlink;
        m.link = it->second;
        return tar_.add(m);
      }
    }
    m.xattrs = xattrs_of(proc);
    if (S_ISREG(st.st_mode)) {
      Fd fd(::openat(dir, name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
      if (!fd) throw_errno("open");
      m.type = TarMember::Type::kFile;
      m.size = static_cast<std::uint64_t>(st.st_size);
      tar_.add(m);
      return tar_.data_from_fd(fd.get());
    }
    if (S_ISLNK(st.st_mode)) {
      std::string target(static_cast<std::size_t>(st.st_size > 0 ? st.st_size : 4096) + 1, '\0');
      ssize_t n = ::readlinkat(dir, name.c_str(), target.data(), target.size());
      if (n < 0) throw_errno("readlink");
      target.resize(static_cast<std::size_t>(n));
      m.type = TarMember::Type::kSymlink;
      m.link = std::move(target);
      return tar_.add(m);
    }
    if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) {
      m.type = S_ISCHR(st.st_mode) ? TarMember::Type::kCharDevice : TarMember::Type::kBlockDevice;
      m.dev_major = major(st.st_rdev);
      m.dev_minor = minor(st.st_rdev);
      return tar_.add(m);
    }
    if (S_ISFIFO(st.st_mode)) {
      m.type = TarMember::Type::kFifo;
      return tar_.add(m);
    }
  }

  const fs::path& upper_;
  LayerTarWriter& tar_;
  std::map<std::pair<dev_t, ino_t>, std::string> links_;  // first path of each multiply linked file
};

}  // namespace

LayerTar write_layer_tar(const fs::path& upper, const std::function<void(const char*, std::size_t)>& out) {
  Fd root(::open(upper.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!root) throw std::runtime_error("cannot open " + upper.string() + ": " + std::strerror(errno));
  LayerTarWriter tar(out);
  UpperWalker(upper, tar).walk(root.get(), "");
  return tar.finish();
}

}  // namespace berth::agent::image
