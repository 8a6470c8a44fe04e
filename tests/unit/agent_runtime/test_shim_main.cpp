// Stands in for "berth-agent" in the runtime tests: only the shim entry point.
#include <cstring>

#include "agent/runtime/container_manager.h"

int main(int argc, char** argv) {
  if (argc >= 2 && std::strcmp(argv[1], "shim") == 0)
    return berth::agent::runtime::shim_main(argc - 2, argv + 2);
  return 2;
}
