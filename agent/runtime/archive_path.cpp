#include "agent/runtime/archive_path.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <system_error>

namespace berth::agent::runtime {
namespace {

constexpr int kMaxSymlinks = 40;  // the kernel's limit (ELOOP)

// "a//b/c/" -> {a, b, c, "."}: a trailing slash stays as "." so the component
// before it must be a directory, and a symlink there is followed.
std::vector<std::string> components(std::string_view path) {
  std::vector<std::string> out;
  std::size_t i = 0;
  while (i < path.size()) {
    std::size_t j = path.find('/', i);
    if (j == std::string_view::npos) j = path.size();
    if (j > i) out.emplace_back(path.substr(i, j - i));
    i = j + 1;
  }
  if (!path.empty() && path.back() == '/' && !out.empty()) out.emplace_back(".");
  return out;
}

std::string joined(const std::vector<std::string>& parts) {
  std::string out;
  for (const std::string& p : parts) out += "/" + p;
  return out.empty() ? "/" : out;
}

std::string parent_of(const std::string& path) {
  auto slash = path.rfind('/');
  return slash == 0 || slash == std::string::npos ? "/" : path.substr(0, slash);
}

bool below_or_at(const std::string& path, const std::string& top) {
  if (top == "/") return true;
  return path == top || (path.size() > top.size() && path.compare(0, top.size(), top) == 0 && path[top.size()] == '/');
}

std::size_t depth(const std::string& path) { return components(path).size(); }

}  // namespace

std::string clean_container_path(std::string_view path) {
  std::vector<std::string> stack;
  for (const std::string& part : components(path)) {
    if (part == ".") continue;
    if (part == "..") {
      if (!stack.empty()) stack.pop_back();
      continue;
    }
    stack.push_back(part);
  }
  return joined(stack);
}

std::string base_name(std::string_view path) {
  if (path.empty()) return ".";
  while (path.size() > 1 && path.back() == '/') path.remove_suffix(1);
  if (path == "/") return "/";
  auto slash = path.rfind('/');
  return std::string(slash == std::string_view::npos ? path : path.substr(slash + 1));
}

ContainerTree::ContainerTree(const std::filesystem::path& rootfs, std::vector<TreeMount> mounts)
    : root_(::open(rootfs.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC)) {
  if (!root_) throw std::system_error(errno, std::generic_category(), "cannot open " + rootfs.string());
  std::stable_sort(mounts.begin(), mounts.end(), [](const TreeMount& a, const TreeMount& b) {
    return depth(clean_container_path(a.destination)) < depth(clean_container_path(b.destination));
  });
  for (TreeMount& m : mounts) {
    // No kernel path holds a NUL; such a destination was never mounted.
    if (m.destination.find('\0') != std::string::npos) continue;
    UniqueFd top(::open(m.source.c_str(), O_PATH | O_CLOEXEC));
    if (!top) continue;
    int error = 0;
    std::string dest = follow_in_scope(m.destination, error);
    if (error != 0) dest = clean_container_path(m.destination);
    if (dest == "/") continue;  // nothing is mounted over the root
    m.destination = dest;
    mounts_.push_back(std::move(m));
    tops_.push_back(std::move(top));
  }
}

TreePlace ContainerTree::place_of(const std::string& path) const {
  TreePlace out{path, -1, path.size() > 1 ? path.substr(1) : ""};
  std::size_t best = 0;
  for (std::size_t i = 0; i < mounts_.size(); ++i) {
    const std::string& d = mounts_[i].destination;
    if (!below_or_at(path, d) || d.size() < best) continue;
    best = d.size();
    out.mount = static_cast<int>(i);
    out.rel = path.size() > d.size() ? path.substr(d.size() + 1) : "";
  }
  return out;
}

std::pair<UniqueFd, std::string> ContainerTree::open_parent(const TreePlace& place, int& error) const {
  error = 0;
  std::vector<std::string> parts = components(place.rel);
  if (!parts.empty() && parts.back() == ".") parts.pop_back();
  UniqueFd dir(::fcntl(top_fd(place.mount), F_DUPFD_CLOEXEC, 0));
  if (!dir) {
    error = errno;
    return {};
  }
  if (parts.empty()) return {std::move(dir), ""};
  std::string name = std::move(parts.back());
  parts.pop_back();
  for (const std::string& part : parts) {
    if (part == "." || part == "..") {  // never made by the resolver; refused all the same
      error = EINVAL;
      return {};
    }
    UniqueFd next(::openat(dir.get(), part.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!next) {
      error = errno == ELOOP ? ENOTDIR : errno;
      return {};
    }
    dir = std::move(next);
  }
  if (name == "..") {
    error = EINVAL;
    return {};
  }
  return {std::move(dir), std::move(name)};
}

int ContainerTree::lstat(const TreePlace& place, struct stat& st) const {
  int error = 0;
  auto [dir, name] = open_parent(place, error);
  if (error != 0) return error;
  int r = name.empty() ? ::fstat(dir.get(), &st) : ::fstatat(dir.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW);
  return r == 0 ? 0 : errno;
}

namespace {

// The target of the symlink at `place`; false with errno set when unreadable.
bool read_link(const ContainerTree& tree, const TreePlace& place, std::string& target) {
  int error = 0;
  auto [dir, name] = tree.open_parent(place, error);
  if (error != 0 || name.empty()) {
    errno = error ? error : EINVAL;
    return false;
  }
  char buf[4096];
  ssize_t n = ::readlinkat(dir.get(), name.c_str(), buf, sizeof buf);
  if (n < 0) return false;
  if (static_cast<std::size_t>(n) >= sizeof buf) {
    errno = ENAMETOOLONG;
    return false;
  }
  target.assign(buf, static_cast<std::size_t>(n));
  return true;
}

}  // namespace

Resolved ContainerTree::resolve(std::string_view path, FollowLast last) const {
  Resolved r;
  if (path.find('\0') != std::string_view::npos) {  // as the kernel refuses it
    r.error = EINVAL;
    return r;
  }
  std::vector<std::string> stack;
  std::vector<std::string> todo = components(path);
  std::reverse(todo.begin(), todo.end());
  int links = 0;
  while (!todo.empty()) {
    std::string part = std::move(todo.back());
    todo.pop_back();
    if (part == ".") continue;
    if (part == "..") {
      if (!stack.empty()) stack.pop_back();
      continue;
    }
    const bool is_last = todo.empty();
    stack.push_back(part);
    TreePlace place = place_of(joined(stack));
    struct stat st {};
    if (int err = lstat(place, st); err != 0) {
      if (err == ENOENT && is_last) {
        r.place = std::move(place);
        return r;  // error 0, !exists
      }
      r.error = err;
      return r;
    }
    if (S_ISLNK(st.st_mode) && (!is_last || last == FollowLast::kYes)) {
      std::string target;
      if (++links > kMaxSymlinks) {
        r.error = ELOOP;
        return r;
      }
      if (!read_link(*this, place, target)) {
        r.error = errno;
        return r;
      }
      if (target.empty()) {
        r.error = ENOENT;
        return r;
      }
      stack.pop_back();
      if (target.front() == '/') stack.clear();
      std::vector<std::string> more = components(target);
      for (auto it = more.rbegin(); it != more.rend(); ++it) todo.push_back(*it);
      continue;
    }
    if (!is_last && !S_ISDIR(st.st_mode)) {
      r.error = ENOTDIR;
      return r;
    }
  }
  r.place = place_of(joined(stack));
  if (int err = lstat(r.place, r.st); err != 0) {
    r.error = err;  // changed meanwhile
    return r;
  }
  r.exists = true;
  return r;
}

std::string ContainerTree::follow_in_scope(std::string_view path, int& error) const {
  error = 0;
  if (path.find('\0') != std::string_view::npos) {
    error = EINVAL;
    return "";
  }
  std::vector<std::string> stack;
  std::vector<std::string> todo = components(path);
  std::reverse(todo.begin(), todo.end());
  int links = 0;
  while (!todo.empty()) {
    std::string part = std::move(todo.back());
    todo.pop_back();
    if (part == ".") continue;
    if (part == "..") {
      if (!stack.empty()) stack.pop_back();
      continue;
    }
    stack.push_back(part);
    TreePlace place = place_of(joined(stack));
    struct stat st {};
    int err = lstat(place, st);
    if (err == ENOENT) continue;  // taken as it is
    if (err != 0) {
      error = err;
      return "";
    }
    if (!S_ISLNK(st.st_mode)) continue;
    std::string target;
    if (++links > kMaxSymlinks) {
      error = ELOOP;
      return "";
    }
    if (!read_link(*this, place, target)) {
      error = errno;
      return "";
    }
    stack.pop_back();
    if (!target.empty() && target.front() == '/') stack.clear();
    std::vector<std::string> more = components(target);
    for (auto it = more.rbegin(); it != more.rend(); ++it) todo.push_back(*it);
  }
  return joined(stack);
}

void ContainerTree::make_mount_points() const {
  for (std::size_t i = 0; i < mounts_.size(); ++i) {
    struct stat source {};
    if (::fstat(tops_[i].get(), &source) != 0) continue;
    const TreePlace under = place_of(parent_of(mounts_[i].destination));
    if (under.mount >= 0 && !mounts_[static_cast<std::size_t>(under.mount)].writable) continue;
    UniqueFd dir(::fcntl(top_fd(under.mount), F_DUPFD_CLOEXEC, 0));
    std::vector<std::string> parts = components(under.rel);
    parts.push_back(base_name(mounts_[i].destination));
    for (std::size_t k = 0; dir && k < parts.size(); ++k) {
      const bool last = k + 1 == parts.size();
      if (last && !S_ISDIR(source.st_mode)) {
        UniqueFd made(::openat(dir.get(), parts[k].c_str(), O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0755));
        break;
      }
      if (::mkdirat(dir.get(), parts[k].c_str(), 0755) != 0 && errno != EEXIST) break;
      dir = UniqueFd(::openat(dir.get(), parts[k].c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    }
  }
}

std::vector<std::string> ContainerTree::mounts_below(const std::string& path) const {
  std::vector<std::string> out;
  for (const TreeMount& m : mounts_)
    if (parent_of(m.destination) == path) out.push_back(base_name(m.destination));
  return out;
}

}  // namespace berth::agent::runtime
