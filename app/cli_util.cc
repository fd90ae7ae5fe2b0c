#include "app/cli_util.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>

#include <fmt/format.h>

namespace kervan::app {

std::string EnvOr(const char* name, std::string def) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? v : def;
}

void AddClientFlags(CLI::App* cmd, ClientOptions& o, const std::string& url_flag) {
  cmd->add_option(url_flag, o.url, "Kervan server URL (env KERVAN_URL)")->capture_default_str();
  cmd->add_option("-o,--output", o.output, "output format")
      ->check(CLI::IsMember({"table", "json"}))
      ->capture_default_str();
  cmd->add_option("--token", o.token,
                  "API token kvn_<id>_<secret>, sent as Authorization: Bearer (env KERVAN_TOKEN)");
  cmd->add_option("--token-file", o.token_file,
                  "read the token from the first line of this file, e.g. <data_dir>/admin.token "
                  "(env KERVAN_TOKEN_FILE)");
}

namespace {

core::Result<std::string> FirstLine(const std::string& path, const std::string& source) {
  std::ifstream in(path);
  if (!in) {
    return core::InvalidArgument(
        fmt::format("{}: cannot read token file \"{}\": {}", source, path, std::strerror(errno)),
        "token_file");
  }
  std::string line;
  std::getline(in, line);
  while (!line.empty() && std::isspace(static_cast<unsigned char>(line.back())))
    line.pop_back();
  size_t start = line.find_first_not_of(" \t");
  line = start == std::string::npos ? "" : line.substr(start);
  if (line.empty()) {
    return core::InvalidArgument(
        fmt::format("{}: token file \"{}\" is empty (expected kvn_<id>_<secret> on its first line)",
                    source, path),
        "token_file");
  }
  return line;
}

}  // namespace

core::Result<std::string> ResolveToken(const ClientOptions& o) {
  if (!o.token.empty())
    return o.token;
  if (!o.token_file.empty())
    return FirstLine(o.token_file, "--token-file");
  if (std::string t = EnvOr("KERVAN_TOKEN", ""); !t.empty())
    return t;
  if (std::string f = EnvOr("KERVAN_TOKEN_FILE", ""); !f.empty())
    return FirstLine(f, "KERVAN_TOKEN_FILE");
  return std::string();
}

namespace {

void PrintErrorResponse(const http::ClientResponse& resp, bool sent_token) {
  Json parsed = Json::parse(resp.body, nullptr, false);
  if (parsed.is_object() && parsed.contains("error_code")) {  // the MLflow API's form
    std::cerr << fmt::format("error: {} ({}): {}\n", resp.status, Str(parsed, "error_code"),
                             Str(parsed, "message"));
    return;
  }
  if (parsed.is_discarded() || !parsed.is_object() || !parsed.contains("error") ||
      !parsed["error"].is_object()) {
    std::cerr << fmt::format("error: HTTP {}: {}\n", resp.status, resp.body);
    return;
  }
  const Json& e = parsed["error"];
  std::cerr << fmt::format("error: {} ({}): {}\n", resp.status, Str(e, "code"), Str(e, "message"));
  // The field, unless the message already names it.
  if (!Str(e, "field").empty() &&
      Str(e, "message").find('"' + Str(e, "field") + '"') == std::string::npos)
    std::cerr << "  field: " << Str(e, "field") << "\n";
  if (e.contains("current_state"))
    std::cerr << "  current state: " << Str(e, "current_state") << "\n";
  if (e.contains("allowed_transitions")) {
    std::string names;
    for (const auto& t : e["allowed_transitions"])
      names += (names.empty() ? "" : ", ") + Str(t, "name") + " -> " + Str(t, "to");
    std::cerr << "  allowed transitions: " << (names.empty() ? "(none)" : names) << "\n";
  }
  if (resp.status == 401) {
    std::cerr << (sent_token ? "  hint: the token was refused (see above); an admin can issue a "
                               "new one with `kervan token create --for <you>`, then set "
                               "KERVAN_TOKEN or --token-file\n"
                             : "  hint: every API call needs a token: set KERVAN_TOKEN, or "
                               "--token-file <data_dir>/admin.token (the bootstrap admin's)\n");
  }
  if (resp.status == 403 && !Str(e, "permission").empty()) {
    std::cerr << fmt::format(
        "  missing permission: {}{}\n", Str(e, "permission"),
        Str(e, "principal").empty() ? "" : " (caller " + Str(e, "principal") + ")");
    std::cerr << "  hint: `kervan roles` shows which role grants it; an admin binds roles with "
                 "`kervan principal bind NAME ROLE --project P`\n";
  }
  if (!Str(parsed, "request_id").empty())
    std::cerr << "  request id: " << Str(parsed, "request_id") << "\n";
}

}  // namespace

std::optional<http::ClientResponse> CallRaw(const ClientOptions& o, const std::string& method,
                                            const std::string& target,
                                            const std::optional<Json>& body) {
  auto token = ResolveToken(o);
  if (!token) {
    std::cerr << "error: " << token.error().message << "\n";
    return std::nullopt;
  }
  http::Client client(o.url);
  http::HeaderList headers = {{"Accept", "application/json"}};
  if (!token->empty())
    headers.emplace_back("Authorization", "Bearer " + *token);
  if (body)
    headers.emplace_back("Content-Type", "application/json");
  auto resp = client.Send(method, target, body ? body->dump() : "", headers);
  if (!resp) {
    std::cerr << "error: " << resp.error().message
              << "\n  hint: is `kervan server` running? set KERVAN_URL or --url\n";
    return std::nullopt;
  }
  if (resp->status >= 400) {
    PrintErrorResponse(*resp, !token->empty());
    return std::nullopt;
  }
  return std::move(resp).value();
}

std::optional<Json> Call(const ClientOptions& o, const std::string& method,
                         const std::string& target, const std::optional<Json>& body) {
  auto resp = CallRaw(o, method, target, body);
  if (!resp)
    return std::nullopt;
  Json parsed = Json::parse(resp->body, nullptr, false);
  if (parsed.is_discarded()) {
    std::cerr << "error: server answered with something that is not JSON\n";
    return std::nullopt;
  }
  return parsed;
}

bool PrintedJson(const ClientOptions& o, const Json& value) {
  if (o.output != "json")
    return false;
  std::cout << value.dump(2) << "\n";
  return true;
}

int UsageError(const std::string& message) {
  std::cerr << "error: " << message << "\n";
  return 2;
}

std::string Table(const std::vector<std::string>& header,
                  const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> width(header.size());
  for (size_t i = 0; i < header.size(); ++i)
    width[i] = header[i].size();
  for (const auto& r : rows) {
    for (size_t i = 0; i < r.size() && i < width.size(); ++i)
      width[i] = std::max(width[i], r[i].size());
  }
  auto line = [&](const std::vector<std::string>& r) {
    std::string out;
    for (size_t i = 0; i < r.size(); ++i)
      out += i + 1 == r.size() ? r[i] : fmt::format("{:<{}}  ", r[i], width[i]);
    while (!out.empty() && out.back() == ' ')
      out.pop_back();
    return out + "\n";
  };
  std::string out = line(header);
  for (const auto& r : rows)
    out += line(r);
  return out;
}

std::string Fields(const std::vector<std::pair<std::string, std::string>>& fields) {
  size_t width = 0;
  for (const auto& [k, v] : fields) {
    if (!v.empty())
      width = std::max(width, k.size() + 1);
  }
  std::string out;
  for (const auto& [k, v] : fields) {
    if (!v.empty())
      out += fmt::format("{:<{}} {}\n", k + ":", width, v);
  }
  return out;
}

std::string Str(const Json& j, const char* key) {
  if (!j.is_object())
    return "";
  auto it = j.find(key);
  if (it == j.end() || it->is_null())
    return "";
  return it->is_string() ? it->get<std::string>() : it->dump();
}

std::string Num(double value) {
  std::string shortest = fmt::format("{}", value);
  std::string capped = fmt::format("{:.6g}", value);
  return capped.size() < shortest.size() ? capped : shortest;
}

std::string ShortTime(const std::string& t, bool millis) {
  if (t.size() < 19 || t[10] != 'T')
    return t;
  std::string out = t.substr(0, 10) + " " + t.substr(11, 8);
  if (millis && t.size() >= 23 && t[19] == '.')
    out += t.substr(19, 4);
  return out;
}

std::string Query(const std::vector<std::pair<std::string, std::string>>& params) {
  std::string q;
  for (const auto& [k, v] : params) {
    if (v.empty())
      continue;
    q += (q.empty() ? "?" : "&") + k + "=" + http::PercentEncode(v);
  }
  return q;
}

std::string Seg(const std::string& segment) {
  return http::PercentEncode(segment);
}

core::Result<std::map<std::string, std::string>> ParsePairs(const std::vector<std::string>& pairs,
                                                            const std::string& flag) {
  std::map<std::string, std::string> out;
  for (const auto& p : pairs) {
    size_t eq = p.find('=');
    if (eq == std::string::npos || eq == 0) {
      return core::InvalidArgument(
          fmt::format("{} \"{}\": expected KEY=VALUE, e.g. {} team=risk", flag, p, flag), flag);
    }
    out[p.substr(0, eq)] = p.substr(eq + 1);
  }
  return out;
}

core::Result<std::string> TimeFlag(const std::string& text, const std::string& flag) {
  if (text.empty() || core::ParseRfc3339(text))
    return text;
  char* end = nullptr;
  double n = std::strtod(text.c_str(), &end);
  std::string unit = end != nullptr ? end : "";
  static const std::map<std::string, double> kSeconds = {
      {"s", 1}, {"m", 60}, {"h", 3600}, {"d", 86400}};
  auto it = kSeconds.find(unit);
  if (end == text.c_str() || it == kSeconds.end() || !std::isfinite(n) || n < 0) {
    return core::InvalidArgument(
        fmt::format("{} \"{}\": expected an RFC 3339 time (2026-11-27T10:00:00Z) or a duration "
                    "ago (90s, 30m, 12h, 7d)",
                    flag, text),
        flag);
  }
  int64_t ago_us = static_cast<int64_t>(n * it->second * 1e6);
  return core::FormatRfc3339(core::NowMicros() - ago_us);
}

}  // namespace kervan::app
