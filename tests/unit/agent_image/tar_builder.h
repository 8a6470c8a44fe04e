#pragma once
// Builds tarballs in memory with libarchive for the image tests.
#include <archive.h>
#include <archive_entry.h>

#include <stdexcept>
#include <string>
#include <sys/stat.h>

namespace berth::agent::image::testing {

class TarBuilder {
 public:
  explicit TarBuilder(bool gzip = false) {
    a_ = archive_write_new();
    archive_write_set_format_pax_restricted(a_);
    if (gzip) archive_write_add_filter_gzip(a_);
    archive_write_set_bytes_in_last_block(a_, 1);
    archive_write_open(a_, &out_, nullptr, &TarBuilder::write_cb, nullptr);
  }
  ~TarBuilder() {
    if (a_) archive_write_free(a_);
  }
  TarBuilder& file(const std::string& name, const std::string& content, int mode = 0644) {
    return entry(name, AE_IFREG, mode, content);
  }
  TarBuilder& dir(const std::string& name, int mode = 0755) { return entry(name, AE_IFDIR, mode, ""); }
  TarBuilder& symlink(const std::string& name, const std::string& target) {
    archive_entry* e = archive_entry_new();
    archive_entry_set_pathname(e, name.c_str());
    archive_entry_set_filetype(e, AE_IFLNK);
    archive_entry_set_perm(e, 0777);
    archive_entry_set_symlink(e, target.c_str());
    archive_write_header(a_, e);
    archive_entry_free(e);
    return *this;
  }
  TarBuilder& hardlink(const std::string& name, const std::string& target) {
    archive_entry* e = archive_entry_new();
    archive_entry_set_pathname(e, name.c_str());
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, 0644);
    archive_entry_set_hardlink(e, target.c_str());
    archive_write_header(a_, e);
    archive_entry_free(e);
    return *this;
  }
  // Any entry: `setup` fills in what the helpers above do not (owner, xattrs,
  // devices, sparse maps); `content` follows as its data.
  template <typename Setup>
  TarBuilder& custom(const std::string& name, unsigned type, int mode, Setup&& setup,
                     const std::string& content = {}) {
    archive_entry* e = archive_entry_new();
    archive_entry_set_pathname(e, name.c_str());
    archive_entry_set_filetype(e, type);
    archive_entry_set_perm(e, static_cast<mode_t>(mode));
    archive_entry_set_size(e, static_cast<la_int64_t>(content.size()));
    archive_entry_set_mtime(e, 1700000000, 0);
    setup(e);
    if (archive_write_header(a_, e) != ARCHIVE_OK) throw std::runtime_error(archive_error_string(a_));
    if (!content.empty()) archive_write_data(a_, content.data(), content.size());
    archive_entry_free(e);
    return *this;
  }
  TarBuilder& fifo(const std::string& name, int mode = 0644) {
    return custom(name, AE_IFIFO, mode, [](archive_entry*) {});
  }
  TarBuilder& chardev(const std::string& name, dev_t rdev, int mode = 0600) {
    return custom(name, AE_IFCHR, mode, [rdev](archive_entry* e) { archive_entry_set_rdev(e, rdev); });
  }
  std::string finish() {
    if (archive_write_close(a_) != ARCHIVE_OK) throw std::runtime_error("tar close");
    archive_write_free(a_);
    a_ = nullptr;
    return out_;
  }

 private:
  TarBuilder& entry(const std::string& name, int type, int mode, const std::string& content) {
    archive_entry* e = archive_entry_new();
    archive_entry_set_pathname(e, name.c_str());
    archive_entry_set_filetype(e, static_cast<unsigned>(type));
    archive_entry_set_perm(e, static_cast<mode_t>(mode));
    archive_entry_set_size(e, static_cast<la_int64_t>(content.size()));
    archive_entry_set_mtime(e, 1700000000, 0);
    if (archive_write_header(a_, e) != ARCHIVE_OK) throw std::runtime_error("tar header");
    if (!content.empty()) archive_write_data(a_, content.data(), content.size());
    archive_entry_free(e);
    return *this;
  }
  static la_ssize_t write_cb(archive*, void* self, const void* buf, size_t n) {
    static_cast<std::string*>(self)->append(static_cast<const char*>(buf), n);
    return static_cast<la_ssize_t>(n);
  }
  archive* a_ = nullptr;
  std::string out_;
};

inline std::string read_all(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return {};
  std::string s;
  char buf[65536];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) s.append(buf, n);
  std::fclose(f);
  return s;
}

}  // namespace berth::agent::image::testing
