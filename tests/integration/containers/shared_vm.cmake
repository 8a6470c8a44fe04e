# Included by tests/CMakeLists.txt before the test directories, so every
# suite directory can call berth_vm_suite().
# The berth-os VM the agent suites share (shared_vm.h): `it_vm up` makes it
# before them and `it_vm down` removes it after them (ctest fixture berth_vm),
# so this kind of VM boots once per run. Every test that runs VMs holds the
# resource berth_tcg: under `ctest -j2` only the suites without VMs run beside them.
# Compiled once for every suite that drives the berth CLI or the shared VM.
add_library(berth_it_cli STATIC ${PROJECT_SOURCE_DIR}/tests/integration/generic/berth_cli.cpp)
target_link_libraries(berth_it_cli PUBLIC berth_settings berth_it_support)
add_library(berth_it_vm STATIC ${CMAKE_CURRENT_LIST_DIR}/harness.cpp ${CMAKE_CURRENT_LIST_DIR}/shared_vm.cpp)
target_link_libraries(berth_it_vm PUBLIC berth_it_cli nlohmann_json::nlohmann_json)
berth_test_compile(berth_it_cli NO_PCH)
berth_test_compile(berth_it_vm NO_PCH)
add_executable(it_vm ${CMAKE_CURRENT_LIST_DIR}/it_vm_main.cpp)
target_link_libraries(it_vm PRIVATE berth_it_vm)
foreach(target berth berth-agent)
  if(TARGET ${target})
    add_dependencies(it_vm ${target})
  endif()
endforeach()
set(_berth_vm_env "BERTH_BUILD_DIR=${PROJECT_BINARY_DIR};BERTH_SOURCE_DIR=${PROJECT_SOURCE_DIR}")
add_test(NAME it_vm_up COMMAND it_vm up)
set_tests_properties(it_vm_up PROPERTIES LABELS integration TIMEOUT 900 ENVIRONMENT "${_berth_vm_env}"
  FIXTURES_SETUP berth_vm RESOURCE_LOCK berth_tcg)
add_test(NAME it_vm_down COMMAND it_vm down)
set_tests_properties(it_vm_down PROPERTIES LABELS integration TIMEOUT 300 ENVIRONMENT "${_berth_vm_env}"
  FIXTURES_CLEANUP berth_vm RESOURCE_LOCK berth_tcg)

# berth_vm_suite(NAME SOURCES...): a suite on the shared VM: the real berth,
# berth-agent and docker CLI. Needs root, libvirt, skopeo, docker-registry and
# image/out (berth-os). $BERTH_BINARY / $BERTH_AGENT_BINARY override the binaries.
function(berth_vm_suite name)
  cmake_parse_arguments(S "" "TIMEOUT" "SOURCES" ${ARGN})
  berth_test(${name} LABEL integration TIMEOUT ${S_TIMEOUT}
    SOURCES ${S_SOURCES}
    LIBS berth_it_vm)
  set_tests_properties(${name} PROPERTIES FIXTURES_REQUIRED berth_vm RESOURCE_LOCK berth_tcg)
  add_dependencies(${name} it_vm)
endfunction()

