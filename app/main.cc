#include <string_view>

#include "app/cli.h"
#include "jobs/jobs.h"

int main(int argc, char** argv) {
  // The local executor's per-attempt supervisor: dispatched before the CLI
  // parser so the job's own arguments after "--" are passed through as given.
  if (argc > 1 && std::string_view(argv[1]) == "job-shim")
    return kervan::jobs::RunJobShim(argc - 1, argv + 1);
  return kervan::app::RunCli(argc, argv);
}
