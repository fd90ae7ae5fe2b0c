// SQLite backend (internal to store; reached through store.h's OpenSqlite).
#pragma once

#include "store/database.h"

namespace kervan::store {

struct SqliteOptions {
  std::string path;      // database file; ":memory:" is not supported (pool)
  size_t pool_size = 8;  // reader connections
  int busy_timeout_ms = 5000;
};

// Opens (creating if needed) the database in WAL mode with synchronous=FULL,
// so a committed transaction is on disk before Commit() returns.
Result<std::unique_ptr<Database>> OpenSqlite(const SqliteOptions& options);

}  // namespace kervan::store
