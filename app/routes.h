// The HTTP routes the foundation serves: health, metrics, version,
// lifecycles and entities, the event log (list, long-poll, SSE) and audit
// verification. Domain modules register their own routes beside these.
#pragma once

#include "auth/auth.h"
#include "http/stream.h"
#include "store/store.h"

namespace kervan::app {

struct Services {
  store::Database& db;
  store::EventLog& log;
  store::Lifecycles& lifecycles;
  const auth::Auth& auth;
  http::AsyncSignal& commits;            // notified after every durable commit
  http::asio::thread_pool& stream_pool;  // blocking reads for SSE streams, off the I/O threads
};

core::Status RegisterRoutes(http::Router& router, Services& services);

// kInvalidArgument naming the first route whose permission is not in
// auth::Permissions(): a typo must not make a route unreachable (or open).
core::Status CheckRoutePermissions(const http::Router& router);

}  // namespace kervan::app
