// `kervan gateway`: the inference gateway as its own process (app/gateway.cc).
#pragma once

#include <string>

namespace kervan::app {

struct GatewayRunOptions {
  std::string server_url;  // the Kervan server it follows and reports to
  std::string token;       // its token there (needs deployment.read, registry.read,
                           // artifact.read and serving.report)
  std::string address = "127.0.0.1";
  int port = 8081;  // 0: an ephemeral port (see ready_file)
  int io_threads = 2;
  int worker_threads = 8;
  int64_t max_rows = 1000;
  int64_t upstream_timeout_ms = 2000;
  bool access_log = true;
  std::string ready_file;  // written with the bound port once serving
};

// Runs until SIGTERM/SIGINT; returns the process exit code.
int RunGateway(const GatewayRunOptions& options);

}  // namespace kervan::app
