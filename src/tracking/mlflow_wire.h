// The MLflow REST wire conventions (see docs/tracking.md and
// shared notes/mlflow-wire.md), shared by every module that serves part of
// the MLflow API: tracking's /mlflow/experiments|runs|metrics|artifacts and
// registry's /mlflow/registered-models|model-versions. Part of tracking's
// public header (tracking/tracking.h).
//
// What a client relies on:
//  - routes exist under /api/2.0/mlflow/... and /ajax-api/2.0/mlflow/...;
//  - POST/PATCH/DELETE carry JSON bodies (Content-Type application/json,
//    a double-encoded JSON string is accepted); GET carries query params;
//    unknown fields are ignored (protobuf's parse with ignore_unknown_fields);
//  - int64 fields are JSON numbers on output and numbers or strings on input;
//    non-finite doubles are the strings "NaN", "Infinity", "-Infinity";
//  - errors are {"error_code": "<NAME>", "message": "..."} with the status
//    MLflow's client maps the name from (RESOURCE_ALREADY_EXISTS is 400);
//  - page tokens are opaque; ours are base64 of {"offset": N} as MLflow's SQL
//    store's.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "core/core.h"
#include "http/http.h"

namespace kervan::tracking::mlflow {

using core::Json;
using core::Result;
using core::Status;

// The MLflow error_code name for `error`: details["mlflow_error_code"] when a
// caller set one, otherwise from the code (kNotFound RESOURCE_DOES_NOT_EXIST,
// kInvalidArgument INVALID_PARAMETER_VALUE, kAlreadyExists
// RESOURCE_ALREADY_EXISTS, kFailedPrecondition INVALID_STATE,
// kPermissionDenied PERMISSION_DENIED, kUnauthenticated UNAUTHENTICATED,
// kResourceExhausted RESOURCE_EXHAUSTED, kUnavailable TEMPORARILY_UNAVAILABLE,
// kDeadlineExceeded DEADLINE_EXCEEDED, else INTERNAL_ERROR).
std::string ErrorCodeName(const core::Error& error);
// The HTTP status MLflow's server sends for that name.
int StatusFor(std::string_view error_code);
// An error with an explicit MLflow error code (e.g. "INVALID_STATE",
// "BAD_REQUEST") on top of a Kervan code.
core::Error WithCode(core::Error error, std::string_view mlflow_error_code);

// The response for a handler's result: 200 with the object (an empty result
// is "{}"), or the MLflow error body.
http::Response ToResponse(const Result<Json>& result);

// Whether the request's Content-Type is application/json (parameters
// ignored, any case).
bool ContentTypeIsJson(const http::Request& req);

// The request's arguments as one JSON object.
//  POST/PATCH/DELETE: the body; Content-Type must be application/json
//    (400 INVALID_PARAMETER_VALUE otherwise, as MLflow); an empty body is {};
//    a JSON string holding a JSON object is decoded once more.
//  GET: the query string; each key maps to its (decoded) string value, or
//    to an array of every value for keys listed in `repeated` (also
//    accepting "key[0]=" forms).
Result<Json> Args(const http::Request& req, std::initializer_list<std::string_view> repeated = {});

// Field readers over Args(). Messages follow MLflow's:
//   "Missing value for required parameter 'run_id'. ..."
Result<std::string> RequiredString(const Json& args, std::string_view field);
std::string OptionalString(const Json& args, std::string_view field, std::string def = {});
// An int64 given as a JSON number or a decimal string; nullopt when absent.
Result<std::optional<int64_t>> OptionalInt64(const Json& args, std::string_view field);
// A double given as a number, a numeric string, or "NaN"/"Infinity"/
// "-Infinity" (any case, as Python's float() accepts); nullopt when absent.
Result<std::optional<double>> OptionalDouble(const Json& args, std::string_view field);
// A string array (a single string is taken as a one-element array).
Result<std::vector<std::string>> StringList(const Json& args, std::string_view field);

// A double for output: a number when finite, else "NaN"/"Infinity"/"-Infinity".
Json DoubleToJson(double value);

// [{"key","value"}] <-> ordered key/value pairs.
Json KeyValues(const std::vector<std::pair<std::string, std::string>>& pairs);

// Page tokens: base64 of {"offset": N}. A malformed token is
// INVALID_PARAMETER_VALUE naming page_token.
std::string EncodePageToken(int64_t offset);
Result<int64_t> DecodePageToken(std::string_view token);

using Handler = std::function<Result<Json>(const http::Request& req, const Json& args)>;

// A hot route's decoder of the raw request: it answers a POST whose body is
// JSON before that body is parsed into a DOM, or returns std::nullopt to
// hand the request to the route's Handler (which must then answer it as if
// the decoder did not exist).
using RawHandler = std::function<std::optional<Result<Json>>(const http::Request& req)>;

// Answers a request a Start took; called exactly once, from any thread.
using Done = std::function<void(Result<Json>)>;
// A hot route's non-blocking start (http::Route::start), run on the I/O
// thread: returns true when it took the request (and then calls `done`),
// false to have the Handler serve it on the worker pool, which must then
// answer as if the start did not exist. It reads the request itself (Args,
// or a decoder of its own) and must not block: no database read, no lock
// held for long.
using Start = std::function<bool(const http::Request& req, Done done)>;

// Registers `handler` at /api/2.0/mlflow/<path> and /ajax-api/2.0/mlflow/<path>
// (and nothing else), as a blocking route needing `permission`. GET routes
// read arguments from the query string (`repeated` as for Args). `raw`, when
// set, sees POSTs with a JSON Content-Type and a body first. `start`, when
// set, is offered every request first.
Status AddRoute(http::Router& router, const std::string& method, std::string_view path,
                const std::string& permission, Handler handler,
                std::initializer_list<std::string_view> repeated = {}, RawHandler raw = nullptr,
                Start start = nullptr);

// A handler that writes its JSON answer itself (hot paths whose answers are
// large, e.g. a metric history of 100,000 points): the text must be one JSON
// object.
using TextHandler = std::function<Result<std::string>(const http::Request& req, const Json& args)>;
Status AddTextRoute(http::Router& router, const std::string& method, std::string_view path,
                    const std::string& permission, TextHandler handler);

}  // namespace kervan::tracking::mlflow
