#include "agent/runtime/restart_policy.h"

#include <gtest/gtest.h>

#include "agent/api/http.h"

namespace berth::agent::runtime {
namespace {

using nlohmann::json;

RestartPolicy policy(const std::string& name, int max = 0) {
  return RestartPolicy::from_json({{"RestartPolicy", {{"Name", name}, {"MaximumRetryCount", max}}}});
}

TEST(RestartPolicyTest, ParsesAndRejectsLikeDockerd) {
  EXPECT_TRUE(RestartPolicy::from_json(json::object()).is_none());
  EXPECT_TRUE(policy("no").is_none());
  EXPECT_EQ(policy("on-failure", 3).max_retries, 3);
  try {
    policy("sometimes");
    FAIL();
  } catch (const api::HttpError& e) {
    EXPECT_EQ(e.status(), 400u);
    EXPECT_NE(std::string(e.what()).find("unknown policy 'sometimes'"), std::string::npos);
  }
  EXPECT_THROW(policy("always", 2), api::HttpError);
  EXPECT_THROW(policy("on-failure", -1), api::HttpError);
}

TEST(RestartPolicyTest, DecidesAfterAnExit) {
  EXPECT_FALSE(should_restart(policy("no"), {1, 0, false}));
  EXPECT_TRUE(should_restart(policy("always"), {0, 5, false}));
  EXPECT_FALSE(should_restart(policy("always"), {0, 0, true}));
  EXPECT_TRUE(should_restart(policy("unless-stopped"), {0, 0, false}));
  EXPECT_FALSE(should_restart(policy("on-failure"), {0, 0, false}));
  EXPECT_TRUE(should_restart(policy("on-failure"), {1, 100, false}));
  EXPECT_TRUE(should_restart(policy("on-failure", 2), {1, 1, false}));
  EXPECT_FALSE(should_restart(policy("on-failure", 2), {1, 2, false}));
}

TEST(RestartPolicyTest, DecidesAtBoot) {
  EXPECT_TRUE(should_start_on_boot(policy("always"), {0, 0, true}));
  EXPECT_TRUE(should_start_on_boot(policy("unless-stopped"), {0, 0, false}));
  EXPECT_FALSE(should_start_on_boot(policy("unless-stopped"), {0, 0, true}));
  EXPECT_TRUE(should_start_on_boot(policy("on-failure"), {255, 0, false}));
  EXPECT_FALSE(should_start_on_boot(policy("on-failure"), {0, 0, false}));
  EXPECT_FALSE(should_start_on_boot(policy("no"), {255, 0, false}));
}

TEST(RestartPolicyTest, BacksOffExponentiallyUpToAMinute) {
  EXPECT_EQ(restart_delay(0), std::chrono::milliseconds(100));
  EXPECT_EQ(restart_delay(1), std::chrono::milliseconds(200));
  EXPECT_EQ(restart_delay(3), std::chrono::milliseconds(800));
  EXPECT_EQ(restart_delay(20), std::chrono::minutes(1));
}

}  // namespace
}  // namespace berth::agent::runtime
