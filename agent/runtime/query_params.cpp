#include "agent/runtime/query_params.h"

#include <charconv>
#include <string>

namespace berth::agent::runtime {

std::optional<std::int64_t> query_int(const api::Request& r, std::string_view name) {
  auto v = r.query_param(name);
  if (!v || v->empty()) return std::nullopt;
  std::int64_t n = 0;
  auto [p, ec] = std::from_chars(v->data(), v->data() + v->size(), n);
  if (ec != std::errc() || p != v->data() + v->size())
    throw api::HttpError(400, "strconv.Atoi: parsing \"" + *v + "\": invalid syntax");
  return n;
}

nlohmann::json query_filters(const api::Request& r) {
  auto v = r.query_param("filters");
  if (!v || v->empty()) return nlohmann::json::object();
  nlohmann::json j = nlohmann::json::parse(*v, nullptr, false);
  if (j.is_discarded() || !j.is_object())
    throw api::HttpError(400, "invalid filter: " + *v);
  return j;
}

}  // namespace berth::agent::runtime
