#pragma once
// The json-file log driver's rotation (--log-opt max-size / max-file), as
// dockerd's loggerutils.LogFile does it: before a record is written, a file
// that has reached max-size moves to .1 (older ones to .2 ... .max-file-1,
// the oldest dropped); with max-file 1 the file starts over empty.
#include <cstdint>
#include <filesystem>
#include <optional>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "agent/runtime/fd.h"

namespace berth::agent::runtime {

struct LogRotation {
  std::int64_t max_size = -1;  // bytes; -1: unlimited
  int max_file = 1;
};

// HostConfig.LogConfig ({"Type","Config"}) to the rotation; throws
// api::HttpError(400) in dockerd's words for bad or unknown options.
LogRotation parse_log_rotation(const nlohmann::json& log_config);
// go-units RAMInBytes: "10m" = 10 MiB, "1.5k", "2GB", "512"; nullopt if malformed.
std::optional<std::int64_t> parse_ram_in_bytes(std::string_view text);

class RotatingLogFile {
 public:
  RotatingLogFile() = default;
  // Opens (appending to) `path`; throws std::runtime_error when it cannot.
  RotatingLogFile(std::filesystem::path path, LogRotation rotation);
  explicit operator bool() const { return static_cast<bool>(fd_); }
  // Whether records must be written one at a time (a max-size is set).
  bool rotates() const { return rot_.max_size > 0; }
  // Writes one record (a whole line), rotating first when the file is full.
  void write(std::string_view record);

 private:
  void rotate();
  std::filesystem::path path_;
  LogRotation rot_;
  UniqueFd fd_;
  std::int64_t size_ = 0;
};

// The files of a rotated log, oldest first, ending with `path` itself.
std::vector<std::filesystem::path> rotated_log_files(const std::filesystem::path& path);

}  // namespace berth::agent::runtime
