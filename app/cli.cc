#include "app/cli.h"

#include <fstream>
#include <iostream>

#include <CLI/CLI.hpp>

#include "app/cli_commands.h"
#include "app/config.h"
#include "app/gateway.h"
#include "app/server.h"

namespace kervan::app {

int RunCli(int argc, char** argv) {
  CLI::App app{
      "Kervan: the MLOps control plane. One server and CLI for experiments, models, training "
      "jobs, pipelines, rollouts and monitoring, with every change in one tamper-evident event "
      "log.",
      "kervan"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "kervan 0.1.0");
  app.footer(
      "Client commands talk to KERVAN_URL (default http://127.0.0.1:8080) with an API token: "
      "KERVAN_TOKEN, --token, or --token-file FILE (the bootstrap admin's is "
      "<data_dir>/admin.token). Every command has --help; -o json prints the API's JSON.");
  int rc = 0;

  ClientOptions client;
  client.url = EnvOr("KERVAN_URL", "http://127.0.0.1:8080");

  // ---- server and configuration -------------------------------------------
  ConfigSources sources;
  std::string port, data_dir, ready_file;
  auto add_config_flags = [&](CLI::App* cmd) {
    cmd->add_option("-c,--config", sources.file,
                    "YAML config file (config/dev.yaml, config/prod.yaml)");
    cmd->add_option("--set", sources.overrides,
                    "override a key: --set server.port=9090 (repeatable)");
    cmd->add_option("--port", port, "shorthand for --set server.port=N");
    cmd->add_option("--data-dir", data_dir, "shorthand for --set data_dir=DIR");
  };
  auto load = [&]() -> core::Result<Config> {
    if (!port.empty())
      sources.overrides.push_back("server.port=" + port);
    if (!data_dir.empty())
      sources.overrides.push_back("data_dir=" + data_dir);
    return LoadConfig(sources);
  };

  auto* server = app.add_subcommand("server", "Run the Kervan server until SIGTERM/SIGINT");
  add_config_flags(server);
  server->add_option("--ready-file", ready_file, "write the bound port here once serving");
  server->callback([&] {
    auto config = load();
    if (!config) {
      std::cerr << "error: " << config.error().message << "\n";
      rc = 2;
      return;
    }
    rc = RunServer({.config = *config, .ready_file = ready_file});
  });

  GatewayRunOptions gateway_options;
  std::string gateway_token_file;
  auto* gateway = app.add_subcommand(
      "gateway",
      "Run an inference gateway alone (scale-out): it follows a Kervan server's rollouts, serves "
      "/v2 (Open Inference Protocol) and /v1/endpoints, and reports its traffic back");
  gateway->add_option("--server", gateway_options.server_url, "the Kervan server's URL")
      ->required();
  gateway->add_option("--token-file", gateway_token_file,
                      "file holding the gateway's token (default: $KERVAN_TOKEN)");
  gateway->add_option("--address", gateway_options.address, "address to listen on");
  gateway->add_option("--port", gateway_options.port, "port to listen on (0: any free port)");
  gateway->add_option("--io-threads", gateway_options.io_threads, "I/O threads");
  gateway->add_option("--worker-threads", gateway_options.worker_threads,
                      "threads that run predictions");
  gateway->add_option("--max-rows", gateway_options.max_rows, "rows one request may carry");
  gateway->add_flag("!--no-access-log", gateway_options.access_log, "no per-request log line");
  gateway->add_option("--ready-file", gateway_options.ready_file,
                      "write the bound port here once serving");
  gateway->callback([&] {
    gateway_options.token = EnvOr("KERVAN_TOKEN", "");
    if (!gateway_token_file.empty()) {
      std::ifstream in(gateway_token_file);
      if (!in || !std::getline(in, gateway_options.token) || gateway_options.token.empty()) {
        std::cerr << "error: cannot read a token from " << gateway_token_file << "\n";
        rc = 2;
        return;
      }
    }
    rc = RunGateway(gateway_options);
  });

  auto* config_cmd = app.add_subcommand("config", "Show the effective configuration");
  config_cmd->require_subcommand(1);
  std::string config_output = "table";
  auto* show = config_cmd->add_subcommand(
      "show", "Print every key, its value (secrets masked) and its source");
  add_config_flags(show);
  show->add_option("-o,--output", config_output, "output format")
      ->check(CLI::IsMember({"table", "json"}));
  show->callback([&] {
    auto config = load();
    if (!config) {
      std::cerr << "error: " << config.error().message << "\n";
      rc = 2;
      return;
    }
    std::cout << (config_output == "json" ? ConfigToJson(*config).dump(2) + "\n"
                                          : RenderConfig(*config));
  });
  config_cmd->add_subcommand("keys", "List every config key with its environment variable")
      ->callback([] {
        for (const auto& k : ConfigKeys())
          std::cout << k << "\n";
      });

  auto* migrate = app.add_subcommand("migrate", "Apply database migrations and exit");
  add_config_flags(migrate);
  migrate->callback([&] {
    auto config = load();
    if (!config) {
      std::cerr << "error: " << config.error().message << "\n";
      rc = 2;
      return;
    }
    auto db = OpenStore(*config);
    if (!db) {
      std::cerr << "error: " << db.error().message << "\n";
      rc = 1;
      return;
    }
    std::cout << "migrations current on " << (*db)->description() << "\n";
  });

  // ---- client commands (app/cli_*.cc) ----------------------------------------
  AddIdentityCommands(app, client, rc);
  AddRegistryCommands(app, client, rc);
  AddTrackingCommands(app, client, rc);
  AddJobCommands(app, client, rc);
  AddPipelineCommands(app, client, rc);
  AddServingCommands(app, client, rc);
  AddMonitoringCommands(app, client, rc);
  AddAuditCommands(app, client, rc);
  AddEventCommands(app, client, rc);
  AddWebhookCommands(app, client, rc);
  AddSchedCommands(app, rc);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help and --version exit 0; every command-line mistake exits 2.
    return app.exit(e) == 0 ? 0 : 2;
  }
  return rc;
}

}  // namespace kervan::app
