// Schema migrations: numbered SQL files per backend (src/store/migrations/
// <dialect>/NNNN_name.sql), embedded in the binary at build time, applied in
// order at start-up and recorded in schema_migrations. Part of store's public
// header (store/store.h).
#pragma once

#include <string>
#include <vector>

#include "store/database.h"

namespace kervan::store {

struct MigrationFile {
  std::string name;  // "0001_events.sql"
  std::string sql;
};

struct AppliedMigration {
  int64_t version = 0;
  std::string name;
  std::string checksum;  // SHA-256 of the SQL text
  int64_t applied_us = 0;
};

// The migrations compiled into this binary for `dialect`, in version order.
const std::vector<MigrationFile>& EmbeddedMigrations(Dialect dialect);

// Applies every embedded migration not yet recorded, each in its own
// transaction together with its schema_migrations row. Fails with
// kFailedPrecondition if a recorded migration's checksum differs from the
// embedded one, or the database has a version this binary does not know
// (a newer binary migrated it). Safe to call concurrently from two
// processes on PostgreSQL (advisory lock).
Result<std::vector<AppliedMigration>> ApplyMigrations(Database& db);

// What schema_migrations holds.
Result<std::vector<AppliedMigration>> ListAppliedMigrations(Connection& conn);

// True when every embedded migration is recorded (readiness).
Result<bool> MigrationsCurrent(Database& db);

}  // namespace kervan::store
