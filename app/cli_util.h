// What every client command of the `kervan` CLI shares: the connection and
// output options, one request function that prints errors a person can act
// on, and small rendering helpers (aligned tables, times, query strings).
//
// Each command group lives in its own file (cli_identity.cc, cli_registry.cc,
// ...) and adds its subcommands with an Add...Commands(app, options, rc)
// function; app/cli.cc wires them. Callbacks set `rc` to the exit status:
// 0 success, 1 the server refused or failed the request, 2 a usage error
// caught before any request was sent.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <CLI/CLI.hpp>

#include "core/core.h"
#include "http/http.h"

namespace kervan::app {

using core::Json;

// Options shared by every client command.
struct ClientOptions {
  std::string url;               // KERVAN_URL or --url
  std::string output = "table";  // table | json
  std::string token;             // --token (wins over everything else)
  std::string token_file;        // --token-file
};

// `name`'s value, or `def` when it is unset or empty.
std::string EnvOr(const char* name, std::string def);

// Adds --url, -o/--output, --token and --token-file to a client command.
// A command whose own --url means something else (webhook create) names the
// server's flag differently with `url_flag`.
void AddClientFlags(CLI::App* cmd, ClientOptions& options, const std::string& url_flag = "--url");

// The API token to send: --token, else the first line of --token-file, else
// $KERVAN_TOKEN, else the first line of $KERVAN_TOKEN_FILE; "" when none is
// set. kInvalidArgument when a token file cannot be read or is empty.
core::Result<std::string> ResolveToken(const ClientOptions& options);

// Runs one request with the caller's token. On a transport error or an HTTP
// status >= 400, prints the error to stderr (status, code, message, the
// field, the missing permission, allowed transitions, request id and a hint
// where one helps) and returns nullopt. Otherwise returns the response.
std::optional<http::ClientResponse> CallRaw(const ClientOptions& options, const std::string& method,
                                            const std::string& target,
                                            const std::optional<Json>& body = {});
// CallRaw, then parses the body as JSON (nullopt, printed, if it is not).
std::optional<Json> Call(const ClientOptions& options, const std::string& method,
                         const std::string& target, const std::optional<Json>& body = {});

// Prints `value` indented when the output format is json; returns whether it did.
bool PrintedJson(const ClientOptions& options, const Json& value);

// Prints "error: <message>" to stderr and returns 2 (the usage-error status).
int UsageError(const std::string& message);

// Renders rows as aligned columns under `header`; the last column is not padded.
std::string Table(const std::vector<std::string>& header,
                  const std::vector<std::vector<std::string>>& rows);

// Aligned "key: value" lines; rows with an empty value are left out.
std::string Fields(const std::vector<std::pair<std::string, std::string>>& fields);

// `j[key]` as display text: strings as is, null or absent as "", anything
// else as compact JSON.
std::string Str(const Json& j, const char* key);

// A number for display: the shortest text that reads back the same, capped
// at 6 significant digits for computed values (0.89, not 0.8900000000000001).
std::string Num(double value);

// "2026-11-27T10:00:00.123456Z" -> "2026-11-27 10:00:00" (or with
// milliseconds when `millis`): what a person reads in a table.
std::string ShortTime(const std::string& rfc3339, bool millis = false);

// "?k=v&..." with values percent-encoded; empty values are left out.
std::string Query(const std::vector<std::pair<std::string, std::string>>& params);

// One path segment, percent-encoded.
std::string Seg(const std::string& segment);

// Parses "k=v" pairs (repeatable --tag flags). kInvalidArgument naming `flag`.
core::Result<std::map<std::string, std::string>> ParsePairs(const std::vector<std::string>& pairs,
                                                            const std::string& flag);

// A time filter for --since/--until: RFC 3339 passes through; a duration
// ago ("30m", "12h", "7d", "90s") becomes the RFC 3339 time that long ago.
core::Result<std::string> TimeFlag(const std::string& text, const std::string& flag);

}  // namespace kervan::app
