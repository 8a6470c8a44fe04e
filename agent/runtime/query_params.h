#pragma once
// Query-string values as dockerd reads them.
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string_view>

#include "agent/api/http.h"

namespace berth::agent::runtime {

// dockerd's boolValue: absent, "", "0", "no", "false", "none" are false.
bool query_bool(const api::Request& r, std::string_view name);
// nullopt when absent or empty; throws HttpError(400) when not a number.
std::optional<std::int64_t> query_int(const api::Request& r, std::string_view name);
// ?filters=<json>; {} when absent. Throws HttpError(400) when malformed.
nlohmann::json query_filters(const api::Request& r);

}  // namespace berth::agent::runtime
