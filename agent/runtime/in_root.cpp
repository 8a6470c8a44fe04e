#include "agent/runtime/in_root.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <string>
#include <vector>

namespace berth::agent::runtime {
namespace {

constexpr int kMaxSymlinks = 40;  // the kernel's own limit (ELOOP)

std::vector<std::string> components(std::string_view path) {
  std::vector<std::string> out;
  std::size_t i = 0;
  while (i < path.size()) {
    std::size_t j = path.find('/', i);
    if (j == std::string_view::npos) j = path.size();
    if (j > i) out.emplace_back(path.substr(i, j - i));
    i = j + 1;
  }
  return out;
}

// For kernels without openat2 (before 5.6): a walk that keeps the directory
// stack, restarts at the root for absolute links and stops ".." at the root.
UniqueFd walk_in_root(int root_fd, std::string_view path) {
  std::vector<UniqueFd> stack;  // the directories below the root, innermost last
  auto top = [&] { return stack.empty() ? root_fd : stack.back().get(); };
  std::vector<std::string> todo = components(path);
  std::reverse(todo.begin(), todo.end());  // pop from the back
  int links = 0;
  while (!todo.empty()) {
    std::string part = std::move(todo.back());
    todo.pop_back();
    if (part == ".") continue;
    if (part == "..") {
      if (!stack.empty()) stack.pop_back();
      continue;
    }
    UniqueFd next(::openat(top(), part.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
    if (!next) return UniqueFd();
    struct stat st {};
    if (::fstat(next.get(), &st) != 0) return UniqueFd();
    if (S_ISLNK(st.st_mode)) {
      if (++links > kMaxSymlinks) {
        errno = ELOOP;
        return UniqueFd();
      }
      char target[4096];
      ssize_t n = ::readlinkat(next.get(), "", target, sizeof target);
      if (n < 0 || static_cast<std::size_t>(n) >= sizeof target) {
        if (n >= 0) errno = ENAMETOOLONG;
        return UniqueFd();
      }
      std::string_view t(target, static_cast<std::size_t>(n));
      if (!t.empty() && t[0] == '/') stack.clear();
      auto more = components(t);
      for (auto it = more.rbegin(); it != more.rend(); ++it) todo.push_back(*it);
      continue;
    }
    if (todo.empty()) return next;
    if (!S_ISDIR(st.st_mode)) {
      errno = ENOTDIR;
      return UniqueFd();
    }
    stack.push_back(std::move(next));
  }
  return UniqueFd(::fcntl(top(), F_DUPFD_CLOEXEC, 0));
}

}  // namespace

UniqueFd open_in_root(const std::filesystem::path& root, std::string_view path, Resolver resolver) {
  UniqueFd root_fd(::open(root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!root_fd) return UniqueFd();
  std::string rel(path);
  while (!rel.empty() && rel.front() == '/') rel.erase(0, 1);
  if (rel.empty()) rel = ".";
  if (resolver == Resolver::Walk) return walk_in_root(root_fd.get(), rel);
  open_how how{};
  how.flags = O_PATH | O_CLOEXEC;
  how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
  long fd = ::syscall(SYS_openat2, root_fd.get(), rel.c_str(), &how, sizeof how);
  if (fd >= 0) return UniqueFd(static_cast<int>(fd));
  if (errno != ENOSYS && errno != EPERM) return UniqueFd();  // EPERM: a seccomp filter said no
  return walk_in_root(root_fd.get(), rel);
}

std::optional<std::string> read_regular_file_in_root(const std::filesystem::path& root,
                                                     std::string_view path, std::size_t limit,
                                                     Resolver resolver) {
  UniqueFd where = open_in_root(root, path, resolver);
  if (!where) return std::nullopt;
  struct stat st {};
  if (::fstat(where.get(), &st) != 0 || !S_ISREG(st.st_mode) ||
      static_cast<std::uint64_t>(st.st_size) > limit)
    return std::nullopt;
  // Re-open the very file found (an O_PATH fd cannot be read).
  std::string proc = "/proc/self/fd/" + std::to_string(where.get());
  UniqueFd file(::open(proc.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC));
  if (!file) return std::nullopt;
  struct stat again {};
  if (::fstat(file.get(), &again) != 0 || again.st_ino != st.st_ino || again.st_dev != st.st_dev ||
      !S_ISREG(again.st_mode))
    return std::nullopt;
  std::string out;
  char buf[8192];
  for (;;) {
    ssize_t n = ::read(file.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return std::nullopt;
    if (n == 0) break;
    out.append(buf, static_cast<std::size_t>(n));
    if (out.size() > limit) return std::nullopt;  // it grew meanwhile
  }
  return out;
}

}  // namespace berth::agent::runtime
