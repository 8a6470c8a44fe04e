// SigV4 against AWS's published test suite (vectors/): the canonical request,
// the string to sign and the Authorization header, each checked on its own.
#include "drivers/cloud/amazonec2/sigv4.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

namespace berth::cloud::sigv4 {
namespace {

namespace fs = std::filesystem;

const Credentials kSuiteCreds{"AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", ""};

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + p.string());
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

struct Req {
  std::string method, target, body;
  Headers headers;
};

// "METHOD TARGET HTTP/1.1", header lines, a blank line, the body.
Req parse_req(const std::string& text) {
  Req r;
  const size_t eol = text.find('\n');
  const std::string first = text.substr(0, eol);
  r.method = first.substr(0, first.find(' '));
  r.target = first.substr(r.method.size() + 1, first.rfind(" HTTP/") - r.method.size() - 1);
  size_t pos = eol == std::string::npos ? text.size() : eol + 1;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(pos, end - pos);
    pos = end + 1;
    if (line.empty()) {
      r.body = pos < text.size() ? text.substr(pos) : "";
      break;
    }
    const size_t colon = line.find(':');
    r.headers.emplace_back(line.substr(0, colon), line.substr(colon + 1));
  }
  return r;
}

struct Vector {
  std::string name;
  fs::path base;     // without extension
  std::string date;  // amz date of the suite
  std::string service;
};

std::vector<Vector> all_vectors() {
  std::vector<Vector> out;
  const fs::path dir = BERTH_SIGV4_VECTORS;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (!e.is_directory()) continue;
    if (e.path().filename() == "2011") {
      for (const auto& f : fs::directory_iterator(e.path()))
        if (f.path().extension() == ".req")
          out.push_back({"2011-" + f.path().stem().string(), f.path().parent_path() / f.path().stem(),
                         "20110909T233600Z", "host"});
    } else {
      const std::string n = e.path().filename().string();
      out.push_back({n, e.path() / n, "20150830T123600Z", "service"});
    }
  }
  std::sort(out.begin(), out.end(), [](const Vector& a, const Vector& b) { return a.name < b.name; });
  return out;
}

void PrintTo(const Vector& v, std::ostream* os) { *os << v.name; }

class SuiteVector : public ::testing::TestWithParam<Vector> {};

TEST_P(SuiteVector, CanonicalRequestStringToSignAndAuthorizationMatchTheSuite) {
  const Vector& v = GetParam();
  const Req req = parse_req(slurp(v.base.string() + ".req"));
  const Signed s = sign(req.method, req.target, req.headers, req.body, kSuiteCreds, "us-east-1", v.service, v.date);
  EXPECT_EQ(s.canonical_request, slurp(v.base.string() + ".creq")) << v.name;
  EXPECT_EQ(s.string_to_sign, slurp(v.base.string() + ".sts")) << v.name;
  EXPECT_EQ(s.authorization, slurp(v.base.string() + ".authz")) << v.name;
}

INSTANTIATE_TEST_SUITE_P(Aws, SuiteVector, ::testing::ValuesIn(all_vectors()),
                         [](const ::testing::TestParamInfo<Vector>& i) {
                           std::string n = i.param.name;
                           for (char& c : n)
                             if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
                           return n;
                         });

TEST(SigV4Suite, HasTheCasesTheDriverReliesOn) {
  std::set<std::string> names;
  for (const auto& v : all_vectors()) names.insert(v.name);
  for (const char* n :
       {"get-vanilla", "get-vanilla-query-order-key-case", "post-x-www-form-urlencoded", "post-vanilla-query",
        "get-utf8", "get-space", "post-header-key-case", "post-sts-header-before"})
    EXPECT_TRUE(names.count(n)) << n;
}

std::chrono::system_clock::time_point suite_time() { return std::chrono::system_clock::from_time_t(1440938160); }

// The whole path the driver takes: an HttpRequest signed in place.
TEST(SignRequest, SignsAFormPostLikeTheSuiteVector) {
  HttpRequest r;
  r.method = "POST";
  r.url = "https://example.amazonaws.com/";
  r.headers = {{"Content-Type", "application/x-www-form-urlencoded"}};
  r.body = "Param1=value1";
  sign_request(r, kSuiteCreds, "us-east-1", "service", suite_time());
  HttpResponse view{0, r.headers, ""};
  EXPECT_EQ(view.header("Host"), "example.amazonaws.com");
  EXPECT_EQ(view.header("X-Amz-Date"), "20150830T123600Z");
  EXPECT_EQ(view.header("Authorization"),
            slurp(std::string(BERTH_SIGV4_VECTORS) + "/post-x-www-form-urlencoded/post-x-www-form-urlencoded.authz"));
}

TEST(SignRequest, ResigningReplacesTheOldSignatureAndDate) {
  HttpRequest r;
  r.method = "GET";
  r.url = "https://example.amazonaws.com";
  sign_request(r, kSuiteCreds, "us-east-1", "service", suite_time() - std::chrono::hours(1));
  sign_request(r, kSuiteCreds, "us-east-1", "service", suite_time());
  int authorizations = 0, dates = 0, hosts = 0;
  for (const auto& [k, v] : r.headers) {
    authorizations += k == "Authorization";
    dates += k == "X-Amz-Date";
    hosts += k == "Host";
  }
  EXPECT_EQ(authorizations, 1);
  EXPECT_EQ(dates, 1);
  EXPECT_EQ(hosts, 1);
  HttpResponse view{0, r.headers, ""};
  EXPECT_EQ(view.header("Authorization"), slurp(std::string(BERTH_SIGV4_VECTORS) + "/get-vanilla/get-vanilla.authz"));
}

TEST(SignRequest, SignsTheSessionToken) {
  HttpRequest r;
  r.method = "POST";
  r.url = "https://example.amazonaws.com/";
  Credentials c = kSuiteCreds;
  c.session_token =
      "AQoDYXdzEPT//////////wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWsKWHGBuFqwAeMicRXmxfpSPfIeoIYRqTfl"
      "fKD8YUuwthAx7mSEI/qkPpKPi/kMcGdQrmGdeehM4IC1NtBmUpp2wUE8phUZampKsburEDy0KPkyQDYwT7WZ0wq5VSXDvp75YU9HFvlRd8Tx"
      "6q6fE8YQcHNVXAkiY9q6d+xo0rKwT38xVqr7ZD0u0iPPkUL64lIZbqBAz+scqKmlzm8FDrypNC9Yjc8fPOLn9FX9KSYvKTr4rvx3iSIlTJabIQ"
      "wj2ICCR/oLxBA==";
  sign_request(r, c, "us-east-1", "service", suite_time());
  HttpResponse view{0, r.headers, ""};
  EXPECT_EQ(view.header("X-Amz-Security-Token"), c.session_token);
  EXPECT_EQ(view.header("Authorization"),
            slurp(std::string(BERTH_SIGV4_VECTORS) + "/post-sts-header-before/post-sts-header-before.authz"));
}

TEST(SignRequest, HostCarriesANonDefaultPort) {
  EXPECT_EQ(url_authority("http://127.0.0.1:5000/"), "127.0.0.1:5000");
  EXPECT_EQ(url_authority("https://ec2.us-east-1.amazonaws.com"), "ec2.us-east-1.amazonaws.com");
  EXPECT_EQ(url_authority("https://EC2.example.com:443/x"), "ec2.example.com");
  EXPECT_EQ(url_authority("http://[::1]:8080"), "[::1]:8080");
}

TEST(Primitives, HmacAndHashMatchKnownValues) {
  EXPECT_EQ(sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  // RFC 4231 test case 2.
  EXPECT_EQ(to_hex(hmac_sha256("Jefe", "what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  EXPECT_EQ(amz_date(suite_time()), "20150830T123600Z");
}

TEST(Canonical, QueryIsSortedAndEncodedOnce) {
  EXPECT_EQ(canonical_query("b=2&a=1&a=0"), "a=0&a=1&b=2");
  EXPECT_EQ(canonical_query("k=a%20b&x=%2F"), "k=a%20b&x=%2F");
  EXPECT_EQ(canonical_query("flag"), "flag=");
  EXPECT_EQ(canonical_uri("/a/./b/../c//"), "/a/c/");
  EXPECT_EQ(canonical_uri(""), "/");
}

}  // namespace
}  // namespace berth::cloud::sigv4
