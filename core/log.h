#pragma once
// The one logger: debug lines on stderr when --debug is given. Never pass secrets.
#include <fmt/format.h>

#include <string_view>

namespace berth::log {

void set_debug(bool on);
// Prefix every line with the UTC time (for a background process's log file).
void set_timestamps(bool on);
bool debug_enabled();
void write(std::string_view level, std::string_view category, std::string_view message);

template <typename... Args>
void debug(std::string_view category, fmt::format_string<Args...> f, Args&&... args) {
  if (debug_enabled()) write("debug", category, fmt::format(f, std::forward<Args>(args)...));
}

template <typename... Args>
void info(std::string_view category, fmt::format_string<Args...> f, Args&&... args) {
  write("info", category, fmt::format(f, std::forward<Args>(args)...));
}

template <typename... Args>
void warn(std::string_view category, fmt::format_string<Args...> f, Args&&... args) {
  write("warning", category, fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace berth::log
