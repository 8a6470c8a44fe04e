#pragma once
// Reading handler input the way dockerd does: a JSON object body (empty means
// {}), typed fields that answer 400 when they have the wrong type, and
// boolean query values.
#include <cstddef>
#include <functional>
#include <initializer_list>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "agent/api/http.h"

namespace berth::agent::api {

// Throws HttpError(400, "invalid JSON body") unless the body is a JSON object.
nlohmann::json parse_json_object(const Request& request);
// Go's JSON decoding matches field names case-insensitively, and clients rely
// on it (python3-docker sends exec's "detachKeys"): each key of `object`
// that equals one of `names` but for case is renamed to it (an exact key wins).
void canonical_keys(nlohmann::json& object, std::initializer_list<const char*> names);
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
