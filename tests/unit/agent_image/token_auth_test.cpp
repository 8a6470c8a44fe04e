// Bearer token auth: a small Beast registry that answers 401 with a
// WWW-Authenticate challenge and a token endpoint that checks Basic credentials.
#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>
#include <thread>

#include "agent/image/digest.h"
#include "agent/image/http_client.h"
#include "agent/image/image_store.h"
#include "agent/image/registry.h"
#include "tar_builder.h"
#include "test_util.h"

namespace berth::agent::image {
namespace {
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using nlohmann::json;

class TokenRegistry {
 public:
  TokenRegistry() : acceptor_(ioc_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)) {
    port_ = acceptor_.local_endpoint().port();
    layer_ = testing::TarBuilder(true).file("hello", "token world").finish();
    std::string diff;
    {
      std::size_t pos = 0;
      diff = decompress_stream([&](char* b, std::size_t n) {
        std::size_t k = std::min(n, layer_.size() - pos);
        std::memcpy(b, layer_.data() + pos, k);
        pos += k;
        return k;
      }, [](const char*, std::size_t) {}).diff_id;
    }
    config_ = json({{"architecture", "amd64"}, {"os", "linux"}, {"config", json::object()},
                    {"rootfs", {{"type", "layers"}, {"diff_ids", {diff}}}}}).dump();
    json m = {{"schemaVersion", 2},
              {"mediaType", "application/vnd.oci.image.manifest.v1+json"},
              {"config", {{"mediaType", "application/vnd.oci.image.config.v1+json"}, {"digest", sha256_digest(config_)}, {"size", config_.size()}}},
              {"layers", {{{"mediaType", "application/vnd.oci.image.layer.v1.tar+gzip"}, {"digest", sha256_digest(layer_)}, {"size", layer_.size()}}}}};
    manifest_ = m.dump();
    // An index in front, as Docker Hub serves, with another platform first.
    json index = {{"schemaVersion", 2},
                  {"mediaType", "application/vnd.oci.image.index.v1+json"},
                  {"manifests", {{{"mediaType", "application/vnd.oci.image.manifest.v1+json"}, {"digest", sha256_digest("arm")}, {"size", 3},
                                  {"platform", {{"os", "linux"}, {"architecture", "arm64"}}}},
                                 {{"mediaType", "application/vnd.oci.image.manifest.v1+json"}, {"digest", sha256_digest(manifest_)},
                                  {"size", manifest_.size()}, {"platform", {{"os", "linux"}, {"architecture", "amd64"}}}}}}};
    index_ = index.dump();
    thread_ = std::thread([this] { serve(); });
  }
  ~TokenRegistry() {
    stop_ = true;
    beast::error_code ec;
    tcp::socket s(ioc_);
    s.connect(acceptor_.local_endpoint(), ec);
    thread_.join();
  }
  std::string host() const { return "127.0.0.1:" + std::to_string(port_); }
  std::string config_digest() const { return sha256_digest(config_); }
  std::string index_digest() const { return sha256_digest(index_); }
  std::vector<std::string> scopes;  // what the token endpoint was asked for

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
      http::response<http::string_body> res{http::status::ok, 11};
      std::string target(req.target());
      std::string auth(req[http::field::authorization]);
      if (target.rfind("/token", 0) == 0) {
        if (auth != "Basic " + base64_encode("alice:secret")) {
          res.result(http::status::unauthorized);
        } else {
          scopes.push_back(target);
          res.body() = R"({"token":"T0KEN"})";
        }
      } else if (auth != "Bearer T0KEN") {
        res.result(http::status::unauthorized);
        res.set(http::field::www_authenticate, "Bearer realm=\"http://" + host() +
                                                   "/token\",service=\"fake\",scope=\"repository:team/app:pull\"");
        res.body() = R"({"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]})";
      } else if (target == "/v2/team/app/manifests/latest") {
        res.set(http::field::content_type, "application/vnd.oci.image.index.v1+json");
        res.body() = index_;
      } else if (target == "/v2/team/app/manifests/" + sha256_digest(manifest_)) {
        res.set(http::field::content_type, "application/vnd.oci.image.manifest.v1+json");
        res.body() = manifest_;
      } else if (target == "/v2/team/app/blobs/" + sha256_digest(config_)) {
        res.body() = config_;
      } else if (target == "/v2/team/app/blobs/" + sha256_digest(layer_)) {
        res.body() = layer_;
      } else if (target == "/v2/") {
        res.body() = "{}";
      } else {
        res.result(http::status::not_found);
        res.body() = R"({"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]})";
      }
      res.prepare_payload();
      http::write(sock, res, ec);
      sock.shutdown(tcp::socket::shutdown_both, ec);
    }
  }

  asio::io_context ioc_;
  tcp::acceptor acceptor_;
  unsigned short port_ = 0;
  std::atomic<bool> stop_{false};
  std::string layer_, config_, manifest_, index_;
  std::thread thread_;
};

TEST(TokenAuth, PullsWithBearerTokenFromBasicCredentialsAndPicksAmd64) {
  TokenRegistry registry;
  testing::TempDir tmp;
  ImageStore store(tmp.path / "image");
  std::string header = base64_encode(R"({"username":"alice","password":"secret","serveraddress":")" + registry.host() + "\"}");
  Pull pull(store, {}, parse_reference_default_tag(registry.host() + "/team/app"), parse_registry_auth(header));
  pull.resolve();
  std::vector<json> messages;
  pull.run([&](const json& m) {
    messages.push_back(m);
    return true;
  });
  ASSERT_FALSE(messages.empty());
  EXPECT_EQ(messages.back()["status"], "Status: Downloaded newer image for " + registry.host() + "/team/app:latest")
      << json(messages).dump();
  auto resolved = store.resolve(registry.host() + "/team/app");
  ASSERT_TRUE(resolved);
  EXPECT_EQ(resolved->id, registry.config_digest());
  EXPECT_EQ(testing::read_all((resolved->layers[0] / "hello").string()), "token world");
  auto rec = store.image(resolved->id);
  ASSERT_EQ(rec->digests.size(), 1u);
  EXPECT_EQ(rec->digests[0].digest, registry.index_digest());  // the index's digest, as docker records
  ASSERT_FALSE(registry.scopes.empty());
  EXPECT_NE(registry.scopes[0].find("scope=repository%3Ateam%2Fapp%3Apull"), std::string::npos) << registry.scopes[0];
  EXPECT_NE(registry.scopes[0].find("service=fake"), std::string::npos);
}

TEST(TokenAuth, WrongOrMissingCredentialsAreRefused) {
  TokenRegistry registry;
  testing::TempDir tmp;
  ImageStore store(tmp.path / "image");
  Pull bad(store, {}, parse_reference_default_tag(registry.host() + "/team/app"),
           parse_registry_auth(base64_encode(R"({"username":"alice","password":"wrong"})")));
  try {
    bad.resolve();
    FAIL();
  } catch (const RegistryError& e) {
    EXPECT_NE(std::string(e.what()).find("unauthorized: incorrect username or password"), std::string::npos) << e.what();
  }
  EXPECT_EQ(store.count(), 0u);
}

// docker login against a token server: no scope, an offline token for the account.
TEST(TokenAuth, LoginAsksTheTokenServerAndRefusesWrongCredentials) {
  TokenRegistry registry;
  RegistryAuth good;
  good.username = "alice";
  good.password = "secret";
  EXPECT_EQ(registry_login({}, registry.host(), good), "");
  ASSERT_EQ(registry.scopes.size(), 1u);
  const std::string asked = registry.scopes[0];
  EXPECT_EQ(asked.find("scope="), std::string::npos) << asked;
  EXPECT_NE(asked.find("offline_token=true"), std::string::npos) << asked;
  EXPECT_NE(asked.find("account=alice"), std::string::npos) << asked;
  EXPECT_NE(asked.find("service=fake"), std::string::npos) << asked;

  RegistryAuth bad = good;
  bad.password = "wrong";
  try {
    registry_login({}, "http://" + registry.host(), bad);
    FAIL() << "wrong password accepted";
  } catch (const RegistryError& e) {
    EXPECT_EQ(e.status(), 401u);
    EXPECT_EQ(std::string(e.what()),
              "Get \"http://" + registry.host() + "/v2/\": unauthorized: incorrect username or password");
  }
}

TEST(TokenAuth, DistributionInspectDescribesTheIndexAndItsPlatforms) {
  TokenRegistry registry;
  RegistryAuth auth;
  auth.username = "alice";
  auth.password = "secret";
  json doc = distribution_inspect({}, parse_reference_default_tag(registry.host() + "/team/app"), auth);
  EXPECT_EQ(doc["Descriptor"]["digest"], registry.index_digest()) << doc.dump();
  EXPECT_EQ(doc["Descriptor"]["mediaType"], "application/vnd.oci.image.index.v1+json");
  EXPECT_EQ(doc["Platforms"], json::parse(R"([{"architecture":"arm64","os":"linux"},{"architecture":"amd64","os":"linux"}])"));

  try {
    distribution_inspect({}, parse_reference_default_tag(registry.host() + "/team/app:nope"), auth);
    FAIL() << "a missing tag was described";
  } catch (const RegistryError& e) {
    EXPECT_EQ(e.status(), 404u) << e.what();
  }
}

}  // namespace
}  // namespace berth::agent::image
