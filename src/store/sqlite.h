// SQLite backend (internal to store; reached through store.h's OpenSqlite).
#pragma once

#include "store/database.h"

namespace kervan::store {

struct SqliteOptions {
  std::string path;      // database file; ":memory:" is not supported (pool)
  size_t pool_size = 8;  // reader connections
  int busy_timeout_ms = 5000;
  // PRAGMA mmap_size: reads of the database file go through a shared memory
  // map instead of a pread() and a copy into each connection's own page
  // cache (measured: a fifth of runs/search's CPU over 100,000 runs). Address
  // space only; the OS page cache holds the pages either way. 0 turns it off.
  int64_t mmap_bytes = int64_t{1} << 30;
};

// Opens (creating if needed) the database in WAL mode with synchronous=FULL,
// so a committed transaction is on disk before Commit() returns.
Result<std::unique_ptr<Database>> OpenSqlite(const SqliteOptions& options);

}  // namespace kervan::store
