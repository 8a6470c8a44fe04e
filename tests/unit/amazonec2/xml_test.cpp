// XML answers of the EC2 Query API: real samples, both error roots.
#include "drivers/cloud/amazonec2/xml.h"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "drivers/cloud/amazonec2/ec2_client.h"

namespace berth::cloud {
namespace {

std::string sample(const std::string& name) {
  std::ifstream in(std::string(BERTH_EC2_SAMPLES) + "/" + name, std::ios::binary);
  if (!in) throw std::runtime_error("missing sample " + name);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

TEST(Ec2Xml, DescribeInstancesSampleFromTheApiReference) {
  auto doc = xml::Document::parse(sample("describe_instances.xml"), "test");
  EXPECT_EQ(doc.root().name(), "DescribeInstancesResponse");
  EXPECT_EQ(doc.root().ns(), "http://ec2.amazonaws.com/doc/2016-11-15/");
  auto instances = ec2::parse_instances(doc.root());
  ASSERT_EQ(instances.size(), 1u);
  EXPECT_EQ(instances[0].id, "i-1234567890abcdef0");
  EXPECT_EQ(instances[0].state, "running");
  EXPECT_EQ(instances[0].public_ip, "54.194.252.215");
  EXPECT_EQ(instances[0].private_ip, "192.168.1.88");
  EXPECT_EQ(instances[0].security_group_ids, std::vector<std::string>{"sg-e4076980"});
  ASSERT_EQ(instances[0].tags.size(), 1u);
  EXPECT_EQ(instances[0].tags[0], std::make_pair(std::string("Name"), std::string("Server_1")));
}

TEST(Ec2Xml, RunInstancesSample) {
  auto doc = xml::Document::parse(sample("run_instances.xml"), "test");
  auto instances = ec2::parse_instances(doc.root());
  ASSERT_EQ(instances.size(), 1u);
  EXPECT_EQ(instances[0].id, "i-1234567890abcdef0");
  EXPECT_EQ(instances[0].state, "pending");
  EXPECT_EQ(instances[0].public_ip, "");
  EXPECT_EQ(instances[0].tags.size(), 2u);
}

TEST(Ec2Xml, ResponseErrorsRootGivesCodeMessageAndRequestId) {
  ApiError e = ec2::parse_error(400, sample("error_response_errors.xml"), "DescribeInstances", "machine 'dev'");
  EXPECT_EQ(e.status(), 400);
  EXPECT_EQ(e.code(), "InvalidInstanceID.NotFound");
  EXPECT_EQ(e.request_id(), "ea966190-f9aa-478e-9ede-example");
  EXPECT_EQ(std::string(e.what()),
            "machine 'dev': EC2 DescribeInstances failed with HTTP 400: The instance ID 'i-1a2b3c4d' does not exist "
            "(InvalidInstanceID.NotFound, request id ea966190-f9aa-478e-9ede-example)");
}

TEST(Ec2Xml, ErrorResponseRootGivesCodeMessageAndRequestId) {
  ApiError e = ec2::parse_error(403, sample("error_response_errorresponse.xml"), "RunInstances", "machine 'dev'");
  EXPECT_EQ(e.code(), "SignatureDoesNotMatch");
  EXPECT_EQ(e.request_id(), "4e73bdc4-5bcd-4a0f-9f79-example");
  EXPECT_NE(std::string(e.what()).find("The request signature we calculated does not match"), std::string::npos);
  EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos);
}

TEST(Ec2Xml, MotosErrorResponseWithErrorsIsUnderstoodToo) {
  ApiError e =
      ec2::parse_error(401,
                       "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<ErrorResponse><Errors><Error><Code>AuthFailure"
                       "</Code><Message>AWS was not able to validate the provided access credentials</Message>"
                       "<Type>Sender</Type></Error></Errors></ErrorResponse>",
                       "CreateSecurityGroup", "machine 'dev'");
  EXPECT_EQ(e.code(), "AuthFailure");
  EXPECT_EQ(std::string(e.what()),
            "machine 'dev': EC2 CreateSecurityGroup failed with HTTP 401: AWS was not able to validate the provided "
            "access credentials (AuthFailure)");
}

TEST(Ec2Xml, NonXmlErrorBodyStillMakesAOneLineError) {
  ApiError e = ec2::parse_error(502, "<html>\n<body>Bad Gateway</body>", "RunInstances", "machine 'dev'");
  EXPECT_EQ(e.status(), 502);
  EXPECT_EQ(e.code(), "");
  EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos);
  EXPECT_NE(std::string(e.what()).find("HTTP 502"), std::string::npos);
  ApiError empty = ec2::parse_error(503, "", "DescribeInstances", "machine 'dev'");
  EXPECT_NE(std::string(empty.what()).find("no details"), std::string::npos);
}

TEST(Ec2Xml, TruncatedXmlIsAnError) {
  EXPECT_THROW(xml::Document::parse("<DescribeInstancesResponse><reservationSet>", "test"), DriverError);
  EXPECT_THROW(xml::Document::parse("", "test"), DriverError);
}

TEST(Ec2Xml, LookupsAreNamespaceAware) {
  auto doc = xml::Document::parse("<r xmlns='urn:a'><x>inner</x><b:x xmlns:b='urn:b'>other</b:x><y><z>deep</z></y></r>",
                                  "test");
  EXPECT_EQ(doc.root().text_at("x"), "inner");
  EXPECT_EQ(doc.root().children("x").size(), 1u);  // urn:b's x is someone else's element
  EXPECT_EQ(doc.root().text_at("y/z"), "deep");
  EXPECT_FALSE(doc.root().path("y/missing/z"));
  EXPECT_EQ(doc.root().text_at("y/missing"), "");
  EXPECT_EQ(doc.root().descendants("z").size(), 1u);
}

TEST(Ec2Xml, EntitiesAreNotExpandedFromOutside) {
  // An external entity must not be fetched or read.
  auto doc = xml::Document::parse(
      "<?xml version='1.0'?><!DOCTYPE r [<!ENTITY e SYSTEM 'file:///etc/passwd'>]><r><a>&e;</a></r>", "test");
  EXPECT_EQ(doc.root().text_at("a").find("root:"), std::string::npos);
}

TEST(Ec2Form, BodyIsEncodedOnce) {
  EXPECT_EQ(ec2::form_body("RunInstances", {{"TagSpecification.1.Tag.1.Value", "a b/c=d&e+"}}),
            "Action=RunInstances&Version=2016-11-15&TagSpecification.1.Tag.1.Value=a+b%2Fc%3Dd%26e%2B");
}

}  // namespace
}  // namespace berth::cloud
