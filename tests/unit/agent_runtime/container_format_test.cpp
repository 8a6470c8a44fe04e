#include "agent/runtime/container_format.h"

#include <gtest/gtest.h>

#include "agent/api/http.h"
#include "agent/runtime/json_log.h"

namespace berth::agent::runtime {
namespace {

using nlohmann::json;

TEST(ContainerFormatTest, Names) {
  EXPECT_TRUE(valid_container_name("web"));
  EXPECT_TRUE(valid_container_name("/web_1.a-b"));
  EXPECT_FALSE(valid_container_name("a"));
  EXPECT_FALSE(valid_container_name("-web"));
  EXPECT_FALSE(valid_container_name("we b"));
  EXPECT_TRUE(valid_container_name(random_container_name()));
  std::string id = new_container_id();
  EXPECT_EQ(id.size(), 64u);
  EXPECT_EQ(id.find_first_not_of("0123456789abcdef"), std::string::npos);
  EXPECT_NE(id, new_container_id());
}

TEST(ContainerFormatTest, FamiliarReferences) {
  EXPECT_EQ(familiar_reference("busybox"), "busybox:latest");
  EXPECT_EQ(familiar_reference("docker.io/library/busybox"), "busybox:latest");
  EXPECT_EQ(familiar_reference("localhost:5000/app"), "localhost:5000/app:latest");
  EXPECT_EQ(familiar_reference("app:1.0"), "app:1.0");
  EXPECT_EQ(familiar_reference("app@sha256:ab"), "app@sha256:ab");
}

TEST(ContainerFormatTest, PortValidation) {
  EXPECT_NO_THROW(validate_ports({{"ExposedPorts", {{"80/tcp", json::object()}}}},
                                 {{"PortBindings", {{"80/tcp", {{{"HostIp", ""}, {"HostPort", "8080"}}}}}}}));
  try {
    validate_ports(json::object(), {{"PortBindings", {{"80x/tcp", json::array()}}}});
    FAIL();
  } catch (const api::HttpError& e) {
    EXPECT_EQ(e.status(), 400u);
    EXPECT_EQ(std::string(e.what()), "invalid port specification: \"80x\"");
  }
  EXPECT_THROW(validate_ports({{"ExposedPorts", {{"80/icmp", json::object()}}}}, json::object()),
               api::HttpError);
  EXPECT_THROW(validate_ports(json::object(),
                              {{"PortBindings", {{"80/tcp", {{{"HostPort", "99999"}}}}}}}),
               api::HttpError);
  EXPECT_THROW(validate_ports(json::object(),
                              {{"PortBindings", {{"80/tcp", {{{"HostIp", "nope"}, {"HostPort", "1"}}}}}}}),
               api::HttpError);
}

TEST(ContainerFormatTest, PublishAllAndPortsMap) {
  json config = {{"ExposedPorts", {{"80/tcp", json::object()}, {"53/udp", json::object()}}}};
  json hc = {{"PublishAllPorts", true},
             {"PortBindings", {{"80/tcp", {{{"HostIp", ""}, {"HostPort", "8080"}}}}}}};
  auto wanted = wanted_port_bindings(config, hc);
  ASSERT_EQ(wanted.size(), 2u);
  EXPECT_EQ(wanted[0].container_port, "80/tcp");
  EXPECT_EQ(wanted[0].host_port, "8080");
  EXPECT_EQ(wanted[1].container_port, "53/udp");
  EXPECT_EQ(wanted[1].host_port, "");
  json ports = ports_map(config, {{"80/tcp", "", "8080"}});
  EXPECT_EQ(ports["80/tcp"], json({{{"HostIp", "0.0.0.0"}, {"HostPort", "8080"}}}));
  EXPECT_TRUE(ports["53/udp"].is_null());
  json summary = summary_ports(ports);
  ASSERT_EQ(summary.size(), 2u);
  EXPECT_EQ(summary[0], json({{"PrivatePort", 53}, {"Type", "udp"}}));
  EXPECT_EQ(summary[1], json({{"IP", "0.0.0.0"}, {"PrivatePort", 80}, {"PublicPort", 8080}, {"Type", "tcp"}}));
}

TEST(ContainerFormatTest, HumanDurationsAndStatus) {
  EXPECT_EQ(human_duration(0), "Less than a second");
  EXPECT_EQ(human_duration(1), "1 second");
  EXPECT_EQ(human_duration(59), "59 seconds");
  EXPECT_EQ(human_duration(60), "About a minute");
  EXPECT_EQ(human_duration(5 * 60), "5 minutes");
  EXPECT_EQ(human_duration(3600), "About an hour");
  EXPECT_EQ(human_duration(5 * 3600), "5 hours");
  EXPECT_EQ(human_duration(3 * 86400), "3 days");
  EXPECT_EQ(human_duration(21 * 86400), "3 weeks");
  std::int64_t t0 = 1700000000LL * 1000000000LL;
  std::string at = rfc3339_nano(t0);
  std::int64_t now = t0 + 125LL * 1000000000LL;
  EXPECT_EQ(status_text({{"Status", "running"}, {"StartedAt", at}}, now), "Up 2 minutes");
  EXPECT_EQ(status_text({{"Status", "paused"}, {"StartedAt", at}}, now), "Up 2 minutes (Paused)");
  EXPECT_EQ(status_text({{"Status", "exited"}, {"ExitCode", 3}, {"FinishedAt", at}}, now),
            "Exited (3) 2 minutes ago");
  EXPECT_EQ(status_text({{"Status", "restarting"}, {"ExitCode", 1}, {"FinishedAt", at}}, now),
            "Restarting (1) 2 minutes ago");
  EXPECT_EQ(status_text({{"Status", "created"}}, now), "Created");
}

TEST(ContainerFormatTest, FiltersAndLabels) {
  auto f = parse_filters({{"status", {"running"}}, {"label", {{"a=b", true}}}});
  EXPECT_EQ(f["status"], std::vector<std::string>{"running"});
  EXPECT_EQ(f["label"], std::vector<std::string>{"a=b"});
  EXPECT_THROW(check_filter_keys(f, {"status"}), api::HttpError);
  EXPECT_NO_THROW(check_filter_keys(f, {"status", "label"}));
  json labels = {{"a", "b"}, {"c", ""}};
  EXPECT_TRUE(labels_match(labels, {"a=b", "c"}));
  EXPECT_FALSE(labels_match(labels, {"a=x"}));
  EXPECT_FALSE(labels_match(labels, {"z"}));
}

TEST(ContainerFormatTest, SummaryFromAnInspectDocument) {
  json doc = {{"Id", "abc"},
              {"Name", "/web"},
              {"Image", "sha256:123"},
              {"Path", "sh"},
              {"Args", {"-c", "echo hi"}},
              {"Created", "2023-11-14T22:13:20Z"},
              {"State", {{"Status", "created"}}},
              {"Config", {{"Image", "busybox"}, {"Labels", {{"k", "v"}}}}},
              {"HostConfig", {{"NetworkMode", "bridge"}}},
              {"NetworkSettings", {{"Networks", {{"bridge", json::object()}}}, {"Ports", json::object()}}},
              {"Mounts", json::array()}};
  json s = container_summary(doc);
  EXPECT_EQ(s["Names"], json({"/web"}));
  EXPECT_EQ(s["Image"], "busybox");
  EXPECT_EQ(s["ImageID"], "sha256:123");
  EXPECT_EQ(s["Command"], "sh -c echo hi");
  EXPECT_EQ(s["Created"], 1700000000);
  EXPECT_EQ(s["State"], "created");
  EXPECT_EQ(s["Status"], "Created");
  EXPECT_EQ(s["HostConfig"]["NetworkMode"], "bridge");
  EXPECT_TRUE(s["NetworkSettings"]["Networks"].contains("bridge"));
}

}  // namespace
}  // namespace berth::agent::runtime

namespace berth::agent::runtime {
namespace {

TEST(ValidateResources, RefusesWhatDockerdRefuses) {
  auto status_of = [](const nlohmann::json& hc) -> unsigned {
    try {
      validate_resources(hc, 2);
      return 0;
    } catch (const api::HttpError& e) {
      return e.status();
    }
  };
  EXPECT_EQ(status_of({{"Memory", 64 << 20}, {"NanoCpus", 1500000000}, {"PidsLimit", 10}}), 0u);
  EXPECT_EQ(status_of({{"Memory", 0}, {"NanoCpus", 0}, {"CpuQuota", 0}, {"CpuPeriod", 0}}), 0u);
  EXPECT_EQ(status_of({{"Memory", 1024}}), 400u);
  EXPECT_EQ(status_of({{"NanoCpus", 3000000000LL}}), 400u);  // more CPUs than the host has
  EXPECT_EQ(status_of({{"NanoCpus", 50000000067108864LL}}), 400u);  // found by fuzzing: overflowed
  EXPECT_EQ(status_of({{"NanoCpus", -1}}), 400u);
  EXPECT_EQ(status_of({{"NanoCpus", 1000000000}, {"CpuPeriod", 100000}}), 400u);
  EXPECT_EQ(status_of({{"CpuQuota", 999}}), 400u);
  EXPECT_EQ(status_of({{"CpuPeriod", 2000000}}), 400u);
  EXPECT_EQ(status_of({{"Memory", "lots"}}), 400u);
  try {
    validate_resources({{"NanoCpus", 3000000000LL}}, 2);
  } catch (const api::HttpError& e) {
    EXPECT_STREQ(e.what(), "Range of CPUs is from 0.01 to 2.00, as there are only 2 CPUs available");
  }
}

}  // namespace
}  // namespace berth::agent::runtime
