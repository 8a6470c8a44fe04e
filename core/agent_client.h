#pragma once
// A small HTTPS client (libcurl) that talks to berth-agent (or any Docker
// engine) with the client certificate: used for the post-provision check,
// `ls`'s DOCKER column and `status`.
#include <chrono>
#include <functional>
#include <string>
#include <string_view>

namespace berth {

struct AgentEndpoint {
  std::string url;          // tcp://host:port or https://host:port
  std::string ca_cert;      // paths
  std::string client_cert;
  std::string client_key;
};

struct AgentResponse {
  long status = 0;          // 0 when no HTTP exchange happened
  std::string body;
  std::string error;        // transport/TLS error text, empty on success
};

// GET path (e.g. "/_ping", "/version") with a total timeout. Never throws.
AgentResponse agent_get(const AgentEndpoint& ep, const std::string& path,
                        std::chrono::milliseconds timeout);

// METHOD path with a JSON body (berth's own /berth/... routes). Never throws.
AgentResponse agent_request(const AgentEndpoint& ep, const std::string& method, const std::string& path,
                            const std::string& body, std::chrono::milliseconds timeout);

// GET path and hand the body to `sink` piece by piece as it arrives (for
// /events). Returns when the body ends, `sink` returns false, or `should_stop`
// turns true (checked at least once a second). Never throws.
AgentResponse agent_stream(const AgentEndpoint& ep, const std::string& path,
                           const std::function<bool(std::string_view)>& sink,
                           const std::function<bool()>& should_stop, std::chrono::milliseconds connect_timeout);

// GET /version and return .Version ("" with `error` set when unreachable).
std::string agent_docker_version(const AgentEndpoint& ep, std::chrono::milliseconds timeout,
                                 std::string* error = nullptr);

// Polls /_ping until it answers 200 "OK" or the deadline passes; throws
// berth::Error naming the URL and the last error.
void wait_for_agent(const AgentEndpoint& ep, std::chrono::milliseconds deadline);

}  // namespace berth
