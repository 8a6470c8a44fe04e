#pragma once
#include <filesystem>
#include <string>
#include <string_view>

#include "agent/api/http.h"

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
