include(GoogleTest)

# Test code builds at -O0, which compiles in about 60% of the -O2 time (the
# code under test keeps -O2), and shares one precompiled gtest/json header.
# A target whose flags do not fit that header just compiles without it.
add_library(berth_test_pch OBJECT ${PROJECT_SOURCE_DIR}/tests/pch.cpp)
target_link_libraries(berth_test_pch PRIVATE berth_settings GTest::gtest GTest::gmock
  nlohmann_json::nlohmann_json)
# berth_test_compile(TARGET [NO_PCH]): NO_PCH for helpers that do not use gtest.
function(berth_test_compile target)
  target_compile_options(${target} PRIVATE -O0 -Wno-error=invalid-pch)
  if(BERTH_PCH AND NOT "NO_PCH" IN_LIST ARGN)
    target_precompile_headers(${target} REUSE_FROM berth_test_pch)
  endif()
endfunction()
target_compile_options(berth_test_pch PRIVATE -O0)
target_compile_definitions(berth_test_pch PRIVATE BERTH_TEST_SOURCE_DIR="${PROJECT_SOURCE_DIR}")
if(BERTH_PCH)
  # Not fmt: the agent's tests build it without FMT_SHARED, the others with.
  set(headers ${BERTH_PCH_COMMON})
  list(REMOVE_ITEM headers <fmt/format.h>)
  target_precompile_headers(berth_test_pch PRIVATE <gtest/gtest.h> <gmock/gmock.h> ${headers})
endif()

# berth_test(NAME LABEL <unit|integration> SOURCES ... LIBS ...)
function(berth_test name)
  cmake_parse_arguments(T "" "LABEL;TIMEOUT" "SOURCES;LIBS" ${ARGN})
  add_executable(${name} ${T_SOURCES})
  target_link_libraries(${name} PRIVATE berth_settings ${T_LIBS} GTest::gtest GTest::gmock GTest::gtest_main)
  berth_test_compile(${name})
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 120)
  endif()
  # gtest_discover_tests keeps only a list's first item in PROPERTIES, so unit
  # tests learn the source directory at compile time.
  target_compile_definitions(${name} PRIVATE BERTH_TEST_SOURCE_DIR="${PROJECT_SOURCE_DIR}")
  set(env "BERTH_BUILD_DIR=${PROJECT_BINARY_DIR};BERTH_SOURCE_DIR=${PROJECT_SOURCE_DIR}")
  if(T_LABEL STREQUAL "integration")
    # One process per suite binary, so suites share the hosts they set up once.
    add_test(NAME ${name} COMMAND ${name} --gtest_color=no)
    set_tests_properties(${name} PROPERTIES LABELS ${T_LABEL} TIMEOUT ${T_TIMEOUT} ENVIRONMENT "${env}")
  else()
    gtest_discover_tests(${name}
      PROPERTIES LABELS ${T_LABEL} TIMEOUT ${T_TIMEOUT} ENVIRONMENT "BERTH_BUILD_DIR=${PROJECT_BINARY_DIR}"
      DISCOVERY_TIMEOUT 30)
  endif()
endfunction()
