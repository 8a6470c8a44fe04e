#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <map>
#include <mutex>
#include <thread>

#include "core/error.h"
#include "core/fs.h"
#include "drivers/libvirt/download.h"
#include "tests/unit/libvirt/test_util.h"

namespace berth::virt {
namespace {

using testing::TempDir;
using Files = std::map<std::string, std::string>;

// An HTTP/1.0 server on 127.0.0.1: GET of a known path returns its body, anything
// else 404. "/slow" sends a little and then stalls until the server stops.
class FakeHttpServer {
 public:
  explicit FakeHttpServer(std::map<std::string, std::string> files) : files_(std::move(files)) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    ::setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(fd_, 8) != 0 ||
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) != 0)
      throw std::runtime_error("fake HTTP server: cannot listen");
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] { serve(); });
  }
  ~FakeHttpServer() {
    stop_ = true;
    ::shutdown(fd_, SHUT_RDWR);
    ::close(fd_);
    thread_.join();
  }
  std::string url(const std::string& path) const { return "http://127.0.0.1:" + std::to_string(port_) + path; }
  int requests() const { return requests_; }

 private:
  void serve() {
    while (!stop_) {
      int c = ::accept(fd_, nullptr, nullptr);
      if (c < 0) return;
      ++requests_;
      std::string req;
      char buf[1024];
      while (req.find("\r\n\r\n") == std::string::npos) {
        ssize_t n = ::recv(c, buf, sizeof buf, 0);
        if (n <= 0) break;
        req.append(buf, static_cast<size_t>(n));
      }
      const auto sp1 = req.find(' ');
      const std::string path = req.substr(sp1 + 1, req.find(' ', sp1 + 1) - sp1 - 1);
      if (path == "/slow") {
        send_all(c, "HTTP/1.0 200 OK\r\nContent-Length: 100000000\r\n\r\n" + std::string(1000, 'x'));
        while (!stop_) std::this_thread::sleep_for(std::chrono::milliseconds(20));
      } else if (auto it = files_.find(path); it != files_.end()) {
        send_all(c, "HTTP/1.0 200 OK\r\nContent-Length: " + std::to_string(it->second.size()) + "\r\n\r\n" +
                        it->second);
      } else {
        send_all(c, "HTTP/1.0 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found");
      }
      ::close(c);
    }
  }
  static void send_all(int c, const std::string& data) {
    size_t off = 0;
    while (off < data.size()) {
      ssize_t n = ::send(c, data.data() + off, data.size() - off, MSG_NOSIGNAL);
      if (n <= 0) return;
      off += static_cast<size_t>(n);
    }
  }

  std::map<std::string, std::string> files_;
  int fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> requests_{0};
  std::thread thread_;
};

std::string big_body() {
  std::string s;
  for (int i = 0; i < 300000; ++i) s += static_cast<char>('a' + i % 26);
  return s;
}

// Files in the cache dir other than `keep` (partial downloads must not linger).
std::vector<std::string> leftovers(const std::filesystem::path& dir, const std::filesystem::path& keep = {}) {
  std::vector<std::string> out;
  std::error_code ec;
  for (auto& e : std::filesystem::directory_iterator(dir, ec))
    if (e.path() != keep) out.push_back(e.path().filename().string());
  return out;
}

struct Captured {
  Captured() : file(std::tmpfile()) {}
  ~Captured() { std::fclose(file); }
  std::string text() {
    std::fflush(file);
    std::rewind(file);
    std::string out;
    char buf[512];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, file)) > 0) out.append(buf, n);
    return out;
  }
  std::FILE* file;
};

TEST(Download, FetchesVerifiesAndCaches) {
  const std::string body = big_body();
  FakeHttpServer server(Files{{"/images/os.qcow2", body}});
  TempDir t;
  Captured progress;
  DownloadRequest r;
  r.url = server.url("/images/os.qcow2");
  r.cache_dir = t.path / "cache";
  r.sha256 = sha256_hex(body);
  r.machine = "m";
  r.progress = progress.file;
  const auto path = download_image(r);
  EXPECT_EQ(path.parent_path(), r.cache_dir);
  EXPECT_NE(path.filename().string().find("os.qcow2"), std::string::npos);
  EXPECT_EQ(read_file(path), body);
  EXPECT_EQ(sha256_file(path), r.sha256);
  EXPECT_EQ(std::filesystem::status(r.cache_dir).permissions() & std::filesystem::perms::all,
            std::filesystem::perms::owner_all);
  EXPECT_TRUE(leftovers(r.cache_dir, path).empty());
  // Not a terminal: plain percentage lines, ending at 100%.
  const std::string shown = progress.text();
  EXPECT_NE(shown.find("downloading os.qcow2: 100%\n"), std::string::npos) << shown;
  EXPECT_EQ(shown.find('\r'), std::string::npos) << shown;
  EXPECT_EQ(server.requests(), 1);

  // Cached: no second request.
  EXPECT_EQ(download_image(r), path);
  EXPECT_EQ(server.requests(), 1);
}

TEST(Download, ChecksumMismatchLeavesNothing) {
  FakeHttpServer server(Files{{"/os.iso", "the image"}});
  TempDir t;
  DownloadRequest r;
  r.url = server.url("/os.iso");
  r.cache_dir = t.path / "cache";
  r.sha256 = std::string(64, '0');
  r.progress = nullptr;
  try {
    download_image(r);
    FAIL() << "expected UserError";
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find(sha256_hex("the image")), std::string::npos) << e.what();
  }
  EXPECT_TRUE(leftovers(r.cache_dir).empty());
}

TEST(Download, HttpErrorNamesTheUrlAndLeavesNothing) {
  FakeHttpServer server(Files{});
  TempDir t;
  DownloadRequest r;
  r.url = server.url("/missing.qcow2");
  r.cache_dir = t.path / "cache";
  r.progress = nullptr;
  try {
    download_image(r);
    FAIL() << "expected Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(r.url), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("404"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(leftovers(r.cache_dir).empty());
}

TEST(Download, CancelStopsAStalledTransfer) {
  FakeHttpServer server(Files{});
  TempDir t;
  std::atomic<bool> cancel{false};
  DownloadRequest r;
  r.url = server.url("/slow");
  r.cache_dir = t.path / "cache";
  r.progress = nullptr;
  r.cancelled = [&] { return cancel.load(); };
  std::thread canceller([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    cancel = true;
  });
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_THROW(download_image(r), Interrupted);
  canceller.join();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(10));
  EXPECT_TRUE(leftovers(r.cache_dir).empty());
}

TEST(Download, CorruptCachedFileIsFetchedAgain) {
  FakeHttpServer server(Files{{"/a.iso", "good"}});
  TempDir t;
  DownloadRequest r;
  r.url = server.url("/a.iso");
  r.cache_dir = t.path / "cache";
  r.sha256 = sha256_hex("good");
  r.progress = nullptr;
  std::filesystem::create_directories(r.cache_dir);
  write_file_atomic(cached_path(r), "bad");
  EXPECT_EQ(read_file(download_image(r)), "good");
  EXPECT_EQ(server.requests(), 1);
}

TEST(Download, UrlDetection) {
  EXPECT_TRUE(is_url("https://example.org/a.qcow2"));
  EXPECT_TRUE(is_url("HTTP://example.org/a.iso"));
  EXPECT_FALSE(is_url("/var/lib/images/a.qcow2"));
  EXPECT_FALSE(is_url("./http:/x"));
}

}  // namespace
}  // namespace berth::virt
