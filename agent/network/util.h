#pragma once
// Small helpers shared by the network and volume modules: ids, atomic state
// files, timestamps and dockerd's "filters" query parameter.
#include <filesystem>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace berth::agent::network {

// `bytes` random bytes as lowercase hex (from /dev/urandom).
std::string random_hex(std::size_t bytes);

// Writes via a temporary file, fsync and rename. Throws std::runtime_error.
void write_file_atomic(const std::filesystem::path& path, std::string_view content);
// Whole file; throws std::runtime_error when it cannot be read.
std::string read_file(const std::filesystem::path& path);

// "2024-05-01T10:00:00Z" (seconds) and "2024-05-01T10:00:00.123456789Z" (nanos), UTC.
std::string rfc3339_seconds_now();
std::string rfc3339_nanos_now();

// dockerd's ?filters=: {"name":{"x":true}} or the old {"name":["x"]}.
// Throws api::HttpError(400) for malformed JSON or a key not in `allowed`
// ("invalid filter 'KEY'").
using Filters = std::map<std::string, std::vector<std::string>>;
Filters parse_filters(const std::string& raw, const std::vector<std::string>& allowed);

// "key" or "key=value" against a label map, like dockerd's label filter.
bool label_matches(const std::map<std::string, std::string>& labels, const std::string& filter);

// Parses a boolean filter value ("true", "1", "false", "0"); throws HttpError(400)
// `Invalid filter 'KEY=VALUE'` otherwise.
bool filter_bool(const std::string& key, const std::string& value);

}  // namespace berth::agent::network
