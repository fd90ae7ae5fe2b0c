// The HTTP routes the foundation serves: health, metrics, version,
// lifecycles and entities, the event log (list, long-poll, SSE) and audit
// verification. Domain modules register their own routes beside these.
#pragma once

#include "http/http.h"
#include "store/store.h"

namespace kervan::app {

struct Services {
  store::Database& db;
  store::EventLog& log;
  store::Lifecycles& lifecycles;
  http::AsyncSignal& commits;            // notified after every durable commit
  http::asio::thread_pool& stream_pool;  // blocking reads for SSE streams, off the I/O threads
};

core::Status RegisterRoutes(http::Router& router, Services& services);

// The lifecycles the foundation declares (see lifecycles.cc).
core::Status RegisterLifecycles(store::Lifecycles& lifecycles);

}  // namespace kervan::app
