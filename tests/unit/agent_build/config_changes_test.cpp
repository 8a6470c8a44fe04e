// docker commit --change through the Dockerfile front end, as dockerd's
// BuildFromConfig applies it, and the config semantics the builder shares.
#include "agent/build/config_changes.h"

#include <gtest/gtest.h>

#include "agent/build/error.h"

namespace berth::agent::build {
namespace {

using nlohmann::json;

json container_config() {
  return {{"Env", {"PATH=/usr/bin:/bin", "HOME=/root"}},
          {"Cmd", {"sh", "-c", "echo hi"}},
          {"WorkingDir", "/srv"},
          {"Labels", {{"keep", "yes"}}}};
}

std::string error_of(const std::vector<std::string>& changes) {
  try {
    apply_changes(container_config(), changes);
  } catch (const BuildError& e) {
    return e.what();
  }
  return "";
}

TEST(ConfigChanges, NoChangesKeepTheConfig) { EXPECT_EQ(apply_changes(container_config(), {}), container_config()); }

TEST(ConfigChanges, EveryCommitCommandApplies) {
  json c = apply_changes(container_config(), {"ENV APP=1 HOME=/home/app", "LABEL version=2 \"with space\"=x",
                                              "EXPOSE 8080 53/udp", "USER app:app", "VOLUME /data",
                                              "WORKDIR sub", "STOPSIGNAL SIGINT", "ONBUILD RUN make",
                                              "CMD [\"serve\", \"--port\", \"8080\"]"});
  EXPECT_EQ(c["Env"], json({"PATH=/usr/bin:/bin", "HOME=/home/app", "APP=1"}));
  EXPECT_EQ(c["Labels"], json({{"keep", "yes"}, {"version", "2"}, {"with space", "x"}}));
  EXPECT_EQ(c["ExposedPorts"], json({{"8080/tcp", json::object()}, {"53/udp", json::object()}}));
  EXPECT_EQ(c["User"], "app:app");
  EXPECT_EQ(c["Volumes"], json({{"/data", json::object()}}));
  EXPECT_EQ(c["WorkingDir"], "/srv/sub");
  EXPECT_EQ(c["StopSignal"], "SIGINT");
  EXPECT_EQ(c["OnBuild"], json({"RUN make"}));
  EXPECT_EQ(c["Cmd"], json({"serve", "--port", "8080"}));
}

TEST(ConfigChanges, VariablesExpandWithTheConfigsEnvAsItGoes) {
  json c = apply_changes(container_config(), {"ENV BASE=/opt", "ENV APP_DIR=$BASE/app", "WORKDIR $APP_DIR",
                                              "LABEL home=${HOME}"});
  EXPECT_EQ(c["WorkingDir"], "/opt/app");
  EXPECT_EQ(c["Labels"]["home"], "/root");
  EXPECT_EQ(c["Env"].back(), "APP_DIR=/opt/app");
}

TEST(ConfigChanges, ShellFormCommandsRunThroughTheShell) {
  json c = apply_changes(container_config(), {"ENTRYPOINT exec app"});
  EXPECT_EQ(c["Entrypoint"], json({"/bin/sh", "-c", "exec app"}));
  EXPECT_TRUE(c["Cmd"].is_null()) << "a new ENTRYPOINT drops the container's CMD";
  json both = apply_changes(container_config(), {"CMD [\"--verbose\"]", "ENTRYPOINT [\"app\"]"});
  EXPECT_EQ(both["Cmd"], json({"--verbose"})) << "a CMD given alongside is kept";
  EXPECT_EQ(both["Entrypoint"], json({"app"}));
}

TEST(ConfigChanges, OnlyDockerdsCommitCommandsAreValid) {
  EXPECT_EQ(error_of({"RUN echo no"}), "run is not a valid change command");
  EXPECT_EQ(error_of({"ENV A=1", "FROM busybox"}), "from is not a valid change command");
  EXPECT_EQ(error_of({"HEALTHCHECK NONE"}), "healthcheck is not a valid change command");
  EXPECT_EQ(error_of({"copy a b"}), "copy is not a valid change command");
  EXPECT_EQ(error_of({"FOO bar"}), "foo is not a valid change command");
  EXPECT_EQ(error_of({"STOPSIGNAL NOPE"}), "Invalid signal: NOPE");
  EXPECT_EQ(error_of({"EXPOSE 99999"}), "invalid containerPort: 99999");
  EXPECT_EQ(error_of({"ONBUILD ONBUILD RUN x"}), "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed");
  EXPECT_NE(error_of({"ENV"}), "");
}

TEST(ConfigChanges, SharedHelpersFollowTheBuilder) {
  EXPECT_EQ(config_shell(json::object()), (std::vector<std::string>{"/bin/sh", "-c"}));
  EXPECT_EQ(config_shell({{"Shell", {"/bin/ash", "-eo"}}}), (std::vector<std::string>{"/bin/ash", "-eo"}));
  EXPECT_EQ(workdir_path("/a", "b/"), "/a/b");
  EXPECT_EQ(workdir_path("/a", "/x/"), "/x");
  EXPECT_EQ(workdir_path("", "rel"), "/rel");
  json c = json::object();
  bool cmd_set = false;
  Instruction user = parse_trigger("USER nobody");
  EXPECT_EQ(apply_config_instruction(c, user, cmd_set), "USER nobody");
  Instruction run = parse_trigger("RUN true");
  EXPECT_EQ(apply_config_instruction(c, run, cmd_set), std::nullopt) << "not a config instruction";
  EXPECT_EQ(c, json({{"User", "nobody"}}));
}

}  // namespace
}  // namespace berth::agent::build
