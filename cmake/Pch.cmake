# Precompiled headers for the third-party headers every file pays for:
# CLI11 (header-only in Debian, ~10 s per file), nlohmann/json, fmt, gtest.
option(BERTH_PCH "Precompile the heaviest third-party headers" ON)

set(BERTH_PCH_COMMON <nlohmann/json.hpp> <fmt/format.h> <filesystem> <functional> <map>
    <optional> <string> <string_view> <vector>)

# berth_pch(TARGET [HEADERS...]): the common set plus HEADERS, for C++ sources only.
function(berth_pch target)
  if(NOT BERTH_PCH)
    return()
  endif()
  set(headers ${BERTH_PCH_COMMON} ${ARGN})
  list(TRANSFORM headers REPLACE "^(.+)$" "$<$<COMPILE_LANGUAGE:CXX>:\\1>")
  target_precompile_headers(${target} PRIVATE ${headers})
endfunction()
