// artifacts: where run and model files live. An ArtifactStore holds blobs
// under relative paths ("1/<run_id>/artifacts/model/MLmodel"); the backends
// are a local directory (OpenLocal) and an S3-compatible bucket (OpenS3),
// chosen by app/ wiring. RegisterRoutes serves a store over MLflow's
// artifact proxy API (`mlflow server --serve-artifacts`), so the standard
// MLflow client can upload, list, download and delete through Kervan.
//
// Every path that comes from a client goes through NormalizePath, and the
// local store additionally never follows a symbolic link, so no request can
// read or write outside the store's root.
//
// artifacts depends only on http (router, client) and core; it knows nothing
// of runs or projects: the caller's RouteOptions::authorize maps a path to
// whatever it guards. This is the module's one public header.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/result.h"
#include "http/http.h"

namespace kervan::artifacts {

using core::Result;
using core::Status;

// One entry of a listing.
struct FileInfo {
  std::string path;  // relative to the listed directory: "model.pkl", "model"
  bool is_dir = false;
  int64_t size = 0;  // bytes; 0 for directories
};

// A store of blobs addressed by normalised relative paths ("a/b/c.txt", see
// NormalizePath). Directories are implicit: they exist while something is
// stored below them. Paths are validated again by every method, so a caller
// cannot escape the store by skipping NormalizePath. Implementations are
// thread-safe; concurrent writers of one path leave one whole blob (the last
// to finish), never a mix.
class ArtifactStore {
 public:
  virtual ~ArtifactStore() = default;

  // Where the blobs live, for logs and docs: "file:/var/lib/kervan/artifacts",
  // "s3://bucket/prefix" (never credentials).
  virtual std::string Describe() const = 0;

  // Stores `bytes` at `path`, creating parent directories and replacing a
  // blob already there; readers see the old or the new blob, never a part.
  // kInvalidArgument for a bad path. Local store: kFailedPrecondition when a
  // directory occupies `path` or a file or link one of its parents (an S3
  // bucket lets a key and a prefix of the same name coexist).
  virtual Status Put(std::string_view path, std::string_view bytes) = 0;

  // The blob at `path`. kNotFound when there is none; kFailedPrecondition
  // when `path` is a directory or (local store) a link or special file.
  virtual Result<std::string> Get(std::string_view path) = 0;

  // The immediate children of directory `dir` ("" = the root), sorted by
  // path. A missing directory (or a file) lists as empty.
  virtual Result<std::vector<FileInfo>> List(std::string_view dir) = 0;

  // Removes the blob at `path`, or the directory `path` with everything
  // below it. kNotFound when nothing is there. The root cannot be deleted.
  virtual Status Delete(std::string_view path) = 0;
};

// Validates a client-supplied relative path and returns its normal form
// (segments joined by single '/', no trailing '/'), or kInvalidArgument
// naming `field` and what is wrong. Refused:
//   - empty paths, paths over 1024 bytes, more than 48 segments, or a
//     segment over 255 bytes;
//   - absolute paths ("/etc/passwd", "//host/x"), Windows drive letters and
//     URI schemes ("C:/x", "file:///x": a ':' in the first segment);
//   - "." and ".." segments and empty segments ("a//b"); one trailing '/'
//     is allowed and dropped;
//   - backslashes, NUL and other control characters, '#' and '?' (fragment
//     and query tricks), and invalid UTF-8;
//   - percent escapes that would still mean something dangerous after one
//     more decoding: "%2e", "%2f", "%5c", "%25", "%00".."%1f", "%7f" (in any
//     case), so a traversal cannot hide behind double encoding.
// The input is taken as already decoded once (by the router or query parser).
Result<std::string> NormalizePath(std::string_view raw, std::string_view field = "path");

// A store in the directory `root`, created (with parents) if missing. The
// root itself may be a symbolic link; below it the store never follows one:
// a link planted inside the root is neither read through, written through
// nor listed. Writes go to a temporary file in the target directory and are
// renamed into place after fsync.
Result<std::unique_ptr<ArtifactStore>> OpenLocal(std::filesystem::path root);

struct S3Options {
  std::string endpoint;  // "http://127.0.0.1:9000" (http only for now; path-style requests)
  std::string region = "us-east-1";
  std::string bucket;
  std::string prefix;  // key prefix inside the bucket, "" or e.g. "kervan/artifacts"
  std::string access_key;
  std::string secret_key;
  // Blobs larger than this are uploaded in parts of part_size bytes
  // (CreateMultipartUpload / UploadPart / CompleteMultipartUpload; the
  // upload is aborted when a step fails). AWS requires parts of at least
  // 5 MiB except the last; smaller values are for tests against fakes.
  int64_t multipart_threshold = int64_t{8} << 20;
  int64_t part_size = int64_t{8} << 20;
};

// A store in an S3-compatible bucket. Keys are "<prefix>/<path>"; requests
// are path-style (endpoint/bucket/key) and signed with AWS Signature
// Version 4 (service "s3"), with x-amz-content-sha256 set to the payload's
// hash. S3 errors become core errors naming the operation, key and S3 code:
// NoSuchKey -> kNotFound, NoSuchBucket -> kFailedPrecondition, refused
// credentials -> kInternal (the server's configuration, not the caller's
// permissions), throttling and 5xx -> kUnavailable. Listing uses
// ListObjectsV2 with delimiter "/" and follows continuation tokens; Delete
// of a directory deletes every object under it one by one. No request is
// sent here: a wrong endpoint or bucket shows on first use.
// kInvalidArgument for an unusable endpoint, an empty bucket or keys, a
// prefix that NormalizePath refuses, or non-positive sizes.
Result<std::unique_ptr<ArtifactStore>> OpenS3(S3Options options);

// ---------------------------------------------------------------------------
// AWS Signature Version 4, public so that it can be tested against AWS's
// published test vectors.

struct SigV4Credentials {
  std::string access_key;
  std::string secret_key;
  std::string region = "us-east-1";
  std::string service = "s3";
};

struct SigV4Request {
  std::string method;  // "GET"
  // The path exactly as sent: each segment already URI-encoded (S3 encodes
  // once, see UriEncode), e.g. "/bucket/dir/a%20b.txt".
  std::string path;
  // Decoded query parameters, in any order; the signer encodes and sorts.
  std::vector<std::pair<std::string, std::string>> query;
  // Every header to sign (host and x-amz-date at least), names in any case;
  // values are trimmed and inner runs of spaces folded, repeated names are
  // joined with ',' in order.
  http::HeaderList headers;
  // Hex SHA-256 of the body, or "UNSIGNED-PAYLOAD".
  std::string payload_hash;
};

// RFC 3986 encoding as SigV4 wants it: every byte but A-Z a-z 0-9 - . _ ~
// becomes %XX (upper-case hex); '/' is kept unless `encode_slash`.
std::string UriEncode(std::string_view text, bool encode_slash);

// The canonical request (the first step of signing), for tests and for
// debugging a SignatureDoesNotMatch.
std::string SigV4CanonicalRequest(const SigV4Request& request);

// The Authorization header value for `request` made at `amz_date`
// ("20150830T123600Z", the same value as its x-amz-date header):
//   "AWS4-HMAC-SHA256 Credential=<key>/<date>/<region>/<service>/aws4_request,
//    SignedHeaders=<names>, Signature=<hex>"
std::string SigV4Authorization(const SigV4Request& request, const SigV4Credentials& credentials,
                               std::string_view amz_date);

// ---------------------------------------------------------------------------
// MLflow artifact proxy routes

struct RouteOptions {
  // Decides whether the caller of `req` may read (write = false: download,
  // list) or write (upload, delete) the normalised `path` ("" = the root,
  // listed without ?path=). An error becomes the response (usually
  // kPermissionDenied). Unset: every request is allowed. Called on a
  // worker thread; may block.
  std::function<core::Status(const http::Request& req, std::string_view path, bool write)>
      authorize;
  // Largest upload accepted by PUT; larger bodies are answered 413.
  size_t max_upload_bytes = size_t{256} << 20;
};

// Adds MLflow's artifact proxy routes, under both /api/2.0/mlflow-artifacts
// and /ajax-api/2.0/mlflow-artifacts:
//   GET    .../artifacts?path=P    list P: {"files":[{"path","is_dir","file_size"}]}
//                                  (names relative to P; no file_size on
//                                  directories; {} when empty)
//   GET    .../artifacts/{path...} the bytes; Content-Type from the extension
//                                  as MLflow guesses it, sent as an attachment
//   PUT    .../artifacts/{path...} raw body stored at path -> {}
//   DELETE .../artifacts/{path...} file or directory -> {}
// Permissions: "artifact.read" (GET) and "artifact.write" (PUT, DELETE).
// Errors use MLflow's body {"error_code","message"}: INVALID_PARAMETER_VALUE
// 400 (bad or traversing paths, unknown query parameters),
// RESOURCE_DOES_NOT_EXIST 404 (MLflow answers 500 here), PERMISSION_DENIED
// 403, INTERNAL_ERROR 500, others by their status. `store` must outlive the
// router and any server using it. kInvalidArgument if a route cannot be
// added (e.g. registered twice).
Status RegisterRoutes(http::Router& router, ArtifactStore& store, const RouteOptions& options);

}  // namespace kervan::artifacts
