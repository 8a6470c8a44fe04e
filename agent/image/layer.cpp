#include "agent/image/layer.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <set>
#include <stdexcept>
#include <vector>

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
struct WriteDisk {
  archive* a = archive_write_disk_new();
  ~WriteDisk() { archive_write_free(a); }
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

bool has_dotdot(std::string_view path) {
  std::size_t start = 0;
  while (start <= path.size()) {
    auto slash = path.find('/', start);
    auto part = path.substr(start, slash == std::string_view::npos ? std::string_view::npos : slash - start);
    if (part == "..") return true;
    if (slash == std::string_view::npos) break;
    start = slash + 1;
  }
  return false;
}

// "./a/b/" -> "a/b"; throws for paths that could escape.
std::string clean_member(const char* raw) {
  if (!raw) throw std::runtime_error("layer: entry without a name");
  std::string p = raw;
  while (p.rfind("./", 0) == 0) p.erase(0, 2);
  while (!p.empty() && p.front() == '/') p.erase(0, 1);
  while (!p.empty() && p.back() == '/') p.pop_back();
  if (has_dotdot(p)) throw std::runtime_error("layer: entry escapes the layer: " + std::string(raw));
  return p;
}

void ensure_dirs(const fs::path& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw std::runtime_error("layer: cannot create " + dir.string() + ": " + ec.message());
}

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

  WriteDisk disk;
  archive_write_disk_set_options(
      disk.a, ARCHIVE_EXTRACT_OWNER | ARCHIVE_EXTRACT_PERM | ARCHIVE_EXTRACT_TIME |
                  ARCHIVE_EXTRACT_XATTR | ARCHIVE_EXTRACT_SECURE_SYMLINKS |
                  ARCHIVE_EXTRACT_SECURE_NODOTDOT | ARCHIVE_EXTRACT_UNLINK);

  UnpackedLayer out;
  std::set<std::string> opaque_dirs;
  archive_entry* entry = nullptr;
  while (true) {
    int r = archive_read_next_header(tar.a, &entry);
    if (r == ARCHIVE_EOF) break;
    if (r < ARCHIVE_WARN)
      throw std::runtime_error(src.error.empty() ? archive_message(tar.a, "layer") : src.error);
    std::string member = clean_member(archive_entry_pathname(entry));
    if (member.empty()) continue;  // "./" itself
    fs::path rel(member);
    std::string base = rel.filename().string();
    if (member.rfind(kMetaPrefix, 0) == 0 && base != kOpaque) continue;  // aufs metadata (.wh..wh.plnk/...)
    if (base.rfind(kWhiteoutPrefix, 0) == 0) {
      if (base == kOpaque) {
        opaque_dirs.insert(rel.parent_path().string());
        continue;
      }
      if (base.rfind(kMetaPrefix, 0) == 0) continue;  // aufs metadata (.wh..wh.plnk)
      std::string hidden = base.substr(kWhiteoutPrefix.size());
      if (hidden.empty() || hidden == "." || hidden == "..")
        throw std::runtime_error("layer: invalid whiteout " + member);
      // The whiteout becomes a 0:0 character device named after what it hides.
      archive_entry_clear(entry);
      archive_entry_set_pathname(entry, (dest / rel.parent_path() / hidden).c_str());
      archive_entry_set_filetype(entry, AE_IFCHR);
      archive_entry_set_perm(entry, 0);
      archive_entry_set_rdev(entry, makedev(0, 0));
      archive_entry_set_size(entry, 0);
      ensure_dirs(dest / rel.parent_path());
    } else {
      archive_entry_set_pathname(entry, (dest / rel).c_str());
      if (const char* link = archive_entry_hardlink(entry)) {
        std::string target = clean_member(link);
        archive_entry_set_hardlink(entry, (dest / target).c_str());
      }
      if (archive_entry_filetype(entry) == AE_IFREG) out.size += static_cast<std::uint64_t>(
                                                         std::max<la_int64_t>(0, archive_entry_size(entry)));
    }
    r = archive_read_extract2(tar.a, entry, disk.a);
    if (r < ARCHIVE_WARN) {
      if (!src.error.empty()) throw std::runtime_error(src.error);
      std::string msg = archive_message(disk.a, "layer: " + member);
      throw std::runtime_error(msg);
    }
  }
  if (archive_write_close(disk.a) != ARCHIVE_OK) throw std::runtime_error(archive_message(disk.a, "layer"));
  src.drain();
  for (const auto& dir : opaque_dirs) {
    fs::path p = dest / dir;
    ensure_dirs(p);
    if (lsetxattr(p.c_str(), "trusted.overlay.opaque", "y", 1, 0) != 0)
      throw std::runtime_error("layer: cannot mark " + dir + " opaque: " + std::strerror(errno));
  }
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
