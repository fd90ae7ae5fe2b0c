// The local executor's supervisor as a test binary (the `kervan` binary
// dispatches `kervan job-shim` to the same function).
#include "jobs/jobs.h"

int main(int argc, char** argv) {
  return kervan::jobs::RunJobShim(argc - 1, argv + 1);
}
