#include "agent/build/context.h"

#include <archive.h>
#include <archive_entry.h>

#include <algorithm>
#include <cstdio>
#include <exception>
#include <memory>
#include <vector>

#include "agent/build/error.h"
#include "agent/build/text.h"
#include "agent/image/beneath.h"

namespace berth::agent::build {
namespace fs = std::filesystem;
namespace {

using ReadArchive = std::unique_ptr<archive, decltype(&archive_read_free)>;

ReadArchive new_reader() {
  ReadArchive a(archive_read_new(), archive_read_free);
  if (!a) throw std::bad_alloc();
  return a;
}

// "100", or "1.5" for a limit that is not whole MiB.
std::string in_mib(std::uint64_t bytes) {
  constexpr std::uint64_t kMiB = 1024 * 1024;
  if (bytes % kMiB == 0) return std::to_string(bytes / kMiB);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f", static_cast<double>(bytes) / kMiB);
  std::string s = buf;
  while (s.back() == '0') s.pop_back();
  if (s.back() == '.') s.pop_back();
  return s;
}

// The body, decompressed by libarchive's "raw" format (gzip, bzip2, xz, lzma,
// zstd or none: what dockerd accepts, and no external programs), then capped:
// past `max` bytes of tar the reader fails at once.
class ContextStream {
 public:
  ContextStream(const image::ReadFn& body, std::uint64_t max) : body_(body), max_(max) {
    archive* a = raw_.get();
    archive_read_support_filter_gzip(a);
    archive_read_support_filter_bzip2(a);
    archive_read_support_filter_xz(a);
    archive_read_support_filter_lzma(a);
    archive_read_support_filter_zstd(a);
    archive_read_support_format_raw(a);
    archive_read_support_format_empty(a);
    if (archive_read_open(a, this, nullptr, &ContextStream::body_cb, nullptr) != ARCHIVE_OK) fail(a);
    archive_entry* e = nullptr;
    int r = archive_read_next_header(a, &e);
    if (r != ARCHIVE_OK && r != ARCHIVE_EOF) fail(a);
    at_end_ = r == ARCHIVE_EOF;
    if (compressed_ == 0) throw BuildError("the build context is empty: the request body holds no tar stream");
  }

  // The reader of the tar inside, for archive_read_open.
  static la_ssize_t tar_cb(archive*, void* self_p, const void** out) {
    auto* self = static_cast<ContextStream*>(self_p);
    la_ssize_t n = self->read(self->tar_buf_.data(), self->tar_buf_.size());
    *out = self->tar_buf_.data();
    return n;
  }

  // Reads what follows the tar's end marker, still within the limit.
  void drain() {
    while (true) {
      la_ssize_t n = read(tar_buf_.data(), tar_buf_.size());
      if (n < 0) fail(raw_.get());
      if (n == 0) return;
    }
  }

  // Throws what went wrong: the body's own error, the limit, or libarchive's
  // message about `a` (the raw or the tar reader).
  [[noreturn]] void fail(archive* a) {
    if (failed_) std::rethrow_exception(failed_);
    const char* msg = archive_error_string(a);
    throw BuildError(std::string("the build context is not a valid tar stream: ") + (msg ? msg : "unknown error"));
  }

  std::uint64_t compressed() const { return compressed_; }

 private:
  static la_ssize_t body_cb(archive*, void* self_p, const void** out) {
    auto* self = static_cast<ContextStream*>(self_p);
    try {
      std::size_t n = self->body_(self->body_buf_.data(), self->body_buf_.size());
      self->compressed_ += n;
      *out = self->body_buf_.data();
      return static_cast<la_ssize_t>(n);
    } catch (...) {
      self->failed_ = std::current_exception();
      return -1;
    }
  }

  // Decompressed bytes; 0 at the end, -1 on failure (kept in failed_ or raw_).
  la_ssize_t read(char* buf, std::size_t size) {
    if (at_end_) return 0;
    if (failed_) return -1;
    la_ssize_t n = archive_read_data(raw_.get(), buf, size);
    if (n < 0) {
      if (!failed_) {
        const char* msg = archive_error_string(raw_.get());
        failed_ = std::make_exception_ptr(
            BuildError(std::string("the build context is not a valid tar stream: ") + (msg ? msg : "unknown error")));
      }
      return -1;
    }
    if (n == 0) at_end_ = true;
    tar_bytes_ += static_cast<std::uint64_t>(n);
    if (tar_bytes_ > max_) {
      failed_ = std::make_exception_ptr(BuildError("the build context is larger than the limit of " + in_mib(max_) +
                                                   " MiB (build.max_context_bytes in agent.json)"));
      return -1;
    }
    return n;
  }

  const image::ReadFn& body_;
  const std::uint64_t max_;
  std::uint64_t compressed_ = 0;
  std::uint64_t tar_bytes_ = 0;
  bool at_end_ = false;
  std::exception_ptr failed_;
  std::vector<char> body_buf_ = std::vector<char>(64 * 1024);
  std::vector<char> tar_buf_ = std::vector<char>(64 * 1024);
  ReadArchive raw_ = new_reader();
};

[[noreturn]] void outside(const std::string& name, const std::string& why = "") {
  throw BuildError(text::go_quote(name) + " is outside of the build context" + (why.empty() ? "" : ": " + why));
}

// The entry's name, cleaned, once it is known to stay inside: dockerd's
// refusals of ".." names and of links leading out, and ours of absolute names.
std::string checked_member(archive_entry* e) {
  const char* raw = archive_entry_pathname(e);
  if (!raw || !*raw) throw BuildError("the build context holds an entry without a name");
  const std::string name = raw;
  if (name.front() == '/') outside(name);
  std::string member;
  try {
    member = image::clean_member(raw, "entry");
  } catch (const image::BreakoutError&) {
    outside(name);
  }
  if (const char* link = archive_entry_hardlink(e)) {
    if (!*link || *link == '/')
      throw BuildError("invalid hardlink " + text::go_quote(name) + " -> " + text::go_quote(link));
    try {
      image::clean_member(link, "hardlink");
    } catch (const image::BreakoutError&) {
      throw BuildError("invalid hardlink " + text::go_quote(name) + " -> " + text::go_quote(link));
    }
  } else if (archive_entry_filetype(e) == AE_IFLNK) {
    const char* target = archive_entry_symlink(e);
    try {
      image::check_symlink_target(member, target ? target : "");
    } catch (const std::runtime_error&) {
      throw BuildError("invalid symlink " + text::go_quote(name) + " -> " + text::go_quote(target ? target : ""));
    }
  }
  return member;
}

}  // namespace

ContextInfo receive_context(const image::ReadFn& body, const fs::path& dir, std::uint64_t max_bytes) {
  ContextStream stream(body, max_bytes);
  ReadArchive tar = new_reader();
  archive_read_support_format_tar(tar.get());
  archive_read_support_format_empty(tar.get());
  if (archive_read_open(tar.get(), &stream, nullptr, &ContextStream::tar_cb, nullptr) != ARCHIVE_OK)
    stream.fail(tar.get());

  const std::string no_input_error;  // the stream's errors are rethrown by fail()
  image::EntryWriter writer(fs::canonical(dir), no_input_error);
  ContextInfo info;
  archive_entry* e = nullptr;
  while (true) {
    int r = archive_read_next_header(tar.get(), &e);
    if (r == ARCHIVE_EOF) break;
    if (r < ARCHIVE_WARN) stream.fail(tar.get());
    std::string member = checked_member(e);
    if (member.empty()) continue;  // "./" itself
    try {
      writer.entry(tar.get(), e, member);
    } catch (const image::ArchiveInputError&) {
      stream.fail(tar.get());
    } catch (const image::BreakoutError& ex) {
      outside(archive_entry_pathname(e), ex.what());
    } catch (const std::exception& ex) {
      throw BuildError("the build context cannot be unpacked: " + member + ": " + ex.what());
    }
    ++info.files;
    if (archive_entry_filetype(e) == AE_IFREG && !archive_entry_hardlink(e))
      info.content += static_cast<std::uint64_t>(std::max<la_int64_t>(0, archive_entry_size(e)));
  }
  writer.finish();
  stream.drain();
  info.bytes = stream.compressed();
  return info;
}

}  // namespace berth::agent::build
