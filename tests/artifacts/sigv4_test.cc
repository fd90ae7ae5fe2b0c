// SigV4 against AWS's published vectors: the Signature Version 4 test suite
// (AKIDEXAMPLE, 20150830T123600Z, us-east-1, service "service") and the
// worked examples of the S3 API reference ("Signature Calculations for the
// Authorization Header", AKIAIOSFODNN7EXAMPLE, 20130524T000000Z).
#include <gtest/gtest.h>

#include "artifacts/artifacts.h"
#include "core/sha256.h"

namespace kervan::artifacts {
namespace {

constexpr char kEmptyHash[] = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
constexpr char kSuiteDate[] = "20150830T123600Z";

SigV4Credentials SuiteCredentials() {
  return {"AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "us-east-1", "service"};
}

SigV4Request SuiteRequest(std::string method, std::string path,
                          std::vector<std::pair<std::string, std::string>> query = {},
                          http::HeaderList extra = {}) {
  SigV4Request r;
  r.method = std::move(method);
  r.path = std::move(path);
  r.query = std::move(query);
  r.headers = {{"Host", "example.amazonaws.com"}, {"X-Amz-Date", kSuiteDate}};
  for (auto& h : extra)
    r.headers.push_back(std::move(h));
  r.payload_hash = kEmptyHash;
  return r;
}

std::string SuiteAuthorization(std::string_view signed_headers, std::string_view signature) {
  return "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
         "SignedHeaders=" +
         std::string(signed_headers) + ", Signature=" + std::string(signature);
}

struct SuiteCase {
  const char* name;
  SigV4Request request;
  const char* signed_headers;
  const char* signature;
};

TEST(SigV4, MatchesTheAwsTestSuite) {
  SigV4Request form =
      SuiteRequest("POST", "/", {}, {{"Content-Type", "application/x-www-form-urlencoded"}});
  form.payload_hash = core::Sha256Hex("Param1=value1");
  const SuiteCase cases[] = {
      {"get-vanilla", SuiteRequest("GET", "/"), "host;x-amz-date",
       "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"},
      {"post-vanilla", SuiteRequest("POST", "/"), "host;x-amz-date",
       "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"},
      {"get-vanilla-empty-query-key", SuiteRequest("GET", "/", {{"Param1", "value1"}}),
       "host;x-amz-date", "a67d582fa61cc504c4bae71f336f98b97f1ea3c7a6bfe1b6e45aec72011b9aeb"},
      {"get-vanilla-query-order-key",
       SuiteRequest("GET", "/", {{"Param1", "value2"}, {"Param1", "Value1"}}), "host;x-amz-date",
       "eedbc4e291e521cf13422ffca22be7d2eb8146eecf653089df300a15b2382bd1"},
      {"get-vanilla-query-order-key-case",
       SuiteRequest("GET", "/", {{"Param2", "value2"}, {"Param1", "value1"}}), "host;x-amz-date",
       "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"},
      {"get-vanilla-query-order-value",
       SuiteRequest("GET", "/", {{"Param1", "value2"}, {"Param1", "value1"}}), "host;x-amz-date",
       "5772eed61e12b33fae39ee5e7012498b51d56abc0abb7c60486157bd471c4694"},
      {"get-vanilla-query-unreserved",
       SuiteRequest("GET", "/",
                    {{"-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
                      "-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"}}),
       "host;x-amz-date", "9c3e54bfcdf0b19771a7f523ee5669cdf59bc7cc0884027167c21bb143a40197"},
      {"get-vanilla-utf8-query", SuiteRequest("GET", "/", {{"\xE1\x88\xB4", "bar"}}),
       "host;x-amz-date", "2cdec8eed098649ff3a119c94853b13c643bcf08f8b0a1d91e12c9027818dd04"},
      {"get-unreserved",
       SuiteRequest("GET", "/-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"),
       "host;x-amz-date", "07ef7494c76fa4850883e2b006601f940f8a34d404d0cfa977f52a65bbf5f24f"},
      // The path as sent: "ሴ" encoded once.
      {"get-utf8", SuiteRequest("GET", "/" + UriEncode("\xE1\x88\xB4", false)), "host;x-amz-date",
       "8318018e0b0f223aa2bbf98705b62bb787dc9c0e678f255a891fd03141be5d85"},
      {"get-header-key-duplicate",
       SuiteRequest("GET", "/", {},
                    {{"My-Header1", "value2"}, {"My-Header1", "value2"}, {"My-Header1", "value1"}}),
       "host;my-header1;x-amz-date",
       "c9d5ea9f3f72853aea855b47ea873832890dbdd183b4468f858259531a5138ea"},
      {"get-header-value-trim",
       SuiteRequest("GET", "/", {}, {{"My-Header1", " value1"}, {"My-Header2", " \"a   b   c\""}}),
       "host;my-header1;my-header2;x-amz-date",
       "acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736"},
      {"post-x-www-form-urlencoded", form, "content-type;host;x-amz-date",
       "ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a"},
  };
  for (const SuiteCase& c : cases) {
    EXPECT_EQ(SigV4Authorization(c.request, SuiteCredentials(), kSuiteDate),
              SuiteAuthorization(c.signed_headers, c.signature))
        << c.name << "\ncanonical request:\n"
        << SigV4CanonicalRequest(c.request);
  }
}

TEST(SigV4, CanonicalRequestMatchesTheSuitesForm) {
  // get-vanilla-query-order-key: repeated keys sort by value, byte order.
  SigV4Request r = SuiteRequest("GET", "/", {{"Param1", "value2"}, {"Param1", "Value1"}});
  EXPECT_EQ(SigV4CanonicalRequest(r),
            "GET\n/\nParam1=Value1&Param1=value2\nhost:example.amazonaws.com\n"
            "x-amz-date:20150830T123600Z\n\nhost;x-amz-date\n" +
                std::string(kEmptyHash));
  // post-x-www-form-urlencoded: the string to sign hashes this.
  SigV4Request form =
      SuiteRequest("POST", "/", {}, {{"Content-Type", "application/x-www-form-urlencoded"}});
  form.payload_hash = core::Sha256Hex("Param1=value1");
  EXPECT_EQ(core::Sha256Hex(SigV4CanonicalRequest(form)),
            "42a5e5bb34198acb3e84da4f085bb7927f2bc277ca766e6d19c73c2154021281");
}

// The S3 API reference's examples: these also cover x-amz-content-sha256,
// S3's single URI encoding of the key and the "s3" service scope.
class SigV4S3Example : public ::testing::Test {
 protected:
  static constexpr char kDate[] = "20130524T000000Z";
  SigV4Credentials credentials_{"AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                                "us-east-1", "s3"};
  static std::string Signature(const std::string& authorization) {
    return authorization.substr(authorization.rfind('=') + 1);
  }
};

TEST_F(SigV4S3Example, GetObject) {
  SigV4Request r;
  r.method = "GET";
  r.path = "/test.txt";
  r.headers = {{"Host", "examplebucket.s3.amazonaws.com"},
               {"Range", "bytes=0-9"},
               {"x-amz-content-sha256", kEmptyHash},
               {"x-amz-date", kDate}};
  r.payload_hash = kEmptyHash;
  EXPECT_EQ(SigV4Authorization(r, credentials_, kDate),
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
            "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
            "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
}

TEST_F(SigV4S3Example, PutObjectWithAnEncodedKey) {
  const std::string hash = core::Sha256Hex("Welcome to Amazon S3.");
  ASSERT_EQ(hash, "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072");
  SigV4Request r;
  r.method = "PUT";
  r.path = "/" + UriEncode("test$file.text", false);
  EXPECT_EQ(r.path, "/test%24file.text");
  r.headers = {{"Host", "examplebucket.s3.amazonaws.com"},
               {"Date", "Fri, 24 May 2013 00:00:00 GMT"},
               {"x-amz-content-sha256", hash},
               {"x-amz-date", kDate},
               {"x-amz-storage-class", "REDUCED_REDUNDANCY"}};
  r.payload_hash = hash;
  std::string authorization = SigV4Authorization(r, credentials_, kDate);
  EXPECT_NE(authorization.find(
                "SignedHeaders=date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class,"),
            std::string::npos);
  EXPECT_EQ(Signature(authorization),
            "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd");
}

TEST_F(SigV4S3Example, ListObjectsWithAQuery) {
  SigV4Request r;
  r.method = "GET";
  r.path = "/";
  r.query = {{"prefix", "J"}, {"max-keys", "2"}};
  r.headers = {{"Host", "examplebucket.s3.amazonaws.com"},
               {"x-amz-content-sha256", kEmptyHash},
               {"x-amz-date", kDate}};
  r.payload_hash = kEmptyHash;
  EXPECT_EQ(Signature(SigV4Authorization(r, credentials_, kDate)),
            "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7");
}

TEST(SigV4, UriEncodeKeepsOnlyUnreservedCharacters) {
  EXPECT_EQ(UriEncode("a b+c/d", false), "a%20b%2Bc/d");
  EXPECT_EQ(UriEncode("a b+c/d", true), "a%20b%2Bc%2Fd");
  EXPECT_EQ(UriEncode("A-z_0.9~", true), "A-z_0.9~");
  EXPECT_EQ(UriEncode("100%=&?#", true), "100%25%3D%26%3F%23");
  EXPECT_EQ(UriEncode("\xD0\xBA", false), "%D0%BA");
}

TEST(SigV4, AnyChangeToTheRequestChangesTheSignature) {
  const SigV4Request base = SuiteRequest("GET", "/");
  const std::string signature = SigV4Authorization(base, SuiteCredentials(), kSuiteDate);
  SigV4Request other_path = base;
  other_path.path = "/x";
  SigV4Request other_hash = base;
  other_hash.payload_hash = core::Sha256Hex("x");
  SigV4Credentials other_secret = SuiteCredentials();
  other_secret.secret_key += "x";
  EXPECT_NE(SigV4Authorization(other_path, SuiteCredentials(), kSuiteDate), signature);
  EXPECT_NE(SigV4Authorization(other_hash, SuiteCredentials(), kSuiteDate), signature);
  EXPECT_NE(SigV4Authorization(base, other_secret, kSuiteDate), signature);
  EXPECT_NE(SigV4Authorization(base, SuiteCredentials(), "20150831T123600Z"), signature);
}

}  // namespace
}  // namespace kervan::artifacts
