#include "agent/image/registry.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <zlib.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <optional>

#include "agent/image/digest.h"
#include "agent/image/fs_util.h"
#include "agent/image/http_client.h"

namespace berth::agent::image {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr std::string_view kMediaDockerManifest = "application/vnd.docker.distribution.manifest.v2+json";
constexpr std::string_view kMediaDockerList = "application/vnd.docker.distribution.manifest.list.v2+json";
constexpr std::string_view kMediaOciManifest = "application/vnd.oci.image.manifest.v1+json";
constexpr std::string_view kMediaOciIndex = "application/vnd.oci.image.index.v1+json";
constexpr std::string_view kMediaDockerConfig = "application/vnd.docker.container.image.v1+json";
constexpr std::string_view kHubRegistry = "https://registry-1.docker.io";
// Image configs are a few KiB; one past this is refused during pull without
// reading the rest, so a hostile registry cannot fill the agent's memory.
constexpr std::size_t kMaxConfigBytes = 8 << 20;

// "MANIFEST_UNKNOWN" + "manifest unknown" -> "manifest unknown: manifest unknown", as
// distribution's errcode.Error prints registry errors.
std::string registry_error_text(const HttpResponse& resp) {
  json doc = json::parse(resp.body, nullptr, false);
  if (doc.is_object() && doc.contains("errors") && doc["errors"].is_array() && !doc["errors"].empty()) {
    std::string out;
    for (const auto& e : doc["errors"]) {
      std::string code = e.value("code", "UNKNOWN");
      for (auto& c : code) c = c == '_' ? ' ' : static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      if (!out.empty()) out += ", ";
      out += code + ": " + e.value("message", "");
    }
    return out;
  }
  if (resp.status == 401) return "unauthorized: authentication required";
  if (resp.status == 404) return "not found";
  return "unexpected status from registry: " + std::to_string(resp.status);
}

bool has_error_code(const HttpResponse& resp, std::string_view code) {
  json doc = json::parse(resp.body, nullptr, false);
  if (!doc.is_object() || !doc.contains("errors") || !doc["errors"].is_array()) return false;
  for (const auto& e : doc["errors"])
    if (e.value("code", "") == code) return true;
  return false;
}

// WWW-Authenticate: Bearer realm="...",service="...",scope="..."
struct Challenge {
  std::string scheme;  // "bearer" / "basic"
  std::map<std::string, std::string> params;
};
std::optional<Challenge> parse_challenge(const std::vector<std::string>& values) {
  for (const auto& v : values) {
    Challenge c;
    auto sp = v.find(' ');
    c.scheme = v.substr(0, sp);
    for (auto& ch : c.scheme) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    std::size_t i = sp == std::string::npos ? v.size() : sp + 1;
    while (i < v.size()) {
      while (i < v.size() && (v[i] == ' ' || v[i] == ',')) ++i;
      auto eq = v.find('=', i);
      if (eq == std::string::npos) break;
      std::string key = v.substr(i, eq - i);
      for (auto& ch : key) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
      i = eq + 1;
      std::string value;
      if (i < v.size() && v[i] == '"') {
        ++i;
        while (i < v.size() && v[i] != '"') {
          if (v[i] == '\\' && i + 1 < v.size()) ++i;
          value += v[i++];
        }
        ++i;
      } else {
        while (i < v.size() && v[i] != ',') value += v[i++];
      }
      c.params[key] = value;
    }
    if (c.scheme == "bearer" || c.scheme == "basic") return c;
  }
  return std::nullopt;
}

std::optional<std::pair<std::array<unsigned char, 16>, int>> parse_ip(const std::string& text) {
  std::array<unsigned char, 16> buf{};
  if (inet_pton(AF_INET, text.c_str(), buf.data()) == 1) return std::make_pair(buf, 4);
  if (inet_pton(AF_INET6, text.c_str(), buf.data()) == 1) return std::make_pair(buf, 16);
  return std::nullopt;
}

bool in_cidr(const std::pair<std::array<unsigned char, 16>, int>& ip, const std::string& cidr) {
  auto slash = cidr.find('/');
  if (slash == std::string::npos) return false;
  auto net = parse_ip(cidr.substr(0, slash));
  if (!net || net->second != ip.second) return false;
  int bits = std::atoi(cidr.c_str() + slash + 1);
  for (int i = 0; i < ip.second && bits > 0; ++i, bits -= 8) {
    unsigned mask = bits >= 8 ? 0xffu : (0xffu << (8 - bits)) & 0xffu;
    if ((ip.first[i] & mask) != (net->first[i] & mask)) return false;
  }
  return true;
}

std::vector<std::pair<std::array<unsigned char, 16>, int>> host_addresses(const std::string& host) {
  std::vector<std::pair<std::array<unsigned char, 16>, int>> out;
  if (auto ip = parse_ip(host)) return {*ip};
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (getaddrinfo(host.c_str(), nullptr, &hints, &res) != 0) return out;
  for (addrinfo* a = res; a; a = a->ai_next) {
    std::array<unsigned char, 16> buf{};
    if (a->ai_family == AF_INET) {
      std::memcpy(buf.data(), &reinterpret_cast<sockaddr_in*>(a->ai_addr)->sin_addr, 4);
      out.emplace_back(buf, 4);
    } else if (a->ai_family == AF_INET6) {
      std::memcpy(buf.data(), &reinterpret_cast<sockaddr_in6*>(a->ai_addr)->sin6_addr, 16);
      out.emplace_back(buf, 16);
    }
  }
  freeaddrinfo(res);
  return out;
}

// One registry endpoint with its credentials and token, for one repository.
class Session {
 public:
  Session(Url base, bool insecure, RegistryAuth auth, std::string repo_path, std::string scope_actions,
          std::string ca_file)
      : base_(std::move(base)), insecure_(insecure), auth_(std::move(auth)), repo_(std::move(repo_path)),
        actions_(std::move(scope_actions)), ca_file_(std::move(ca_file)) {}

  // GET /v2/ and the token for our scope; falls back to plain HTTP for an
  // insecure registry that does not speak TLS.
  void login() {
    HttpResponse ping;
    try {
      ping = raw("GET", "/v2/");
    } catch (const TransportError& e) {
      if (!insecure_ || base_.scheme != "https") throw;
      base_.scheme = "http";
      if (base_.port == "443") base_.port = "80";
      ping = raw("GET", "/v2/");
    }
    if (ping.status == 401) authorize(ping);
  }

  const Url& base() const { return base_; }
  // The token server's refresh token (docker login's IdentityToken), "" when none.
  const std::string& refresh_token() const { return refresh_token_; }

  // A request to base + path, with the authorization; re-authorizes once on 401
  // for requests without a body.
  HttpResponse call(const std::string& method, const std::string& target, std::vector<std::pair<std::string, std::string>> headers = {},
                    const std::function<void(const char*, std::size_t)>& sink = {}, ReadFn body = {},
                    std::uint64_t body_size = 0, bool absolute = false) {
    HttpResponse resp = raw(method, target, headers, sink, body, body_size, absolute);
    if (resp.status == 401 && !body) {
      authorize(resp);
      resp = raw(method, target, headers, sink, body, body_size, absolute);
    }
    return resp;
  }

  std::string repo_target(const std::string& suffix) const { return "/v2/" + repo_ + suffix; }

 private:
  HttpResponse raw(const std::string& method, const std::string& target,
                   std::vector<std::pair<std::string, std::string>> headers = {},
                   const std::function<void(const char*, std::size_t)>& sink = {}, ReadFn body = {},
                   std::uint64_t body_size = 0, bool absolute = false) {
    HttpRequest req;
    req.method = method;
    req.url = absolute ? parse_url(target) : base_;
    if (!absolute) req.url.target = target;
    req.headers = std::move(headers);
    if (!authorization_.empty() && (!absolute || req.url.origin() == base_.origin()))
      req.headers.emplace_back("Authorization", authorization_);
    req.body = std::move(body);
    req.body_size = body_size;
    req.verify_tls = !insecure_;
    req.ca_file = ca_file_;
    return http_request(std::move(req), sink);
  }

  void authorize(const HttpResponse& challenge_resp) {
    auto challenge = parse_challenge(challenge_resp.www_authenticate);
    if (!challenge) return;
    if (challenge->scheme == "basic") {
      if (!auth_.username.empty())
        authorization_ = "Basic " + base64_encode(auth_.username + ":" + auth_.password);
      return;
    }
    if (!auth_.registry_token.empty()) {
      authorization_ = "Bearer " + auth_.registry_token;
      return;
    }
    std::string realm = challenge->params["realm"];
    if (realm.empty()) return;
    std::string service = challenge->params["service"];
    // No repository: a login check (docker login), which asks for no scope.
    std::string scope = repo_.empty() ? "" : "repository:" + repo_ + ":" + actions_;
    HttpRequest req;
    req.verify_tls = !insecure_;
    req.ca_file = ca_file_;
    if (!auth_.identity_token.empty()) {
      // OAuth2 refresh token grant, as docker does for an identity token.
      req.method = "POST";
      req.url = parse_url(realm);
      std::string form = "grant_type=refresh_token&client_id=docker&service=" + url_encode(service) +
                         (scope.empty() ? "" : "&scope=" + url_encode(scope)) +
                         "&refresh_token=" + url_encode(auth_.identity_token);
      req.headers.emplace_back("Content-Type", "application/x-www-form-urlencoded");
      auto data = std::make_shared<std::string>(form);
      auto pos = std::make_shared<std::size_t>(0);
      req.body = [data, pos](char* buf, std::size_t n) {
        std::size_t k = std::min(n, data->size() - *pos);
        std::memcpy(buf, data->data() + *pos, k);
        *pos += k;
        return k;
      };
      req.body_size = form.size();
    } else {
      std::string url = realm + (realm.find('?') == std::string::npos ? "?" : "&");
      if (!service.empty()) url += "service=" + url_encode(service) + "&";
      if (!scope.empty()) url += "scope=" + url_encode(scope);
      else url += "client_id=docker&offline_token=true" + (auth_.username.empty() ? "" : "&account=" + url_encode(auth_.username));
      req.url = parse_url(url);
      if (!auth_.username.empty())
        req.headers.emplace_back("Authorization", "Basic " + base64_encode(auth_.username + ":" + auth_.password));
    }
    HttpResponse resp = http_request(std::move(req));
    if (resp.status == 401 || resp.status == 403)
      throw RegistryError(401, "Get \"" + realm + "\": unauthorized: incorrect username or password");
    if (resp.status != 200)
      throw RegistryError(500, "token request to " + realm + " failed with status " + std::to_string(resp.status));
    json doc = json::parse(resp.body, nullptr, false);
    std::string token = doc.is_object() ? doc.value("token", doc.value("access_token", "")) : "";
    if (token.empty()) throw RegistryError(500, "token request to " + realm + " returned no token");
    authorization_ = "Bearer " + token;
    if (doc.contains("refresh_token") && doc["refresh_token"].is_string()) refresh_token_ = doc["refresh_token"].get<std::string>();
  }

  Url base_;
  bool insecure_;
  RegistryAuth auth_;
  std::string repo_;
  std::string actions_;
  std::string ca_file_;
  std::string authorization_;
  std::string refresh_token_;
};

std::vector<Url> endpoints_for(const Reference& ref, const RegistryOptions& options, bool for_pull) {
  std::vector<Url> out;
  if (ref.is_docker_hub()) {
    if (for_pull)
      for (const auto& m : options.registry_mirrors) {
        try {
          Url u = parse_url(m);
          u.target = "/";
          out.push_back(u);
        } catch (const std::invalid_argument&) {
        }
      }
    out.push_back(parse_url(kHubRegistry));
  } else {
    out.push_back(parse_url("https://" + ref.domain));
  }
  return out;
}

// Throttles progress messages to about one per 512 KiB.
struct Throttle {
  std::uint64_t last = 0;
  bool due(std::uint64_t now, std::uint64_t total) {
    if (now == total || now - last >= 512 * 1024 || last == 0) {
      last = now;
      return true;
    }
    return false;
  }
};

std::string error_for_pull(const Reference& ref, const HttpResponse& resp, bool manifest) {
  std::string text = registry_error_text(resp);
  if (resp.status == 401 || resp.status == 403 || has_error_code(resp, "NAME_UNKNOWN") ||
      has_error_code(resp, "DENIED"))
    return "pull access denied for " + ref.familiar_name() +
           ", repository does not exist or may require 'docker login': " + text;
  if (manifest && resp.status == 404) {
    std::string what = ref.familiar_name() + ":" + (ref.tag.empty() ? ref.digest : ref.tag);
    if (ref.tag.empty()) what = ref.familiar_name() + "@" + ref.digest;
    return "manifest for " + what + " not found: " + text;
  }
  return text;
}

}  // namespace

RegistryAuth parse_registry_auth(std::string_view header) {
  RegistryAuth auth;
  if (header.empty()) return auth;
  auto decoded = base64_decode(header);
  if (!decoded) return auth;
  json doc = json::parse(*decoded, nullptr, false);
  if (!doc.is_object()) return auth;
  auth.username = doc.value("username", "");
  auth.password = doc.value("password", "");
  auth.identity_token = doc.value("identitytoken", "");
  auth.registry_token = doc.value("registrytoken", "");
  if (auth.username.empty() && doc.contains("auth")) {
    auto pair = base64_decode(doc.value("auth", ""));
    if (pair) {
      auto colon = pair->find(':');
      auth.username = pair->substr(0, colon);
      if (colon != std::string::npos) auth.password = pair->substr(colon + 1);
    }
  }
  return auth;
}

bool is_insecure_registry(std::string_view host_port, const std::vector<std::string>& insecure) {
  std::string hp(host_port);
  for (const auto& entry : insecure)
    if (entry == hp) return true;
  std::string host = hp;
  if (!host.empty() && host[0] == '[') {
    host = host.substr(1, host.find(']') - 1);
  } else if (auto colon = host.rfind(':'); colon != std::string::npos && host.find(':') == colon) {
    host = host.substr(0, colon);
  }
  std::vector<std::string> cidrs{"127.0.0.0/8", "::1/128"};
  for (const auto& entry : insecure)
    if (entry.find('/') != std::string::npos) cidrs.push_back(entry);
  for (const auto& ip : host_addresses(host))
    for (const auto& c : cidrs)
      if (in_cidr(ip, c)) return true;
  return false;
}

// ---------------------------------------------------------------- pull

namespace {
struct ClientGone {};
}  // namespace

struct Pull::State {
  ImageStore& store;
  RegistryOptions options;
  Reference ref;
  RegistryAuth auth;
  std::unique_ptr<Session> session;
  std::string manifest_digest;  // the top-level one (a list's when there is one)
  json manifest;                // the platform's image manifest
  std::string config_bytes;
  std::string image_id;
};

Pull::Pull(ImageStore& store, RegistryOptions options, Reference ref, RegistryAuth auth)
    : s_(new State{store, std::move(options), std::move(ref), std::move(auth), nullptr, {}, {}, {}, {}}) {}
Pull::~Pull() = default;

void Pull::resolve() {
  auto& s = *s_;
  std::string last_error;
  unsigned last_status = 500;
  const std::string accept = std::string(kMediaOciIndex) + ", " + std::string(kMediaDockerList) + ", " +
                             std::string(kMediaOciManifest) + ", " + std::string(kMediaDockerManifest);
  auto endpoints = endpoints_for(s.ref, s.options, true);
  for (std::size_t i = 0; i < endpoints.size(); ++i) {
    bool mirror = i + 1 < endpoints.size();
    try {
      bool insecure = is_insecure_registry(endpoints[i].authority(), s.options.insecure_registries);
      auto session = std::make_unique<Session>(endpoints[i], insecure, mirror ? RegistryAuth{} : s.auth,
                                               s.ref.path, "pull", s.options.ca_file);
      session->login();
      auto fetch = [&](const std::string& reference) {
        HttpResponse resp = session->call("GET", session->repo_target("/manifests/" + reference), {{"Accept", accept}});
        if (resp.status != 200) throw RegistryError(resp.status == 404 || resp.status == 401 || resp.status == 403 ? 404 : 500,
                                                    error_for_pull(s.ref, resp, true));
        std::string digest = sha256_digest(resp.body);
        if (is_sha256_digest(reference) && digest != reference)
          throw RegistryError(500, "manifest verification failed for digest " + reference);
        return std::make_pair(digest, resp.body);
      };
      auto [digest, body] = fetch(s.ref.digest.empty() ? s.ref.tag : s.ref.digest);
      json doc = json::parse(body, nullptr, false);
      if (!doc.is_object()) throw RegistryError(500, "invalid manifest from registry");
      s.manifest_digest = digest;
      if (doc.value("schemaVersion", 0) == 1)
        throw RegistryError(500, "[DEPRECATION NOTICE] Docker Image Format v1 and Docker Image manifest version 2, schema 1 "
                                 "support is disabled by default: " + s.ref.familiar_string());
      if (doc.contains("manifests")) {
        std::string chosen;
        for (const auto& m : doc["manifests"]) {
          const json platform = m.value("platform", json::object());
          if (platform.value("os", "") == "linux" && platform.value("architecture", "") == "amd64") {
            chosen = m.value("digest", "");
            break;
          }
        }
        if (chosen.empty())
          throw RegistryError(404, "no matching manifest for linux/amd64 in the manifest list entries");
        doc = json::parse(fetch(chosen).second, nullptr, false);
        if (!doc.is_object()) throw RegistryError(500, "invalid manifest from registry");
      }
      if (!doc.contains("config") || !doc.contains("layers")) throw RegistryError(500, "unsupported manifest format");
      s.manifest = doc;
      std::string config_digest = doc["config"].value("digest", "");
      if (!is_sha256_digest(config_digest)) throw RegistryError(500, "unsupported config digest " + config_digest);
      auto too_large = [&] {
        return RegistryError(500, "image config for " + s.ref.familiar_string() + " is larger than the limit of " +
                                      std::to_string(kMaxConfigBytes >> 20) + " MiB");
      };
      const json& declared = doc["config"].value("size", json());
      if (declared.is_number_unsigned() && declared.get<std::uint64_t>() > kMaxConfigBytes) throw too_large();
      std::string config;
      // Stops reading (and drops the connection) once past the limit, whatever the headers said.
      HttpResponse resp = session->call("GET", session->repo_target("/blobs/" + config_digest), {},
                                        [&](const char* p, std::size_t n) {
                                          if (config.size() + n > kMaxConfigBytes) throw too_large();
                                          config.append(p, n);
                                        });
      if (resp.status != 200) throw RegistryError(500, error_for_pull(s.ref, resp, false));
      if (sha256_digest(config) != config_digest)
        throw RegistryError(500, "failed to verify config: digest mismatch for " + config_digest);
      s.config_bytes = config;
      s.image_id = config_digest;
      s.session = std::move(session);
      return;
    } catch (const RegistryError& e) {
      last_error = e.what();
      last_status = e.status();
    } catch (const TransportError& e) {
      last_error = e.what();
      last_status = 500;
    } catch (const std::exception& e) {
      last_error = e.what();
      last_status = 500;
    }
    if (!mirror) break;
  }
  throw RegistryError(last_status, last_error);
}

void Pull::run(const MessageSink& sink) {
  auto& s = *s_;
  // Stops the work once the client has gone.
  auto emit = [&](const json& m) {
    if (!sink(m)) throw ClientGone();
  };
  try {
    std::string first_id = s.ref.digest.empty() ? s.ref.tag : s.ref.digest;
    emit(status_message("Pulling from " + s.ref.path, first_id));
    json config = json::parse(s.config_bytes);
    std::vector<std::string> diff_ids;
    for (const auto& d : config.at("rootfs").at("diff_ids")) diff_ids.push_back(d.get<std::string>());
    const json& layers = s.manifest["layers"];
    if (layers.size() != diff_ids.size()) throw std::runtime_error("manifest and config disagree on the layer count");
    std::vector<std::string> chains;
    std::string parent;
    for (const auto& d : diff_ids) chains.push_back(parent = chain_id(parent, d));
    std::vector<bool> present;
    bool downloaded = false;
    for (std::size_t i = 0; i < layers.size(); ++i) {
      present.push_back(s.store.layer(chains[i]).has_value());
      std::string id = short_id(layers[i].value("digest", ""));
      emit(status_message(present.back() ? "Already exists" : "Pulling fs layer", id));
    }
    for (std::size_t i = 0; i < layers.size(); ++i)
      if (!present[i] && i > 0 && !present[i - 1]) emit(status_message("Waiting", short_id(layers[i].value("digest", ""))));
    parent.clear();
    for (std::size_t i = 0; i < layers.size(); ++i) {
      std::string digest = layers[i].value("digest", "");
      std::string media = layers[i].value("mediaType", std::string(kMediaLayerGzip));
      std::uint64_t size = layers[i].value("size", std::uint64_t{0});
      std::string id = short_id(digest);
      if (present[i]) {
        parent = chains[i];
        continue;
      }
      if (!is_sha256_digest(digest)) throw std::runtime_error("unsupported layer digest " + digest);
      downloaded = true;
      if (!s.store.has_blob(digest)) {
        TempFile tmp(s.store.root() / "tmp");
        Sha256 hash;
        std::uint64_t got = 0;
        Throttle throttle;
        HttpResponse resp = s.session->call("GET", s.session->repo_target("/blobs/" + digest), {},
                                            [&](const char* p, std::size_t n) {
                                              tmp.write(p, n);
                                              hash.update(p, n);
                                              got += n;
                                              if (throttle.due(got, size)) emit(progress_message("Downloading", id, got, size));
                                            });
        if (resp.status != 200) throw std::runtime_error(error_for_pull(s.ref, resp, false));
        emit(status_message("Verifying Checksum", id));
        if (hash.digest() != digest)
          throw std::runtime_error("filesystem layer verification failed for digest " + digest);
        tmp.commit(s.store.blob_path(digest));
      }
      emit(status_message("Download complete", id));
      Throttle throttle;
      std::uint64_t blob_size = fs::file_size(s.store.blob_path(digest));
      s.store.add_layer(parent, {digest, media, blob_size}, diff_ids[i], [&](std::uint64_t done) {
        if (throttle.due(done, blob_size)) emit(progress_message("Extracting", id, done, blob_size));
      });
      emit(status_message("Pull complete", id));
      parent = chains[i];
    }
    bool had_tag = false;
    if (!s.ref.tag.empty()) {
      auto current = s.store.find(s.ref.string());
      had_tag = current && *current == s.image_id;
    }
    std::string id = s.store.add_image(s.config_bytes);
    if (!s.ref.tag.empty()) s.store.tag(id, s.ref);
    Reference by_digest = s.ref;
    by_digest.tag.clear();
    by_digest.digest = s.manifest_digest;
    s.store.tag(id, by_digest);
    emit(status_message("Digest: " + s.manifest_digest));
    bool up_to_date = !downloaded && (had_tag || s.ref.tag.empty());
    emit(status_message(std::string(up_to_date ? "Status: Image is up to date for " : "Status: Downloaded newer image for ") +
                        s.ref.familiar_string()));
  } catch (const ClientGone&) {
  } catch (const std::exception& e) {
    sink(error_message(e.what()));
  }
}

// ---------------------------------------------------------------- push

namespace {

// gzip of the layer's uncompressed tarball, stored as a blob; returns it.
LayerBlob gzip_layer(ImageStore& store, const LayerInfo& layer) {
  TempFile tmp(store.root() / "tmp");
  Sha256 hash;
  z_stream z{};
  if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
    throw std::runtime_error("gzip: cannot initialize");
  std::unique_ptr<z_stream, int (*)(z_stream*)> guard(&z, deflateEnd);
  std::vector<unsigned char> out(256 * 1024);
  auto pump = [&](const char* p, std::size_t n, int flush) {
    z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(p));
    z.avail_in = static_cast<uInt>(n);
    int r;
    do {
      z.next_out = out.data();
      z.avail_out = static_cast<uInt>(out.size());
      r = deflate(&z, flush);
      if (r == Z_STREAM_ERROR) throw std::runtime_error("gzip: deflate failed");
      std::size_t have = out.size() - z.avail_out;
      tmp.write(out.data(), have);
      hash.update(out.data(), have);
    } while (z.avail_out == 0 || (flush == Z_FINISH && r != Z_STREAM_END));
  };
  const LayerBlob& source = layer.blobs.front();
  decompress_stream(file_reader(store.blob_path(source.digest)), [&](const char* p, std::size_t n) { pump(p, n, Z_NO_FLUSH); });
  pump(nullptr, 0, Z_FINISH);
  LayerBlob blob{hash.digest(), std::string(kMediaLayerGzip), tmp.size()};
  tmp.commit(store.blob_path(blob.digest));
  store.add_layer_blob(layer.chain_id, blob);
  return blob;
}

std::string location_with_digest(const std::string& location, const std::string& digest) {
  return location + (location.find('?') == std::string::npos ? "?" : "&") + "digest=" + url_encode(digest);
}

}  // namespace

struct Push::State {
  ImageStore& store;
  RegistryOptions options;
  Reference repo;
  std::string tag;
  RegistryAuth auth;
  std::vector<std::pair<std::string, std::string>> targets;  // tag, image id
};

Push::Push(ImageStore& store, RegistryOptions options, Reference repo, std::string tag, RegistryAuth auth)
    : s_(new State{store, std::move(options), std::move(repo), std::move(tag), std::move(auth), {}}) {}
Push::~Push() = default;

void Push::check() {
  auto& s = *s_;
  for (const auto& rec : s.store.images())
    for (const auto& t : rec.tags)
      if (t.name() == s.repo.name() && (s.tag.empty() || t.tag == s.tag)) s.targets.emplace_back(t.tag, rec.id);
  std::sort(s.targets.begin(), s.targets.end());
  if (s.targets.empty()) {
    if (!s.tag.empty())
      throw RegistryError(404, "No such image: " + s.repo.familiar_name() + ":" + s.tag);
    throw RegistryError(404, "An image does not exist locally with the tag: " + s.repo.familiar_name());
  }
}

void Push::run(const MessageSink& sink) {
  auto& s = *s_;
  // Stops the work once the client has gone.
  auto emit = [&](const json& m) {
    if (!sink(m)) throw ClientGone();
  };
  try {
    emit(status_message("The push refers to repository [" + s.repo.name() + "]"));
    Url endpoint = endpoints_for(s.repo, s.options, false).front();
    Session session(endpoint, is_insecure_registry(endpoint.authority(), s.options.insecure_registries), s.auth,
                    s.repo.path, "pull,push", s.options.ca_file);
    session.login();
    auto exists = [&](const std::string& digest) {
      HttpResponse r = session.call("HEAD", session.repo_target("/blobs/" + digest));
      if (r.status == 200) return true;
      if (r.status == 404) return false;
      throw std::runtime_error(registry_error_text(r));
    };
    auto upload = [&](const std::string& digest, const fs::path& file, const std::string& id) {
      HttpResponse start = session.call("POST", session.repo_target("/blobs/uploads/"), {}, {}, [](char*, std::size_t) { return std::size_t{0}; }, 0);
      if (start.status != 202) throw std::runtime_error(registry_error_text(start));
      std::string location = resolve_url(session.base(), start.header("location")).string();
      std::uint64_t size = fs::file_size(file);
      auto reader = file_reader(file);
      std::uint64_t sent = 0;
      Throttle throttle;
      ReadFn counted = [&](char* buf, std::size_t n) {
        std::size_t k = reader(buf, n);
        sent += k;
        if (!id.empty() && throttle.due(sent, size)) emit(progress_message("Pushing", id, sent, size));
        return k;
      };
      HttpResponse put = session.call("PUT", location_with_digest(location, digest),
                                      {{"Content-Type", "application/octet-stream"}}, {}, counted, size, true);
      if (put.status != 201 && put.status != 204) throw std::runtime_error(registry_error_text(put));
    };
    for (const auto& [tag, image_id] : s.targets) {
      auto rec = s.store.image(image_id);
      if (!rec) throw std::runtime_error("No such image: " + image_id);
      std::vector<LayerInfo> layers;
      for (const auto& chain : rec->chain_ids) {
        auto info = s.store.layer(chain);
        if (!info || info->blobs.empty()) throw std::runtime_error("layer " + chain + " is missing");
        layers.push_back(*info);
      }
      for (auto it = layers.rbegin(); it != layers.rend(); ++it) emit(status_message("Preparing", short_id(it->diff_id)));
      json manifest_layers = json::array();
      std::vector<json> descriptors(layers.size());
      for (std::size_t i = layers.size(); i-- > 0;) {
        const LayerInfo& layer = layers[i];
        std::string id = short_id(layer.diff_id);
        std::optional<LayerBlob> blob;
        for (const auto& b : layer.blobs)
          if (b.media_type == kMediaLayerGzip && s.store.has_blob(b.digest)) blob = b;
        if (!blob) blob = gzip_layer(s.store, layer);
        if (exists(blob->digest)) {
          emit(status_message("Layer already exists", id));
        } else {
          upload(blob->digest, s.store.blob_path(blob->digest), id);
          emit(status_message("Pushed", id));
        }
        descriptors[i] = {{"mediaType", kMediaLayerGzip}, {"size", blob->size}, {"digest", blob->digest}};
      }
      for (auto& d : descriptors) manifest_layers.push_back(d);
      std::string config = *read_file(s.store.root() / "images" / "sha256" / std::string(digest_hex(image_id)));
      if (!exists(image_id)) {
        TempFile tmp(s.store.root() / "tmp");
        tmp.write(config.data(), config.size());
        upload(image_id, tmp.path(), "");
      }
      json manifest = {{"schemaVersion", 2},
                       {"mediaType", kMediaDockerManifest},
                       {"config", {{"mediaType", kMediaDockerConfig}, {"size", config.size()}, {"digest", image_id}}},
                       {"layers", manifest_layers}};
      std::string bytes = manifest.dump(3);
      auto data = std::make_shared<std::string>(bytes);
      auto pos = std::make_shared<std::size_t>(0);
      ReadFn body = [data, pos](char* buf, std::size_t n) {
        std::size_t k = std::min(n, data->size() - *pos);
        std::memcpy(buf, data->data() + *pos, k);
        *pos += k;
        return k;
      };
      HttpResponse put = session.call("PUT", session.repo_target("/manifests/" + tag),
                                      {{"Content-Type", std::string(kMediaDockerManifest)}}, {}, body, bytes.size());
      if (put.status != 201 && put.status != 200) throw std::runtime_error(registry_error_text(put));
      std::string digest = sha256_digest(bytes);
      Reference with_digest = s.repo;
      with_digest.digest = digest;
      s.store.tag(image_id, with_digest);
      emit(status_message(tag + ": digest: " + digest + " size: " + std::to_string(bytes.size())));
      emit({{"progressDetail", json::object()},
            {"aux", {{"Tag", tag}, {"Digest", digest}, {"Size", bytes.size()}}}});
    }
  } catch (const ClientGone&) {
  } catch (const RegistryError& e) {
    sink(error_message(e.what()));
  } catch (const std::exception& e) {
    sink(error_message(e.what()));
  }
}

}  // namespace berth::agent::image

// ---------------------------------------------------------------- login, distribution inspect

namespace berth::agent::image {

std::string registry_login(const RegistryOptions& options, std::string_view server_address, const RegistryAuth& auth) {
  std::string host(server_address);
  for (std::string_view scheme : {"https://", "http://"})
    if (host.rfind(scheme, 0) == 0) host.erase(0, scheme.size());
  if (auto slash = host.find('/'); slash != std::string::npos) host.resize(slash);
  Url base;
  try {
    base = host.empty() || host == "docker.io" || host == "index.docker.io" || host == "registry-1.docker.io" ||
                   host == "registry.hub.docker.com"
               ? parse_url(kHubRegistry)
               : parse_url("https://" + host);
  } catch (const std::invalid_argument&) {
    throw RegistryError(400, "invalid registry address: " + std::string(server_address));
  }
  base.target = "/";
  const bool insecure = is_insecure_registry(base.authority(), options.insecure_registries);
  Session session(base, insecure, auth, "", "", options.ca_file);
  auto where = [&] { return "Get \"" + session.base().origin() + "/v2/\": "; };
  try {
    session.login();
    HttpResponse resp = session.call("GET", "/v2/");
    // dockerd's loginV2 words every other answer this way.
    if (resp.status != 200) {
      const std::string reason = resp.status == 401 ? " Unauthorized" : resp.status == 403 ? " Forbidden" : "";
      throw RegistryError(resp.status == 401 || resp.status == 403 ? 401 : 500,
                          "login attempt to " + session.base().origin() + "/v2/ failed with status: " +
                              std::to_string(resp.status) + reason);
    }
  } catch (const RegistryError& e) {
    // The token server refused the credentials (dockerd: "Get .../v2/: unauthorized: ...").
    if (e.status() == 401 && std::string_view(e.what()).rfind("Get \"", 0) == 0)
      throw RegistryError(401, where() + "unauthorized: incorrect username or password");
    throw;
  } catch (const TransportError& e) {
    throw RegistryError(500, where() + e.what());
  } catch (const std::invalid_argument& e) {
    throw RegistryError(500, where() + e.what());
  }
  return session.refresh_token();
}

namespace {
json platform_of(const json& p) {
  json out = json::object();
  if (!p.is_object()) return out;
  for (const char* key : {"architecture", "os", "os.version", "os.features", "variant"})
    if (p.contains(key) && !p[key].is_null()) out[key] = p[key];
  return out;
}
}  // namespace

json distribution_inspect(const RegistryOptions& options, const Reference& ref, const RegistryAuth& auth) {
  Url base = endpoints_for(ref, options, false).back();
  const bool insecure = is_insecure_registry(base.authority(), options.insecure_registries);
  Session session(base, insecure, auth, ref.path, "pull", options.ca_file);
  const std::string accept = std::string(kMediaOciIndex) + ", " + std::string(kMediaDockerList) + ", " +
                             std::string(kMediaOciManifest) + ", " + std::string(kMediaDockerManifest);
  try {
    session.login();
    const std::string reference = ref.digest.empty() ? ref.tag : ref.digest;
    HttpResponse resp = session.call("GET", session.repo_target("/manifests/" + reference), {{"Accept", accept}});
    if (resp.status != 200) {
      unsigned status = resp.status == 404 ? 404 : resp.status == 401 || resp.status == 403 ? 401 : 500;
      throw RegistryError(status, registry_error_text(resp));
    }
    const std::string digest = sha256_digest(resp.body);
    if (is_sha256_digest(reference) && digest != reference)
      throw RegistryError(500, "manifest verification failed for digest " + reference);
    json doc = json::parse(resp.body, nullptr, false);
    if (!doc.is_object()) throw RegistryError(500, "invalid manifest from registry");
    std::string media = doc.contains("mediaType") && doc["mediaType"].is_string() ? doc["mediaType"].get<std::string>()
                                                                                   : resp.header("content-type");
    if (auto semi = media.find(';'); semi != std::string::npos) media.resize(semi);
    json platforms = json::array();
    if (doc.contains("manifests") && doc["manifests"].is_array()) {
      for (const auto& m : doc["manifests"])
        if (m.is_object() && m.contains("platform")) platforms.push_back(platform_of(m["platform"]));
    } else if (doc.contains("config") && doc["config"].is_object() && doc["config"].contains("digest") &&
               doc["config"]["digest"].is_string()) {
      const std::string config_digest = doc["config"]["digest"].get<std::string>();
      std::string config;
      HttpResponse blob = session.call("GET", session.repo_target("/blobs/" + config_digest), {},
                                       [&](const char* p, std::size_t n) {
                                         if (config.size() + n > kMaxConfigBytes)
                                           throw RegistryError(500, "image config is too large");
                                         config.append(p, n);
                                       });
      if (blob.status != 200) throw RegistryError(500, registry_error_text(blob));
      platforms.push_back(platform_of(json::parse(config, nullptr, false)));
    }
    return {{"Descriptor", {{"mediaType", media}, {"digest", digest}, {"size", resp.body.size()}}},
            {"Platforms", platforms}};
  } catch (const TransportError& e) {
    throw RegistryError(500, e.what());
  } catch (const std::invalid_argument& e) {
    throw RegistryError(500, e.what());
  }
}

}  // namespace berth::agent::image
