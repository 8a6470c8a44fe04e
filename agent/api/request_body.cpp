#include "agent/api/request_body.h"

#include <algorithm>
#include <cctype>
#include <cstring>
#include <memory>

namespace berth::agent::api {

using nlohmann::json;

json parse_json_object(const Request& request) {
  if (request.body.empty()) return json::object();
  json j = json::parse(request.body, nullptr, false);
  if (j.is_discarded() || !j.is_object()) throw HttpError(400, "invalid JSON body");
  return j;
}

std::map<std::string, std::string> string_map_field(const json& body, const char* key) {
  std::map<std::string, std::string> out;
  auto it = body.find(key);
  if (it == body.end() || it->is_null()) return out;
  if (!it->is_object()) throw HttpError(400, std::string("invalid ") + key);
  for (auto& [k, v] : it->items()) {
    if (!v.is_string()) throw HttpError(400, std::string("invalid ") + key);
    out[k] = v.get<std::string>();
  }
  return out;
}

void canonical_keys(nlohmann::json& object, std::initializer_list<const char*> names) {
  if (!object.is_object()) return;
  auto lower = [](std::string_view text) {
    std::string out(text);
    for (char& ch : out) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    return out;
  };
  for (const char* name : names) {
    if (object.contains(name)) continue;
    const std::string wanted = lower(name);
    for (auto it = object.begin(); it != object.end(); ++it) {
      if (lower(it.key()) != wanted) continue;
      nlohmann::json value = std::move(it.value());
      object.erase(it);
      object[name] = std::move(value);
      break;
    }
  }
}

std::string string_field(const json& body, const char* key) {
  auto it = body.find(key);
  if (it == body.end() || it->is_null()) return "";
  if (!it->is_string()) throw HttpError(400, std::string("invalid ") + key);
  return it->get<std::string>();
}

bool query_bool(const Request& request, std::string_view name) {
  auto v = request.query_param(name);
  if (!v) return false;
  std::string s = *v;
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return !(s.empty() || s == "0" || s == "no" || s == "false" || s == "none");
}

std::function<std::size_t(char*, std::size_t)> body_reader(const Request& req) {
  if (req.body_reader) {
    BodyReader* reader = req.body_reader;
    return [reader](char* buf, std::size_t n) { return reader->read(buf, n); };
  }
  auto pos = std::make_shared<std::size_t>(0);
  const std::string* body = &req.body;
  return [body, pos](char* buf, std::size_t n) {
    std::size_t k = std::min(n, body->size() - *pos);
    std::memcpy(buf, body->data() + *pos, k);
    *pos += k;
    return k;
  };
}

std::vector<std::string> query_values(const Request& req, std::string_view name) {
  std::vector<std::string> out;
  std::string_view q = req.query;
  while (!q.empty()) {
    auto amp = q.find('&');
    std::string_view part = q.substr(0, amp);
    q = amp == std::string_view::npos ? std::string_view{} : q.substr(amp + 1);
    auto eq = part.find('=');
    auto key = percent_decode(part.substr(0, eq), true);
    if (!key || *key != name) continue;
    auto value = percent_decode(eq == std::string_view::npos ? "" : part.substr(eq + 1), true);
    if (value) out.push_back(*value);
  }
  return out;
}

}  // namespace berth::agent::api
