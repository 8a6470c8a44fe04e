#pragma once
// Temporary directories and an in-process Engine API for the network tests.
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

#include "agent/api/api.h"

namespace berth::agent::testing {

struct TempDir {
  std::filesystem::path path;
  TempDir() {
    char tmpl[] = "/tmp/berth-net-test-XXXXXX";
    path = ::mkdtemp(tmpl);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
};

inline api::Response call(const api::Api& api, std::string method, std::string target,
                          std::string body = "") {
  api::Request req;
  req.method = std::move(method);
  req.target = std::move(target);
  req.body = std::move(body);
  return api.handle(std::move(req));
}

inline nlohmann::json json_of(const api::Response& r) { return nlohmann::json::parse(r.body); }

}  // namespace berth::agent::testing
