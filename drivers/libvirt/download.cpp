#include "drivers/libvirt/download.h"

#include <curl/curl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <fstream>
#include <memory>
#include <random>
#include <vector>

#include "core/error.h"
#include "core/fs.h"
#include "core/progress.h"
#include "core/sha256.h"

namespace berth::virt {
namespace {

struct CurlFree {
  void operator()(CURL* c) const { curl_easy_cleanup(c); }
};
struct FileClose {
  void operator()(std::FILE* f) const { std::fclose(f); }
};

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

std::string url_basename(const std::string& url) {
  std::string path = url.substr(0, url.find_first_of("?#"));
  auto slash = path.find_last_of('/');
  std::string base = slash == std::string::npos ? path : path.substr(slash + 1);
  std::string safe;
  for (char c : base) {
    const bool plain = std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '_';
    safe += plain ? c : '_';
  }
  if (safe.empty() || safe == "." || safe == "..") safe = "image";
  return safe;
}

struct Transfer {
  std::FILE* file = nullptr;
  Sha256 sha;
  TransferProgress* progress = nullptr;
  const std::function<bool()>* cancelled = nullptr;
  bool write_failed = false;
};

size_t on_data(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  size_t bytes = size * n;
  if (std::fwrite(data, 1, bytes, t->file) != bytes) {
    t->write_failed = true;
    return 0;
  }
  t->sha.update(data, bytes);
  return bytes;
}

int on_progress(void* user, curl_off_t total, curl_off_t now, curl_off_t, curl_off_t) {
  auto* t = static_cast<Transfer*>(user);
  if (*t->cancelled && (*t->cancelled)()) return 1;  // aborts the transfer
  t->progress->update(static_cast<std::uint64_t>(now), static_cast<std::uint64_t>(total));
  return 0;
}

void curl_global() {
  static const bool done = [] { return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK; }();
  if (!done) throw Error("cannot initialize libcurl");
}

// Removes the temp file unless disarmed.
struct TempFile {
  fs::path path;
  ~TempFile() {
    if (!path.empty()) {
      std::error_code ec;
      fs::remove(path, ec);
    }
  }
};

}  // namespace

bool is_url(const std::string& image) {
  auto l = lower(image.substr(0, 8));
  return l.rfind("http://", 0) == 0 || l.rfind("https://", 0) == 0;
}

std::string sha256_hex(const std::string& data) {
  Sha256 sha;
  sha.update(data.data(), data.size());
  return sha.hex();
}

std::string sha256_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("cannot read " + path.string());
  Sha256 sha;
  std::vector<char> buf(1 << 16);
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    sha.update(buf.data(), static_cast<size_t>(in.gcount()));
  }
  if (in.bad()) throw Error("cannot read " + path.string());
  return sha.hex();
}

fs::path cached_path(const DownloadRequest& r) {
  return r.cache_dir / (sha256_hex(r.url).substr(0, 16) + "-" + url_basename(r.url));
}

fs::path download_image(const DownloadRequest& r) {
  const std::string want = lower(r.sha256);
  const fs::path dest = cached_path(r);
  std::error_code ec;
  if (fs::is_regular_file(dest, ec)) {
    if (want.empty() || sha256_file(dest) == want) return dest;
    fs::remove(dest, ec);  // stale or corrupt: fetch it again
  }
  ensure_private_dir(r.cache_dir);
  curl_global();

  TempFile tmp{dest.string() + ".part-" + std::to_string(::getpid()) + "-" +
               std::to_string(std::random_device{}())};
  std::unique_ptr<std::FILE, FileClose> file(std::fopen(tmp.path.c_str(), "wbx"));
  if (!file) throw Error("machine '" + r.machine + "': cannot write " + tmp.path.string());
  fs::permissions(tmp.path, fs::perms::owner_read | fs::perms::owner_write, ec);

  std::unique_ptr<CURL, CurlFree> curl(curl_easy_init());
  if (!curl) throw Error("cannot initialize libcurl");
  TransferProgress progress(r.progress, "downloading " + url_basename(r.url));
  Transfer t;
  t.file = file.get();
  t.progress = &progress;
  t.cancelled = &r.cancelled;
  char errbuf[CURL_ERROR_SIZE] = {};
  curl_easy_setopt(curl.get(), CURLOPT_URL, r.url.c_str());
  curl_easy_setopt(curl.get(), CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(curl.get(), CURLOPT_FAILONERROR, 1L);
  curl_easy_setopt(curl.get(), CURLOPT_WRITEFUNCTION, on_data);
  curl_easy_setopt(curl.get(), CURLOPT_WRITEDATA, &t);
  curl_easy_setopt(curl.get(), CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(curl.get(), CURLOPT_XFERINFOFUNCTION, on_progress);
  curl_easy_setopt(curl.get(), CURLOPT_XFERINFODATA, &t);
  curl_easy_setopt(curl.get(), CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(curl.get(), CURLOPT_CONNECTTIMEOUT, 30L);
  // Give up on a stalled transfer: under 1 KB/s for a minute.
  curl_easy_setopt(curl.get(), CURLOPT_LOW_SPEED_LIMIT, 1024L);
  curl_easy_setopt(curl.get(), CURLOPT_LOW_SPEED_TIME, 60L);
  curl_easy_setopt(curl.get(), CURLOPT_USERAGENT, "berth");
  CURLcode rc = curl_easy_perform(curl.get());
  progress.finish();
  if (rc == CURLE_ABORTED_BY_CALLBACK)
    throw Interrupted("machine '" + r.machine + "': download of " + r.url + " interrupted");
  if (t.write_failed) throw Error("machine '" + r.machine + "': cannot write " + tmp.path.string() + " (disk full?)");
  if (rc != CURLE_OK)
    throw Error("machine '" + r.machine + "': cannot download " + r.url + ": " +
                (errbuf[0] ? errbuf : curl_easy_strerror(rc)) + "; check the URL or pass a local file");
  if (std::fflush(file.get()) != 0 || ::fsync(fileno(file.get())) != 0)
    throw Error("machine '" + r.machine + "': cannot write " + tmp.path.string());
  file.reset();
  const std::string got = t.sha.hex();
  if (!want.empty() && got != want)
    throw UserError("machine '" + r.machine + "': " + r.url + " has SHA-256 " + got + ", not " + want +
                    " as --libvirt-image-sha256 says; the download is corrupt or the checksum is wrong");
  fs::rename(tmp.path, dest, ec);
  if (ec)
    throw Error("machine '" + r.machine + "': cannot move the download into " + dest.string() + ": " + ec.message());
  tmp.path.clear();
  return dest;
}

}  // namespace berth::virt
