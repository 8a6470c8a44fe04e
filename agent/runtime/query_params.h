#pragma once
// Query-string values as dockerd reads them (booleans: api::query_bool).
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string_view>

#include "agent/api/http.h"

namespace berth::agent::runtime {

// nullopt when absent or empty; throws HttpError(400) when not a number.
std::optional<std::int64_t> query_int(const api::Request& r, std::string_view name);
// ?filters=<json>; {} when absent. Throws HttpError(400) when malformed.
nlohmann::json query_filters(const api::Request& r);

}  // namespace berth::agent::runtime
