// it_vm up|down: the shared berth-os VM of the agent suites (ctest fixture berth_vm).
#include <cstdio>
#include <cstring>
#include <exception>

#include "tests/integration/containers/shared_vm.h"

int main(int argc, char** argv) {
  using namespace berth::it::containers;
  if (argc != 2 || (std::strcmp(argv[1], "up") != 0 && std::strcmp(argv[1], "down") != 0)) {
    std::fprintf(stderr, "usage: it_vm up|down\n");
    return 2;
  }
  try {
    if (std::strcmp(argv[1], "up") == 0) {
      shared_vm_up();
      std::printf("shared VM is up\n");
    } else {
      shared_vm_down();
      std::printf("shared VM is down\n");
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "it_vm %s: %s\n", argv[1], e.what());
    if (std::strcmp(argv[1], "up") == 0) shared_vm_down();
    return 1;
  }
}
