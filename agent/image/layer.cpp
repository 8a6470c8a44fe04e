#include "agent/image/layer.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string_view>
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

std::string parent_of(const std::string& member) {
  auto slash = member.rfind('/');
  return slash == std::string::npos ? "" : member.substr(0, slash);
}

std::string base_of(const std::string& member) {
  auto slash = member.rfind('/');
  return slash == std::string::npos ? member : member.substr(slash + 1);
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

  EntryWriter writer(dest, src.error);
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
    } catch (const ArchiveInputError&) {
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
