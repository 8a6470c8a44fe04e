// Pull and push against Debian's real docker-registry on 127.0.0.1, fed by skopeo.
#include <arpa/inet.h>
#include <fcntl.h>
#include <glob.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "agent/api/images.h"
#include "agent/image/archive_io.h"
#include "agent/image/digest.h"
#include "agent/image/http_client.h"
#include "agent/image/image_store.h"
#include "agent/image/registry.h"
#include "agent/process.h"
#include "tar_builder.h"
#include "test_util.h"

extern char** environ;

namespace berth::agent::image {
namespace {
namespace fs = std::filesystem;
using nlohmann::json;
using testing::TarBuilder;
using testing::CollectingWriter;
using testing::TempDir;

int free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

// The busybox binary from the berth-os package cache, or nothing.
std::string find_busybox(const fs::path& work) {
  std::vector<std::string> patterns{std::string(BERTH_TEST_SOURCE_DIR) + "/image/out/.cache/debs/busybox-static_*.deb"};
  for (const auto& p : patterns) {
    glob_t g{};
    if (::glob(p.c_str(), 0, nullptr, &g) == 0 && g.gl_pathc > 0) {
      std::string deb = g.gl_pathv[0];
      globfree(&g);
      auto r = run_process({"dpkg-deb", "-x", deb, (work / "deb").string()});
      if (r.ok()) return testing::read_all((work / "deb/bin/busybox").string());
    } else {
      globfree(&g);
    }
  }
  if (fs::exists("/bin/busybox")) return testing::read_all("/bin/busybox");
  return {};
}

class RegistryTest : public ::testing::Test {
 protected:
  static inline TempDir* work = nullptr;
  static inline pid_t registry_pid = -1;
  static inline int port = 0;
  static inline std::string image_id;
  static inline std::string busybox;
  static inline std::string skip_reason;

  static void SetUpTestSuite() {
    if (!fs::exists("/usr/bin/docker-registry") || !fs::exists("/usr/bin/skopeo")) {
      skip_reason = "docker-registry or skopeo is not installed";
      return;
    }
    work = new TempDir();
    busybox = find_busybox(work->path);
    TarBuilder layer(true);
    layer.dir("bin");
    if (!busybox.empty()) {
      layer.file("bin/busybox", busybox, 0755).symlink("bin/sh", "busybox");
    } else {
      layer.file("bin/sh", "#!stand-in for busybox\n" + std::string(300000, 'b'), 0755);
    }
    std::string layer_gz = layer.finish();
    std::string diff_id;
    std::string tar;
    diff_id = decompress_stream([&, pos = std::size_t{0}](char* buf, std::size_t n) mutable {
      std::size_t k = std::min(n, layer_gz.size() - pos);
      std::memcpy(buf, layer_gz.data() + pos, k);
      pos += k;
      return k;
    }, [&](const char* p, std::size_t n) { tar.append(p, n); }).diff_id;
    json config = {{"architecture", "amd64"}, {"os", "linux"}, {"created", "2024-01-01T00:00:00Z"},
                   {"config", {{"Cmd", {"sh"}}}},
                   {"rootfs", {{"type", "layers"}, {"diff_ids", {diff_id}}}}};
    std::string config_bytes = config.dump();
    image_id = sha256_digest(config_bytes);
    json manifest = json::array({{{"Config", "config.json"}, {"RepoTags", {"busybox:latest"}}, {"Layers", {"layer.tar"}}}});
    std::string archive = TarBuilder().file("layer.tar", tar).file("config.json", config_bytes).file("manifest.json", manifest.dump()).finish();
    std::ofstream(work->path / "busybox.tar", std::ios::binary) << archive;

    port = free_port();
    fs::create_directories(work->path / "storage");
    std::ofstream(work->path / "config.yml") << "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n"
                                             << "    rootdirectory: " << (work->path / "storage").string()
                                             << "\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:" << port << "\n";
    std::ofstream(work->path / "policy.json") << R"({"default":[{"type":"insecureAcceptAnything"}]})";
    std::string config_path = (work->path / "config.yml").string();
    std::vector<char*> argv = {const_cast<char*>("/usr/bin/docker-registry"), const_cast<char*>("serve"),
                               config_path.data(), nullptr};
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    std::string log_path = (work->path / "registry.log").string();
    posix_spawn_file_actions_addopen(&actions, 1, log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    posix_spawn_file_actions_adddup2(&actions, 1, 2);
    int spawned = posix_spawn(&registry_pid, argv[0], &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    if (spawned != 0) {
      skip_reason = "cannot start docker-registry";
      return;
    }
    bool up = false;
    for (int i = 0; i < 100 && !up; ++i) {
      try {
        HttpRequest req;
        req.url = parse_url("http://127.0.0.1:" + std::to_string(port) + "/v2/");
        up = http_request(req).status == 200;
      } catch (const std::exception&) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
    }
    if (!up) {
      skip_reason = "docker-registry did not come up";
      return;
    }
    skopeo({"copy", "docker-archive:" + (work->path / "busybox.tar").string(), "docker://" + host() + "/busybox:latest",
            "--dest-tls-verify=false"});
  }

  static void TearDownTestSuite() {
    if (registry_pid > 0) {
      ::kill(registry_pid, SIGTERM);
      ::waitpid(registry_pid, nullptr, 0);
    }
    delete work;
    work = nullptr;
  }

  void SetUp() override {
    if (!skip_reason.empty()) GTEST_SKIP() << skip_reason;
  }

  static std::string host() { return "127.0.0.1:" + std::to_string(port); }
  static std::string skopeo(std::vector<std::string> args) {
    args.insert(args.begin(), {"skopeo", "--policy", (work->path / "policy.json").string()});
    return run_checked(args, "", std::chrono::seconds(60));
  }

  static std::vector<json> pull(ImageStore& store, const std::string& ref_text) {
    Pull p(store, {}, parse_reference_default_tag(ref_text), {});
    p.resolve();
    std::vector<json> messages;
    p.run([&](const json& m) {
      messages.push_back(m);
      return true;
    });
    return messages;
  }
  static std::vector<std::string> statuses(const std::vector<json>& messages) {
    std::vector<std::string> out;
    for (const auto& m : messages) {
      if (m.contains("error")) out.push_back("error: " + m["error"].get<std::string>());
      else if (m.contains("status")) out.push_back(m["status"].get<std::string>());
    }
    return out;
  }
};

TEST_F(RegistryTest, PullsAnImagePushedBySkopeo) {
  TempDir tmp;
  ImageStore store(tmp.path / "image");
  auto messages = pull(store, host() + "/busybox");
  auto st = statuses(messages);
  ASSERT_GE(st.size(), 6u) << json(messages).dump();
  EXPECT_EQ(messages[0], json({{"status", "Pulling from busybox"}, {"id", "latest"}, {"progressDetail", json::object()}}));
  EXPECT_EQ(st[1], "Pulling fs layer");
  EXPECT_NE(std::find(st.begin(), st.end(), "Download complete"), st.end());
  EXPECT_NE(std::find(st.begin(), st.end(), "Pull complete"), st.end());
  EXPECT_EQ(st[st.size() - 2].substr(0, 15), "Digest: sha256:");
  EXPECT_EQ(st.back(), "Status: Downloaded newer image for " + host() + "/busybox:latest");
  bool saw_progress = false;
  for (const auto& m : messages)
    if (m.value("status", "") == "Downloading") {
      saw_progress = true;
      EXPECT_TRUE(m["progressDetail"].contains("current"));
      EXPECT_TRUE(m["progressDetail"].contains("total"));
    }
  EXPECT_TRUE(saw_progress);

  auto resolved = store.resolve(host() + "/busybox:latest");
  ASSERT_TRUE(resolved);
  EXPECT_EQ(resolved->id, image_id);
  ASSERT_EQ(resolved->layers.size(), 1u);
  if (!busybox.empty()) {
    EXPECT_EQ(testing::read_all((resolved->layers[0] / "bin/busybox").string()), busybox);
    EXPECT_EQ(fs::read_symlink(resolved->layers[0] / "bin/sh"), "busybox");
  }
  auto rec = store.image(image_id);
  ASSERT_EQ(rec->digests.size(), 1u);
  EXPECT_EQ("Digest: " + rec->digests[0].digest, st[st.size() - 2]);

  // Again: nothing to download.
  auto again = statuses(pull(store, host() + "/busybox:latest"));
  EXPECT_EQ(again[1], "Already exists");
  EXPECT_EQ(again.back(), "Status: Image is up to date for " + host() + "/busybox:latest");

  // By digest.
  TempDir other;
  ImageStore by_digest(other.path / "image");
  auto d = statuses(pull(by_digest, host() + "/busybox@" + rec->digests[0].digest));
  EXPECT_EQ(d.back(), "Status: Downloaded newer image for " + host() + "/busybox@" + rec->digests[0].digest);
  EXPECT_EQ(by_digest.find(host() + "/busybox@" + rec->digests[0].digest), image_id);
}

TEST_F(RegistryTest, PullErrorsAreDockerds) {
  TempDir tmp;
  ImageStore store(tmp.path / "image");
  try {
    Pull p(store, {}, parse_reference_default_tag(host() + "/busybox:nope"), {});
    p.resolve();
    FAIL();
  } catch (const RegistryError& e) {
    EXPECT_EQ(e.status(), 404u);
    EXPECT_EQ(std::string(e.what()), "manifest for " + host() + "/busybox:nope not found: manifest unknown: manifest unknown");
  }
  try {
    Pull p(store, {}, parse_reference_default_tag(host() + "/nothing/here"), {});
    p.resolve();
    FAIL();
  } catch (const RegistryError& e) {
    // registry 2.8 answers MANIFEST_UNKNOWN for an unknown repository too.
    EXPECT_EQ(e.status(), 404u);
    EXPECT_EQ(std::string(e.what()),
              "manifest for " + host() + "/nothing/here:latest not found: manifest unknown: manifest unknown");
  }
  try {
    Pull p(store, {}, parse_reference_default_tag("127.0.0.1:" + std::to_string(free_port()) + "/x"), {});
    p.resolve();
    FAIL();
  } catch (const RegistryError& e) {
    EXPECT_EQ(e.status(), 500u);
    EXPECT_NE(std::string(e.what()).find("connect: connection refused"), std::string::npos) << e.what();
  }
}

TEST_F(RegistryTest, PushesAndSkopeoSeesTheImage) {
  TempDir tmp;
  ImageStore store(tmp.path / "image");
  auto loaded = load_images(store, file_reader(work->path / "busybox.tar"));
  ASSERT_EQ(loaded, std::vector<std::string>{"Loaded image: busybox:latest"});
  store.tag(image_id, parse_reference(host() + "/pushed:v1"));

  Push missing(store, {}, parse_reference(host() + "/other"), "", {});
  try {
    missing.check();
    FAIL();
  } catch (const RegistryError& e) {
    EXPECT_EQ(e.status(), 404u);
    EXPECT_EQ(std::string(e.what()), "An image does not exist locally with the tag: " + host() + "/other");
  }

  std::vector<json> messages;
  Push push(store, {}, parse_reference(host() + "/pushed"), "v1", {});
  push.check();
  push.run([&](const json& m) {
    messages.push_back(m);
    return true;
  });
  auto st = statuses(messages);
  ASSERT_GE(st.size(), 4u) << json(messages).dump();
  EXPECT_EQ(st[0], "The push refers to repository [" + host() + "/pushed]");
  EXPECT_EQ(st[1], "Preparing");
  EXPECT_NE(std::find(st.begin(), st.end(), "Pushed"), st.end()) << json(messages).dump();
  ASSERT_TRUE(messages.back().contains("aux")) << json(messages).dump();
  std::string digest = messages.back()["aux"]["Digest"];
  EXPECT_EQ(messages.back()["aux"]["Tag"], "v1");
  EXPECT_EQ(st.back().substr(0, 12), "v1: digest: ");

  json inspected = json::parse(skopeo({"inspect", "--tls-verify=false", "docker://" + host() + "/pushed:v1"}));
  EXPECT_EQ(inspected["Digest"], digest);
  EXPECT_EQ(inspected["Layers"].size(), 1u);

  // A second push finds the layer there already.
  std::vector<json> second;
  Push again(store, {}, parse_reference(host() + "/pushed"), "", {});
  again.check();
  again.run([&](const json& m) {
    second.push_back(m);
    return true;
  });
  auto st2 = statuses(second);
  EXPECT_NE(std::find(st2.begin(), st2.end(), "Layer already exists"), st2.end()) << json(second).dump();

  // And it pulls back into an empty store as the same image.
  TempDir fresh;
  ImageStore back(fresh.path / "image");
  auto pulled = statuses(pull(back, host() + "/pushed:v1"));
  EXPECT_EQ(pulled.back(), "Status: Downloaded newer image for " + host() + "/pushed:v1");
  EXPECT_EQ(back.find(host() + "/pushed:v1"), image_id);
}

TEST_F(RegistryTest, CreateRouteStreamsPullProgress) {
  TempDir tmp;
  ImageStore store(tmp.path / "image");
  api::Router router;
  api::add_image_routes(router, store, {});
  auto match = router.match("POST", "/images/create");
  ASSERT_TRUE(match);
  api::Request req;
  req.method = "POST";
  req.path = "/images/create";
  req.query = "fromImage=" + host() + "%2Fbusybox&tag=latest";
  api::Response resp = (*match->handler)(req);
  ASSERT_TRUE(resp.stream);
  EXPECT_EQ(resp.headers.get("Content-Type"), "application/json");
  CollectingWriter out;
  resp.stream(out);
  std::vector<std::string> lines;
  std::size_t start = 0;
  while (start < out.data.size()) {
    auto nl = out.data.find('\n', start);
    lines.push_back(out.data.substr(start, nl - start));
    start = nl + 1;
  }
  ASSERT_GE(lines.size(), 3u);
  EXPECT_EQ(json::parse(lines.back())["status"], "Status: Downloaded newer image for " + host() + "/busybox:latest");

  req.query = "fromImage=" + host() + "%2Fbusybox&tag=nope";
  try {
    (*match->handler)(req);
    FAIL();
  } catch (const api::HttpError& e) {
    EXPECT_EQ(e.status(), 404u);
  }
}

// GET /distribution/{name}/json: the manifest's descriptor and the config's platform.
TEST_F(RegistryTest, DistributionRouteDescribesTheManifest) {
  api::Router router;
  api::add_distribution_routes(router, RegistryOptions{});
  auto match = router.match("GET", "/distribution/" + host() + "/busybox/json");
  ASSERT_TRUE(match);
  api::Request req;
  req.method = "GET";
  req.params = match->params;
  api::Response resp = (*match->handler)(req);
  ASSERT_EQ(resp.status, 200u) << resp.body;
  json doc = json::parse(resp.body);
  // The digest is the one the registry serves the manifest under.
  HttpRequest head;
  head.method = "HEAD";
  head.url = parse_url("http://" + host() + "/v2/busybox/manifests/latest");
  head.headers.emplace_back("Accept",
                            "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json");
  HttpResponse served = http_request(head);
  EXPECT_EQ(doc["Descriptor"]["digest"], served.header("docker-content-digest")) << doc.dump();
  EXPECT_GT(doc["Descriptor"]["size"].get<std::uint64_t>(), 0u);
  EXPECT_EQ(doc["Platforms"], json::parse(R"([{"architecture":"amd64","os":"linux"}])")) << doc.dump();

  match = router.match("GET", "/distribution/" + host() + "/nothing:here/json");
  ASSERT_TRUE(match);
  req.params = match->params;
  try {
    (*match->handler)(req);
    FAIL() << "a missing repository was described";
  } catch (const api::HttpError& e) {
    EXPECT_EQ(e.status(), 404u) << e.what();
  }
}

TEST(RegistryHelpers, AuthHeaderAndInsecureRegistries) {
  std::string doc = R"({"username":"u","password":"p?>","serveraddress":"r.example"})";
  std::string encoded = base64_encode(doc);
  for (auto& c : encoded) c = c == '+' ? '-' : (c == '/' ? '_' : c);
  while (!encoded.empty() && encoded.back() == '=') encoded.pop_back();
  RegistryAuth auth = parse_registry_auth(encoded);
  EXPECT_EQ(auth.username, "u");
  EXPECT_EQ(auth.password, "p?>");
  EXPECT_EQ(parse_registry_auth(base64_encode(R"({"identitytoken":"tok"})")).identity_token, "tok");
  EXPECT_TRUE(parse_registry_auth("").empty());
  EXPECT_TRUE(parse_registry_auth("!!!").empty());

  EXPECT_TRUE(is_insecure_registry("127.0.0.1:5000", {}));
  EXPECT_TRUE(is_insecure_registry("localhost:5000", {}));
  EXPECT_FALSE(is_insecure_registry("10.1.2.3:5000", {}));
  EXPECT_TRUE(is_insecure_registry("10.1.2.3:5000", {"10.0.0.0/8"}));
  EXPECT_TRUE(is_insecure_registry("10.1.2.3:5000", {"10.1.2.3:5000"}));
  EXPECT_FALSE(is_insecure_registry("10.1.2.3:5001", {"10.1.2.3:5000"}));
  EXPECT_FALSE(is_insecure_registry("11.1.2.3", {"10.0.0.0/8"}));
}

TEST(RegistryHelpers, Urls) {
  Url u = parse_url("https://registry-1.docker.io/v2/");
  EXPECT_EQ(u.host, "registry-1.docker.io");
  EXPECT_EQ(u.port, "443");
  EXPECT_EQ(u.authority(), "registry-1.docker.io");
  Url local = parse_url("http://127.0.0.1:5000");
  EXPECT_EQ(local.target, "/");
  EXPECT_EQ(local.authority(), "127.0.0.1:5000");
  EXPECT_EQ(resolve_url(local, "/v2/x/blobs/uploads/abc?_state=1").string(), "http://127.0.0.1:5000/v2/x/blobs/uploads/abc?_state=1");
  EXPECT_EQ(resolve_url(local, "https://cdn.example/blob").string(), "https://cdn.example/blob");
}

}  // namespace
}  // namespace berth::agent::image
