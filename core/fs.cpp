#include "core/fs.h"

#include <fcntl.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>

#include "core/error.h"

namespace berth {
namespace {

std::string errno_text() { return std::strerror(errno); }

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  int release() { int f = fd_; fd_ = -1; return f; }

 private:
  int fd_;
};

std::string random_suffix() {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  return std::to_string(rng());
}

}  // namespace

void write_file_atomic(const fs::path& path, std::string_view content, mode_t mode) {
  fs::path tmp = path;
  tmp += ".tmp-" + random_suffix();
  Fd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode));
  if (fd.get() < 0) throw Error("cannot write " + tmp.string() + ": " + errno_text());
  auto fail = [&](const char* what) {
    std::string msg = std::string("cannot ") + what + " " + path.string() + ": " + errno_text();
    ::unlink(tmp.c_str());
    throw Error(msg);
  };
  if (::fchmod(fd.get(), mode) != 0) fail("chmod");
  const char* p = content.data();
  size_t left = content.size();
  while (left > 0) {
    ssize_t n = ::write(fd.get(), p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail("write");
    }
    p += n;
    left -= static_cast<size_t>(n);
  }
  if (::fsync(fd.get()) != 0) fail("fsync");
  if (::close(fd.release()) != 0) fail("close");
  if (::rename(tmp.c_str(), path.c_str()) != 0) fail("rename into");
  Fd dir(::open(path.parent_path().empty() ? "." : path.parent_path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dir.get() >= 0) ::fsync(dir.get());
}

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("cannot read " + path.string() + ": " + errno_text());
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) throw Error("cannot read " + path.string() + ": " + errno_text());
  return ss.str();
}

void ensure_private_dir(const fs::path& path) {
  std::error_code ec;
  fs::path acc;
  for (const auto& part : path) {
    acc /= part;
    if (fs::exists(acc, ec)) continue;
    if (::mkdir(acc.c_str(), 0700) != 0 && errno != EEXIST)
      throw Error("cannot create directory " + acc.string() + ": " + errno_text());
  }
  if (::chmod(path.c_str(), 0700) != 0)
    throw Error("cannot set permissions on " + path.string() + ": " + errno_text());
}

void copy_file_private(const fs::path& from, const fs::path& to, mode_t mode) {
  write_file_atomic(to, read_file(from), mode);
}

fs::path home_dir() {
  if (const char* h = std::getenv("HOME"); h && *h) return h;
  if (const passwd* pw = ::getpwuid(::getuid()); pw && pw->pw_dir) return pw->pw_dir;
  return "/";
}

}  // namespace berth
