add_library(berth_warnings INTERFACE)
target_compile_options(berth_warnings INTERFACE -Wall -Wextra -Wpedantic
  $<$<BOOL:${BERTH_WERROR}>:-Werror>)

add_library(berth_sanitizers INTERFACE)
if(BERTH_SANITIZE)
  target_compile_options(berth_sanitizers INTERFACE -fsanitize=address,undefined -fno-omit-frame-pointer)
  target_link_options(berth_sanitizers INTERFACE -fsanitize=address,undefined)
endif()

# Every first-party target links this.
add_library(berth_settings INTERFACE)
target_link_libraries(berth_settings INTERFACE berth_warnings berth_sanitizers)
target_include_directories(berth_settings INTERFACE ${PROJECT_SOURCE_DIR})
target_compile_definitions(berth_settings INTERFACE BERTH_VERSION="${PROJECT_VERSION}")
