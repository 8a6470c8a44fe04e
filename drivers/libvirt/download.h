#pragma once
// Fetches a boot image by URL into berth's cache: libcurl, a progress bar on a
// terminal (percentage lines otherwise), optional SHA-256 check, atomic rename.
#include <cstdio>
#include <filesystem>
#include <functional>
#include <string>

namespace berth::virt {

struct DownloadRequest {
  std::string url;
  std::filesystem::path cache_dir;   // made 0700 when missing
  std::string sha256;                // lowercase hex; empty: not checked
  std::string machine;               // for messages
  std::FILE* progress = stderr;      // nullptr: silent
  std::function<bool()> cancelled;   // polled while downloading
};

bool is_url(const std::string& image);

// The file the URL is cached as (cache_dir/<hash of url>-<basename>).
std::filesystem::path cached_path(const DownloadRequest& request);

// Returns the cached file, downloading it first unless it is there (and matches
// the checksum). Throws UserError for a checksum mismatch, Error for HTTP and
// I/O failures, Interrupted when cancelled. Nothing partial is left behind.
std::filesystem::path download_image(const DownloadRequest& request);

// Lowercase hex SHA-256 of a file (OpenSSL EVP).
std::string sha256_file(const std::filesystem::path& path);
std::string sha256_hex(const std::string& data);

}  // namespace berth::virt
