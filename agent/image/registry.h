#pragma once
// Registry HTTP API v2 client: docker pull and push against a registry, over
// Boost.Beast + OpenSSL (plain HTTP for insecure registries).
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "agent/image/image_store.h"
#include "agent/image/progress.h"
#include "agent/image/reference.h"

namespace berth::agent::image {

struct RegistryOptions {
  std::vector<std::string> insecure_registries;  // host[:port] or CIDR
  std::vector<std::string> registry_mirrors;     // URLs, used for docker.io
  std::string ca_file;                           // extra CA bundle; default: system paths
};

// X-Registry-Auth: base64url JSON {username,password,serveraddress} or {identitytoken}.
struct RegistryAuth {
  std::string username;
  std::string password;
  std::string identity_token;
  std::string registry_token;
  bool empty() const { return username.empty() && identity_token.empty() && registry_token.empty(); }
};
RegistryAuth parse_registry_auth(std::string_view header);

// An error with the HTTP status dockerd answers with (before streaming) and
// its message.
class RegistryError : public std::runtime_error {
 public:
  RegistryError(unsigned status, const std::string& message) : std::runtime_error(message), status_(status) {}
  unsigned status() const noexcept { return status_; }

 private:
  unsigned status_;
};

// True when `host` ("host[:port]") is to be reached over plain HTTP / without
// certificate checks: listed in `insecure` (host[:port] or CIDR), or loopback.
bool is_insecure_registry(std::string_view host, const std::vector<std::string>& insecure);

// POST /auth: checks the credentials against the registry's /v2/ (an empty
// address is Docker Hub). Returns the identity token the token server issued
// ("" when none). Throws RegistryError: 401 for bad credentials, 500 when
// the registry cannot be reached.
std::string registry_login(const RegistryOptions& options, std::string_view server_address,
                           const RegistryAuth& auth);

// GET /distribution/{name}/json: {Descriptor: {mediaType, digest, size}, Platforms}.
// Throws RegistryError (401, 404, 500).
nlohmann::json distribution_inspect(const RegistryOptions& options, const Reference& ref, const RegistryAuth& auth);

// docker pull: resolve() talks to the registry and throws RegistryError
// (manifest unknown, denied, ...) before any progress is sent; run() fetches
// what is missing and streams dockerd's progress messages.
class Pull {
 public:
  Pull(ImageStore& store, RegistryOptions options, Reference ref, RegistryAuth auth);
  ~Pull();
  void resolve();
  // Returns normally after an error message was sent (errors go in the stream).
  void run(const MessageSink& sink);

 private:
  struct State;
  std::unique_ptr<State> s_;
};

// docker push of `repo` (every local tag of it when `tag` is empty).
// Throws RegistryError(404) before any output when nothing local matches.
class Push {
 public:
  Push(ImageStore& store, RegistryOptions options, Reference repo, std::string tag, RegistryAuth auth);
  ~Push();
  void check();
  void run(const MessageSink& sink);

 private:
  struct State;
  std::unique_ptr<State> s_;
};

}  // namespace berth::agent::image
