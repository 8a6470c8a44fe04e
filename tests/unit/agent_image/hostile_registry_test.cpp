// A hostile registry in the style of token_auth_test's fake: it serves an image
// config far larger than any real one, counting what it manages to send.
#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <nlohmann/json.hpp>
#include <thread>

#include "agent/image/image_store.h"
#include "agent/image/registry.h"
#include "test_util.h"

namespace berth::agent::image {
namespace {
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using nlohmann::json;

class HugeConfigRegistry {
 public:
  static constexpr std::uint64_t kConfigSize = 256ull << 20;

  // `honest`: the manifest gives the config's real size, else a small one.
  // `chunked`: no Content-Length, the body in chunks until the client leaves.
  HugeConfigRegistry(bool honest, bool chunked)
      : honest_(honest), chunked_(chunked), acceptor_(ioc_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)) {
    port_ = acceptor_.local_endpoint().port();
    thread_ = std::thread([this] { serve(); });
  }
  ~HugeConfigRegistry() {
    stop_ = true;
    beast::error_code ec;
    tcp::socket s(ioc_);
    s.connect(acceptor_.local_endpoint(), ec);
    thread_.join();
  }
  std::string host() const { return "127.0.0.1:" + std::to_string(port_); }
  std::uint64_t config_bytes_sent() const { return sent_; }
  static std::string config_digest() { return "sha256:" + std::string(64, 'c'); }

 private:
  void serve() {
    while (!stop_) {
      tcp::socket sock(ioc_);
      beast::error_code ec;
      acceptor_.accept(sock, ec);
      if (ec || stop_) break;
      beast::flat_buffer buf;
      http::request<http::string_body> req;
      http::read(sock, buf, req, ec);
      if (ec) continue;
      std::string target(req.target());
      if (target == "/v2/huge/blobs/" + config_digest()) {
        send_config(sock);
        continue;
      }
      http::response<http::string_body> res{http::status::ok, 11};
      if (target == "/v2/huge/manifests/latest") {
        res.set(http::field::content_type, "application/vnd.oci.image.manifest.v1+json");
        res.body() = json({{"schemaVersion", 2},
                           {"mediaType", "application/vnd.oci.image.manifest.v1+json"},
                           {"config", {{"mediaType", "application/vnd.oci.image.config.v1+json"},
                                       {"digest", config_digest()},
                                       {"size", honest_ ? kConfigSize : 1234}}},
                           {"layers", json::array()}})
                         .dump();
      } else if (target == "/v2/") {
        res.body() = "{}";
      } else {
        res.result(http::status::not_found);
      }
      res.prepare_payload();
      http::write(sock, res, ec);
      sock.shutdown(tcp::socket::shutdown_both, ec);
    }
  }

  // Streams kConfigSize bytes of JSON-ish filler until the client hangs up.
  void send_config(tcp::socket& sock) {
    beast::error_code ec;
    std::string head = "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n";
    head += chunked_ ? "Transfer-Encoding: chunked\r\n\r\n" : "Content-Length: " + std::to_string(kConfigSize) + "\r\n\r\n";
    asio::write(sock, asio::buffer(head), ec);
    std::string chunk(64 * 1024, ' ');
    std::string framed = chunked_ ? "10000\r\n" + chunk + "\r\n" : chunk;
    while (!ec && sent_ < kConfigSize) {
      asio::write(sock, asio::buffer(framed), ec);
      if (!ec) sent_ += chunk.size();
    }
    if (!ec && chunked_) asio::write(sock, asio::buffer(std::string("0\r\n\r\n")), ec);
    sock.shutdown(tcp::socket::shutdown_both, ec);
  }

  bool honest_;
  bool chunked_;
  asio::io_context ioc_;
  tcp::acceptor acceptor_;
  unsigned short port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<std::uint64_t> sent_{0};
  std::thread thread_;
};

TEST(HostileRegistry, AHugeImageConfigIsRefusedWithoutReadingItAll) {
  struct Case {
    const char* name;
    bool honest;
    bool chunked;
  };
  for (const Case& c : {Case{"declared in the manifest", true, false}, Case{"Content-Length", false, false},
                        Case{"chunked", false, true}}) {
    SCOPED_TRACE(c.name);
    HugeConfigRegistry registry(c.honest, c.chunked);
    testing::TempDir tmp;
    ImageStore store(tmp.path / "image");
    Pull pull(store, {}, parse_reference_default_tag(registry.host() + "/huge"), {});
    auto start = std::chrono::steady_clock::now();
    try {
      pull.resolve();
      FAIL() << "a 256 MiB config was accepted";
    } catch (const RegistryError& e) {
      std::string what = e.what();
      EXPECT_NE(what.find(registry.host() + "/huge:latest"), std::string::npos) << what;
      EXPECT_NE(what.find("8 MiB"), std::string::npos) << what;
    }
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
    // The client hung up long before the end: what the kernel buffers is all the server got rid of.
    EXPECT_LT(registry.config_bytes_sent(), 32ull << 20) << registry.config_bytes_sent();
    if (c.honest) {
      EXPECT_EQ(registry.config_bytes_sent(), 0u);  // not even asked for
    }
    EXPECT_EQ(store.count(), 0u);
  }
}

}  // namespace
}  // namespace berth::agent::image
