// docker build end to end on the shared berth-os VM (shared_vm.h): the real
// docker CLI (its classic builder: no buildx here), Debian's docker-compose,
// and the host's docker-registry. Contexts are written by the test.
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <nlohmann/json.hpp>

#include "tests/integration/containers/harness.h"
#include "tests/integration/containers/shared_vm.h"

namespace berth::it::containers {
namespace {

class Build : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    try {
      lease_ = std::make_unique<SharedVmLease>();
    } catch (const std::exception& e) {
      setup_error_ = std::string("suite setup failed: ") + e.what();
    }
  }
  static void TearDownTestSuite() {
    if (lease_) {
      for (const char* image : {"it-build/app", "it-build/args", "it-build/compose", "it-build/fail",
                                "it-build/pushed"})
        vm().docker({"rmi", "-f", image});
      vm().docker({"builder", "prune", "-a", "-f"}, 120s);
    }
    lease_.reset();
  }
  void SetUp() override { ASSERT_TRUE(setup_error_.empty()) << setup_error_; }

  static Machine& vm() { return *lease_->vm().machine; }

  // A fresh context directory with `files` (name -> content).
  static fs::path context(const std::string& name, const std::map<std::string, std::string>& files) {
    const fs::path dir = vm().scratch() / ("ctx-" + name);
    fs::remove_all(dir);
    for (const auto& [file, text] : files) {
      fs::create_directories((dir / file).parent_path());
      write_text(dir / file, text);
    }
    return dir;
  }
  // `docker build ARGS... DIR` with the legacy builder, as the CLI runs it without buildx.
  static RunResult docker_build(const std::vector<std::string>& args, const fs::path& dir,
                                std::chrono::milliseconds timeout = 300s) {
    std::vector<std::string> argv = {"build"};
    argv.insert(argv.end(), args.begin(), args.end());
    argv.push_back(dir.string());
    return vm().docker(argv, timeout);
  }
  static std::string ok(const std::vector<std::string>& args, std::chrono::milliseconds timeout = 120s) {
    auto r = vm().docker(args, timeout);
    EXPECT_TRUE(r.ok()) << describe_call(args, r);
    return trim(r.out);
  }

  static inline std::unique_ptr<SharedVmLease> lease_;
  static inline std::string setup_error_;
};

const char* kMultiStage =
    "FROM busybox:latest AS builder\n"
    "WORKDIR /src\n"
    "COPY hello.txt .\n"
    "RUN echo built > out.txt && cat hello.txt >> out.txt && rm hello.txt\n"
    "FROM busybox:latest\n"
    "COPY --from=builder /src/out.txt /app/out.txt\n"
    "ENV GREETING=hi\n"
    "CMD [\"cat\", \"/app/out.txt\"]\n";

TEST_F(Build, AMultiStageBuildCopiesFromAnEarlierStage) {
  auto dir = context("multi", {{"Dockerfile", kMultiStage}, {"hello.txt", "hello\n"}});
  const std::size_t images_before = lines(ok({"images", "-q"})).size();
  auto built = docker_build({"-t", "it-build/app"}, dir);
  ASSERT_TRUE(built.ok()) << built.describe();
  EXPECT_NE(built.out.find("Step 1/8 : FROM busybox:latest AS builder"), std::string::npos) << built.out;
  EXPECT_NE(built.out.find("Successfully tagged it-build/app:latest"), std::string::npos) << built.out;
  EXPECT_EQ(ok({"run", "--rm", "it-build/app"}), "built\nhello");
  // The first stage's deleted file is gone from its layer, and the final image
  // has busybox's layer plus one COPY layer.
  EXPECT_EQ(ok({"inspect", "-f", "{{len .RootFS.Layers}}", "it-build/app"}), "2");
  auto history = ok({"history", "--no-trunc", "--format", "{{.CreatedBy}}", "it-build/app"});
  EXPECT_NE(history.find("COPY file:"), std::string::npos) << history;
  EXPECT_NE(history.find("ENV GREETING=hi"), std::string::npos) << history;
  // `docker images` shows the result, not the intermediate steps; -a shows them too.
  EXPECT_EQ(lines(ok({"images", "-q"})).size(), images_before + 1) << ok({"images"});
  EXPECT_GT(lines(ok({"images", "-a", "-q"})).size(), images_before + 1);
}

TEST_F(Build, AFullyCachedRebuildReusesEveryStep) {
  auto dir = context("multi", {{"Dockerfile", kMultiStage}, {"hello.txt", "hello\n"}});
  auto first = docker_build({"-t", "it-build/app"}, dir);
  ASSERT_TRUE(first.ok()) << first.describe();
  const std::string id = ok({"inspect", "-f", "{{.Id}}", "it-build/app"});
  auto t0 = std::chrono::steady_clock::now();
  auto again = docker_build({"-t", "it-build/app"}, dir);
  double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_TRUE(again.ok()) << again.describe();
  std::size_t hits = 0;
  for (std::size_t p = 0; (p = again.out.find("Using cache", p)) != std::string::npos; ++p) ++hits;
  EXPECT_EQ(hits, 6u) << again.out;
  EXPECT_EQ(again.out.find("Running in"), std::string::npos) << again.out;
  EXPECT_EQ(ok({"inspect", "-f", "{{.Id}}", "it-build/app"}), id);
  std::printf("[ figures  ] fully cached rebuild of an 8-step Dockerfile: %.2f s\n", took);
  // A changed file misses from its COPY on.
  write_text(dir / "hello.txt", "changed\n");
  auto changed = docker_build({"-t", "it-build/app"}, dir);
  ASSERT_TRUE(changed.ok()) << changed.describe();
  EXPECT_EQ(ok({"run", "--rm", "it-build/app"}), "built\nchanged");
}

TEST_F(Build, DockerignoreBuildArgsAndTarget) {
  auto dir = context("args", {{"Dockerfile",
                               "ARG BASE=busybox:latest\n"
                               "FROM $BASE AS base\n"
                               "ARG FLAVOUR=plain\n"
                               "COPY . /ctx/\n"
                               "RUN echo \"$FLAVOUR\" > /flavour\n"
                               "FROM base AS extra\n"
                               "RUN echo extra > /extra\n"},
                              {".dockerignore", "*.log\n!keep.log\nsecret/\n"},
                              {"a.txt", "a\n"},
                              {"skip.log", "no\n"},
                              {"keep.log", "yes\n"},
                              {"secret/key", "k\n"}});
  auto built = docker_build({"-t", "it-build/args", "--build-arg", "FLAVOUR=spicy", "--target", "base"}, dir);
  ASSERT_TRUE(built.ok()) << built.describe();
  EXPECT_EQ(ok({"run", "--rm", "it-build/args", "cat", "/flavour"}), "spicy");
  auto files = ok({"run", "--rm", "it-build/args", "sh", "-c", "cd /ctx && find . -type f | sort"});
  EXPECT_EQ(files, "./.dockerignore\n./Dockerfile\n./a.txt\n./keep.log") << files;
  EXPECT_EQ(vm().docker({"run", "--rm", "it-build/args", "test", "-e", "/extra"}).exit_code, 1)
      << "--target base stops before the extra stage";
}

TEST_F(Build, AFailingRunReportsTheCommandAndItsExitCode) {
  auto dir = context("fail", {{"Dockerfile", "FROM busybox:latest\nRUN echo before && exit 7\n"}});
  auto before = ok({"ps", "-a", "-q"});
  auto r = docker_build({"-t", "it-build/fail", "--force-rm"}, dir);
  EXPECT_FALSE(r.ok());
  EXPECT_NE((r.out + r.err).find("The command '/bin/sh -c echo before && exit 7' returned a non-zero code: 7"),
            std::string::npos)
      << r.describe();
  EXPECT_NE(r.out.find("before"), std::string::npos) << "the step's output streams before the error";
  EXPECT_EQ(ok({"ps", "-a", "-q"}), before) << "--force-rm leaves no container behind";
  auto bad = docker_build({}, context("unknown", {{"Dockerfile", "FROM busybox:latest\nFOO bar\n"}}));
  EXPECT_NE(bad.err.find("unknown instruction: FOO"), std::string::npos) << bad.describe();
  auto missing = docker_build({}, context("missing", {{"Dockerfile", "FROM busybox:latest\nCOPY nope /x\n"}}));
  EXPECT_NE((missing.out + missing.err).find("nope"), std::string::npos) << missing.describe();
}

TEST_F(Build, ABuiltImageIsPushedAndPulledBack) {
  auto dir = context("push", {{"Dockerfile", "FROM busybox:latest\nRUN echo pushed > /msg\nCMD [\"cat\", \"/msg\"]\n"}});
  const std::string ref = lease_->vm().registry_guest() + "/it-build/pushed:1";
  ASSERT_TRUE(docker_build({"-t", ref, "-t", "it-build/pushed"}, dir).ok());
  ok({"push", ref}, 300s);
  auto skopeo = run({"skopeo", "inspect", "--tls-verify=false",
                     "docker://" + lease_->vm().registry_host() + "/it-build/pushed:1"},
                    {}, 60s);
  EXPECT_TRUE(skopeo.ok()) << skopeo.describe();
  ok({"rmi", ref, "it-build/pushed"});
  ok({"pull", ref}, 300s);
  EXPECT_EQ(ok({"run", "--rm", ref}), "pushed");
  vm().docker({"rmi", ref});
}

TEST_F(Build, AnInterruptedBuildLeavesNoContainer) {
  auto dir = context("interrupt", {{"Dockerfile", "FROM busybox:latest\nRUN echo started && sleep 120\n"}});
  auto before = ok({"ps", "-a", "-q"});
  SpawnOptions spawn;
  spawn.env = vm().docker_env();
  Process p = Process::start({"docker", "build", "--no-cache", dir.string()}, spawn);
  ASSERT_TRUE(eventually([&] { return p.stdout_so_far().find("started") != std::string::npos; }, 120s, 200ms))
      << p.stdout_so_far() << p.stderr_so_far();
  p.signal(SIGINT);
  p.wait(30s);
  EXPECT_TRUE(eventually([&] { return ok({"ps", "-a", "-q"}) == before; }, 20s, 500ms))
      << "the step's container outlived the client: " << ok({"ps", "-a"});
}

TEST_F(Build, DockerComposeBuildsAndRuns) {
  if (!run({"bash", "-c", "command -v docker-compose"}, {}, 10s).ok()) GTEST_SKIP() << "no docker-compose";
  auto dir = context("compose", {{"docker-compose.yml",
                                  "version: \"3\"\n"
                                  "services:\n"
                                  "  app:\n"
                                  "    build:\n"
                                  "      context: .\n"
                                  "      args:\n"
                                  "        WORD: composed\n"
                                  "    image: it-build/compose\n"},
                                 {"Dockerfile", "FROM busybox:latest\nARG WORD\nRUN echo $WORD > /word\n"
                                                "CMD [\"cat\", \"/word\"]\n"}});
  Env env = vm().docker_env();
  // Python's requests takes these over DOCKER_CERT_PATH's CA.
  env["REQUESTS_CA_BUNDLE"] = std::nullopt;
  env["CURL_CA_BUNDLE"] = std::nullopt;
  env["COMPOSE_PROJECT_NAME"] = "itbuild";
  auto compose = [&](std::vector<std::string> args) {
    args.insert(args.begin(), {"docker-compose", "-f", (dir / "docker-compose.yml").string()});
    return run(args, env, 300s);
  };
  auto built = compose({"build"});
  ASSERT_TRUE(built.ok()) << built.describe();
  auto ran = compose({"run", "--rm", "app"});
  EXPECT_TRUE(ran.ok()) << ran.describe();
  EXPECT_NE(ran.out.find("composed"), std::string::npos) << ran.describe();
  compose({"down", "-v"});
}

TEST_F(Build, BuilderPruneFreesTheCache) {
  auto dir = context("prune", {{"Dockerfile", "FROM busybox:latest\nRUN echo cached > /c\n"}});
  ASSERT_TRUE(docker_build({}, dir).ok());
  auto pruned = vm().docker({"builder", "prune", "-a", "-f"}, 120s);
  EXPECT_TRUE(pruned.ok()) << pruned.describe();
  auto again = docker_build({}, dir);
  ASSERT_TRUE(again.ok()) << again.describe();
  EXPECT_EQ(again.out.find("Using cache"), std::string::npos) << "pruned steps are not reused: " << again.out;
}

}  // namespace
}  // namespace berth::it::containers
