#include "agent/runtime/archive.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <fcntl.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <memory>
#include <system_error>
#include <vector>

#include "agent/api/http.h"
#include "agent/image/beneath.h"
#include "agent/image/diff.h"
#include "agent/runtime/json_log.h"

namespace berth::agent::runtime {
namespace {

using api::HttpError;
using image::TarMember;

[[noreturn]] void fail(int err, const std::string& what) {
  throw std::system_error(err, std::generic_category(), what);
}

// Go's PathError text: "lstat /x/y: not a directory".
[[noreturn]] void fail_lookup(int err, std::string_view path) {
  if (err == ENOENT) throw PathNotFound();
  throw std::runtime_error("lstat " + std::string(path) + ": " + std::strerror(err));
}

// Go's specifiesCurrentDir: the last element is ".".
bool names_current_dir(std::string_view path) { return base_name(path) == "."; }

// pkg/archive's PreserveTrailingDotOrSeparator.
std::string preserve_trailing(std::string cleaned, std::string_view original) {
  if (!names_current_dir(cleaned) && names_current_dir(original)) {
    if (cleaned.back() != '/') cleaned += '/';
    cleaned += '.';
  }
  if (cleaned.back() != '/' && !original.empty() && original.back() == '/') cleaned += '/';
  return cleaned;
}

std::string child_path(const std::string& dir, const std::string& name) {
  return dir == "/" ? "/" + name : dir + "/" + name;
}

// A tar member name under `parent` ("" for the top of an export).
std::string member_name(const std::string& parent, const std::string& name) {
  if (parent.empty()) return name;
  if (parent.back() == '/') return parent + name;
  return parent + "/" + name;
}

std::vector<std::string> list_names(int dir) {
  UniqueFd listed(::openat(dir, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!listed) fail(errno, "cannot list a directory");
  std::unique_ptr<DIR, int (*)(DIR*)> list(::fdopendir(listed.get()), ::closedir);
  if (!list) fail(errno, "cannot list a directory");
  listed.release();  // the DIR owns it now
  std::vector<std::string> names;
  errno = 0;
  while (const dirent* d = ::readdir(list.get())) {
    std::string name = d->d_name;
    if (name != "." && name != "..") names.push_back(std::move(name));
  }
  if (errno != 0) fail(errno, "cannot list a directory");
  std::sort(names.begin(), names.end());
  return names;
}

// The tar of a part of the tree, as pkg/archive writes it: pre-order, names
// sorted, directories with a trailing "/", hard links within the archive as
// links, sockets left out, security.capability kept.
class TreeTar {
 public:
  TreeTar(const ContainerTree& tree, const TarSink& out, bool cross_mounts)
      : tree_(tree), cross_mounts_(cross_mounts), tar_(out) {}

  // The entry `child` of the directory `parent` ("": `parent` is the entry
  // itself, a file system's top), at container path `path`, named `name`.
  void add(int parent, const std::string& child, const struct stat& st, const std::string& path,
           const std::string& name) {
    if (S_ISSOCK(st.st_mode)) return;
    TarMember m;
    m.name = name;
    m.mode = st.st_mode & 07777;
    m.uid = st.st_uid;
    m.gid = st.st_gid;
    m.mtime = st.st_mtim.tv_sec;
    if (!S_ISDIR(st.st_mode) && st.st_nlink > 1) {
      auto [it, first] = links_.try_emplace({st.st_dev, st.st_ino}, name);
      if (!first) {
        m.type = TarMember::Type::kHardlink;
        m.link = it->second;
        return tar_.add(m);
      }
    }
    if (S_ISDIR(st.st_mode)) {
      UniqueFd dir(child.empty() ? ::openat(parent, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
                                 : ::openat(parent, child.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (!dir) fail(errno, "cannot open " + path);
      m.type = TarMember::Type::kDir;
      tar_.add(m);
      return walk(dir.get(), path, name);
    }
    if (S_ISREG(st.st_mode)) {
      UniqueFd file(child.empty()
                        ? ::open(("/proc/self/fd/" + std::to_string(parent)).c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC)
                        : ::openat(parent, child.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
      struct stat now {};
      if (!file || ::fstat(file.get(), &now) != 0) fail(errno, "cannot open " + path);
      if (!S_ISREG(now.st_mode) || now.st_ino != st.st_ino || now.st_dev != st.st_dev)
        throw std::runtime_error(path + " changed while it was archived");
      m.type = TarMember::Type::kFile;
      m.size = static_cast<std::uint64_t>(now.st_size);
      char cap[1024];
      ssize_t n = ::fgetxattr(file.get(), "security.capability", cap, sizeof cap);
      if (n > 0) m.xattrs.emplace_back("security.capability", std::string(cap, static_cast<std::size_t>(n)));
      tar_.add(m);
      return tar_.data_from_fd(file.get());
    }
    if (S_ISLNK(st.st_mode)) {
      char target[4096];
      ssize_t n = ::readlinkat(parent, child.c_str(), target, sizeof target);
      if (n < 0 || static_cast<std::size_t>(n) >= sizeof target) fail(n < 0 ? errno : ENAMETOOLONG, "readlink " + path);
      m.type = TarMember::Type::kSymlink;
      m.link.assign(target, static_cast<std::size_t>(n));
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

  // What the directory `dir` (container path `path`, member `name`) holds.
  void walk(int dir, const std::string& path, const std::string& name) {
    std::vector<std::string> names = list_names(dir);
    if (cross_mounts_) {
      for (std::string& m : tree_.mounts_below(path))
        if (std::find(names.begin(), names.end(), m) == names.end()) names.push_back(std::move(m));
      std::sort(names.begin(), names.end());
    }
    for (const std::string& n : names) {
      const std::string path_n = child_path(path, n);
      const std::string name_n = member_name(name, n);
      struct stat st {};
      if (cross_mounts_) {
        TreePlace place = tree_.place_of(path_n);
        if (place.mount >= 0 && place.rel.empty()) {  // a volume or bind mount: its source
          const int top = tree_.top_fd(place.mount);
          if (::fstat(top, &st) != 0) fail(errno, "stat " + path_n);
          add(top, "", st, path_n, name_n);
          continue;
        }
      }
      if (::fstatat(dir, n.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
        if (errno == ENOENT) continue;  // gone meanwhile
        fail(errno, "lstat " + path_n);
      }
      add(dir, n, st, path_n, name_n);
    }
  }

  void finish() { tar_.finish(); }

 private:
  const ContainerTree& tree_;
  bool cross_mounts_;
  image::LayerTarWriter tar_;
  std::map<std::pair<dev_t, ino_t>, std::string> links_;
};

// --- extraction

// Go's filepath.Clean of a relative member name: "./a//b/../c" -> "a/c",
// "/x" -> "/x", "" -> ".", "../x" stays.
std::string go_clean(std::string_view name) {
  const bool rooted = !name.empty() && name.front() == '/';
  std::vector<std::string> out;
  std::size_t i = 0;
  while (i <= name.size()) {
    std::size_t j = name.find('/', i);
    if (j == std::string_view::npos) j = name.size();
    std::string part(name.substr(i, j - i));
    i = j + 1;
    if (part.empty() || part == ".") continue;
    if (part == "..") {
      if (!out.empty() && out.back() != "..") out.pop_back();
      else if (!rooted) out.push_back("..");
      continue;
    }
    out.push_back(std::move(part));
  }
  std::string s;
  for (const auto& p : out) s += (s.empty() ? "" : "/") + p;
  if (rooted) return "/" + s;
  return s.empty() ? "." : s;
}

bool leaves_dest(const std::string& cleaned) { return cleaned == ".." || cleaned.rfind("../", 0) == 0; }

// Where inside the destination a member goes: "" for the destination itself.
std::string under_dest(const std::string& cleaned) {
  std::string out = cleaned;
  while (!out.empty() && out.front() == '/') out.erase(0, 1);
  return out == "." ? "" : out;
}

struct ReadState {
  explicit ReadState(const ArchiveInput& in) : input(in) {}
  const ArchiveInput& input;
  std::vector<char> buf = std::vector<char>(256 * 1024);
  std::string error;

  static la_ssize_t read_cb(archive*, void* self_p, const void** out) {
    auto* self = static_cast<ReadState*>(self_p);
    try {
      std::size_t n = self->input(self->buf.data(), self->buf.size());
      *out = self->buf.data();
      return static_cast<la_ssize_t>(n);
    } catch (const std::exception& e) {
      self->error = e.what();
      return -1;
    }
  }
};

std::string archive_message(archive* a, const ReadState& src) {
  if (!src.error.empty()) return src.error;
  const char* msg = archive_error_string(a);
  return msg ? msg : "unknown archive error";
}

// An EntryWriter for a directory the tree opened (its fd held meanwhile).
struct RootedWriter {
  UniqueFd dir;
  std::unique_ptr<image::EntryWriter> writer;
};

UniqueFd open_directory(const ContainerTree& tree, const TreePlace& place) {
  int error = 0;
  auto [parent, name] = tree.open_parent(place, error);
  if (error != 0) fail(error, "cannot open " + place.path);
  UniqueFd dir(name.empty() ? ::openat(parent.get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
                            : ::openat(parent.get(), name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!dir) fail(errno, "cannot open " + place.path);
  return dir;
}

}  // namespace

std::uint32_t go_file_mode(mode_t mode) {
  constexpr std::uint32_t kDir = 1u << 31, kSymlink = 1u << 27, kDevice = 1u << 26, kNamedPipe = 1u << 25,
                          kSocket = 1u << 24, kSetuid = 1u << 23, kSetgid = 1u << 22, kCharDevice = 1u << 21,
                          kSticky = 1u << 20;
  std::uint32_t out = mode & 0777;
  switch (mode & S_IFMT) {
    case S_IFBLK: out |= kDevice; break;
    case S_IFCHR: out |= kDevice | kCharDevice; break;
    case S_IFDIR: out |= kDir; break;
    case S_IFIFO: out |= kNamedPipe; break;
    case S_IFLNK: out |= kSymlink; break;
    case S_IFSOCK: out |= kSocket; break;
    default: break;
  }
  if (mode & S_ISGID) out |= kSetgid;
  if (mode & S_ISUID) out |= kSetuid;
  if (mode & S_ISVTX) out |= kSticky;
  return out;
}

nlohmann::ordered_json to_json(const PathStat& stat) {
  return {{"name", stat.name},
          {"size", stat.size},
          {"mode", stat.mode},
          {"mtime", stat.mtime},
          {"linkTarget", stat.link_target}};
}

PathStat stat_path(const ContainerTree& tree, std::string_view path) {
  Resolved r = tree.resolve(path, FollowLast::kNo);
  if (!r.exists) fail_lookup(r.error ? r.error : ENOENT, path);
  PathStat out;
  out.name = base_name(path);
  out.size = static_cast<std::int64_t>(r.st.st_size);
  out.mode = go_file_mode(r.st.st_mode);
  out.mtime = rfc3339_nano(static_cast<std::int64_t>(r.st.st_mtim.tv_sec) * 1'000'000'000 + r.st.st_mtim.tv_nsec);
  if (S_ISLNK(r.st.st_mode)) {
    int error = 0;
    out.link_target = tree.follow_in_scope(path, error);
    if (error != 0) fail_lookup(error, path);
  }
  return out;
}

Resource find_resource(const ContainerTree& tree, std::string_view path) {
  Resource out;
  out.path = preserve_trailing(clean_container_path(path), path);
  out.stat = stat_path(tree, out.path);
  return out;
}

void write_resource(const ContainerTree& tree, const Resource& resource, const TarSink& out) {
  Resolved r = tree.resolve(resource.path, FollowLast::kNo);
  if (!r.exists) fail_lookup(r.error ? r.error : ENOENT, resource.path);
  const std::string rebase = base_name(resource.path);
  TreeTar tar(tree, out, true);
  int error = 0;
  auto [parent, name] = tree.open_parent(r.place, error);
  if (error != 0) fail_lookup(error, resource.path);
  tar.add(parent.get(), name, r.st, r.place.path, rebase);
  tar.finish();
}

void write_export(const ContainerTree& tree, const TarSink& out) {
  TreeTar tar(tree, out, false);
  UniqueFd root(::openat(tree.top_fd(-1), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!root) fail(errno, "cannot open the container's root");
  tar.walk(root.get(), "/", "");
  tar.finish();
}

void extract_archive(const ContainerTree& tree, std::string_view path, const ArchiveInput& input,
                     const ExtractOptions& options) {
  // The destination, every symlink followed (dockerd's EvalSymlinks).
  const std::string wanted = preserve_trailing(clean_container_path(path), path);
  Resolved dest = tree.resolve(wanted, FollowLast::kYes);
  if (!dest.exists) fail_lookup(dest.error ? dest.error : ENOENT, wanted);
  if (!S_ISDIR(dest.st.st_mode)) throw HttpError(400, "extraction point is not a directory");
  if (dest.place.mount >= 0) {
    if (!tree.mounts()[static_cast<std::size_t>(dest.place.mount)].writable)
      throw HttpError(400, "mounted volume is marked read-only");
  } else if (options.readonly_rootfs) {
    throw HttpError(400, "container rootfs is marked read-only");
  }
  std::optional<std::pair<std::uint32_t, std::uint32_t>> owner;
  if (options.owner) owner = options.owner();

  ReadState src(input);
  std::unique_ptr<archive, decltype(&archive_read_free)> a(archive_read_new(), archive_read_free);
  if (!a) throw std::bad_alloc();
  archive_read_support_filter_all(a.get());
  archive_read_support_format_tar(a.get());
  archive_read_support_format_empty(a.get());
  if (archive_read_open(a.get(), &src, nullptr, &ReadState::read_cb, nullptr) != ARCHIVE_OK)
    throw std::runtime_error(archive_message(a.get(), src));

  // One writer for the destination's file system, rooted at the destination
  // (so symlink and hard link checks are dockerd's), and one per mount below it.
  const std::string& dest_path = dest.place.path;
  std::map<int, RootedWriter> writers;
  auto writer_for = [&](int mount) -> image::EntryWriter& {
    auto it = writers.find(mount);
    if (it != writers.end()) return *it->second.writer;
    RootedWriter w;
    const TreePlace top = mount == dest.place.mount ? dest.place : TreePlace{"", mount, ""};
    w.dir = open_directory(tree, top);
    w.writer = std::make_unique<image::EntryWriter>("/proc/self/fd/" + std::to_string(w.dir.get()), src.error);
    return *writers.emplace(mount, std::move(w)).first->second.writer;
  };

  archive_entry* e = nullptr;
  while (true) {
    int r = archive_read_next_header(a.get(), &e);
    if (r == ARCHIVE_EOF) break;
    if (r < ARCHIVE_WARN) throw std::runtime_error(archive_message(a.get(), src));
    const char* raw = archive_entry_pathname(e);
    const std::string cleaned = go_clean(raw ? raw : "");
    if (leaves_dest(cleaned))
      throw std::runtime_error("\"" + cleaned + "\" is outside of \"" + dest_path + "\"");
    const std::string rel = under_dest(cleaned);
    const std::string where = rel.empty() ? dest_path : clean_container_path(dest_path + "/" + rel);
    TreePlace place = tree.place_of(where);
    const bool is_dir = archive_entry_filetype(e) == AE_IFDIR && !archive_entry_hardlink(e);

    // Into the destination's file system, or into a mount below it.
    const bool own_fs = place.mount == dest.place.mount;
    std::string member = own_fs ? rel : place.rel;
    if (!own_fs) {
      if (!tree.mounts()[static_cast<std::size_t>(place.mount)].writable)
        throw std::runtime_error("open " + where + ": read-only file system");
      if (member.empty()) {
        if (is_dir) continue;  // the mount point itself keeps what it has
        throw std::runtime_error("unlinkat " + where + ": device or resource busy");
      }
    }

    struct stat existing {};
    if (tree.lstat(place, existing) == 0) {
      const bool was_dir = S_ISDIR(existing.st_mode);
      if (options.no_overwrite_dir_non_dir && was_dir && !is_dir)
        throw std::runtime_error("cannot overwrite directory \"" + where + "\" with non-directory \"" + dest_path + "\"");
      if (options.no_overwrite_dir_non_dir && !was_dir && is_dir)
        throw std::runtime_error("cannot overwrite non-directory \"" + where + "\" with directory \"" + dest_path + "\"");
    }

    if (const char* link = archive_entry_hardlink(e)) {
      const std::string target = go_clean(link);
      if (leaves_dest(target))
        throw std::runtime_error("invalid hardlink \"" + std::string(link) + "\" -> \"" + cleaned + "\"");
      const std::string target_rel = under_dest(target);
      TreePlace target_place =
          tree.place_of(target_rel.empty() ? dest_path : clean_container_path(dest_path + "/" + target_rel));
      if (target_place.mount != place.mount)
        throw std::runtime_error("link " + target_place.path + " " + where + ": invalid cross-device link");
      archive_entry_set_hardlink(e, (own_fs ? target_rel : target_place.rel).c_str());
    }
    if (owner) {
      archive_entry_set_uid(e, owner->first);
      archive_entry_set_gid(e, owner->second);
    }
    try {
      writer_for(own_fs ? dest.place.mount : place.mount).entry(a.get(), e, member);
    } catch (const image::ArchiveInputError&) {
      throw;
    } catch (const std::exception& err) {
      throw std::runtime_error(where + ": " + err.what());
    }
  }
  for (auto& [_, w] : writers) w.writer->finish();
}

}  // namespace berth::agent::runtime
