// The `kervan` command line: `kervan server`, configuration commands, and
// client commands (app/cli_*.cc) that talk to a server over HTTP (KERVAN_URL)
// with an API token (KERVAN_TOKEN, --token, --token-file).
#pragma once

namespace kervan::app {

int RunCli(int argc, char** argv);

}  // namespace kervan::app
