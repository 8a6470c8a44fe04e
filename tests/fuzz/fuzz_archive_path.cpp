// Hostile symlink trees and paths through docker cp's resolver and archives.
// Each input is a little script of lines, run in a fresh BASE:
//   d P | f P | l P TARGET        make a directory, file or symlink in the root
//   D N P | F N P | L N P TARGET  the same in mount N's source (N in 0..3)
//   m N DEST                      mount N at DEST
//   r P   resolve P (both last-component rules) and follow it in scope
//   h P   HEAD (stat)     g P   GET (tar)     p P   PUT a small tar
// Whatever the script, every place the resolver returns must lie beneath
// the root or a mount's source (checked by reopening it with
// RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS from there), no archive may carry
// the machine's files, and BASE/outside, the stand-in for the machine, must
// stay as it was. The seeds aim links at "/", at "..", at BASE/outside by its
// absolute path, and in loops.
#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "agent/image/diff.h"
#include "agent/runtime/archive.h"

namespace {
namespace fs = std::filesystem;
using namespace berth::agent::runtime;

const fs::path kBase = fs::is_directory("/dev/shm") ? "/dev/shm/berth-fuzz-archive" : "/tmp/berth-fuzz-archive";
constexpr int kMounts = 4;
constexpr std::size_t kMaxOps = 48;

[[noreturn]] void escaped(const std::string& what) {
  std::fprintf(stderr, "fuzz_archive_path: %s\n", what.c_str());
  std::abort();
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::size_t i = 0;
  while (i <= s.size()) {
    std::size_t j = s.find(sep, i);
    if (j == std::string::npos) j = s.size();
    out.push_back(s.substr(i, j - i));
    i = j + 1;
  }
  return out;
}

// Makes `path` beneath `top` without following a symlink or naming "..": the
// script itself must not write outside the sandbox.
void make(const fs::path& top, const std::string& path, char kind, const std::string& target) {
  // A NUL would cut a name short in the syscalls below ("..\0x" is ".."):
  // the script's own writes would then leave the sandbox.
  if (path.find('\0') != std::string::npos || target.find('\0') != std::string::npos) return;
  std::vector<std::string> parts;
  for (const std::string& p : split(path, '/'))
    if (!p.empty() && p != "." && p != "..") parts.push_back(p);
  if (parts.empty() || parts.size() > 16) return;
  UniqueFd dir(::open(top.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  for (std::size_t i = 0; i + 1 < parts.size() && dir; ++i) {
    ::mkdirat(dir.get(), parts[i].c_str(), 0755);
    dir = UniqueFd(::openat(dir.get(), parts[i].c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  }
  if (!dir) return;
  const char* name = parts.back().c_str();
  if (kind == 'd') {
    ::mkdirat(dir.get(), name, 0755);
  } else if (kind == 'f') {
    UniqueFd f(::openat(dir.get(), name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644));
    if (f && ::write(f.get(), "inside\n", 7) < 0) return;
  } else if (kind == 'l' && !target.empty() && target.size() < 512) {
    ::symlinkat(target.c_str(), dir.get(), name);
  }
}

struct Outside {
  struct stat dir {}, marker {}, secret {}, base {};
};

bool same_file(const struct stat& a, const struct stat& b) { return a.st_dev == b.st_dev && a.st_ino == b.st_ino; }

void check_outside(const Outside& before) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(kBase / "outside")) names.push_back(e.path().filename());
  std::sort(names.begin(), names.end());
  if (names != std::vector<std::string>{"marker", "secret"}) escaped("something was written outside the root");
  std::ifstream in(kBase / "outside" / "marker");
  std::string text((std::istreambuf_iterator<char>(in)), {});
  if (text != "OUTSIDE-MARKER\n") escaped("the outside marker changed");
  std::vector<std::string> top;
  for (const auto& e : fs::directory_iterator(kBase)) top.push_back(e.path().filename());
  std::sort(top.begin(), top.end());
  if (top != std::vector<std::string>{"mounts", "outside", "root"}) escaped("something appeared next to the root");
  (void)before;
}

bool clean_rel(const std::string& rel) {
  if (rel.empty()) return true;
  if (rel.front() == '/' || rel.back() == '/') return false;
  for (const std::string& p : split(rel, '/'))
    if (p.empty() || p == "." || p == "..") return false;
  return true;
}

// The place is named as the resolver promises, and it really is beneath its top.
void check_place(const ContainerTree& tree, const TreePlace& place, bool exists, const struct stat* st,
                 const Outside& outside) {
  if (place.path.empty() || place.path.front() != '/' || clean_container_path(place.path) != place.path)
    escaped("unclean container path " + place.path);
  if (!clean_rel(place.rel)) escaped("a relative path leaving its top: " + place.rel);
  TreePlace again = tree.place_of(place.path);
  if (again.mount != place.mount || again.rel != place.rel) escaped("place_of disagrees for " + place.path);
  if (!exists) return;
  open_how how{};
  how.flags = O_PATH | O_NOFOLLOW | O_CLOEXEC;
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
  const std::string rel = place.rel.empty() ? "." : place.rel;
  long fd = ::syscall(SYS_openat2, tree.top_fd(place.mount), rel.c_str(), &how, sizeof how);
  if (fd < 0) {
    if (errno == ENOSYS) return;
    escaped("a place that is not beneath its top: " + place.path + " (" + std::strerror(errno) + ")");
  }
  UniqueFd owned(static_cast<int>(fd));
  struct stat got {};
  if (::fstat(owned.get(), &got) != 0) escaped("fstat");
  if (st && !same_file(got, *st)) escaped("the place is another file than the one stat'ed: " + place.path);
  if (same_file(got, outside.dir) || same_file(got, outside.marker) || same_file(got, outside.secret) ||
      same_file(got, outside.base))
    escaped("resolved to the machine's file: " + place.path);
}

// Every file in an archive holds what the script wrote ("inside\n") or what
// a PUT dropped ("hi\n"): anything else was read from somewhere else.
void check_contents(const std::string& tar) {
  std::unique_ptr<archive, decltype(&archive_read_free)> a(archive_read_new(), archive_read_free);
  archive_read_support_format_tar(a.get());
  if (archive_read_open_memory(a.get(), tar.data(), tar.size()) != ARCHIVE_OK) escaped("an unreadable archive");
  archive_entry* e = nullptr;
  int r;
  while ((r = archive_read_next_header(a.get(), &e)) == ARCHIVE_OK) {
    if (archive_entry_filetype(e) != AE_IFREG || archive_entry_hardlink(e)) continue;
    std::string content(static_cast<std::size_t>(std::max<la_int64_t>(0, archive_entry_size(e))), '\0');
    if (archive_read_data(a.get(), content.data(), content.size()) != static_cast<la_ssize_t>(content.size()))
      escaped("a short archive member");
    if (content != "inside\n" && content != "hi\n") escaped("an archive carried a file the tree does not hold");
  }
  if (r != ARCHIVE_EOF) escaped("a malformed archive");
}

std::string small_tar() {
  std::string out;
  berth::agent::image::LayerTarWriter w([&](const char* p, std::size_t n) { out.append(p, n); });
  berth::agent::image::TarMember m;
  m.name = "dropped";
  m.mode = 0644;
  m.size = 3;
  w.add(m);
  w.data("hi\n", 3);
  m.name = "sub/deeper";
  w.add(m);
  w.data("hi\n", 3);
  w.finish();
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::error_code ec;
  fs::remove_all(kBase, ec);
  fs::create_directories(kBase / "root");
  fs::create_directories(kBase / "outside");
  for (int i = 0; i < kMounts; ++i) fs::create_directories(kBase / "mounts" / std::to_string(i));
  std::ofstream(kBase / "outside" / "marker") << "OUTSIDE-MARKER\n";
  std::ofstream(kBase / "outside" / "secret") << "OUTSIDE-SECRET\n";
  Outside outside;
  ::lstat((kBase / "outside").c_str(), &outside.dir);
  ::lstat((kBase / "outside" / "marker").c_str(), &outside.marker);
  ::lstat((kBase / "outside" / "secret").c_str(), &outside.secret);
  ::lstat(kBase.c_str(), &outside.base);

  std::vector<std::string> lines = split(std::string(reinterpret_cast<const char*>(data), size), '\n');
  if (lines.size() > kMaxOps) lines.resize(kMaxOps);
  std::vector<TreeMount> mounts;
  std::vector<std::pair<char, std::string>> queries;
  for (const std::string& line : lines) {
    std::vector<std::string> w = split(line, ' ');
    if (w.size() < 2 || w[0].size() != 1) continue;
    const char op = w[0][0];
    auto mount_dir = [&](const std::string& n) -> std::optional<fs::path> {
      if (n.size() != 1 || n[0] < '0' || n[0] >= '0' + kMounts) return std::nullopt;
      return kBase / "mounts" / n;
    };
    if ((op == 'd' || op == 'f') && w.size() >= 2) make(kBase / "root", w[1], op, "");
    if (op == 'l' && w.size() >= 3) make(kBase / "root", w[1], 'l', w[2]);
    if ((op == 'D' || op == 'F' || op == 'L') && w.size() >= 3)
      if (auto top = mount_dir(w[1])) make(*top, w[2], static_cast<char>(op - 'A' + 'a'), w.size() >= 4 ? w[3] : "");
    if (op == 'm' && w.size() >= 3)
      if (auto top = mount_dir(w[1])) mounts.push_back({w[2], *top, w[1] != "3"});
    if (op == 'r' || op == 'h' || op == 'g' || op == 'p') queries.emplace_back(op, w[1]);
  }

  std::unique_ptr<ContainerTree> tree;
  try {
    tree = std::make_unique<ContainerTree>(kBase / "root", mounts);
  } catch (const std::exception&) {
    escaped("the root cannot be opened");
  }
  for (const TreeMount& m : tree->mounts())
    if (m.destination.empty() || m.destination.front() != '/' || clean_container_path(m.destination) != m.destination)
      escaped("unclean mount destination " + m.destination);

  static const std::string tar = small_tar();
  for (const auto& [op, path] : queries) {
    try {
      if (op == 'r') {
        for (FollowLast last : {FollowLast::kNo, FollowLast::kYes}) {
          Resolved r = tree->resolve(path, last);
          if (r.exists || r.error == 0) check_place(*tree, r.place, r.exists, r.exists ? &r.st : nullptr, outside);
          if (!r.exists && r.error == 0) {  // its parent exists: a place to create
            int error = 0;
            auto parent = tree->open_parent(r.place, error);
            if (error != 0 && error != ENOENT && error != ENOTDIR) escaped("the parent of a new place: " + r.place.path);
          }
        }
        int error = 0;
        std::string scoped = tree->follow_in_scope(path, error);
        if (error == 0 && (scoped.empty() || clean_container_path(scoped) != scoped))
          escaped("unclean scoped path " + scoped);
      } else if (op == 'h') {
        PathStat st = stat_path(*tree, path);
        if (!st.link_target.empty() && clean_container_path(st.link_target) != st.link_target)
          escaped("unclean link target " + st.link_target);
      } else if (op == 'g') {
        std::string out;
        Resource res = find_resource(*tree, path);
        write_resource(*tree, res, [&](const char* p, std::size_t n) {
          out.append(p, n);
          if (out.size() > (8u << 20)) throw std::runtime_error("big");
        });
        check_contents(out);
      } else if (op == 'p') {
        std::size_t pos = 0;
        extract_archive(
            *tree, path,
            [&](char* buf, std::size_t n) {
              std::size_t k = std::min(n, tar.size() - pos);
              std::memcpy(buf, tar.data() + pos, k);
              pos += k;
              return k;
            },
            {});
      }
    } catch (const std::exception&) {
      // Refusing is fine; what happened is checked below.
    }
    check_outside(outside);
  }
  return 0;
}
