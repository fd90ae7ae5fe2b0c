// MLflow's artifact proxy API (`mlflow server --serve-artifacts`) over an
// ArtifactStore. Errors use MLflow's {"error_code","message"} body rather
// than Kervan's envelope, because MLflow clients read error_code.
#include <algorithm>
#include <array>

#include <fmt/format.h>

#include "artifacts/artifacts.h"
#include "artifacts/internal.h"
#include "core/log.h"

namespace kervan::artifacts {
namespace {

using http::Request;
using http::Response;

constexpr std::array<std::string_view, 2> kPrefixes = {"/api/2.0/mlflow-artifacts",
                                                       "/ajax-api/2.0/mlflow-artifacts"};

// The one ErrorCode -> MLflow error_code and status mapping of these routes
// (mlflow/protos/databricks.proto names; statuses as mlflow/exceptions.py).
std::pair<int, std::string_view> MlflowCode(core::ErrorCode code) {
  switch (code) {
    case core::ErrorCode::kInvalidArgument:
    case core::ErrorCode::kFailedPrecondition:
      return {400, "INVALID_PARAMETER_VALUE"};
    case core::ErrorCode::kNotFound:
      return {404, "RESOURCE_DOES_NOT_EXIST"};
    case core::ErrorCode::kAlreadyExists:
      return {400, "RESOURCE_ALREADY_EXISTS"};
    case core::ErrorCode::kAborted:
      return {409, "ABORTED"};
    case core::ErrorCode::kPermissionDenied:
      return {403, "PERMISSION_DENIED"};
    case core::ErrorCode::kUnauthenticated:
      return {401, "UNAUTHENTICATED"};
    case core::ErrorCode::kResourceExhausted:
      return {429, "REQUEST_LIMIT_EXCEEDED"};
    case core::ErrorCode::kUnavailable:
    case core::ErrorCode::kDeadlineExceeded:
      return {503, "TEMPORARILY_UNAVAILABLE"};
    case core::ErrorCode::kInternal:
      return {500, "INTERNAL_ERROR"};
  }
  return {500, "INTERNAL_ERROR"};
}

Response Fail(const Request& req, const core::Error& error) {
  auto [status, code] = MlflowCode(error.code);
  if (status >= 500) {
    core::LogError("artifact request failed", {{"event.action", "artifacts.request_failed"},
                                               {"error.message", error.message},
                                               {"url.path", req.path},
                                               {"trace.id", req.request_id}});
  }
  return Response::Json(status, {{"error_code", code}, {"message", error.message}});
}

// Content-Type as MLflow's _guess_mime_type gives it: text/plain for the
// text formats its UI previews (and MLmodel / MLproject), Python's
// mimetypes for well-known binary formats, else application/octet-stream.
std::string_view GuessContentType(std::string_view path) {
  std::string_view name = path.substr(path.rfind('/') + 1);
  size_t dot = name.rfind('.');
  std::string ext(dot == std::string_view::npos ? name : name.substr(dot + 1));
  if (dot == 0)
    ext.clear();  // ".hidden" has no extension
  static constexpr std::string_view kText[] = {
      "txt",  "log",   "err",  "cfg",  "conf", "cnf",     "cf",       "ini", "properties",
      "prop", "hocon", "toml", "yaml", "yml",  "xml",     "json",     "js",  "py",
      "py3",  "csv",   "tsv",  "md",   "rst",  "MLmodel", "MLproject"};
  if (std::find(std::begin(kText), std::end(kText), ext) != std::end(kText))
    return "text/plain";
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  static constexpr std::pair<std::string_view, std::string_view> kTypes[] = {
      {"png", "image/png"},         {"jpg", "image/jpeg"},
      {"jpeg", "image/jpeg"},       {"gif", "image/gif"},
      {"bmp", "image/bmp"},         {"webp", "image/webp"},
      {"svg", "image/svg+xml"},     {"tif", "image/tiff"},
      {"tiff", "image/tiff"},       {"ico", "image/vnd.microsoft.icon"},
      {"pdf", "application/pdf"},   {"zip", "application/zip"},
      {"tar", "application/x-tar"}, {"html", "text/html"},
      {"htm", "text/html"},         {"css", "text/css"},
      {"mp4", "video/mp4"},         {"wav", "audio/x-wav"},
      {"mp3", "audio/mpeg"}};
  for (const auto& [known, type] : kTypes) {
    if (ext == known)
      return type;
  }
  return "application/octet-stream";
}

// `attachment`, so a browser never renders an artifact on the server's
// origin; filename* carries names that are not plain ASCII.
std::string ContentDisposition(std::string_view path) {
  std::string_view name = path.substr(path.rfind('/') + 1);
  bool plain = std::all_of(name.begin(), name.end(), [](char c) {
    return c >= 0x20 && c < 0x7f && c != '"' && c != '\\' && c != ';';
  });
  if (plain)
    return fmt::format("attachment; filename=\"{}\"", name);
  return fmt::format("attachment; filename*=UTF-8''{}", UriEncode(name, true));
}

Status Authorize(const RouteOptions& options, const Request& req, std::string_view path,
                 bool write) {
  if (!options.authorize)
    return core::Ok();
  return options.authorize(req, path, write);
}

Response ListRoute(ArtifactStore& store, const RouteOptions& options, const Request& req) {
  if (auto checked = req.CheckQuery({"path"}); !checked)
    return Fail(req, checked.error());
  auto path = internal::NormalizeDir(req.QueryOr("path", ""), "path");
  if (!path)
    return Fail(req, path.error());
  if (auto allowed = Authorize(options, req, *path, false); !allowed)
    return Fail(req, allowed.error());
  auto files = store.List(*path);
  if (!files)
    return Fail(req, files.error());
  core::Json out = core::Json::object();
  if (!files->empty()) {
    core::Json list = core::Json::array();
    for (const FileInfo& f : *files) {
      core::Json entry = {{"path", f.path}, {"is_dir", f.is_dir}};
      if (!f.is_dir)
        entry["file_size"] = f.size;
      list.push_back(std::move(entry));
    }
    out["files"] = std::move(list);
  }
  return Response::Json(200, out);
}

// The normalised {path...} of a file route, once the caller may touch it.
Result<std::string> FilePath(const RouteOptions& options, const Request& req, bool write) {
  RETURN_IF_ERROR(req.CheckQuery({}));
  ASSIGN_OR_RETURN(std::string path, NormalizePath(req.Param("path"), "path"));
  RETURN_IF_ERROR(Authorize(options, req, path, write));
  return path;
}

Response DownloadRoute(ArtifactStore& store, const RouteOptions& options, const Request& req) {
  auto path = FilePath(options, req, false);
  if (!path)
    return Fail(req, path.error());
  auto bytes = store.Get(*path);
  if (!bytes)
    return Fail(req, bytes.error());
  Response r = Response::Text(200, std::move(bytes).value(), std::string(GuessContentType(*path)));
  r.headers.emplace_back("Content-Disposition", ContentDisposition(*path));
  r.headers.emplace_back("X-Content-Type-Options", "nosniff");
  return r;
}

Response UploadRoute(ArtifactStore& store, const RouteOptions& options, const Request& req) {
  auto path = FilePath(options, req, true);
  if (!path)
    return Fail(req, path.error());
  if (auto stored = store.Put(*path, req.body); !stored)
    return Fail(req, stored.error());
  return Response::Json(200, core::Json::object());
}

Response DeleteRoute(ArtifactStore& store, const RouteOptions& options, const Request& req) {
  auto path = FilePath(options, req, true);
  if (!path)
    return Fail(req, path.error());
  if (auto deleted = store.Delete(*path); !deleted)
    return Fail(req, deleted.error());
  return Response::Json(200, core::Json::object());
}

}  // namespace

Status RegisterRoutes(http::Router& router, ArtifactStore& store, const RouteOptions& options) {
  using Fn = Response (*)(ArtifactStore&, const RouteOptions&, const Request&);
  auto add = [&](std::string method, std::string pattern, std::string permission, Fn fn,
                 size_t max_body_bytes) {
    http::Route route;
    route.method = std::move(method);
    route.pattern = std::move(pattern);
    route.permission = std::move(permission);
    route.blocking = true;
    route.max_body_bytes = max_body_bytes;
    route.handler = [&store, options, fn](const Request& req) { return fn(store, options, req); };
    return router.Add(std::move(route));
  };
  for (std::string_view prefix : kPrefixes) {
    const std::string base = std::string(prefix) + "/artifacts";
    const std::string file = base + "/{path...}";
    RETURN_IF_ERROR(add("GET", base, "artifact.read", &ListRoute, 0));
    RETURN_IF_ERROR(add("GET", file, "artifact.read", &DownloadRoute, 0));
    RETURN_IF_ERROR(add("PUT", file, "artifact.write", &UploadRoute, options.max_upload_bytes));
    RETURN_IF_ERROR(add("DELETE", file, "artifact.write", &DeleteRoute, 0));
  }
  return core::Ok();
}

}  // namespace kervan::artifacts
