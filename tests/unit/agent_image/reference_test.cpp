#include "agent/image/reference.h"

#include <gtest/gtest.h>

#include <stdexcept>

namespace berth::agent::image {
namespace {

const std::string kDigest = "sha256:" + std::string(64, 'a');

TEST(Reference, OfficialImageGetsLibraryAndDefaultTag) {
  Reference r = parse_reference_default_tag("busybox");
  EXPECT_EQ(r.domain, "docker.io");
  EXPECT_EQ(r.path, "library/busybox");
  EXPECT_EQ(r.tag, "latest");
  EXPECT_EQ(r.string(), "docker.io/library/busybox:latest");
  EXPECT_EQ(r.familiar_string(), "busybox:latest");
  EXPECT_EQ(r.familiar_name(), "busybox");
}

TEST(Reference, UserRepositoryOnHub) {
  Reference r = parse_reference("user/app:1.2");
  EXPECT_EQ(r.string(), "docker.io/user/app:1.2");
  EXPECT_EQ(r.familiar_string(), "user/app:1.2");
  EXPECT_EQ(parse_reference("docker.io/library/busybox:1").familiar_string(), "busybox:1");
  EXPECT_EQ(parse_reference("index.docker.io/library/busybox").name(), "docker.io/library/busybox");
}

TEST(Reference, RegistryWithPort) {
  Reference r = parse_reference_default_tag("127.0.0.1:5000/team/app");
  EXPECT_EQ(r.domain, "127.0.0.1:5000");
  EXPECT_EQ(r.path, "team/app");
  EXPECT_EQ(r.tag, "latest");
  EXPECT_EQ(r.familiar_string(), "127.0.0.1:5000/team/app:latest");
  EXPECT_EQ(parse_reference("localhost/app").domain, "localhost");
  EXPECT_EQ(parse_reference("localhost:5000/app:v1").tag, "v1");
  EXPECT_EQ(parse_reference("Registry.Example/app").domain, "Registry.Example");
}

TEST(Reference, Digest) {
  Reference r = parse_reference_default_tag("busybox@" + kDigest);
  EXPECT_EQ(r.tag, "");
  EXPECT_EQ(r.digest, kDigest);
  EXPECT_EQ(r.familiar_string(), "busybox@" + kDigest);
  Reference both = parse_reference("host:1/a:t@" + kDigest);
  EXPECT_EQ(both.tag, "t");
  EXPECT_EQ(both.digest, kDigest);
}

TEST(Reference, RejectsMalformed) {
  EXPECT_THROW(parse_reference(""), std::invalid_argument);
  EXPECT_THROW(parse_reference("busybox:"), std::invalid_argument);
  EXPECT_THROW(parse_reference("bad..name"), std::invalid_argument);
  EXPECT_THROW(parse_reference("a/-b"), std::invalid_argument);
  EXPECT_THROW(parse_reference("busybox@sha256:123"), std::invalid_argument);
  EXPECT_THROW(parse_reference(":tag"), std::invalid_argument);
  try {
    parse_reference("user/BusyBox");
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(), "invalid reference format: repository name (user/BusyBox) must be lowercase");
  }
}

TEST(Reference, Separators) {
  EXPECT_NO_THROW(parse_reference("a_b/c__d/e.f/g---h"));
  EXPECT_THROW(parse_reference("a___b"), std::invalid_argument);
  EXPECT_TRUE(is_valid_tag("v1.0-rc_1"));
  EXPECT_FALSE(is_valid_tag(".v1"));
  EXPECT_FALSE(is_valid_tag(std::string(129, 'a')));
}

}  // namespace
}  // namespace berth::agent::image
