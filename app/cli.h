// The `kervan` command line: `kervan server`, configuration commands, and
// client commands that talk to a server over HTTP (KERVAN_URL).
#pragma once

namespace kervan::app {

int RunCli(int argc, char** argv);

}  // namespace kervan::app
