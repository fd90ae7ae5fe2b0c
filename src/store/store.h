// store: where Kervan's state lives. A small SQL seam with two backends
// (SQLite embedded by default, PostgreSQL for multi-node), numbered
// migrations, the hash-chained event log with group commit and
// subscriptions, and generic lifecycles (entities moving through declared
// state machines, with their current state as a projection of the log).
//
// store depends only on core. Backends are opened in exactly one place
// (app/ wiring) through OpenSqlite/OpenPostgres; everything else takes a
// Database&. This is store's one public header; the headers it includes are
// its parts.
#pragma once

#include "store/database.h"
#include "store/event_log.h"
#include "store/lifecycle.h"
#include "store/migrations.h"
#include "store/postgres.h"
#include "store/sqlite.h"
