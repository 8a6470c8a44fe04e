#include "agent/api/router.h"

#include <gtest/gtest.h>

#include <stdexcept>

namespace berth::agent::api {
namespace {

Handler returning(unsigned status) {
  return [status](const Request&) { return Response::text(status, ""); };
}

unsigned call(const Router::Match& m) { return (*m.handler)(Request{}).status; }

TEST(Router, MatchesLiteralPathAndMethod) {
  Router r;
  r.add("GET", "/version", returning(201));
  auto m = r.match("GET", "/version");
  ASSERT_TRUE(m);
  EXPECT_EQ(call(*m), 201u);
  EXPECT_TRUE(m->params.empty());
  EXPECT_FALSE(r.match("POST", "/version"));
  EXPECT_FALSE(r.match("get", "/version"));
  EXPECT_FALSE(r.match("GET", "/versions"));
  EXPECT_FALSE(r.match("GET", "/version/"));  // no trailing-slash redirect, like dockerd
  EXPECT_FALSE(r.match("GET", "version"));
}

TEST(Router, CapturesOneSegmentParameters) {
  Router r;
  r.add("GET", "/containers/{id}/json", returning(200));
  auto m = r.match("GET", "/containers/abc123/json");
  ASSERT_TRUE(m);
  EXPECT_EQ(m->params.at("id"), "abc123");
  EXPECT_FALSE(r.match("GET", "/containers//json"));     // empty segment
  EXPECT_FALSE(r.match("GET", "/containers/a/b/json"));  // one segment only
}

TEST(Router, RestParameterSpansSlashes) {
  Router r;
  r.add("GET", "/images/{name...}/json", returning(200));
  r.add("DELETE", "/images/{name...}", returning(204));
  auto m = r.match("GET", "/images/registry:5000/team/app:1.0/json");
  ASSERT_TRUE(m);
  EXPECT_EQ(m->params.at("name"), "registry:5000/team/app:1.0");
  auto d = r.match("DELETE", "/images/team/app");
  ASSERT_TRUE(d);
  EXPECT_EQ(d->params.at("name"), "team/app");
  EXPECT_EQ(call(*d), 204u);
  EXPECT_FALSE(r.match("GET", "/images/json"));  // needs at least one segment before /json
}

TEST(Router, FirstAddedRouteWins) {
  Router r;
  r.add("GET", "/containers/json", returning(200));
  r.add("GET", "/containers/{id}", returning(299));
  EXPECT_EQ(call(*r.match("GET", "/containers/json")), 200u);
  EXPECT_EQ(call(*r.match("GET", "/containers/web")), 299u);
}

TEST(Router, RejectsMalformedPatterns) {
  Router r;
  EXPECT_THROW(r.add("GET", "version", returning(200)), std::invalid_argument);
  EXPECT_THROW(r.add("GET", "/a/{}", returning(200)), std::invalid_argument);
}

}  // namespace
}  // namespace berth::agent::api
