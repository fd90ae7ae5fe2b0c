#include "store/migrations.h"

#include <cstdlib>

#include <fmt/format.h>

namespace kervan::store {

// Defined in the generated migrations_embedded.cc.
const std::vector<MigrationFile>& Embedded_sqlite();
const std::vector<MigrationFile>& Embedded_postgres();

namespace {

int64_t VersionOf(const std::string& name) {
  return std::strtoll(name.c_str(), nullptr, 10);
}

constexpr std::string_view kCreateTable =
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    " version BIGINT PRIMARY KEY, name TEXT NOT NULL, checksum TEXT NOT NULL,"
    " applied_us BIGINT NOT NULL)";

}  // namespace

const std::vector<MigrationFile>& EmbeddedMigrations(Dialect dialect) {
  return dialect == Dialect::kSqlite ? Embedded_sqlite() : Embedded_postgres();
}

Result<std::vector<AppliedMigration>> ListAppliedMigrations(Connection& conn) {
  ASSIGN_OR_RETURN(Rows rows, conn.Query("SELECT version, name, checksum, applied_us FROM "
                                         "schema_migrations ORDER BY version"));
  std::vector<AppliedMigration> out;
  for (const Row& r : rows)
    out.push_back({r.Int(0), r.Text(1), r.Text(2), r.Int(3)});
  return out;
}

Result<std::vector<AppliedMigration>> ApplyMigrations(Database& db) {
  ASSIGN_OR_RETURN(PooledConnection conn, db.Acquire());
  std::vector<AppliedMigration> newly;
  Status s = InTransaction(*conn, [&](Connection& c) -> Status {
    if (c.dialect() == Dialect::kPostgres) {
      // Two servers starting at once must not both migrate.
      RETURN_IF_ERROR(c.Query("SELECT pg_advisory_xact_lock(7305179)"));
    }
    RETURN_IF_ERROR(c.Exec(kCreateTable));
    ASSIGN_OR_RETURN(auto applied, ListAppliedMigrations(c));
    const auto& files = EmbeddedMigrations(db.dialect());
    for (const auto& a : applied) {
      auto it = std::find_if(files.begin(), files.end(), [&](const MigrationFile& f) {
        return VersionOf(f.name) == a.version;
      });
      if (it == files.end()) {
        return core::FailedPrecondition(fmt::format(
            "database has migration {} ({}) that this binary does not know; is it older than "
            "the one that migrated it?",
            a.version, a.name));
      }
      if (core::Sha256Hex(it->sql) != a.checksum) {
        return core::FailedPrecondition(fmt::format(
            "migration {} was changed after it was applied (checksum mismatch)", a.name));
      }
    }
    for (const auto& f : files) {
      int64_t version = VersionOf(f.name);
      bool done = std::any_of(applied.begin(), applied.end(),
                              [&](const AppliedMigration& a) { return a.version == version; });
      if (done)
        continue;
      // DDL is transactional on both backends, so a failed file leaves nothing behind.
      RETURN_IF_ERROR(c.ExecScript(f.sql));
      AppliedMigration rec{version, f.name, core::Sha256Hex(f.sql), core::NowMicros()};
      RETURN_IF_ERROR(c.Exec(
          "INSERT INTO schema_migrations (version, name, checksum, applied_us) VALUES (?, ?, ?, ?)",
          {rec.version, rec.name, rec.checksum, rec.applied_us}));
      core::LogInfo("applied migration " + f.name,
                    {{"event.action", "store.migration_applied"}, {"store.migration", f.name}});
      newly.push_back(std::move(rec));
    }
    return core::Ok();
  });
  if (!s)
    return std::move(s).error();
  return newly;
}

Result<bool> MigrationsCurrent(Database& db) {
  ASSIGN_OR_RETURN(PooledConnection conn, db.Acquire());
  auto applied = ListAppliedMigrations(*conn);
  if (!applied)
    return false;  // table missing: not migrated
  return applied->size() == EmbeddedMigrations(db.dialect()).size();
}

}  // namespace kervan::store
