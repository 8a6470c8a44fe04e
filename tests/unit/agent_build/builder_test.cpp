// The dispatcher against a FAKE backend (FakeBackend below: a test double for
// the daemon that records each RUN and stores configs in memory): steps,
// config changes, build args, the cache, multi-stage builds, errors.
#include "agent/build/builder.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <functional>
#include <map>

#include "agent/build/error.h"
#include "agent/image/digest.h"

namespace berth::agent::build {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

struct TempDir {
  fs::path path;
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "berth-builder-XXXXXX").string();
    if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp");
    path = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

class DirView final : public ImageView {
 public:
  explicit DirView(fs::path p) : p_(std::move(p)) {}
  const fs::path& root() const override { return p_; }

 private:
  fs::path p_;
};

class FakeBackend final : public Backend {
 public:
  FakeBackend() {
    Image busybox;
    busybox.config = {{"architecture", "amd64"},
                      {"os", "linux"},
                      {"config", {{"Env", {"PATH=/usr/bin:/bin"}}, {"Cmd", {"sh"}}}},
                      {"rootfs", {{"type", "layers"}, {"diff_ids", {"sha256:base"}}}},
                      {"history", {{{"created_by", "busybox"}}}}};
    busybox.id = image::sha256_digest(busybox.config.dump());
    images[busybox.id] = busybox;
    names["busybox"] = busybox.id;
    fs::create_directories(files.path / "empty");
  }

  Image image(const std::string& ref, bool pull, BuildOutput& out) override {
    if (pull) out.message({{"status", "Pulling from library/" + ref}});
    std::string id = names.count(ref) ? names[ref] : names.count(ref + ":latest") ? names[ref + ":latest"] : ref;
    auto it = images.find(id);
    if (it == images.end())
      throw BuildError("pull access denied for " + ref + ", repository does not exist or may require 'docker login'");
    return it->second;
  }
  RunResult run(const RunSpec& spec, BuildOutput& out) override {
    runs.push_back(spec);
    RunResult r;
    r.container_id = "c0ffee" + std::to_string(runs.size());
    out.stream(" ---> Running in " + r.container_id + "\n");
    std::string script = spec.argv.empty() ? "" : spec.argv.back();
    if (script.rfind("exit ", 0) == 0) r.exit_code = std::stoi(script.substr(5));
    if (script.rfind("echo ", 0) == 0) out.stream(script.substr(5) + "\n");
    if (r.exit_code == 0) r.layer = image::LayerTar{"sha256:run-" + image::sha256_digest(script).substr(7, 12), 1024, 0, 1};
    if (r.exit_code == 0 ? spec.remove_on_success : spec.remove_on_failure)
      out.stream("Removing intermediate container " + r.container_id + "\n");
    else
      kept.push_back(r.container_id);
    return r;
  }
  image::LayerTar add_layer(const std::string&, const TarWriter& write) override {
    std::string bytes;
    write([&](const char* p, std::size_t n) { bytes.append(p, n); });
    ++layers_added;
    return {image::sha256_digest(bytes), bytes.size(), 0, 1};
  }
  std::string commit(const json& config) override {
    std::string id = image::sha256_digest(config.dump());
    images[id] = {id, config};
    return id;
  }
  std::unique_ptr<ImageView> view(const std::string&) override {
    return std::make_unique<DirView>(files.path / "empty");
  }
  std::optional<std::string> cached(const std::string& key) override {
    auto it = cache.find(key);
    if (it == cache.end()) return std::nullopt;
    return it->second;
  }
  void remember(const std::string& key, const std::string& id) override { cache[key] = id; }
  void tag(const std::string& id, const std::string& ref) override { names[ref] = id; }

  TempDir files;
  std::map<std::string, Image> images;
  std::map<std::string, std::string> names, cache;
  std::vector<RunSpec> runs;
  std::vector<std::string> kept;
  int layers_added = 0;
};

class Collect final : public BuildOutput {
 public:
  void stream(std::string_view t) override { text += t; }
  void message(const json& m) override { messages.push_back(m); }
  bool cancelled() override { return stop_when && stop_when(); }
  std::string text;
  std::vector<json> messages;
  std::function<bool()> stop_when;
};

class BuilderTest : public ::testing::Test {
 protected:
  void write(const std::string& name, const std::string& text) {
    fs::create_directories((ctx.path / name).parent_path());
    std::ofstream(ctx.path / name) << text;
  }
  std::string build(const std::string& dockerfile, BuildOptions o = {}) {
    write("Dockerfile", dockerfile);
    out = Collect{};
    o.work_dir = work.path;
    Builder b(backend, out, o);
    return b.build(ctx.path);
  }
  json config_of(const std::string& id) { return backend.images.at(id).config; }

  FakeBackend backend;
  TempDir ctx, work;
  Collect out;
};

TEST_F(BuilderTest, StepsAreNumberedAndEachShowsItsImage) {
  BuildOptions o;
  o.tags = {"app:latest"};
  std::string id = build("FROM busybox\nENV A=1\nRUN echo hello\nCMD [\"sh\"]\n", o);
  const std::string& t = out.text;
  EXPECT_NE(t.find("Step 1/4 : FROM busybox\n ---> "), std::string::npos) << t;
  EXPECT_NE(t.find("Step 2/4 : ENV A=1\n ---> "), std::string::npos) << t;
  EXPECT_NE(t.find("Step 3/4 : RUN echo hello\n ---> Running in c0ffee1\nhello\nRemoving intermediate container c0ffee1\n ---> "),
            std::string::npos) << t;
  EXPECT_NE(t.find("Successfully built " + id.substr(7, 12) + "\nSuccessfully tagged app:latest\n"), std::string::npos)
      << t;
  ASSERT_FALSE(out.messages.empty());
  EXPECT_EQ(out.messages.back(), json({{"aux", {{"ID", id}}}}));
  EXPECT_EQ(backend.names["app:latest"], id);
  json c = config_of(id);
  EXPECT_EQ(c["config"]["Env"], json({"PATH=/usr/bin:/bin", "A=1"}));
  EXPECT_EQ(c["rootfs"]["diff_ids"].size(), 2u);  // busybox's and the RUN's
  ASSERT_EQ(c["history"].size(), 4u);
  EXPECT_EQ(c["history"][1]["created_by"], "/bin/sh -c #(nop)  ENV A=1");
  EXPECT_EQ(c["history"][1]["empty_layer"], true);
  EXPECT_EQ(c["history"][2]["created_by"], "/bin/sh -c echo hello");
  EXPECT_FALSE(c["history"][2].contains("empty_layer"));
  ASSERT_EQ(backend.runs.size(), 1u);
  EXPECT_EQ(backend.runs[0].argv, (std::vector<std::string>{"/bin/sh", "-c", "echo hello"}));
}

TEST_F(BuilderTest, MetadataInstructionsShapeTheConfig) {
  std::string id = build(
      "FROM busybox\n"
      "LABEL a=1 \"b c\"=\"d e\"\n"
      "EXPOSE 80 53/udp 8000-8001\n"
      "USER app\n"
      "WORKDIR /srv\nWORKDIR sub\n"
      "VOLUME /data [\"/cache\"]\n"
      "STOPSIGNAL SIGQUIT\n"
      "HEALTHCHECK --interval=5s --retries=2 CMD wget -q localhost\n"
      "SHELL [\"/bin/ash\", \"-c\"]\n"
      "ENTRYPOINT echo hi\n"
      "ONBUILD RUN make\n"
      "MAINTAINER me@example.com\n");
  json full = config_of(id);
  json c = full["config"];
  EXPECT_EQ(c["Labels"], json({{"a", "1"}, {"b c", "d e"}}));
  EXPECT_EQ(c["ExposedPorts"], json({{"80/tcp", json::object()},
                                     {"53/udp", json::object()},
                                     {"8000/tcp", json::object()},
                                     {"8001/tcp", json::object()}}));
  EXPECT_EQ(c["User"], "app");
  EXPECT_EQ(c["WorkingDir"], "/srv/sub");
  EXPECT_TRUE(c["Volumes"].contains("/data"));
  EXPECT_EQ(c["StopSignal"], "SIGQUIT");
  EXPECT_EQ(c["Healthcheck"], json({{"Test", {"CMD-SHELL", "wget -q localhost"}}, {"Interval", 5000000000LL},
                                    {"Retries", 2}}));
  EXPECT_EQ(c["Shell"], json({"/bin/ash", "-c"}));
  EXPECT_EQ(c["Entrypoint"], json({"/bin/ash", "-c", "echo hi"}));
  EXPECT_TRUE(c["Cmd"].is_null()) << "ENTRYPOINT drops the inherited CMD";
  EXPECT_EQ(c["OnBuild"], json({"RUN make"}));
  EXPECT_EQ(full["author"], "me@example.com");
  EXPECT_EQ(backend.layers_added, 2) << "each WORKDIR made its missing directory";
}

TEST_F(BuilderTest, BuildArgsDefaultsOverridesAndWarnings) {
  BuildOptions o;
  o.build_args = {{"VERSION", "2"}, {"UNUSED", "x"}, {"HTTP_PROXY", "http://proxy:3128"}};
  std::string id = build(
      "ARG BASE=busybox\nFROM $BASE\nARG VERSION=1\nARG BASE\nARG OTHER=o\nENV OTHER=env\n"
      "RUN echo $VERSION\nLABEL v=$VERSION b=$BASE o=$OTHER\n",
      o);
  json c = config_of(id)["config"];
  EXPECT_EQ(c["Labels"], json({{"v", "2"}, {"b", "busybox"}, {"o", "env"}})) << "ENV wins over ARG";
  ASSERT_EQ(backend.runs.size(), 1u);
  auto env = backend.runs[0].config["Env"].get<std::vector<std::string>>();
  EXPECT_NE(std::find(env.begin(), env.end(), "VERSION=2"), env.end());
  EXPECT_NE(std::find(env.begin(), env.end(), "HTTP_PROXY=http://proxy:3128"), env.end());
  auto history = config_of(id)["history"];
  EXPECT_EQ(history[history.size() - 2]["created_by"], "|2 VERSION=2 BASE=busybox /bin/sh -c echo $VERSION")
      << "proxy args stay out of history";
  EXPECT_NE(out.text.find("[Warning] One or more build-args [UNUSED] were not consumed"), std::string::npos)
      << out.text;
  EXPECT_EQ(out.text.find("Step 1/8 : ARG BASE=busybox"), 0u) << out.text;
}

TEST_F(BuilderTest, ASecondBuildComesFromTheCache) {
  const std::string df = "FROM busybox\nENV A=1\nRUN echo one\nRUN echo two\nCMD [\"x\"]\n";
  std::string first = build(df);
  ASSERT_EQ(backend.runs.size(), 2u);
  std::string second = build(df);
  EXPECT_EQ(second, first);
  EXPECT_EQ(backend.runs.size(), 2u) << "no RUN ran again";
  std::size_t hits = 0;
  for (std::size_t p = 0; (p = out.text.find(" ---> Using cache\n", p)) != std::string::npos; ++p) ++hits;
  EXPECT_EQ(hits, 4u) << out.text;
  // A changed step misses, and so does every step after it.
  std::string third = build("FROM busybox\nENV A=2\nRUN echo one\nRUN echo two\nCMD [\"x\"]\n");
  EXPECT_NE(third, first);
  EXPECT_EQ(backend.runs.size(), 4u);
  BuildOptions no_cache;
  no_cache.no_cache = true;
  build(df, no_cache);
  EXPECT_EQ(backend.runs.size(), 6u);
  EXPECT_EQ(out.text.find("Using cache"), std::string::npos);
}

TEST_F(BuilderTest, AFailingRunNamesTheCommandAndItsCode) {
  try {
    build("FROM busybox\nRUN exit 7\n");
    FAIL() << "built";
  } catch (const RunFailed& e) {
    EXPECT_STREQ(e.what(), "The command '/bin/sh -c exit 7' returned a non-zero code: 7");
    EXPECT_EQ(e.exit_code(), 7);
  }
  EXPECT_EQ(backend.kept.size(), 1u) << "dockerd keeps a failed step's container without forcerm";
  BuildOptions force;
  force.force_remove = true;
  EXPECT_THROW(build("FROM busybox\nRUN exit 3\n", force), RunFailed);
  EXPECT_EQ(backend.kept.size(), 1u);
}

TEST_F(BuilderTest, MultiStageTargetAndOnbuild) {
  // A base whose ONBUILD triggers run in the child.
  BuildOptions base_opts;
  base_opts.tags = {"base:latest"};
  build("FROM busybox\nONBUILD ENV FROM_TRIGGER=yes\n", base_opts);
  BuildOptions o;
  o.target = "middle";
  std::string id = build(
      "FROM base AS first\nENV STAGE=first\n"
      "FROM first AS middle\nENV STAGE2=middle\n"
      "FROM busybox\nENV LAST=1\n",
      o);
  json c = config_of(id)["config"];
  auto env = c["Env"].get<std::vector<std::string>>();
  EXPECT_NE(std::find(env.begin(), env.end(), "FROM_TRIGGER=yes"), env.end());
  EXPECT_NE(std::find(env.begin(), env.end(), "STAGE=first"), env.end());
  EXPECT_NE(std::find(env.begin(), env.end(), "STAGE2=middle"), env.end());
  EXPECT_EQ(std::find(env.begin(), env.end(), "LAST=1"), env.end()) << "the target stops the build";
  EXPECT_TRUE(c["OnBuild"].is_null()) << "triggers run once";
  EXPECT_NE(out.text.find("# Executing 1 build trigger\n"), std::string::npos) << out.text;
  EXPECT_EQ(std::count_if(out.messages.begin(), out.messages.end(), [](const json& m) { return m.contains("aux"); }),
            2) << "an aux ID per stage built";
}

TEST_F(BuilderTest, ErrorsInDockerdsWords) {
  auto message = [&](const std::string& df, BuildOptions o = {}) {
    try {
      build(df, std::move(o));
    } catch (const BuildError& e) {
      return std::string(e.what());
    }
    return std::string("(built)");
  };
  BuildOptions target;
  target.target = "nope";
  EXPECT_EQ(message("FROM busybox AS a\n", target), "failed to reach build target nope in Dockerfile");
  EXPECT_NE(message("FROM nosuchimage\n").find("pull access denied for nosuchimage"), std::string::npos);
  EXPECT_NE(message("FROM busybox\nFOO bar\n").find("unknown instruction: FOO"), std::string::npos);
  EXPECT_NE(message("FROM busybox\nRUN --mount=type=cache,target=/x true\n").find("requires BuildKit"),
            std::string::npos);
  EXPECT_EQ(message("ARG A=1\n"), "No image was generated. Is your Dockerfile empty?");
  BuildOptions missing;
  missing.dockerfile = "nope/Dockerfile";
  EXPECT_EQ(message("FROM busybox\n", missing), "Cannot locate specified Dockerfile: nope/Dockerfile");
}

TEST_F(BuilderTest, ACancelledBuildStopsBeforeTheNextStep) {
  write("Dockerfile", "FROM busybox\nRUN echo a\nRUN echo b\n");
  Collect o;
  o.stop_when = [&] { return backend.runs.size() >= 1; };
  BuildOptions opts;
  opts.work_dir = work.path;
  Builder b(backend, o, opts);
  try {
    b.build(ctx.path);
    FAIL() << "built";
  } catch (const BuildError& e) {
    EXPECT_STREQ(e.what(), "Build cancelled");
  }
  EXPECT_EQ(backend.runs.size(), 1u);
  EXPECT_NE(o.text.find("Build cancelled\n"), std::string::npos) << o.text;
}

TEST_F(BuilderTest, QuietLabelsAndTheLabelOption) {
  BuildOptions o;
  o.labels = {{"z", "last"}, {"a", "first"}};
  std::string id = build("FROM busybox\n", o);
  EXPECT_EQ(config_of(id)["config"]["Labels"], json({{"a", "first"}, {"z", "last"}}));
  EXPECT_NE(out.text.find("Step 2/3 : LABEL a=first\n"), std::string::npos) << out.text;
}

}  // namespace
}  // namespace berth::agent::build
