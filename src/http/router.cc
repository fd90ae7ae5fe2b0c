// Router: a trie over path segments; literal children are tried before the
// {param} child, and both before a trailing {param...}, with backtracking, so
// "/runs/search" beats "/runs/{id}" but "/runs/42" still reaches "/runs/{id}".
#include <algorithm>
#include <array>
#include <set>

#include <fmt/format.h>

#include "http/stream.h"

namespace kervan::http {
namespace {

// Paths deeper than this cannot match any route; patterns are shallower
// (a trailing {param...} takes the segments between the two).
constexpr size_t kMaxSegments = 64;
constexpr size_t kMaxPatternSegments = 32;

bool ValidMethod(std::string_view method) {
  if (method.empty() || method.size() > 16)
    return false;
  return std::all_of(method.begin(), method.end(), [](char c) { return c >= 'A' && c <= 'Z'; });
}

bool ValidParamName(std::string_view name) {
  if (name.empty())
    return false;
  for (size_t i = 0; i < name.size(); ++i) {
    char c = name[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
              (i > 0 && c >= '0' && c <= '9');
    if (!ok)
      return false;
  }
  return true;
}

// A {param...} value: each segment percent-decoded, joined with '/', but an
// encoded slash kept as "%2F" so that it cannot turn into a separator.
std::string JoinRest(const std::string_view* segments, size_t count) {
  std::string out;
  for (size_t i = 0; i < count; ++i) {
    if (i > 0)
      out.push_back('/');
    std::string_view segment = segments[i];
    for (;;) {
      size_t slash = segment.find("%2");
      while (slash != std::string_view::npos && slash + 2 < segment.size() &&
             segment[slash + 2] != 'F' && segment[slash + 2] != 'f') {
        slash = segment.find("%2", slash + 1);
      }
      if (slash != std::string_view::npos && slash + 2 >= segment.size())
        slash = std::string_view::npos;
      out += PercentDecode(segment.substr(0, slash));
      if (slash == std::string_view::npos)
        break;
      out += "%2F";
      segment = segment.substr(slash + 3);
    }
  }
  return out;
}

// RFC 3986 pchar minus '%' (patterns are written decoded-free by hand).
bool ValidLiteral(std::string_view segment) {
  for (char c : segment) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              std::string_view("-._~!$&'()*+,;=:@").find(c) != std::string_view::npos;
    if (!ok)
      return false;
  }
  return true;
}

// Splits "/a/b" into {"a","b"}; "/" has no segments. False when the path
// does not start with '/' or has more than kMaxSegments segments.
bool SplitPath(std::string_view path, std::array<std::string_view, kMaxSegments>* segments,
               size_t* count) {
  *count = 0;
  if (path.empty() || path[0] != '/')
    return false;
  if (path.size() == 1)
    return true;
  std::string_view rest = path.substr(1);
  for (;;) {
    if (*count == kMaxSegments)
      return false;
    size_t slash = rest.find('/');
    (*segments)[(*count)++] = rest.substr(0, slash);
    if (slash == std::string_view::npos)
      return true;
    rest = rest.substr(slash + 1);
  }
}

}  // namespace

struct Router::Node {
  std::map<std::string, std::unique_ptr<Node>, std::less<>> literals;
  std::unique_ptr<Node> param;
  std::vector<size_t> entries;       // routes ending at this node, by index into entries_
  std::vector<size_t> rest_entries;  // routes whose {param...} follows this node
};

struct Router::Entry {
  std::string method;
  std::string pattern;
  std::string permission;
  bool public_route = false;
  std::vector<std::pair<size_t, std::string>> params;  // segment position -> name
  std::string rest;              // name of the trailing {param...}, empty when none
  size_t rest_position = 0;      // its segment position
  size_t max_body_bytes = 0;     // Route::max_body_bytes
  std::unique_ptr<Route> route;  // exactly one of route/stream is set
  std::unique_ptr<StreamRoute> stream;
};

Router::Router() : root_(std::make_unique<Node>()) {}
Router::~Router() = default;
Router::Router(Router&&) noexcept = default;
Router& Router::operator=(Router&&) noexcept = default;

core::Status Router::Insert(const std::string& method, const std::string& pattern,
                            const std::string& permission, bool public_route, bool has_handler,
                            size_t* entry_index) {
  auto bad = [&](std::string_view why) {
    return core::InvalidArgument(fmt::format("route {} {}: {}", method, pattern, why), "route");
  };
  if (!ValidMethod(method))
    return bad("method must be an upper-case HTTP method");
  if (!has_handler)
    return bad("has no handler");
  if (permission.empty() && !public_route) {
    return bad("declares no permission; set one, or mark the route public_route");
  }
  if (pattern.empty() || pattern[0] != '/')
    return bad("pattern must start with '/'");

  std::vector<std::pair<size_t, std::string>> params;
  std::string rest_name;
  size_t rest_position = 0;
  Node* node = root_.get();
  if (pattern != "/") {
    std::string_view rest = std::string_view(pattern).substr(1);
    size_t position = 0;
    for (;; ++position) {
      size_t slash = rest.find('/');
      std::string_view segment = rest.substr(0, slash);
      if (segment.empty())
        return bad("pattern has an empty segment");
      if (position >= kMaxPatternSegments)
        return bad("pattern has too many segments");
      if (segment.front() == '{') {
        std::string_view name = segment.substr(1, segment.size() - 2);
        const bool trailing = name.ends_with("...");
        if (trailing)
          name.remove_suffix(3);
        if (segment.back() != '}' || !ValidParamName(name)) {
          return bad(fmt::format(
              "bad parameter segment \"{}\"; expected {{name}} or a last {{name...}}", segment));
        }
        if (trailing && slash != std::string_view::npos) {
          return bad(fmt::format("\"{}\" must be the last segment", segment));
        }
        for (const auto& [pos, existing] : params) {
          if (existing == name)
            return bad(fmt::format("parameter \"{}\" appears twice", name));
        }
        if (trailing) {
          rest_name = std::string(name);
          rest_position = position;
          break;
        }
        params.emplace_back(position, std::string(name));
        if (!node->param)
          node->param = std::make_unique<Node>();
        node = node->param.get();
      } else {
        if (!ValidLiteral(segment)) {
          return bad(fmt::format("bad literal segment \"{}\"", segment));
        }
        auto it = node->literals.find(segment);
        if (it == node->literals.end()) {
          it = node->literals.emplace(std::string(segment), std::make_unique<Node>()).first;
        }
        node = it->second.get();
      }
      if (slash == std::string_view::npos)
        break;
      rest = rest.substr(slash + 1);
    }
  }
  std::vector<size_t>& ending = rest_name.empty() ? node->entries : node->rest_entries;
  for (size_t existing : ending) {
    if (entries_[existing].method == method) {
      return bad(fmt::format("duplicates route {} {}", method, entries_[existing].pattern));
    }
  }
  Entry entry;
  entry.method = method;
  entry.pattern = pattern;
  entry.permission = permission;
  entry.public_route = public_route;
  entry.params = std::move(params);
  entry.rest = std::move(rest_name);
  entry.rest_position = rest_position;
  entries_.push_back(std::move(entry));
  *entry_index = entries_.size() - 1;
  ending.push_back(*entry_index);
  return core::Ok();
}

core::Status Router::Add(Route route) {
  size_t index = 0;
  RETURN_IF_ERROR(Insert(route.method, route.pattern, route.permission, route.public_route,
                         static_cast<bool>(route.handler), &index));
  entries_[index].max_body_bytes = route.max_body_bytes;
  entries_[index].route = std::make_unique<Route>(std::move(route));
  return core::Ok();
}

core::Status Router::AddStream(StreamRoute route) {
  size_t index = 0;
  RETURN_IF_ERROR(Insert(route.method, route.pattern, route.permission, route.public_route,
                         static_cast<bool>(route.handler), &index));
  entries_[index].stream = std::make_unique<StreamRoute>(std::move(route));
  return core::Ok();
}

namespace {

// The entry in `ending` for `method`, or -1. With `methods`, instead adds
// the method of every entry there.
template <typename Entries>
int Pick(const std::vector<size_t>& ending, std::string_view method, const Entries& entries,
         std::set<std::string>* methods) {
  for (size_t e : ending) {
    if (methods != nullptr) {
      methods->insert(entries[e].method);
    } else if (entries[e].method == method) {
      return static_cast<int>(e);
    }
  }
  return -1;
}

// Depth-first search: literal child, then {param} child, then a trailing
// {param...}. Returns the entry index of the first route for `method` whose
// pattern matches, or -1. With `methods`, instead collects the methods of
// every matching pattern.
template <typename Node, typename Entries>
int Find(const Node* node, const std::array<std::string_view, kMaxSegments>& segments, size_t count,
         size_t i, std::string_view method, const Entries& entries,
         std::set<std::string>* methods) {
  if (i == count)
    return Pick(node->entries, method, entries, methods);
  auto it = node->literals.find(segments[i]);
  if (it != node->literals.end()) {
    int found = Find(it->second.get(), segments, count, i + 1, method, entries, methods);
    if (found >= 0)
      return found;
  }
  if (node->param && !segments[i].empty()) {
    int found = Find(node->param.get(), segments, count, i + 1, method, entries, methods);
    if (found >= 0)
      return found;
  }
  // The rest of the path must hold something: "/files/" is not "/files/{p...}".
  if (!node->rest_entries.empty() && !(count - i == 1 && segments[i].empty()))
    return Pick(node->rest_entries, method, entries, methods);
  return -1;
}

}  // namespace

RouteMatch Router::Match(std::string_view method, std::string_view path) const {
  RouteMatch match;
  std::array<std::string_view, kMaxSegments> segments;
  size_t count = 0;
  if (!SplitPath(path, &segments, &count))
    return match;

  int found = Find(root_.get(), segments, count, 0, method, entries_, nullptr);
  if (found < 0 && method == "HEAD") {
    // HEAD is served by the GET route (not a stream); the server leaves the body out.
    found = Find(root_.get(), segments, count, 0, "GET", entries_, nullptr);
    if (found >= 0 && entries_[static_cast<size_t>(found)].stream)
      found = -1;
  }
  if (found < 0) {
    std::set<std::string> methods;
    Find(root_.get(), segments, count, 0, method, entries_, &methods);
    if (methods.contains("GET"))
      methods.insert("HEAD");
    for (const std::string& m : methods) {
      if (!match.allow.empty())
        match.allow += ", ";
      match.allow += m;
    }
    return match;
  }
  const Entry& entry = entries_[static_cast<size_t>(found)];
  match.index = found;
  match.route = entry.route.get();
  match.stream = entry.stream.get();
  match.pattern = &entry.pattern;
  for (const auto& [position, name] : entry.params) {
    match.params.emplace(name, PercentDecode(segments[position]));
  }
  if (!entry.rest.empty()) {
    match.params.emplace(
        entry.rest, JoinRest(segments.data() + entry.rest_position, count - entry.rest_position));
  }
  return match;
}

size_t Router::BodyLimit(std::string_view method, std::string_view path,
                         size_t default_limit) const {
  std::array<std::string_view, kMaxSegments> segments;
  size_t count = 0;
  if (!SplitPath(path, &segments, &count))
    return default_limit;
  int found = Find(root_.get(), segments, count, 0, method, entries_, nullptr);
  if (found < 0)
    return default_limit;
  size_t limit = entries_[static_cast<size_t>(found)].max_body_bytes;
  return limit == 0 ? default_limit : limit;
}

std::vector<RouteInfo> Router::Routes() const {
  std::vector<RouteInfo> out;
  out.reserve(entries_.size());
  for (const Entry& e : entries_) {
    out.push_back(
        {e.method, e.pattern, e.permission, e.public_route, e.stream != nullptr, e.max_body_bytes});
  }
  return out;
}

size_t Router::size() const {
  return entries_.size();
}

}  // namespace kervan::http
