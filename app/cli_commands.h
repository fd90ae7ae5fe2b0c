// The client command groups of the `kervan` CLI, one file each; app/cli.cc
// adds them to the root command. Each callback sets `rc` to the exit status
// (see app/cli_util.h).
#pragma once

#include <CLI/CLI.hpp>

#include "app/cli_util.h"

namespace kervan::app {

// whoami, roles, permissions, routes, token, project, principal.
void AddIdentityCommands(CLI::App& app, ClientOptions& options, int& rc);
// model, version, alias.
void AddRegistryCommands(CLI::App& app, ClientOptions& options, int& rc);
// experiments list|get|create|delete|restore, runs list|show|compare,
// artifacts ls|get|put.
void AddTrackingCommands(CLI::App& app, ClientOptions& options, int& rc);
// lifecycles, entity get|list|history, events list.
void AddEventCommands(CLI::App& app, ClientOptions& options, int& rc);
// audit log|export|verify.
void AddAuditCommands(CLI::App& app, ClientOptions& options, int& rc);
// webhook create|list|get|delete|pause|resume|ping|deliveries|delivery.
void AddWebhookCommands(CLI::App& app, ClientOptions& options, int& rc);
// sched simulate|compare|generate-trace (local: no server, no token).
void AddSchedCommands(CLI::App& app, int& rc);

// jobs submit|list|show|cancel|explain|logs|nodes|policy.
void AddJobCommands(CLI::App& app, ClientOptions& options, int& rc);

// pipelines submit|run|list|show|runs|status|logs|cancel|webhook-secret,
// datasets register|list|show.
void AddPipelineCommands(CLI::App& app, ClientOptions& options, int& rc);

// deploy, rollout status|history|promote|pause|resume|abort|rollback,
// endpoints list|show, predict.
void AddServingCommands(CLI::App& app, ClientOptions& options, int& rc);

// monitors list|show|evaluations|configure|stop|resume|resolve, feedback,
// profile set|show, rules apply|list|show|versions|actions|enable|disable|test,
// approvals list|approve|reject, alerts list.
void AddMonitoringCommands(CLI::App& app, ClientOptions& options, int& rc);

}  // namespace kervan::app
