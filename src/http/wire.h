// Internal: encoding helpers shared by the server, the router and the client.
#pragma once

#include <map>
#include <string>
#include <string_view>

#include "core/json.h"

namespace kervan::http::wire {

// ASCII case-insensitive equality (header names).
bool EqualsIgnoreCase(std::string_view a, std::string_view b);

// {"error":{"code":..,"message":..,"field":..(if set), <details keys>}}, plus
// "request_id" when non-empty. Details never override code/message/field; a
// non-object details value is kept under "details".
std::string ErrorEnvelope(std::string_view code, std::string_view message, std::string_view field,
                          const core::Json& details, std::string_view request_id);

// Adds "request_id" to an envelope made without one.
void AppendRequestId(std::string& envelope, std::string_view request_id);

// 1..128 characters of [A-Za-z0-9._-].
bool ValidRequestId(std::string_view id);

// Splits "a=1&b=x%20y" into decoded pairs; the first value of a key wins.
void ParseQuery(std::string_view query, std::map<std::string, std::string>* out);

}  // namespace kervan::http::wire
