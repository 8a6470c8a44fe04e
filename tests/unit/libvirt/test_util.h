#pragma once
#include <stdlib.h>

#include <filesystem>
#include <string>

namespace berth::virt::testing {

struct TempDir {
  TempDir() {
    char t[] = "/tmp/berth-libvirt-XXXXXX";
    path = ::mkdtemp(t);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  std::filesystem::path path;
};

}  // namespace berth::virt::testing
