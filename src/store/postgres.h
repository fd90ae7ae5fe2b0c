// The PostgreSQL backend of the database seam, over plain libpq. Part of
// store's public header (store/store.h); only app/ wiring should call
// OpenPostgres — everything else talks to the Database it returns.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include "store/database.h"

namespace kervan::store {

struct PostgresOptions {
  // A libpq connection string, key=value
  // ("host=127.0.0.1 port=5432 user=kervan password=... dbname=kervan") or
  // URI ("postgresql://kervan:...@127.0.0.1:5432/kervan"). A connect_timeout
  // of 10 s applies unless the string sets its own.
  std::string dsn;
  // Most connections the pool keeps open at once. REQUIRES: >= 1.
  size_t pool_size = 8;
};

// Opens a pool of PostgreSQL connections and checks the server is reachable
// by opening (and closing) one connection. Each connection runs with
// client_min_messages=warning and TIME ZONE 'UTC'.
//
// Errors: kInvalidArgument for an empty or unparsable dsn or a zero pool
// size; kUnavailable when the server cannot be reached or refuses the login
// (the message names host, port, dbname and user, never the password).
// The returned Database's description() is "postgres:" + MaskDsn(dsn).
Result<std::unique_ptr<Database>> OpenPostgres(const PostgresOptions& options);

// Rewrites '?' placeholders to $1..$n in order, leaving alone any '?' inside
// '...' literals (also E'...' with backslash escapes), "..." identifiers,
// $tag$...$tag$ strings, -- and /* */ comments. Text without '?' comes back
// unchanged. PostgreSQL's jsonb operators ?, ?| and ?& cannot be written
// through this seam (they would be taken for placeholders).
std::string RewritePlaceholders(std::string_view sql);

// `dsn` with the values of password and sslpassword replaced by "*****", in
// both key=value strings and URIs (user:password@ and ?password=...); the
// rest is kept byte for byte. Safe for logs, errors and descriptions.
std::string MaskDsn(std::string_view dsn);

}  // namespace kervan::store
