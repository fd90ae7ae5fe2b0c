// The S3 store: path-style requests over http::Client, signed with SigV4,
// responses parsed with pugixml.
#include <algorithm>
#include <ctime>
#include <sstream>

#include <fmt/format.h>
#include <pugixml.hpp>

#include "artifacts/artifacts.h"
#include "artifacts/internal.h"
#include "core/sha256.h"

namespace kervan::artifacts {
namespace {

using Query = std::vector<std::pair<std::string, std::string>>;

// Generous: a part or a whole small blob travels in one request.
constexpr auto kRequestTimeout = std::chrono::minutes(5);
constexpr int64_t kMaxParts = 10000;  // S3's limit per multipart upload

std::string AmzDate() {
  std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buf[32];
  size_t n = std::strftime(buf, sizeof buf, "%Y%m%dT%H%M%SZ", &tm);
  return std::string(buf, n);
}

std::string QueryString(const Query& query) {
  std::string out;
  for (const auto& [key, value] : query) {
    if (!out.empty())
      out += '&';
    out += UriEncode(key, true);
    out += '=';
    out += UriEncode(value, true);
  }
  return out;
}

// What an S3 error response says.
struct S3Fault {
  std::string code;  // "NoSuchKey"; derived from the status when the body has none
  std::string message;
  std::string request_id;
};

// The <Error> document in `body`, if it is one.
bool ParseError(std::string_view body, S3Fault* fault) {
  pugi::xml_document doc;
  if (body.empty() || !doc.load_buffer(body.data(), body.size()))
    return false;
  pugi::xml_node error = doc.child("Error");
  if (!error)
    return false;
  fault->code = error.child_value("Code");
  fault->message = error.child_value("Message");
  fault->request_id = error.child_value("RequestId");
  return !fault->code.empty();
}

S3Fault FaultOf(const http::ClientResponse& response) {
  S3Fault fault;
  if (ParseError(response.body, &fault))
    return fault;
  switch (response.status) {
    case 403:
      fault.code = "AccessDenied";
      break;
    case 404:
      fault.code = "NotFound";
      break;
    case 503:
      fault.code = "ServiceUnavailable";
      break;
    default:
      fault.code = fmt::format("HTTP{}", response.status);
  }
  return fault;
}

// An S3 failure of `operation` on `what` as a core error.
core::Error ErrorFor(std::string_view operation, std::string_view what, const S3Fault& fault,
                     int status) {
  std::string detail = fault.message.empty() ? fault.code : fault.code + ": " + fault.message;
  if (!fault.request_id.empty())
    detail += " (request id " + fault.request_id + ")";
  const std::string message =
      fmt::format("S3 {} of \"{}\" failed: {}", operation, internal::Printable(what), detail);
  const std::string& code = fault.code;
  if (code == "NoSuchKey" || code == "NotFound" || code == "NoSuchUpload")
    return core::NotFound(message);
  if (code == "NoSuchBucket") {
    return core::FailedPrecondition(message + "; the configured bucket does not exist");
  }
  if (code == "AccessDenied" || code == "InvalidAccessKeyId" || code == "SignatureDoesNotMatch" ||
      code == "RequestTimeTooSkewed" || code == "ExpiredToken") {
    return core::Internal(message + "; check the server's S3 credentials, region and clock");
  }
  if (code == "SlowDown" || code == "ServiceUnavailable" || code == "InternalError" ||
      status >= 500) {
    return core::Unavailable(message);
  }
  if (code == "EntityTooLarge")
    return {core::ErrorCode::kResourceExhausted, message, {}, nullptr};
  return core::Internal(message);
}

// "http://host[:port]" split for the client and the Host header.
struct Endpoint {
  std::string base;  // "http://host:port", what http::Client takes
  std::string host;  // the Host header: "host:port" ("[v6]:port")
};

Result<Endpoint> ParseEndpoint(std::string_view url) {
  auto bad = [&](std::string_view why) {
    return core::InvalidArgument(fmt::format("field \"artifacts.s3.endpoint\": {}, got \"{}\"", why,
                                             internal::Printable(url)),
                                 "artifacts.s3.endpoint");
  };
  if (url.starts_with("https://"))
    return bad("https is not supported yet (the HTTP client has no TLS); use http://");
  if (!url.starts_with("http://"))
    return bad("must be an http:// URL such as http://127.0.0.1:9000");
  std::string_view authority = url.substr(7);
  while (authority.ends_with("/"))
    authority.remove_suffix(1);
  if (authority.empty())
    return bad("has no host");
  if (authority.find_first_of("/?#@ ") != std::string_view::npos)
    return bad("must be scheme, host and port only (no path, query or user)");
  std::string_view host = authority;
  std::string_view port = "80";
  if (authority.front() == '[') {
    size_t close = authority.find(']');
    if (close == std::string_view::npos)
      return bad("has an unterminated IPv6 address");
    host = authority.substr(0, close + 1);
    std::string_view rest = authority.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':')
        return bad("expected :port after the IPv6 address");
      port = rest.substr(1);
    }
  } else if (size_t colon = authority.rfind(':'); colon != std::string_view::npos) {
    host = authority.substr(0, colon);
    port = authority.substr(colon + 1);
  }
  bool numeric = !port.empty() && port.size() <= 5 &&
                 std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; });
  if (host.empty() || host == "[]" || !numeric || std::stoi(std::string(port)) > 65535)
    return bad("needs a host and a port between 0 and 65535");
  Endpoint out;
  out.base = fmt::format("http://{}:{}", host, port);
  out.host = fmt::format("{}:{}", host, port);
  return out;
}

class S3Store final : public ArtifactStore {
 public:
  S3Store(S3Options options, Endpoint endpoint)
      : options_(std::move(options)), endpoint_(std::move(endpoint)), client_(endpoint_.base) {
    credentials_ = {options_.access_key, options_.secret_key, options_.region, "s3"};
  }

  std::string Describe() const override {
    return options_.prefix.empty() ? fmt::format("s3://{}", options_.bucket)
                                   : fmt::format("s3://{}/{}", options_.bucket, options_.prefix);
  }

  Status Put(std::string_view raw, std::string_view bytes) override {
    ASSIGN_OR_RETURN(std::string path, NormalizePath(raw));
    const std::string key = Key(path);
    if (static_cast<int64_t>(bytes.size()) > options_.multipart_threshold)
      return PutMultipart(key, bytes);
    ASSIGN_OR_RETURN(auto response, Call("PUT", ObjectPath(key), {}, std::string(bytes)));
    if (response.status != 200)
      return ErrorFor("PutObject", key, FaultOf(response), response.status);
    return core::Ok();
  }

  Result<std::string> Get(std::string_view raw) override {
    ASSIGN_OR_RETURN(std::string path, NormalizePath(raw));
    const std::string key = Key(path);
    ASSIGN_OR_RETURN(auto response, Call("GET", ObjectPath(key), {}, {}));
    if (response.status == 200)
      return std::move(response.body);
    core::Error error = ErrorFor("GetObject", key, FaultOf(response), response.status);
    if (error.code == core::ErrorCode::kNotFound) {
      // Say so when the path is a "directory" (a prefix of other keys).
      ASSIGN_OR_RETURN(auto page, ListPage(key + "/", "/", {}, 1));
      if (!page.keys.empty() || !page.prefixes.empty()) {
        return core::FailedPrecondition(
            fmt::format("artifact path \"{}\" is a directory; list it instead", path));
      }
      return core::NotFound(fmt::format("artifact \"{}\" does not exist", path));
    }
    return error;
  }

  Result<std::vector<FileInfo>> List(std::string_view raw) override {
    ASSIGN_OR_RETURN(std::string path, internal::NormalizeDir(raw, "path"));
    std::string prefix = Key(path);
    if (!prefix.empty())
      prefix += '/';
    std::vector<FileInfo> out;
    std::string token;
    for (;;) {
      ASSIGN_OR_RETURN(Page page, ListPage(prefix, "/", token, 0));
      for (const auto& [key, size] : page.keys) {
        std::string name = key.substr(prefix.size());
        if (internal::ValidSegment(name, path.empty()))  // "" is a directory marker
          out.push_back({name, false, size});
      }
      for (const std::string& common : page.prefixes) {
        std::string name = common.substr(prefix.size());
        if (!name.empty() && name.back() == '/')
          name.pop_back();
        if (internal::ValidSegment(name, path.empty()))
          out.push_back({name, true, 0});
      }
      if (!page.truncated)
        break;
      token = std::move(page.next_token);
    }
    std::sort(out.begin(), out.end(), [](const FileInfo& a, const FileInfo& b) {
      return a.path != b.path ? a.path < b.path : a.is_dir < b.is_dir;
    });
    return out;
  }

  Status Delete(std::string_view raw) override {
    ASSIGN_OR_RETURN(std::string path, NormalizePath(raw));
    const std::string key = Key(path);
    ASSIGN_OR_RETURN(auto head, Call("HEAD", ObjectPath(key), {}, {}));
    bool exists = head.status == 200;
    if (!exists && head.status != 404)
      return ErrorFor("HeadObject", key, FaultOf(head), head.status);
    // Everything below the path, all levels (no delimiter).
    std::vector<std::string> below;
    std::string token;
    for (;;) {
      ASSIGN_OR_RETURN(Page page, ListPage(key + "/", "", token, 0));
      for (auto& [child, size] : page.keys)
        below.push_back(std::move(child));
      if (!page.truncated)
        break;
      token = std::move(page.next_token);
    }
    if (!exists && below.empty())
      return core::NotFound(fmt::format("artifact \"{}\" does not exist", path));
    if (exists)
      below.push_back(key);
    for (const std::string& victim : below) {
      ASSIGN_OR_RETURN(auto response, Call("DELETE", ObjectPath(victim), {}, {}));
      if (response.status != 204 && response.status != 200 && response.status != 404)
        return ErrorFor("DeleteObject", victim, FaultOf(response), response.status);
    }
    return core::Ok();
  }

 private:
  struct Page {
    std::vector<std::pair<std::string, int64_t>> keys;
    std::vector<std::string> prefixes;
    bool truncated = false;
    std::string next_token;
  };

  std::string Key(const std::string& path) const {
    if (options_.prefix.empty())
      return path;
    return path.empty() ? options_.prefix : options_.prefix + "/" + path;
  }

  std::string BucketPath() const { return "/" + UriEncode(options_.bucket, true); }
  std::string ObjectPath(const std::string& key) const {
    return BucketPath() + "/" + UriEncode(key, false);
  }

  // Sends one signed request. Transport failures are errors; any HTTP
  // status is a response for the caller to judge.
  Result<http::ClientResponse> Call(const std::string& method, const std::string& path,
                                    const Query& query, std::string body,
                                    std::string content_type = "application/octet-stream") {
    const std::string date = AmzDate();
    SigV4Request request;
    request.method = method;
    request.path = path;
    request.query = query;
    request.payload_hash = core::Sha256Hex(body);
    request.headers = {{"Host", endpoint_.host},
                       {"x-amz-content-sha256", request.payload_hash},
                       {"x-amz-date", date}};
    http::HeaderList headers = request.headers;
    headers.emplace_back("Authorization", SigV4Authorization(request, credentials_, date));
    if (!body.empty())
      headers.emplace_back("Content-Type", std::move(content_type));
    std::string target = path;
    if (!query.empty())
      target += "?" + QueryString(query);
    auto response =
        client_.Send(method, target, std::move(body), std::move(headers),
                     std::chrono::duration_cast<std::chrono::milliseconds>(kRequestTimeout));
    if (!response) {
      core::Error error = std::move(response).error();
      error.message = fmt::format("S3 at {}: {}", endpoint_.base, error.message);
      return error;
    }
    return response;
  }

  // One ListObjectsV2 page of keys under `prefix`; `max_keys` 0 = S3's default.
  Result<Page> ListPage(const std::string& prefix, const std::string& delimiter,
                        const std::string& token, int max_keys) {
    Query query = {{"list-type", "2"}, {"prefix", prefix}};
    if (!delimiter.empty())
      query.emplace_back("delimiter", delimiter);
    if (!token.empty())
      query.emplace_back("continuation-token", token);
    if (max_keys > 0)
      query.emplace_back("max-keys", std::to_string(max_keys));
    ASSIGN_OR_RETURN(auto response, Call("GET", BucketPath(), query, {}));
    if (response.status != 200)
      return ErrorFor("ListObjectsV2", prefix, FaultOf(response), response.status);
    pugi::xml_document doc;
    pugi::xml_node result;
    if (doc.load_buffer(response.body.data(), response.body.size()))
      result = doc.child("ListBucketResult");
    if (!result) {
      return core::Internal(
          fmt::format("S3 ListObjectsV2 of \"{}\": the answer is not a ListBucketResult document",
                      internal::Printable(prefix)));
    }
    Page page;
    for (pugi::xml_node contents : result.children("Contents")) {
      std::string key = contents.child_value("Key");
      if (key.size() < prefix.size() || key.compare(0, prefix.size(), prefix) != 0)
        continue;
      page.keys.emplace_back(std::move(key), contents.child("Size").text().as_llong(0));
    }
    for (pugi::xml_node common : result.children("CommonPrefixes")) {
      std::string p = common.child_value("Prefix");
      if (p.size() > prefix.size() && p.compare(0, prefix.size(), prefix) == 0)
        page.prefixes.push_back(std::move(p));
    }
    page.truncated = std::string_view(result.child_value("IsTruncated")) == "true";
    page.next_token = result.child_value("NextContinuationToken");
    if (page.truncated && page.next_token.empty()) {
      return core::Internal(
          fmt::format("S3 ListObjectsV2 of \"{}\": truncated page without a continuation token",
                      internal::Printable(prefix)));
    }
    return page;
  }

  Status PutMultipart(const std::string& key, std::string_view bytes) {
    const std::string path = ObjectPath(key);
    ASSIGN_OR_RETURN(auto created, Call("POST", path, {{"uploads", ""}}, {}));
    if (created.status != 200)
      return ErrorFor("CreateMultipartUpload", key, FaultOf(created), created.status);
    pugi::xml_document doc;
    std::string upload_id;
    if (doc.load_buffer(created.body.data(), created.body.size()))
      upload_id = doc.child("InitiateMultipartUploadResult").child_value("UploadId");
    if (upload_id.empty()) {
      return core::Internal(
          fmt::format("S3 CreateMultipartUpload of \"{}\": the answer has no UploadId",
                      internal::Printable(key)));
    }
    Status uploaded = UploadParts(key, path, upload_id, bytes);
    if (!uploaded) {
      // Best effort: the parts would otherwise be kept (and billed) by S3.
      auto aborted = Call("DELETE", path, {{"uploadId", upload_id}}, {});
      (void)aborted;
    }
    return uploaded;
  }

  Status UploadParts(const std::string& key, const std::string& path, const std::string& upload_id,
                     std::string_view bytes) {
    const auto size = static_cast<int64_t>(bytes.size());
    const int64_t part_size = std::max(options_.part_size, (size + kMaxParts - 1) / kMaxParts);
    pugi::xml_document complete;
    pugi::xml_node parts = complete.append_child("CompleteMultipartUpload");
    int number = 1;
    for (int64_t offset = 0; offset < size; offset += part_size, ++number) {
      std::string part(bytes.substr(static_cast<size_t>(offset), static_cast<size_t>(part_size)));
      ASSIGN_OR_RETURN(
          auto response,
          Call("PUT", path, {{"partNumber", std::to_string(number)}, {"uploadId", upload_id}},
               std::move(part)));
      if (response.status != 200) {
        return ErrorFor(fmt::format("UploadPart {}", number), key, FaultOf(response),
                        response.status);
      }
      std::string etag = response.Header("etag");
      if (etag.empty()) {
        return core::Internal(fmt::format("S3 UploadPart {} of \"{}\": the answer has no ETag",
                                          number, internal::Printable(key)));
      }
      pugi::xml_node part_node = parts.append_child("Part");
      part_node.append_child("PartNumber").text().set(number);
      part_node.append_child("ETag").text().set(etag.c_str());
    }
    std::ostringstream xml;
    complete.save(xml, "", pugi::format_raw);
    ASSIGN_OR_RETURN(auto response,
                     Call("POST", path, {{"uploadId", upload_id}}, xml.str(), "application/xml"));
    // CompleteMultipartUpload can fail with status 200 and an <Error> body.
    S3Fault fault;
    if (response.status != 200 || ParseError(response.body, &fault)) {
      return ErrorFor("CompleteMultipartUpload", key,
                      response.status != 200 ? FaultOf(response) : fault, response.status);
    }
    return core::Ok();
  }

  const S3Options options_;
  const Endpoint endpoint_;
  const http::Client client_;
  SigV4Credentials credentials_;
};

}  // namespace

Result<std::unique_ptr<ArtifactStore>> OpenS3(S3Options options) {
  ASSIGN_OR_RETURN(Endpoint endpoint, ParseEndpoint(options.endpoint));
  if (options.bucket.empty())
    return core::InvalidArgument("field \"artifacts.s3.bucket\": must not be empty",
                                 "artifacts.s3.bucket");
  if (options.bucket.find('/') != std::string::npos) {
    return core::InvalidArgument(
        fmt::format("field \"artifacts.s3.bucket\": must be a bucket name without '/', got \"{}\"",
                    internal::Printable(options.bucket)),
        "artifacts.s3.bucket");
  }
  if (options.region.empty())
    return core::InvalidArgument("field \"artifacts.s3.region\": must not be empty",
                                 "artifacts.s3.region");
  if (options.access_key.empty() || options.secret_key.empty()) {
    return core::InvalidArgument(
        "S3 credentials are missing: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
        "artifacts.s3.access_key");
  }
  if (!options.prefix.empty()) {
    ASSIGN_OR_RETURN(options.prefix, NormalizePath(options.prefix, "artifacts.s3.prefix"));
  }
  if (options.multipart_threshold <= 0 || options.part_size <= 0) {
    return core::InvalidArgument(
        fmt::format("S3 multipart_threshold and part_size must be positive, got {} and {}",
                    options.multipart_threshold, options.part_size),
        "artifacts.s3.part_size");
  }
  return std::unique_ptr<ArtifactStore>(new S3Store(std::move(options), std::move(endpoint)));
}

}  // namespace kervan::artifacts
