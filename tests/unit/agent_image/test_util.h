#pragma once
#include <algorithm>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

#include "agent/api/http.h"
#include "agent/image/layer.h"

#include <stdlib.h>

namespace berth::agent::image::testing {

// Keeps what a streamed response writes (pull progress, save).
struct CollectingWriter : api::StreamWriter {
  std::string data;
  bool write(std::string_view d) override {
    data.append(d);
    return true;
  }
  bool client_gone() override { return false; }
};

// A ReadFn over bytes held in memory.
inline ReadFn string_reader(std::string data) {
  auto shared = std::make_shared<std::string>(std::move(data));
  auto pos = std::make_shared<std::size_t>(0);
  return [shared, pos](char* buf, std::size_t n) {
    std::size_t k = std::min(n, shared->size() - *pos);
    std::memcpy(buf, shared->data() + *pos, k);
    *pos += k;
    return k;
  };
}

// A fresh directory removed at the end of the test.
struct TempDir {
  std::filesystem::path path;
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "berth-image-XXXXXX").string();
    path = ::mkdtemp(tmpl.data());
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
};

}  // namespace berth::agent::image::testing
