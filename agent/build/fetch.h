#pragma once
// ADD's remote sources: a URL downloaded into the build's scratch space.
#include <filesystem>
#include <string>

#include "agent/build/backend.h"

namespace berth::agent::build {

// http:// or https://.
bool is_url(const std::string& source);

// Downloads `url` into `dir` under the file name its path ends with; returns
// the file's path. The file gets mode 0600 and the Last-Modified time, as
// dockerd does. A git URL, a non-2xx answer or a URL without a file name is a
// BuildError in dockerd's words.
std::filesystem::path download(const std::string& url, const std::filesystem::path& dir, BuildOutput& out);

}  // namespace berth::agent::build
