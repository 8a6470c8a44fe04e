#include "agent/build/fetch.h"

#include <sys/stat.h>
#include <sys/time.h>

#include <fstream>

#include "agent/build/error.h"
#include "agent/image/http_client.h"
#include "agent/image/time_util.h"

namespace berth::agent::build {
namespace fs = std::filesystem;

bool is_url(const std::string& source) {
  return source.rfind("http://", 0) == 0 || source.rfind("https://", 0) == 0;
}

fs::path download(const std::string& url, const fs::path& dir, BuildOutput& out) {
  if (url.size() > 4 && url.compare(url.size() - 4, 4, ".git") == 0)
    throw BuildError("ADD of a git repository (" + url + ") is not supported by berth-agent's builder; clone it into "
                     "the build context and COPY it");
  image::Url parsed;
  try {
    parsed = image::parse_url(url);
  } catch (const std::exception& e) {
    throw BuildError("invalid URL " + url + ": " + e.what());
  }
  std::string path = parsed.target.substr(0, parsed.target.find('?'));
  std::string name = path.substr(path.rfind('/') + 1);
  if (name.empty() || name == "." || name == "..")
    throw BuildError("cannot determine filename from url: " + url);
  const fs::path file = dir / name;
  out.stream("Downloading " + url + "\n");
  image::HttpResponse resp;
  {
    std::ofstream f(file, std::ios::binary | std::ios::trunc);
    image::HttpRequest req;
    req.url = parsed;
    try {
      resp = image::http_request(req, [&](const char* p, std::size_t n) { f.write(p, static_cast<std::streamsize>(n)); },
                                 std::chrono::seconds(300));
    } catch (const std::exception& e) {
      throw BuildError(std::string("failed to GET ") + url + ": " + e.what());
    }
    if (!f) throw BuildError("cannot write the download of " + url);
  }
  if (resp.status < 200 || resp.status > 299)
    throw BuildError("failed to GET " + url + " with status " + std::to_string(resp.status));
  ::chmod(file.c_str(), 0600);
  if (auto modified = resp.header("last-modified"); !modified.empty()) {
    // An HTTP date ("Wed, 21 Oct 2015 07:28:00 GMT").
    std::tm tm{};
    if (::strptime(modified.c_str(), "%a, %d %b %Y %H:%M:%S GMT", &tm)) {
      timeval times[2] = {{::timegm(&tm), 0}, {::timegm(&tm), 0}};
      ::utimes(file.c_str(), times);
    }
  }
  return file;
}

}  // namespace berth::agent::build
