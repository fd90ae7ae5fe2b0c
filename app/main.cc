#include "app/cli.h"

int main(int argc, char** argv) {
  return kervan::app::RunCli(argc, argv);
}
