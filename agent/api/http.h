#pragma once
// Transport-neutral HTTP request and response for the Engine API handlers.
// The server (agent/server.cpp) converts to and from Beast messages.
#include <cstddef>
#include <functional>
#include <map>
#include <stdexcept>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace berth::agent::api {

// Ordered; names compare case-insensitively.
class Headers {
 public:
  void set(std::string name, std::string value);  // replaces
  void add(std::string name, std::string value);  // appends
  std::optional<std::string> get(std::string_view name) const;
  const std::vector<std::pair<std::string, std::string>>& items() const { return items_; }

 private:
  std::vector<std::pair<std::string, std::string>> items_;
};

using Params = std::map<std::string, std::string, std::less<>>;

// A request body read incrementally. Routes added with RouteOptions::stream_body
// get one in Request::body_reader (and an empty Request::body); others get the
// whole body in Request::body.
class BodyReader {
 public:
  virtual ~BodyReader() = default;
  // Up to n bytes; 0 at the end of the body. Throws HttpError(400) when the
  // client sends a malformed body or goes away.
  virtual std::size_t read(char* buf, std::size_t n) = 0;
};

// A response body produced after the headers went out (chunked encoding):
// pull progress, logs -f, wait, stats.
class StreamWriter {
 public:
  virtual ~StreamWriter() = default;
  // Sends one chunk at once. False once the client has gone: stop producing.
  virtual bool write(std::string_view data) = 0;
  // True when the client has closed its side (checked without blocking).
  virtual bool client_gone() = 0;
};

// A connection taken over after the response headers (attach, exec start):
// "101 UPGRADED" with Upgrade: tcp, or a 200 raw stream for old clients.
class Connection {
 public:
  virtual ~Connection() = default;
  virtual bool write(std::string_view data) = 0;
  // Copies client -> in_fd and out_fd -> client until out_fd reaches EOF or
  // the client disconnects. in_fd may be -1 (client input is discarded). When
  // the client half-closes, a socket in_fd gets shutdown(SHUT_WR) and any other
  // in_fd (a pipe) is CLOSED by pump, so the reader sees EOF; copying out_fd ->
  // client goes on. out_fd and a socket in_fd stay open.
  // `filter` decides what of the client's input reaches in_fd; its false ends
  // the pump at once (a detach: the client's connection closes, nothing else).
  using InputFilter = std::function<bool(std::string_view in, std::string& out)>;
  virtual void pump(int in_fd, int out_fd, const InputFilter& filter) = 0;
  void pump(int in_fd, int out_fd) { pump(in_fd, out_fd, {}); }
};

// Thrown by handlers for a dockerd-style error: {"message": ...} with `status`.
class HttpError : public std::runtime_error {
 public:
  HttpError(unsigned status, const std::string& message)
      : std::runtime_error(message), status_(status) {}
  unsigned status() const noexcept { return status_; }

 private:
  unsigned status_;
};

struct Request {
  std::string method;  // "GET", "HEAD", ...
  std::string target;  // as received: /v1.47/containers/json?all=1
  Headers headers;
  std::string body;
  BodyReader* body_reader = nullptr;  // only for RouteOptions::stream_body routes
  std::string client_cn;  // common name of the verified client certificate

  // Set by Api::handle before the handler runs.
  std::string path;         // percent-decoded, without version prefix and query
  std::string query;        // raw, without '?'
  std::string api_version;  // from the /vX.Y prefix, else kApiVersion
  Params params;            // from {name} segments of the route

  // The percent-decoded value of ?name=...; nullopt when absent.
  std::optional<std::string> query_param(std::string_view name) const;
};

struct Response {
  unsigned status = 200;
  Headers headers;
  std::string body;
  // When set, `body` is ignored: the headers go out with chunked encoding and
  // then this runs on the connection's thread.
  std::function<void(StreamWriter&)> stream;
  // When set, the headers go out (set status 101 and "Upgrade: tcp" /
  // "Connection: Upgrade" when the request asked to upgrade, else 200 with
  // Content-Type application/vnd.docker.raw-stream or
  // application/vnd.docker.multiplexed-stream) and this owns the connection;
  // it is closed afterwards.
  std::function<void(Connection&)> hijack;

  // dockerd's encoding: compact JSON plus a newline, Content-Type application/json.
  static Response json(unsigned status, const nlohmann::json& body);
  static Response text(unsigned status, std::string body);
  // {"message": "..."} as dockerd sends errors.
  static Response error(unsigned status, std::string_view message);
};

// "%41b+c" -> "Ab+c" (with plus_as_space: "Ab c"); nullopt for a malformed escape.
std::optional<std::string> percent_decode(std::string_view in, bool plus_as_space = false);

}  // namespace berth::agent::api
