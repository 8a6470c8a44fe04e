#pragma once
// RFC 3339 timestamps as image configs and dockerd use them.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace berth::agent::image {

// "2024-01-02T03:04:05.123Z" or with "+01:00" -> unix nanoseconds.
std::optional<std::int64_t> parse_rfc3339(std::string_view text);
// Unix nanoseconds -> "2024-01-02T03:04:05.123456789Z" (trailing zeros trimmed like Go's RFC3339Nano).
std::string format_rfc3339_nano(std::int64_t unix_nanos);
std::int64_t now_unix_nanos();

}  // namespace berth::agent::image
