// `kervan server`: wires config -> store -> event log -> lifecycles ->
// routes -> HTTP server, and runs until SIGTERM/SIGINT.
#pragma once

#include <string>

#include "app/config.h"
#include "store/store.h"

namespace kervan::app {

struct ServerRunOptions {
  Config config;
  std::string ready_file;  // written with the bound port once serving
};

// Returns the process exit code.
int RunServer(const ServerRunOptions& options);

// Opens the configured store and applies migrations (also `kervan migrate`).
core::Result<std::unique_ptr<store::Database>> OpenStore(const Config& config);

}  // namespace kervan::app
