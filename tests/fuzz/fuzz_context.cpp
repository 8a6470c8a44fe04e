// Hostile build contexts (POST /build bodies) through receive_context. Each
// run unpacks into a fresh BASE/root; whatever the bytes, BASE must hold only
// root afterwards and keep its own mode, owner and xattrs. The seeds aim
// symlinks at BASE (an absolute path, /dev/shm/berth-fuzz-context) and at
// ".." so that an escape lands where this check sees it.
#include <sys/stat.h>
#include <sys/xattr.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>

#include "agent/build/context.h"

namespace {
namespace fs = std::filesystem;
using berth::agent::image::ReadFn;

// tmpfs when there is one: removing a tree on a disk filesystem costs ms per directory.
const fs::path kBase = fs::is_directory("/dev/shm") ? "/dev/shm/berth-fuzz-context" : "/tmp/berth-fuzz-context";

std::string xattr_names(const fs::path& p) {
  char names[4096];
  ssize_t n = ::llistxattr(p.c_str(), names, sizeof names);
  return n > 0 ? std::string(names, static_cast<std::size_t>(n)) : std::string();
}

[[noreturn]] void escaped(const char* what) {
  std::fprintf(stderr, "fuzz_context: the context reached outside its directory: %s\n", what);
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::error_code ec;
  fs::remove_all(kBase, ec);
  fs::create_directories(kBase / "root");
  ::chmod(kBase.c_str(), 0755);
  struct stat before {};
  if (::lstat(kBase.c_str(), &before) != 0) std::abort();
  const std::string xattrs_before = xattr_names(kBase);

  std::size_t pos = 0;
  ReadFn body = [&](char* buf, std::size_t n) {
    std::size_t k = std::min(n, size - pos);
    std::memcpy(buf, data + pos, k);
    pos += k;
    return k;
  };
  try {
    berth::agent::build::receive_context(body, kBase / "root", 1 << 20);
  } catch (const std::exception&) {
    // Refusing a context is fine; what it left behind is checked below.
  }

  for (const auto& entry : fs::directory_iterator(kBase))
    if (entry.path().filename() != "root") escaped(entry.path().c_str());
  struct stat after {};
  if (::lstat(kBase.c_str(), &after) != 0 || !S_ISDIR(after.st_mode)) escaped("the base was replaced");
  if (after.st_mode != before.st_mode || after.st_uid != before.st_uid || after.st_gid != before.st_gid)
    escaped("the base's mode or owner changed");
  if (xattr_names(kBase) != xattrs_before) escaped("the base's xattrs changed");
  if (!fs::is_directory(fs::symlink_status(kBase / "root"))) escaped("the root was replaced");
  fs::remove_all(kBase, ec);
  return 0;
}
