#include "agent/build/copy.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <system_error>

#include "agent/build/error.h"
#include "agent/build/text.h"
#include "agent/image/beneath.h"
#include "agent/image/digest.h"

namespace berth::agent::build {
namespace fs = std::filesystem;
using image::Beneath;
using image::Fd;
using image::LayerTarWriter;
using image::Sha256;
using image::TarMember;

namespace {

// --- Go's filepath.Match, which dockerd matches COPY's wildcards with. A
// malformed pattern matches nothing (dockerd drops the error).

// dockerd's containsWildcards: `\` escapes the next byte.
bool has_wildcards(std::string_view s) {
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\')
      ++i;
    else if (s[i] == '*' || s[i] == '?' || s[i] == '[')
      return true;
  }
  return false;
}

// What a pattern without wildcards matches: itself without its escapes.
std::string unescape(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 1 < s.size()) ++i;
    out += s[i];
  }
  return out;
}

// One rune as Go decodes it: an invalid byte is U+FFFD, one byte wide.
char32_t rune_at(std::string_view s, std::size_t& width) {
  text::Rune r = text::decode(s, 0);
  width = r.width ? r.width : 1;
  return r.valid ? r.cp : U'\uFFFD';
}

// getEsc: one (possibly escaped) character of a class; false when malformed.
bool class_char(std::string_view& chunk, char32_t& r) {
  if (chunk.empty() || chunk[0] == '-' || chunk[0] == ']') return false;
  if (chunk[0] == '\\') {
    chunk.remove_prefix(1);
    if (chunk.empty()) return false;
  }
  std::size_t n = 0;
  r = rune_at(chunk, n);
  if (r == U'\uFFFD' && n == 1 && static_cast<unsigned char>(chunk[0]) >= 0x80) return false;
  chunk.remove_prefix(n);
  return !chunk.empty();
}

// matchChunk: whether `chunk` (no `*`) matches a prefix of `s`; `rest` is
// what follows. `bad` reports a malformed chunk.
bool match_chunk(std::string_view chunk, std::string_view s, std::string_view& rest, bool& bad) {
  bool failed = false;
  while (!chunk.empty()) {
    if (!failed && s.empty()) failed = true;
    switch (chunk[0]) {
      case '[': {
        char32_t r = 0;
        if (!failed) {
          std::size_t n = 0;
          r = rune_at(s, n);
          s.remove_prefix(n);
        }
        chunk.remove_prefix(1);
        bool negated = false;
        if (!chunk.empty() && chunk[0] == '^') {
          negated = true;
          chunk.remove_prefix(1);
        }
        bool match = false;
        for (int ranges = 0;; ++ranges) {
          if (!chunk.empty() && chunk[0] == ']' && ranges > 0) {
            chunk.remove_prefix(1);
            break;
          }
          char32_t lo = 0, hi = 0;
          if (!class_char(chunk, lo)) return bad = true, false;
          hi = lo;
          if (chunk[0] == '-') {
            chunk.remove_prefix(1);
            if (!class_char(chunk, hi)) return bad = true, false;
          }
          if (lo <= r && r <= hi) match = true;
        }
        if (match == negated) failed = true;
        break;
      }
      case '?':
        if (!failed) {
          if (s[0] == '/') failed = true;
          std::size_t n = 0;
          rune_at(s, n);
          s.remove_prefix(n);
        }
        chunk.remove_prefix(1);
        break;
      case '\\':
        chunk.remove_prefix(1);
        if (chunk.empty()) return bad = true, false;
        [[fallthrough]];
      default:
        if (!failed) {
          if (chunk[0] != s[0]) failed = true;
          s.remove_prefix(1);
        }
        chunk.remove_prefix(1);
        break;
    }
  }
  if (failed) return false;
  rest = s;
  return true;
}

bool go_match(std::string_view pattern, std::string_view name) {
  while (!pattern.empty()) {
    // scanChunk: the stars, then up to the next star outside a class.
    bool star = false;
    while (!pattern.empty() && pattern[0] == '*') {
      pattern.remove_prefix(1);
      star = true;
    }
    bool in_range = false;
    std::size_t i = 0;
    for (; i < pattern.size(); ++i) {
      char c = pattern[i];
      if (c == '\\') {
        if (i + 1 < pattern.size()) ++i;
      } else if (c == '[') {
        in_range = true;
      } else if (c == ']') {
        in_range = false;
      } else if (c == '*' && !in_range) {
        break;
      }
    }
    std::string_view chunk = pattern.substr(0, i);
    pattern.remove_prefix(i);
    if (star && chunk.empty()) return name.find('/') == std::string_view::npos;
    std::string_view rest;
    bool bad = false;
    if (match_chunk(chunk, name, rest, bad) && (rest.empty() || !pattern.empty())) {
      name = rest;
      continue;
    }
    if (bad) return false;
    bool found = false;
    if (star) {
      for (std::size_t k = 0; k < name.size() && name[k] != '/'; ++k) {
        if (match_chunk(chunk, name.substr(k + 1), rest, bad)) {
          if (pattern.empty() && !rest.empty()) continue;
          name = rest;
          found = true;
          break;
        }
        if (bad) return false;
      }
    }
    if (!found) return false;
  }
  return name.empty();
}

// --- paths: relative to a root, "/"-separated, "" for the root itself

// "a//./b/" -> {"a", "b"}; ".." is kept (the resolver deals with it).
std::vector<std::string> split(std::string_view path) {
  std::vector<std::string> parts;
  std::size_t start = 0;
  while (start <= path.size()) {
    std::size_t slash = path.find('/', start);
    if (slash == std::string_view::npos) slash = path.size();
    std::string_view part = path.substr(start, slash - start);
    if (!part.empty() && part != ".") parts.emplace_back(part);
    start = slash + 1;
  }
  return parts;
}

std::string join(const std::string& dir, const std::string& name) { return dir.empty() ? name : dir + "/" + name; }

std::string parent_of(const std::string& path) {
  auto slash = path.rfind('/');
  return slash == std::string::npos ? "" : path.substr(0, slash);
}

std::string base_of(const std::string& path) {
  auto slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

[[noreturn]] void throw_errno(const std::string& what) {
  throw std::system_error(errno, std::generic_category(), what);
}

// The names in a directory, sorted as Go's filepath.Walk visits them.
std::vector<std::string> list_dir(int dir) {
  Fd listed(::fcntl(dir, F_DUPFD_CLOEXEC, 0));
  if (!listed) throw_errno("dup");
  std::unique_ptr<DIR, int (*)(DIR*)> list(::fdopendir(listed.get()), ::closedir);
  if (!list) throw_errno("list");
  listed.release();         // the DIR owns it now
  ::rewinddir(list.get());  // a dup shares its offset with `dir`, which may have been listed before
  std::vector<std::string> names;
  errno = 0;
  while (const dirent* d = ::readdir(list.get())) {
    std::string name = d->d_name;
    if (name != "." && name != "..") names.push_back(std::move(name));
  }
  if (errno != 0) throw_errno("list");
  std::sort(names.begin(), names.end());
  return names;
}

std::string read_link_at(int dir, const std::string& name) {
  std::string target(4096, '\0');
  ssize_t n = ::readlinkat(dir, name.c_str(), target.data(), target.size());
  if (n < 0) throw_errno("readlink " + name);
  target.resize(static_cast<std::size_t>(n));
  return target;
}

// --- symlinks followed inside a root, as dockerd's FollowSymlinkInScope

// What is at a path: nothing, a directory, a symlink (and its target), or
// anything else; `st` when it exists.
struct Node {
  enum class Kind { kAbsent, kDir, kLink, kOther };
  Kind kind = Kind::kAbsent;
  std::string target;
  struct stat st {};
};
using Lookup = std::function<Node(const std::string& path)>;

Node::Kind kind_of(mode_t mode) {
  return S_ISDIR(mode) ? Node::Kind::kDir : S_ISLNK(mode) ? Node::Kind::kLink : Node::Kind::kOther;
}

class TooManyLinks : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The path `parts` name with every symlink followed inside the root: an
// absolute target starts again from the root, ".." stops there. What is
// past a missing component is kept as written. `at_end` gets the node there.
std::string follow_in_scope(const std::vector<std::string>& parts, const Lookup& lookup, Node* at_end) {
  std::vector<std::string> done;
  std::deque<std::string> todo(parts.begin(), parts.end());
  auto joined = [&done] {
    std::string out;
    for (const auto& part : done) out = join(out, part);
    return out;
  };
  Node here;
  here.kind = Node::Kind::kDir;  // the root
  int links = 0;
  while (!todo.empty()) {
    std::string part = std::move(todo.front());
    todo.pop_front();
    if (part == "..") {
      if (!done.empty()) done.pop_back();
      if (done.empty())
        here = Node{Node::Kind::kDir, {}, {}};
      else
        here = lookup(joined());
      continue;
    }
    done.push_back(part);
    Node node = lookup(joined());
    if (node.kind == Node::Kind::kLink) {
      if (++links > 255) throw TooManyLinks("too many links");
      done.pop_back();
      if (!node.target.empty() && node.target[0] == '/') done.clear();
      std::vector<std::string> target = split(node.target);
      todo.insert(todo.begin(), target.begin(), target.end());
      if (done.empty() && todo.empty()) here = Node{Node::Kind::kDir, {}, {}};
      continue;
    }
    here = std::move(node);
  }
  if (at_end) *at_end = std::move(here);
  return joined();
}

// A root to copy from (the context, a stage, an image), .dockerignore'd.
class SourceTree {
 public:
  SourceTree(const fs::path& root, const IgnoreMatcher* ignore) : tree_(root), ignore_(ignore) {}

  const Beneath& tree() const { return tree_; }

  // lstat(2) of `path` (whose directories are real ones); what .dockerignore
  // hides is absent, as it is from a context the docker CLI sends.
  Node lookup(const std::string& path) const {
    Node node;
    Beneath::Slot slot;
    try {
      slot = tree_.open_parent(path);
    } catch (const std::exception&) {
      return node;  // a missing directory, or a file, on the way
    }
    if (slot.name.empty()) return Node{Node::Kind::kDir, {}, {}};
    if (::fstatat(slot.dir.get(), slot.name.c_str(), &node.st, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno == ENOENT || errno == ENOTDIR) return node;
      throw_errno("stat " + path);
    }
    node.kind = kind_of(node.st.st_mode);
    if (node.kind == Node::Kind::kLink) node.target = read_link_at(slot.dir.get(), slot.name);
    if (hidden(path, node.kind == Node::Kind::kDir)) return Node{};
    return node;
  }

  // `path` (cleaned) with its symlinks followed; `at_end` gets what is there.
  std::string find(const std::string& path, Node* at_end) const {
    return follow_in_scope(
        split(path), [this](const std::string& p) { return lookup(p); }, at_end);
  }

  // Whether .dockerignore leaves `path` out: an excluded directory still
  // shows when something below it is included again.
  bool hidden(const std::string& path, bool is_dir) const {
    if (!ignore_ || path.empty() || !ignore_->excluded(path)) return false;
    return !(is_dir && shows_below(path));
  }

 private:
  bool shows_below(const std::string& dir) const {
    if (!ignore_->may_include_below(dir)) return false;
    Fd fd;
    try {
      fd = tree_.open_dir(dir);
    } catch (const std::exception&) {
      return false;
    }
    for (const std::string& name : list_dir(fd.get())) {
      std::string child = join(dir, name);
      struct stat st {};
      if (::fstatat(fd.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
      if (!ignore_->excluded(child)) return true;
      if (S_ISDIR(st.st_mode) && shows_below(child)) return true;
    }
    return false;
  }

  Beneath tree_;
  const IgnoreMatcher* ignore_;
};

// dockerd's messages.
[[noreturn]] void not_found(const std::string& instruction, const std::string& path, bool from_image) {
  throw BuildError(instruction +
                   " failed: " + (from_image ? "" : "file not found in build context or excluded by .dockerignore: ") +
                   "stat " + path + ": file does not exist");
}

[[noreturn]] void forbidden(const std::string& instruction, const std::string& path) {
  throw BuildError(instruction + " failed: forbidden path outside the build context: " + path + " ()");
}

// One source path without wildcards: `path` as trimmed from the pattern.
CopySource find_source(const SourceTree& src, const std::string& pattern, const std::string& path,
                       const std::string& instruction, bool from_image) {
  std::string cleaned = text::clean_path(path);
  if (cleaned == ".." || cleaned.rfind("../", 0) == 0) forbidden(instruction, path);
  if (cleaned == ".") cleaned.clear();
  Node node;
  try {
    src.find(cleaned, &node);
  } catch (const TooManyLinks&) {
    forbidden(instruction, path);
  }
  if (node.kind == Node::Kind::kAbsent) not_found(instruction, path, from_image);
  return CopySource{pattern, cleaned, node.kind == Node::Kind::kDir};
}

// dockerd walks the whole root and keeps the paths filepath.Match takes;
// since no wildcard matches "/", walking one component at a time finds the
// same paths in the same order, without descending into symlinks.
void match_sources(const SourceTree& src, const std::string& pattern, const std::vector<std::string>& parts,
                   std::size_t at, const std::string& dir, const std::string& instruction, bool from_image,
                   std::vector<CopySource>& out) {
  const std::string& part = parts[at];
  std::vector<std::string> names;
  if (!has_wildcards(part)) {
    names.push_back(unescape(part));
  } else {
    Fd fd;
    try {
      fd = src.tree().open_dir(dir);
    } catch (const std::exception&) {
      return;
    }
    for (std::string& name : list_dir(fd.get()))
      if (go_match(part, name)) names.push_back(std::move(name));
  }
  for (const std::string& name : names) {
    if (name.empty() || name == "." || name == "..") continue;
    const std::string path = join(dir, name);
    Node node = src.lookup(path);
    if (node.kind == Node::Kind::kAbsent) continue;
    if (at + 1 == parts.size())
      out.push_back(find_source(src, pattern, path, instruction, from_image));
    else if (node.kind == Node::Kind::kDir)
      match_sources(src, pattern, parts, at + 1, path, instruction, from_image, out);
  }
}

// --- the layer

using ReadArchive = std::unique_ptr<archive, decltype(&archive_read_free)>;

// The filters dockerd's DecompressStream knows; no external programs.
ReadArchive archive_reader() {
  ReadArchive a(archive_read_new(), archive_read_free);
  if (!a) throw std::bad_alloc();
  archive_read_support_filter_gzip(a.get());
  archive_read_support_filter_bzip2(a.get());
  archive_read_support_filter_xz(a.get());
  archive_read_support_filter_zstd(a.get());
  archive_read_support_format_tar(a.get());
  return a;
}

// dockerd's isArchivePath: a tar, maybe compressed, with a first entry.
bool is_archive(int fd) {
  ReadArchive a = archive_reader();
  bool yes = false;
  if (archive_read_open_fd(a.get(), fd, 64 * 1024) == ARCHIVE_OK) {
    archive_entry* e = nullptr;
    int r = archive_read_next_header(a.get(), &e);
    yes = r == ARCHIVE_OK || r == ARCHIVE_WARN;
  }
  if (::lseek(fd, 0, SEEK_SET) != 0) throw_errno("seek");
  return yes;
}

std::string hex(std::string digest) { return std::string(image::digest_hex(digest)); }

class CopyWriter {
 public:
  CopyWriter(const CopyPlan& plan, LayerTarWriter& tar, std::string instruction)
      : plan_(plan), tar_(tar), cmd_(std::move(instruction)) {
    auto now = std::chrono::system_clock::now().time_since_epoch();
    now_ = std::chrono::duration_cast<std::chrono::seconds>(now).count();
    if (!plan_.dest_root.empty()) image_.emplace(plan_.dest_root);
    if (!plan_.sources.empty()) source_.emplace(plan_.root, plan_.ignore);
    dest_slash_ = !plan_.dest.empty() && plan_.dest.back() == '/';
    resolve_dest();
  }

  void copy(const CopySource& s) {
    Node node;
    const std::string real = source_->find(s.path, &node);
    if (node.kind == Node::Kind::kAbsent) not_found(cmd_, s.path, !plan_.context_owner_root);
    if (node.kind == Node::Kind::kDir) return copy_dir(real);
    Fd fd;
    struct stat st = node.st;
    if (S_ISREG(st.st_mode)) {
      fd = source_->tree().open(real, O_RDONLY | O_NONBLOCK);
      if (::fstat(fd.get(), &st) != 0) throw_errno("stat " + real);
      if (plan_.unpack_archives && S_ISREG(st.st_mode) && is_archive(fd.get())) return extract(fd.get());
    }
    if (S_ISSOCK(st.st_mode)) throw BuildError(cmd_ + " failed: " + s.path + ": a socket cannot be copied");
    const std::string target = file_target(base_of(s.path.empty() ? real : s.path));
    ensure_dirs(parent_of(target), new_dir_owner());
    put(target, st, fd.get(), real, source_->tree().root_fd());
  }

  void copy(const InlineSource& s) {
    if (s.name.empty() || s.name == "." || s.name == ".." || s.name.find('/') != std::string::npos)
      throw BuildError(cmd_ + " failed: invalid file name " + text::go_quote(s.name));
    const std::string target = file_target(s.name);
    ensure_dirs(parent_of(target), new_dir_owner());
    TarMember m;
    m.name = target;
    m.type = TarMember::Type::kFile;
    m.mode = plan_.mode.value_or(s.mode) & 07777;
    m.uid = plan_.uid.value_or(0);
    m.gid = plan_.gid.value_or(0);
    m.mtime = s.mtime >= 0 ? s.mtime : now_;
    m.size = s.content.size();
    tar_.add(m);
    tar_.data(s.content.data(), s.content.size());
    written_[target] = Node::Kind::kOther;
    record(m, hex(image::sha256_digest(s.content)));
  }

  // With no source at all (WORKDIR): the destination directory itself.
  void make_dest_dir() {
    if (dest_node_.kind == Node::Kind::kOther) not_a_directory(dest_);
    ensure_dirs(dest_, new_dir_owner());
  }

  std::string checksum(const std::string& kind) {
    Sha256 hash;
    for (const auto& [path, what] : records_) {
      hash.update(path);
      hash.update("\0", 1);
      hash.update(what);
      hash.update("\n", 1);
    }
    return kind + ":" + hex(hash.digest());
  }

 private:
  struct Owner {
    std::uint32_t uid = 0, gid = 0;
  };

  // Where a directory is needed and the image (or this layer) has a file.
  [[noreturn]] void not_a_directory(const std::string& path) const {
    throw BuildError(cmd_ + " failed: mkdir /" + path + ": not a directory");
  }

  // dockerd resolves the destination in the container, following symlinks.
  void resolve_dest() {
    if (plan_.dest.empty() || plan_.dest[0] != '/')
      throw BuildError(cmd_ + " failed: the destination must be absolute");
    std::vector<std::string> parts;
    for (std::string& part : split(plan_.dest)) {  // path.Clean: ".." stops at "/"
      if (part != "..")
        parts.push_back(std::move(part));
      else if (!parts.empty())
        parts.pop_back();
    }
    try {
      dest_ = follow_in_scope(
          parts, [this](const std::string& p) { return image_node(p); }, &dest_node_);
    } catch (const TooManyLinks&) {
      throw BuildError(cmd_ + " failed: too many links in " + plan_.dest);
    }
    if (!image_ && !dest_.empty() && plan_.dest_is_dir)
      dest_node_.kind = plan_.dest_is_dir("/" + dest_) ? Node::Kind::kDir : Node::Kind::kAbsent;
  }

  // What the image being built has at `path` (absent when unknown).
  Node image_node(const std::string& path) {
    if (!image_) return Node{};
    if (auto it = image_nodes_.find(path); it != image_nodes_.end()) return it->second;
    Node node;
    Beneath::Slot slot;
    bool reachable = true;
    try {
      slot = image_->open_parent(path);
    } catch (const std::exception&) {
      reachable = false;
    }
    if (reachable && slot.name.empty()) {
      node.kind = Node::Kind::kDir;
    } else if (reachable && ::fstatat(slot.dir.get(), slot.name.c_str(), &node.st, AT_SYMLINK_NOFOLLOW) == 0) {
      node.kind = kind_of(node.st.st_mode);
      if (node.kind == Node::Kind::kLink) node.target = read_link_at(slot.dir.get(), slot.name);
    } else if (reachable && errno != ENOENT && errno != ENOTDIR) {
      throw_errno("stat /" + path);
    }
    return image_nodes_[path] = node;
  }

  // Where one file goes: inside the destination when it ends in "/" or is a
  // directory, else the destination itself.
  std::string file_target(const std::string& name) const {
    if (dest_slash_ || dest_node_.kind == Node::Kind::kDir) return join(dest_, name);
    return dest_;
  }

  // dockerd makes missing directories 0755, owned by the --chown user.
  Owner new_dir_owner() const { return {plan_.uid.value_or(0), plan_.gid.value_or(0)}; }

  // The directories of `path`, from the top, for those this layer has not
  // written yet: as the image has them, or new.
  void ensure_dirs(const std::string& path, Owner owner) {
    std::string at;
    for (const std::string& part : split(path)) {
      at = join(at, part);
      auto it = written_.find(at);
      if (it != written_.end()) {
        if (it->second != Node::Kind::kDir) not_a_directory(at);
        continue;
      }
      put_dir(at, owner, std::nullopt);
    }
  }

  // The directory `at`: its image metadata when it exists there, else new
  // (0755, or `mode`, owned by `owner`, made now).
  void put_dir(const std::string& at, Owner owner, std::optional<std::uint32_t> mode) {
    Node node = image_node(at);
    if (node.kind == Node::Kind::kOther) not_a_directory(at);
    TarMember m;
    m.name = at;
    m.type = TarMember::Type::kDir;
    if (node.kind == Node::Kind::kDir) {
      m.mode = node.st.st_mode & 07777;
      m.uid = node.st.st_uid;
      m.gid = node.st.st_gid;
      m.mtime = node.st.st_mtim.tv_sec;
    } else if (!image_ && at == dest_ && dest_node_.kind == Node::Kind::kDir) {
      m.mode = 0755;  // it exists, but how is not known: as dockerd makes one
      m.mtime = now_;
    } else {
      m.mode = mode.value_or(0755);
      m.uid = owner.uid;
      m.gid = owner.gid;
      m.mtime = now_;
    }
    tar_.add(m);
    written_[at] = Node::Kind::kDir;
  }

  // A directory source: its contents into the destination, made if missing.
  void copy_dir(const std::string& real) {
    if (dest_node_.kind == Node::Kind::kOther) not_a_directory(dest_);
    ensure_dirs(parent_of(dest_), Owner{});  // CopyWithTar makes them as root
    if (!dest_.empty() && written_.find(dest_) == written_.end()) {
      if (dest_node_.kind == Node::Kind::kDir)
        put_dir(dest_, Owner{}, std::nullopt);
      else
        put_dir(dest_, new_dir_owner(), plan_.mode);
    }
    Fd dir = source_->tree().open_dir(real);
    std::map<std::pair<dev_t, ino_t>, std::string> links;
    walk(dir.get(), real, dest_, links);
  }

  void walk(int dir, const std::string& from, const std::string& to,
            std::map<std::pair<dev_t, ino_t>, std::string>& links) {
    for (const std::string& name : list_dir(dir)) {
      const std::string src = join(from, name), dst = join(to, name);
      struct stat st {};
      if (::fstatat(dir, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
        if (errno == ENOENT) continue;
        throw_errno("stat " + src);
      }
      if (S_ISSOCK(st.st_mode) || source_->hidden(src, S_ISDIR(st.st_mode))) continue;
      if (S_ISDIR(st.st_mode)) {
        Fd sub(::openat(dir, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
        if (!sub) throw_errno("open " + src);
        put(dst, st, -1, src, dir);
        walk(sub.get(), src, dst, links);
        continue;
      }
      if (st.st_nlink > 1) {
        auto [it, first] = links.try_emplace({st.st_dev, st.st_ino}, dst);
        if (!first) {
          TarMember m = member(dst, st);
          m.type = TarMember::Type::kHardlink;
          m.link = it->second;
          tar_.add(m);
          written_[dst] = Node::Kind::kOther;
          record(m, "");
          continue;
        }
      }
      Fd fd;
      if (S_ISREG(st.st_mode)) {
        fd.reset(::openat(dir, name.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
        if (!fd) throw_errno("open " + src);
      }
      put(dst, st, fd.get(), src, dir);
    }
  }

  // The owner, mode and time of a copied entry, dockerd's way: the --chown
  // user, else root for context files, else the source's.
  TarMember member(const std::string& name, const struct stat& st) const {
    TarMember m;
    m.name = name;
    const bool keep = !plan_.context_owner_root;
    m.uid = plan_.uid.value_or(keep ? st.st_uid : 0);
    m.gid = plan_.gid.value_or(keep ? st.st_gid : 0);
    m.mode = st.st_mode & 07777;
    if (plan_.uid || plan_.gid) {
      // dockerd chowns after copying, and chown(2) drops set-user-ID (and
      // set-group-ID with group execute) from files.
      if (!S_ISDIR(st.st_mode) && !S_ISLNK(st.st_mode)) {
        m.mode &= ~static_cast<std::uint32_t>(S_ISUID);
        if (m.mode & S_IXGRP) m.mode &= ~static_cast<std::uint32_t>(S_ISGID);
      }
    }
    if (plan_.mode && !S_ISLNK(st.st_mode)) m.mode = *plan_.mode & 07777;
    m.mtime = st.st_mtim.tv_sec;
    return m;
  }

  // One copied entry of any kind at `name`; `fd` is a regular file's, `dir`
  // and `path_for_errors`'s base locate it for readlink.
  void put(const std::string& name, const struct stat& st, int fd, const std::string& path_for_errors, int dir) {
    TarMember m = member(name, st);
    std::string content;
    if (S_ISDIR(st.st_mode)) {
      m.type = TarMember::Type::kDir;
      tar_.add(m);
      written_[name] = Node::Kind::kDir;
    } else if (S_ISREG(st.st_mode)) {
      m.type = TarMember::Type::kFile;
      m.size = static_cast<std::uint64_t>(st.st_size);
      if (!plan_.uid && !plan_.gid) m.xattrs = capability_of(fd);  // the one xattr dockerd copies
      tar_.add(m);
      Sha256 sha;
      try {
        tar_.data_from_fd(fd, &sha);
      } catch (const std::system_error& e) {
        throw BuildError(cmd_ + " failed: " + path_for_errors + ": " + e.what());
      }
      content = hex(sha.digest());
      written_[name] = Node::Kind::kOther;
    } else if (S_ISLNK(st.st_mode)) {
      m.type = TarMember::Type::kSymlink;
      m.link = read_link_at(dir, base_of(path_for_errors));
      content = m.link;
      tar_.add(m);
      written_[name] = Node::Kind::kLink;
    } else {
      m.type = S_ISCHR(st.st_mode)   ? TarMember::Type::kCharDevice
               : S_ISBLK(st.st_mode) ? TarMember::Type::kBlockDevice
                                     : TarMember::Type::kFifo;
      m.dev_major = major(st.st_rdev);
      m.dev_minor = minor(st.st_rdev);
      content = std::to_string(m.dev_major) + "," + std::to_string(m.dev_minor);
      tar_.add(m);
      written_[name] = Node::Kind::kOther;
    }
    record(m, content);
  }

  static std::vector<std::pair<std::string, std::string>> capability_of(int fd) {
    std::string value(256, '\0');
    ssize_t n = ::fgetxattr(fd, "security.capability", value.data(), value.size());
    if (n <= 0) return {};
    value.resize(static_cast<std::size_t>(n));
    return {{"security.capability", value}};
  }

  // ADD of a local archive: its entries under the destination, their owners
  // kept unless --chown. Names leaving it, links leading out of it and entries
  // beneath its own symlinks are refused, as dockerd's untar does.
  void extract(int fd) {
    if (dest_node_.kind == Node::Kind::kOther) not_a_directory(dest_);
    ensure_dirs(dest_, Owner{});
    ReadArchive a = archive_reader();
    if (archive_read_open_fd(a.get(), fd, 64 * 1024) != ARCHIVE_OK) archive_failed(a.get());
    std::map<std::string, std::string> members;  // archive name -> where it went
    archive_entry* e = nullptr;
    while (true) {
      int r = archive_read_next_header(a.get(), &e);
      if (r == ARCHIVE_EOF) break;
      if (r < ARCHIVE_WARN) archive_failed(a.get());
      const char* raw = archive_entry_pathname(e);
      if (!raw) throw BuildError(cmd_ + " failed: the archive holds an entry without a name");
      const std::string shown = raw;
      std::string name;
      try {
        name = image::clean_member(raw, "entry");
      } catch (const image::BreakoutError&) {
        throw BuildError(cmd_ + " failed: " + text::go_quote(shown) + " is outside of " + text::go_quote("/" + dest_));
      }
      // Where it goes: its directory as written so far, or as the image has it.
      std::string where = dest_;
      if (!name.empty()) {
        std::vector<std::string> parts = split(dest_);
        for (std::string& part : split(parent_of(name))) parts.push_back(std::move(part));
        where = join(follow_in_scope(
                         parts, [&](const std::string& p) { return layer_node(p, shown); }, nullptr),
                     base_of(name));
        ensure_dirs(parent_of(where), Owner{});
      }
      TarMember m = archive_member(e, where);
      std::string content;
      if (const char* link = archive_entry_hardlink(e)) {
        std::string target;
        try {
          target = image::clean_member(link, "hardlink");
        } catch (const image::BreakoutError&) {
        }
        auto it = members.find(target);
        if (target.empty() || it == members.end())
          throw BuildError(cmd_ + " failed: invalid hardlink " + text::go_quote(shown) + " -> " + text::go_quote(link));
        m.type = TarMember::Type::kHardlink;
        m.link = it->second;
        m.size = 0;
      } else if (m.type == TarMember::Type::kSymlink) {
        try {
          image::check_symlink_target(name, m.link);
        } catch (const std::runtime_error&) {
          throw BuildError(cmd_ + " failed: invalid symlink " + text::go_quote(shown) + " -> " +
                           text::go_quote(m.link));
        }
        content = m.link;
      } else if (m.type == TarMember::Type::kCharDevice || m.type == TarMember::Type::kBlockDevice) {
        content = std::to_string(m.dev_major) + "," + std::to_string(m.dev_minor);
      }
      if (name.empty() && m.type != TarMember::Type::kDir) continue;  // "." that is not a directory
      if (where.empty()) continue;                                    // "./" extracted at "/"
      tar_.add(m);
      if (m.type == TarMember::Type::kFile) content = copy_data(a.get(), shown);
      written_[where] = m.type == TarMember::Type::kDir       ? Node::Kind::kDir
                        : m.type == TarMember::Type::kSymlink ? Node::Kind::kLink
                                                              : Node::Kind::kOther;
      members[name] = where;
      record(m, content);
    }
  }

  // For an archive entry's directory: what this layer wrote there (never
  // crossing one of its symlinks), else what the image has.
  Node layer_node(const std::string& path, const std::string& entry) {
    auto it = written_.find(path);
    if (it == written_.end()) return image_node(path);
    if (it->second == Node::Kind::kLink)
      throw BuildError(cmd_ + " failed: " + text::go_quote(entry) + " is beneath the symlink /" + path +
                       " of the archive");
    Node node;
    node.kind = it->second;
    return node;
  }

  TarMember archive_member(archive_entry* e, const std::string& where) const {
    TarMember m;
    m.name = where;
    la_int64_t uid = archive_entry_uid(e), gid = archive_entry_gid(e);
    if (uid < 0 || uid > 0xfffffffe || gid < 0 || gid > 0xfffffffe)
      throw BuildError(cmd_ + " failed: " + where + ": invalid owner");
    m.uid = plan_.uid.value_or(static_cast<std::uint32_t>(uid));
    m.gid = plan_.gid.value_or(static_cast<std::uint32_t>(gid));
    m.mode = archive_entry_perm(e) & 07777;
    m.mtime = archive_entry_mtime(e);
    switch (archive_entry_filetype(e)) {
      case AE_IFDIR:
        m.type = TarMember::Type::kDir;
        break;
      case AE_IFLNK: {
        m.type = TarMember::Type::kSymlink;
        const char* target = archive_entry_symlink(e);
        m.link = target ? target : "";
        break;
      }
      case AE_IFCHR:
        m.type = TarMember::Type::kCharDevice;
        break;
      case AE_IFBLK:
        m.type = TarMember::Type::kBlockDevice;
        break;
      case AE_IFIFO:
        m.type = TarMember::Type::kFifo;
        break;
      default:
        m.type = TarMember::Type::kFile;
        m.size = static_cast<std::uint64_t>(std::max<la_int64_t>(0, archive_entry_size(e)));
        break;
    }
    if (m.type == TarMember::Type::kCharDevice || m.type == TarMember::Type::kBlockDevice) {
      m.dev_major = archive_entry_rdevmajor(e);
      m.dev_minor = archive_entry_rdevminor(e);
    }
    if (plan_.mode && m.type != TarMember::Type::kSymlink) m.mode = *plan_.mode & 07777;
    const char* key = nullptr;
    const void* value = nullptr;
    std::size_t size = 0;
    archive_entry_xattr_reset(e);
    while (archive_entry_xattr_next(e, &key, &value, &size) == ARCHIVE_OK)
      if (std::string_view(key).rfind("trusted.overlay.", 0) != 0)
        m.xattrs.emplace_back(key, std::string(static_cast<const char*>(value), size));
    return m;
  }

  // The current archive member's content into the layer; its sha256.
  std::string copy_data(archive* a, const std::string& entry) {
    Sha256 sha;
    std::vector<char> buf(128 * 1024);
    while (true) {
      la_ssize_t n = archive_read_data(a, buf.data(), buf.size());
      if (n < 0) throw BuildError(cmd_ + " failed: " + entry + ": " + archive_text(a));
      if (n == 0) break;
      sha.update(buf.data(), static_cast<std::size_t>(n));
      tar_.data(buf.data(), static_cast<std::size_t>(n));
    }
    return hex(sha.digest());
  }

  static std::string archive_text(archive* a) {
    const char* msg = archive_error_string(a);
    return msg ? msg : "unknown archive error";
  }

  [[noreturn]] void archive_failed(archive* a) const {
    throw BuildError(cmd_ + " failed: cannot extract the archive: " + archive_text(a));
  }

  // What the cache key hashes: each copied entry's path, kind, mode, owner,
  // size and content (or link target), not its time.
  void record(const TarMember& m, const std::string& content) {
    static constexpr char kKinds[] = "fdlhcbp";  // in TarMember::Type's order
    std::string what(1, kKinds[static_cast<int>(m.type)]);
    char mode[16];
    std::snprintf(mode, sizeof mode, " %04o ", m.mode);
    what += mode + std::to_string(m.uid) + ":" + std::to_string(m.gid) + " " + std::to_string(m.size) + " ";
    what += m.type == TarMember::Type::kHardlink ? m.link : content;
    for (const auto& [key, value] : m.xattrs) what += " " + key + "=" + hex(image::sha256_digest(value));
    records_[m.name] = std::move(what);
  }

  const CopyPlan& plan_;
  LayerTarWriter& tar_;
  const std::string cmd_;
  std::int64_t now_ = 0;
  std::optional<Beneath> image_;
  std::optional<SourceTree> source_;
  bool dest_slash_ = false;
  std::string dest_;  // resolved, relative to the image's root
  Node dest_node_;
  std::map<std::string, Node> image_nodes_;
  std::map<std::string, Node::Kind> written_;  // what this layer holds so far
  std::map<std::string, std::string> records_;
};

}  // namespace

std::vector<CopySource> resolve_sources(const fs::path& root, const std::vector<std::string>& patterns,
                                        const IgnoreMatcher* ignore, const std::string& instruction, bool from_image) {
  SourceTree src(root, ignore);
  std::vector<CopySource> out;
  for (const std::string& pattern : patterns) {
    std::string path = pattern;  // dockerd trims one "/" and then one "./"
    if (path.rfind('/', 0) == 0) path.erase(0, 1);
    if (path.rfind("./", 0) == 0) path.erase(0, 2);
    if (has_wildcards(path)) {
      std::vector<std::string> parts;
      std::size_t start = 0;
      while (start <= path.size()) {
        std::size_t slash = path.find('/', start);
        if (slash == std::string::npos) slash = path.size();
        parts.push_back(path.substr(start, slash - start));
        start = slash + 1;
      }
      match_sources(src, pattern, parts, 0, "", instruction, from_image, out);
    } else {
      out.push_back(find_source(src, pattern, path, instruction, from_image));
    }
  }
  if (out.empty()) throw BuildError(instruction + " failed: no source files were specified");
  return out;
}

CopyResult write_copy_layer(const CopyPlan& plan, const std::function<void(const char*, std::size_t)>& out) {
  const std::string instruction = plan.unpack_archives ? "ADD" : "COPY";
  const std::size_t count = plan.sources.size() + plan.inline_sources.size();
  if (count > 1 && (plan.dest.empty() || plan.dest.back() != '/'))
    throw BuildError("When using " + instruction +
                     " with more than one source file, the destination must be a directory and end with a /");
  LayerTarWriter tar(out);
  CopyWriter writer(plan, tar, instruction);
  try {
    for (const CopySource& s : plan.sources) writer.copy(s);
    for (const InlineSource& s : plan.inline_sources) writer.copy(s);
    if (count == 0) writer.make_dest_dir();
  } catch (const TooManyLinks&) {
    throw BuildError(instruction + " failed: too many levels of symbolic links");
  } catch (const image::BreakoutError& e) {  // a source changed under us
    throw BuildError(instruction + " failed: " + e.what());
  } catch (const std::system_error& e) {  // the file systems; what `out` throws passes as is
    throw BuildError(instruction + " failed: " + e.what());
  }
  CopyResult result;
  const bool one_dir = count == 1 && plan.sources.size() == 1 && plan.sources[0].is_dir;
  result.checksum = writer.checksum(count > 1 ? "multi" : count == 0 || one_dir ? "dir" : "file");
  result.layer = tar.finish();
  return result;
}

}  // namespace berth::agent::build
