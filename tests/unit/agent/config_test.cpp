#include "agent/config.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "core/error.h"

namespace berth::agent {
namespace {

std::string error_of(std::string_view text) {
  try {
    parse_config(text, "/etc/berth/agent.json");
  } catch (const UserError& e) {
    return e.what();
  }
  return "<no error>";
}

TEST(Config, EmptyObjectGivesTheDefaults) {
  AgentConfig c = parse_config("{}", "agent.json");
  EXPECT_EQ(c.listen, "0.0.0.0");
  EXPECT_EQ(c.port, 2376);
  EXPECT_EQ(c.tls.ca, "/etc/berth/ca.pem");
  EXPECT_EQ(c.tls.cert, "/etc/berth/server.pem");
  EXPECT_EQ(c.tls.key, "/etc/berth/server-key.pem");
  EXPECT_EQ(c.log_file, "/var/log/berth-agent.log");
  EXPECT_EQ(c.pid_file, "/run/berth-agent.pid");
  EXPECT_EQ(c.data_root, "/var/lib/berth");
  EXPECT_TRUE(c.labels.empty());
  EXPECT_TRUE(c.env.empty());
  EXPECT_TRUE(c.opts.empty());
  EXPECT_TRUE(c.insecure_registries.empty());
  EXPECT_TRUE(c.registry_mirrors.empty());
}

TEST(Config, ReadsEveryField) {
  AgentConfig c = parse_config(R"({
    "listen": "::", "port": 12376,
    "tls": {"ca": "/x/ca.pem", "cert": "/x/s.pem", "key": "/x/k.pem"},
    "log_file": "/tmp/a.log", "pid_file": "/tmp/a.pid", "data_root": "/srv/berth",
    "labels": ["k=v", "zone=eu-1"], "env": ["HTTP_PROXY=http://p:3128"], "opts": ["log-level=debug"],
    "insecure_registries": ["10.0.0.0/8", "reg:5000"], "registry_mirrors": ["https://m.example"],
    "manage_network": false
  })",
                               "agent.json");
  EXPECT_EQ(c.listen, "::");
  EXPECT_EQ(c.port, 12376);
  EXPECT_EQ(c.tls.ca, "/x/ca.pem");
  EXPECT_EQ(c.tls.cert, "/x/s.pem");
  EXPECT_EQ(c.tls.key, "/x/k.pem");
  EXPECT_EQ(c.log_file, "/tmp/a.log");
  EXPECT_EQ(c.pid_file, "/tmp/a.pid");
  EXPECT_EQ(c.data_root, "/srv/berth");
  EXPECT_EQ(c.labels, (std::vector<std::string>{"k=v", "zone=eu-1"}));
  EXPECT_EQ(c.env, (std::vector<std::string>{"HTTP_PROXY=http://p:3128"}));
  EXPECT_EQ(c.opts, (std::vector<std::string>{"log-level=debug"}));
  EXPECT_EQ(c.insecure_registries, (std::vector<std::string>{"10.0.0.0/8", "reg:5000"}));
  EXPECT_EQ(c.registry_mirrors, (std::vector<std::string>{"https://m.example"}));
  EXPECT_FALSE(c.manage_network);
}

TEST(Config, ManageNetworkDefaultsOnAndMustBeABoolean) {
  EXPECT_TRUE(parse_config("{}", "agent.json").manage_network);
  EXPECT_THROW(parse_config(R"({"manage_network": "no"})", "agent.json"), UserError);
}

TEST(Config, PartialTlsKeepsOtherDefaults) {
  AgentConfig c = parse_config(R"({"tls": {"cert": "/c.pem"}})", "agent.json");
  EXPECT_EQ(c.tls.cert, "/c.pem");
  EXPECT_EQ(c.tls.ca, "/etc/berth/ca.pem");
}

TEST(Config, BadJsonNamesTheFileAndPosition) {
  std::string e = error_of("{\"port\": 2376,,}");
  EXPECT_NE(e.find("/etc/berth/agent.json"), std::string::npos) << e;
  EXPECT_NE(e.find("invalid JSON"), std::string::npos) << e;
  EXPECT_NE(e.find("line 1"), std::string::npos) << e;
  EXPECT_EQ(e.find('\n'), std::string::npos) << "one line: " << e;
}

TEST(Config, WrongTypesAreClearErrors) {
  EXPECT_NE(error_of("[]").find("must be a JSON object"), std::string::npos);
  EXPECT_NE(error_of(R"({"port": "2376"})").find("\"port\" must be an integer"), std::string::npos);
  EXPECT_NE(error_of(R"({"port": 70000})").find("\"port\""), std::string::npos);
  EXPECT_NE(error_of(R"({"port": -1})").find("\"port\""), std::string::npos);
  EXPECT_NE(error_of(R"({"listen": 5})").find("\"listen\" must be a string"), std::string::npos);
  EXPECT_NE(error_of(R"({"tls": "x"})").find("\"tls\" must be an object"), std::string::npos);
  EXPECT_NE(error_of(R"({"tls": {"key": ""}})").find("\"tls.key\" must not be empty"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"labels": "a=b"})").find("\"labels\" must be an array"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"labels": ["novalue"]})")
                .find("\"labels[0]\" is \"novalue\"; expected key=value"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"env": ["=x"]})").find("\"env[0]\""), std::string::npos);
  EXPECT_NE(
      error_of(R"({"registry_mirrors": [1]})").find("\"registry_mirrors[0]\" must be a string"),
      std::string::npos);
}

TEST(Config, MissingFileIsAUserErrorNamingIt) {
  try {
    load_config("/nonexistent/berth/agent.json");
    FAIL() << "no error";
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/berth/agent.json"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("No such file"), std::string::npos);
  }
}

TEST(Config, LoadsFromFile) {
  auto path = std::filesystem::temp_directory_path() /
              ("agent-config-" + std::to_string(::getpid()) + ".json");
  std::ofstream(path) << R"({"port": 3000})";
  EXPECT_EQ(load_config(path).port, 3000);
  std::filesystem::remove(path);
}

}  // namespace
}  // namespace berth::agent
