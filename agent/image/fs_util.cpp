#include "agent/image/fs_util.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>

namespace berth::agent::image {
namespace fs = std::filesystem;

std::optional<std::string> read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::ostringstream out;
  out << in.rdbuf();
  return std::move(out).str();
}

std::string random_suffix() {
  thread_local std::mt19937_64 gen{std::random_device{}()};
  static constexpr char kHex[] = "0123456789abcdef";
  std::uint64_t v = gen();
  std::string s(16, '0');
  for (int i = 0; i < 16; ++i) s[i] = kHex[(v >> (i * 4)) & 15];
  return s;
}

TempFile::TempFile(const fs::path& tmp_dir) {
  path_ = tmp_dir / ("file-" + random_suffix());
  fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd_ < 0) throw std::runtime_error("cannot create " + path_.string() + ": " + std::strerror(errno));
}

TempFile::~TempFile() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_) ::unlink(path_.c_str());
}

void TempFile::write(const void* data, std::size_t size) {
  auto* p = static_cast<const char*>(data);
  while (size > 0) {
    ssize_t n = ::write(fd_, p, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw std::runtime_error("cannot write " + path_.string() + ": " + std::strerror(errno));
    }
    p += n;
    size -= static_cast<std::size_t>(n);
    size_ += static_cast<std::uint64_t>(n);
  }
}

void TempFile::commit(const fs::path& dest) {
  if (::fsync(fd_) != 0 || ::close(fd_) != 0) {
    fd_ = -1;
    throw std::runtime_error("cannot write " + path_.string() + ": " + std::strerror(errno));
  }
  fd_ = -1;
  if (::rename(path_.c_str(), dest.c_str()) != 0)
    throw std::runtime_error("cannot rename to " + dest.string() + ": " + std::strerror(errno));
  committed_ = true;
}

void write_file_atomic(const fs::path& path, std::string_view bytes, const fs::path& tmp_dir) {
  TempFile tmp(tmp_dir);
  tmp.write(bytes.data(), bytes.size());
  tmp.commit(path);
}

}  // namespace berth::agent::image
