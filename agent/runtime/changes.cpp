#include "agent/runtime/changes.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <memory>
#include <set>
#include <system_error>

#include "agent/runtime/fd.h"

namespace berth::agent::runtime {
namespace {

[[noreturn]] void fail(const std::string& what) { throw std::system_error(errno, std::generic_category(), what); }

bool is_whiteout(const struct stat& st) { return S_ISCHR(st.st_mode) && st.st_rdev == makedev(0, 0); }

bool is_opaque(int dir, const std::string& name) {
  const std::string path = "/proc/self/fd/" + std::to_string(dir) + "/" + name;  // not followed
  char value[2];
  return ::lgetxattr(path.c_str(), "trusted.overlay.opaque", value, sizeof value) == 1 && value[0] == 'y';
}

// Go's sameFsTime: equal, or equal seconds where one side has no nanoseconds.
bool same_time(const timespec& a, const timespec& b) {
  return a.tv_sec == b.tv_sec && (a.tv_nsec == b.tv_nsec || a.tv_nsec == 0 || b.tv_nsec == 0);
}

std::vector<std::string> sorted_names(int dir) {
  UniqueFd listed(::openat(dir, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!listed) fail("list");
  std::unique_ptr<DIR, int (*)(DIR*)> list(::fdopendir(listed.get()), ::closedir);
  if (!list) fail("list");
  listed.release();
  std::vector<std::string> names;
  errno = 0;
  while (const dirent* d = ::readdir(list.get())) {
    std::string name = d->d_name;
    if (name != "." && name != "..") names.push_back(std::move(name));
  }
  if (errno != 0) fail("list");
  std::sort(names.begin(), names.end());
  return names;
}

// What one lower layer says about a path.
enum class Lower { kAbsent, kPresent, kHidden };

// `parts` in the layer `root`, never through a symlink. kHidden: the layer
// deletes it (a whiteout on the way, a non-directory over a parent, or an
// opaque parent without it), so the layers below do not count.
Lower look_up(int root, const std::vector<std::string>& parts, struct stat& st) {
  UniqueFd dir(::fcntl(root, F_DUPFD_CLOEXEC, 0));
  if (!dir) fail("dup");
  bool opaque = false;
  for (std::size_t i = 0; i < parts.size(); ++i) {
    if (::fstatat(dir.get(), parts[i].c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0)
      return opaque ? Lower::kHidden : Lower::kAbsent;
    if (is_whiteout(st)) return Lower::kHidden;
    if (i + 1 == parts.size()) return Lower::kPresent;
    if (!S_ISDIR(st.st_mode)) return Lower::kHidden;
    opaque = is_opaque(dir.get(), parts[i]);
    UniqueFd next(::openat(dir.get(), parts[i].c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!next) return Lower::kAbsent;
    dir = std::move(next);
  }
  return Lower::kAbsent;
}

class ChangeWalker {
 public:
  explicit ChangeWalker(const std::vector<std::filesystem::path>& lowers) {
    for (const auto& l : lowers) {
      UniqueFd fd(::open(l.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
      if (fd) lowers_.push_back(std::move(fd));
    }
  }

  void walk(int dir, const std::string& path, std::vector<std::string>& parts) {
    for (const std::string& name : sorted_names(dir)) {
      struct stat f {};
      if (::fstatat(dir, name.c_str(), &f, AT_SYMLINK_NOFOLLOW) != 0) {
        if (errno == ENOENT) continue;  // gone meanwhile
        fail("lstat " + name);
      }
      const std::string child = path == "/" ? "/" + name : path + "/" + name;
      parts.push_back(name);
      const bool is_dir = S_ISDIR(f.st_mode);
      record(dir, name, child, f, parts);
      if (is_dir) {  // an unchanged directory may still hold changes
        UniqueFd sub(::openat(dir, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
        if (!sub) fail("open " + child);
        walk(sub.get(), child, parts);
      }
      parts.pop_back();
    }
  }

  std::vector<Change> take() { return std::move(changes_); }

 private:
  // Records the change `child` stands for, if any (an unchanged directory is none).
  void record(int dir, const std::string& name, const std::string& child, const struct stat& f,
              const std::vector<std::string>& parts) {
    const bool is_dir = S_ISDIR(f.st_mode);
    Change change{child, Change::kAdded};
    if (is_whiteout(f) || (is_dir && is_opaque(dir, name))) {
      change.kind = Change::kDeleted;
    } else {
      for (const UniqueFd& lower : lowers_) {
        struct stat st {};
        Lower found = look_up(lower.get(), parts, st);
        if (found == Lower::kAbsent) continue;
        if (found == Lower::kHidden) break;
        if (is_dir && S_ISDIR(st.st_mode) && f.st_size == st.st_size && f.st_mode == st.st_mode &&
            same_time(f.st_mtim, st.st_mtim))
          return;
        change.kind = Change::kModified;
        break;
      }
    }
    if (is_dir) changed_dirs_.insert(child);
    if (change.kind != Change::kModified) {
      const std::string parent = child.substr(0, child.rfind('/'));
      if (!parent.empty() && !changed_dirs_.count(parent)) {
        changes_.push_back({parent, Change::kModified});
        changed_dirs_.insert(parent);
      }
    }
    changes_.push_back(std::move(change));
  }

  std::vector<UniqueFd> lowers_;
  std::vector<Change> changes_;
  std::set<std::string> changed_dirs_;
};

}  // namespace

std::vector<Change> overlay_changes(const std::filesystem::path& upper,
                                    const std::vector<std::filesystem::path>& lowers) {
  UniqueFd root(::open(upper.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!root) {
    if (errno == ENOENT) return {};  // never started: nothing changed
    fail("cannot open " + upper.string());
  }
  ChangeWalker walker(lowers);
  std::vector<std::string> parts;
  walker.walk(root.get(), "/", parts);
  return walker.take();
}

}  // namespace berth::agent::runtime
