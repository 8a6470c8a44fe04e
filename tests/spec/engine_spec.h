#pragma once
// The Engine API models from tests/spec/docker-engine-api-v1.47.yaml, as
// property names (generated at build time by engine_api_fields.py), so tests
// check that what the agent returns uses only the spec's field names.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

namespace berth::testing {

inline const nlohmann::json& engine_api_fields() {
  static const nlohmann::json fields = [] {
    std::ifstream in(BERTH_ENGINE_API_FIELDS);
    if (!in) throw std::runtime_error("cannot read " BERTH_ENGINE_API_FIELDS);
    return nlohmann::json::parse(in);
  }();
  return fields;
}

// The keys of `obj` that `model` does not define ("<not an object>" when it isn't one).
inline std::vector<std::string> unknown_spec_fields(const nlohmann::json& obj,
                                                    const std::string& model) {
  const nlohmann::json& names = engine_api_fields().at(model);
  if (!obj.is_object()) return {"<not an object>"};
  std::vector<std::string> unknown;
  for (const auto& [key, value] : obj.items()) {
    if (std::find(names.begin(), names.end(), key) == names.end()) unknown.push_back(key);
  }
  return unknown;
}

inline void expect_spec_fields(const nlohmann::json& obj, const std::string& model) {
  for (const std::string& key : unknown_spec_fields(obj, model)) {
    ADD_FAILURE() << model << " has \"" << key << "\", which the spec does not define";
  }
}

}  // namespace berth::testing
