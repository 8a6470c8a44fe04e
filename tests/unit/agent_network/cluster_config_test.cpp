// agent.json's "cluster" section: what berth create --cluster writes, and
// one clear line for each mistake.
#include <gtest/gtest.h>

#include "agent/config.h"
#include "core/error.h"

namespace berth::agent {
namespace {

const char* kFull = R"({
  "cluster": {
    "name": "lab",
    "machine": "a",
    "advertise": "192.168.200.11",
    "etcd_endpoints": ["https://192.168.200.11:2379", "https://192.168.200.12:2379"],
    "tls": {"ca": "/etc/berth/cluster/ca.pem", "cert": "/etc/berth/cluster/member.pem",
            "key": "/etc/berth/cluster/member-key.pem"},
    "etcd": {
      "binary": "/usr/local/lib/berth/etcd",
      "data_dir": "/var/lib/berth/etcd",
      "initial_cluster": "a=https://192.168.200.11:2380,b=https://192.168.200.12:2380",
      "initial_cluster_state": "new"
    }
  }
})";

std::string error_of(const std::string& text) {
  try {
    parse_config(text, "agent.json");
  } catch (const UserError& e) {
    return e.what();
  }
  return "";
}

TEST(ClusterConfig, NoSectionIsNoCluster) { EXPECT_FALSE(parse_config("{}", "agent.json").cluster); }

TEST(ClusterConfig, ReadsEveryField) {
  AgentConfig c = parse_config(kFull, "agent.json");
  ASSERT_TRUE(c.cluster);
  EXPECT_EQ(c.cluster->name, "lab");
  EXPECT_EQ(c.cluster->machine, "a");
  EXPECT_EQ(c.cluster->advertise, "192.168.200.11");
  EXPECT_EQ(c.cluster->etcd_endpoints,
            (std::vector<std::string>{"https://192.168.200.11:2379", "https://192.168.200.12:2379"}));
  EXPECT_EQ(c.cluster->tls.ca, "/etc/berth/cluster/ca.pem");
  EXPECT_EQ(c.cluster->tls.cert, "/etc/berth/cluster/member.pem");
  EXPECT_EQ(c.cluster->tls.key, "/etc/berth/cluster/member-key.pem");
  ASSERT_TRUE(c.cluster->etcd);
  EXPECT_EQ(c.cluster->etcd->binary, "/usr/local/lib/berth/etcd");
  EXPECT_EQ(c.cluster->etcd->data_dir, "/var/lib/berth/etcd");
  EXPECT_EQ(c.cluster->etcd->initial_cluster, "a=https://192.168.200.11:2380,b=https://192.168.200.12:2380");
  EXPECT_EQ(c.cluster->etcd->initial_cluster_state, "new");
}

TEST(ClusterConfig, AMemberWithoutEtcdAndDefaults) {
  AgentConfig c = parse_config(R"({"cluster": {"name": "lab", "machine": "c", "advertise": "192.168.200.13",
      "etcd_endpoints": ["https://192.168.200.11:2379"],
      "tls": {"ca": "/c/ca.pem", "cert": "/c/m.pem", "key": "/c/k.pem"}}})",
                               "agent.json");
  ASSERT_TRUE(c.cluster);
  EXPECT_FALSE(c.cluster->etcd);
  c = parse_config(R"({"cluster": {"name": "lab", "machine": "c", "advertise": "192.168.200.13",
      "etcd_endpoints": ["https://192.168.200.13:2379"],
      "tls": {"ca": "/c/ca.pem", "cert": "/c/m.pem", "key": "/c/k.pem"}, "etcd": {}}})",
                   "agent.json");
  ASSERT_TRUE(c.cluster->etcd);
  EXPECT_EQ(c.cluster->etcd->binary, "/usr/local/lib/berth/etcd");
  EXPECT_EQ(c.cluster->etcd->data_dir, "/var/lib/berth/etcd");
  EXPECT_EQ(c.cluster->etcd->initial_cluster, "c=https://192.168.200.13:2380");
  EXPECT_EQ(c.cluster->etcd->initial_cluster_state, "new");
}

TEST(ClusterConfig, MistakesAreOneClearLine) {
  auto with = [](const std::string& from, const std::string& to) {
    std::string text = kFull;
    auto at = text.find(from);
    EXPECT_NE(at, std::string::npos) << from;
    return text.replace(at, from.size(), to);
  };
  EXPECT_EQ(error_of(R"({"cluster": []})"), "config agent.json: \"cluster\" must be an object");
  EXPECT_EQ(error_of(with(R"("name": "lab",)", "")), "config agent.json: \"cluster.name\" is missing");
  EXPECT_EQ(error_of(with(R"("name": "lab")", R"("name": "l a b")")),
            "config agent.json: \"cluster.name\" is \"l a b\"; use letters, digits, '-', '_' and '.', "
            "starting with a letter or digit");
  EXPECT_EQ(error_of(with(R"("machine": "a",)", "")), "config agent.json: \"cluster.machine\" is missing");
  EXPECT_EQ(error_of(with(R"("advertise": "192.168.200.11")", R"("advertise": "a.example")")),
            "config agent.json: \"cluster.advertise\" is \"a.example\"; expected an IPv4 address");
  EXPECT_EQ(error_of(with(R"("https://192.168.200.11:2379", "https://192.168.200.12:2379")", "")),
            "config agent.json: \"cluster.etcd_endpoints\" must be a non-empty array of https:// URLs");
  EXPECT_EQ(error_of(with(R"("https://192.168.200.12:2379")", R"("http://192.168.200.12:2379")")),
            "config agent.json: \"cluster.etcd_endpoints[1]\" must be an https:// URL (e.g. "
            "https://192.168.200.11:2379)");
  EXPECT_EQ(error_of(with(R"("key": "/etc/berth/cluster/member-key.pem")", R"("key": 7)")),
            "config agent.json: \"cluster.tls.key\" must be a string");
  EXPECT_EQ(error_of(with(R"(, "cert": "/etc/berth/cluster/member.pem")", "")),
            "config agent.json: \"cluster.tls.cert\" is missing");
  EXPECT_EQ(error_of(with(R"("initial_cluster_state": "new")", R"("initial_cluster_state": "old")")),
            "config agent.json: \"cluster.etcd.initial_cluster_state\" must be \"new\" or \"existing\"");
  EXPECT_EQ(error_of(with("a=https://192.168.200.11:2380,", "")),
            "config agent.json: \"cluster.etcd.initial_cluster\" does not name this machine "
            "(\"a=https://...\")");
  EXPECT_EQ(error_of(with("a=https://192.168.200.11:2380", "a=192.168.200.11:2380")),
            "config agent.json: \"cluster.etcd.initial_cluster\" entry \"a=192.168.200.11:2380\" must look "
            "like NAME=https://IP:2380");
}

}  // namespace
}  // namespace berth::agent
