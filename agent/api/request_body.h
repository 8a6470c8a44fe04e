#pragma once
// Reading handler input the way dockerd does: a JSON object body (empty means
// {}), typed fields that answer 400 when they have the wrong type, and
// boolean query values.
#include <cstddef>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "agent/api/http.h"

namespace berth::agent::api {

// Throws HttpError(400, "invalid JSON body") unless the body is a JSON object.
nlohmann::json parse_json_object(const Request& request);
// body[key] as a string->string map ({} when absent); 400 "invalid KEY" otherwise.
std::map<std::string, std::string> string_map_field(const nlohmann::json& body, const char* key);
// body[key] as a string ("" when absent); 400 "invalid KEY" otherwise.
std::string string_field(const nlohmann::json& body, const char* key);
// The request body as a reader, streamed or whole (image::ReadFn's type):
// up to n bytes into buf, 0 at the end.
std::function<std::size_t(char* buf, std::size_t n)> body_reader(const Request& request);
// Every value of a repeated query parameter (?t=a&t=b), percent-decoded.
std::vector<std::string> query_values(const Request& request, std::string_view name);
// dockerd's boolValue: absent, "", "0", "no", "false" and "none" are false.
bool query_bool(const Request& request, std::string_view name);

}  // namespace berth::agent::api
