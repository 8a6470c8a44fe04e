#include <gtest/gtest.h>

#include "core/error.h"
#include "provision/common.h"

namespace berth::provision::detail {
namespace {

TEST(ShellQuote, LeavesPlainWordsAndQuotesTheRest) {
  EXPECT_EQ(shell_quote("/etc/berth/agent.json"), "/etc/berth/agent.json");
  EXPECT_EQ(shell_quote("a b"), "'a b'");
  EXPECT_EQ(shell_quote("it's"), "'it'\\''s'");
  EXPECT_EQ(shell_quote(""), "''");
  EXPECT_EQ(shell_quote("$(reboot)"), "'$(reboot)'");
}

TEST(Sha256, KnownVectors) {
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST(HostsWithName, ReplacesDebianLoopbackLine) {
  auto out = hosts_with_name("127.0.0.1\tlocalhost\n127.0.1.1\told.example old\n::1 localhost\n", "dev");
  ASSERT_TRUE(out);
  EXPECT_EQ(*out, "127.0.0.1\tlocalhost\n127.0.1.1\tdev\n::1 localhost\n");
}

TEST(HostsWithName, AppendsWhenThereIsNoLoopbackLine) {
  auto out = hosts_with_name("127.0.0.1 localhost\n", "dev");
  ASSERT_TRUE(out);
  EXPECT_EQ(*out, "127.0.0.1 localhost\n127.0.1.1\tdev\n");
}

TEST(HostsWithName, UnchangedWhenTheNameAlreadyResolves) {
  EXPECT_FALSE(hosts_with_name("127.0.0.1 localhost dev\n", "dev"));
  EXPECT_FALSE(hosts_with_name("10.0.0.4 dev.lan dev # mine\n", "dev"));
  // A name in a comment does not count.
  EXPECT_TRUE(hosts_with_name("127.0.0.1 localhost # dev\n", "dev"));
}

TEST(ParseEnv, SplitsAtTheFirstEquals) {
  auto env = parse_env({"A=1", "B_2=x=y", "EMPTY="});
  ASSERT_EQ(env.size(), 3u);
  EXPECT_EQ(env[1].first, "B_2");
  EXPECT_EQ(env[1].second, "x=y");
  EXPECT_EQ(env[2].second, "");
}

TEST(ParseEnv, RejectsBadEntries) {
  EXPECT_THROW(parse_env({"NOVALUE"}), UserError);
  EXPECT_THROW(parse_env({"=x"}), UserError);
  EXPECT_THROW(parse_env({"1A=x"}), UserError);
  EXPECT_THROW(parse_env({"A-B=x"}), UserError);
  EXPECT_THROW(parse_env({"A=line\nbreak"}), UserError);
}

TEST(RcLocal, AddAndRemoveTheStartLine) {
  EXPECT_EQ(*rc_local_with_agent(std::nullopt, true), "#!/bin/sh\n/etc/berth/berth-agent.sh start\nexit 0\n");
  EXPECT_EQ(*rc_local_with_agent("#!/bin/sh\necho hi\n", true), "#!/bin/sh\necho hi\n/etc/berth/berth-agent.sh start\n");
  EXPECT_FALSE(rc_local_with_agent("#!/bin/sh\n/etc/berth/berth-agent.sh start\nexit 0\n", true));
  EXPECT_EQ(*rc_local_with_agent("#!/bin/sh\n/etc/berth/berth-agent.sh start\nexit 0\n", false), "#!/bin/sh\nexit 0\n");
  EXPECT_FALSE(rc_local_with_agent("#!/bin/sh\nexit 0\n", false));
  EXPECT_FALSE(rc_local_with_agent(std::nullopt, false));
}

TEST(AgentConfig, HasExactlyTheAgentContract) {
  EngineOptions e;
  e.labels = {"a=b"};
  e.env = {"X=1"};
  e.opts = {"o=p"};
  e.insecure_registries = {"r:5000"};
  e.registry_mirrors = {"https://m"};
  e.port = 3000;
  auto expected = nlohmann::json::parse(R"({
    "listen": "0.0.0.0", "port": 3000,
    "tls": {"ca": "/etc/berth/ca.pem", "cert": "/etc/berth/server.pem", "key": "/etc/berth/server-key.pem"},
    "log_file": "/var/log/berth-agent.log", "pid_file": "/run/berth-agent.pid", "data_root": "/var/lib/berth",
    "labels": ["a=b"], "env": ["X=1"], "opts": ["o=p"],
    "insecure_registries": ["r:5000"], "registry_mirrors": ["https://m"]})");
  EXPECT_EQ(make_agent_config(e), expected);
  EXPECT_EQ(make_agent_config(EngineOptions{})["labels"], nlohmann::json::array());
}

}  // namespace
}  // namespace berth::provision::detail
