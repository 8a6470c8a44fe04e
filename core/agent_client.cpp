#include "core/agent_client.h"

#include <curl/curl.h>

#include <algorithm>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "core/error.h"
#include "core/log.h"

namespace berth {
namespace {

constexpr size_t kMaxBody = 4 * 1024 * 1024;   // the agent's answers here are tiny
constexpr auto kPollInterval = std::chrono::milliseconds(200);
constexpr auto kMaxAttempt = std::chrono::seconds(10);

struct CurlFree {
  void operator()(CURL* c) const { curl_easy_cleanup(c); }
};
using CurlPtr = std::unique_ptr<CURL, CurlFree>;

// A curl_slist owned here.
class CurlList {
 public:
  CurlList() = default;
  CurlList(const CurlList&) = delete;
  CurlList& operator=(const CurlList&) = delete;
  ~CurlList() { curl_slist_free_all(list_); }
  void append(const char* line) { list_ = curl_slist_append(list_, line); }
  curl_slist* get() const { return list_; }

 private:
  curl_slist* list_ = nullptr;
};

void global_init() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

// tcp://h:p, https://h:p or h:p -> https://h:p, with IPv6 literals in brackets.
// Other schemes are left alone (curl then refuses them: only https is allowed).
std::string https_base(const std::string& url) {
  std::string rest = url;
  bool known_scheme = false;
  for (const char* scheme : {"tcp://", "https://"})
    if (rest.rfind(scheme, 0) == 0) {
      rest = rest.substr(std::char_traits<char>::length(scheme));
      known_scheme = true;
    }
  if (!known_scheme && rest.find("://") != std::string::npos) return rest;
  while (!rest.empty() && rest.back() == '/') rest.pop_back();
  // An unbracketed IPv6 literal with a port: "::1:2376" -> "[::1]:2376".
  if (!rest.empty() && rest.front() != '[' && std::count(rest.begin(), rest.end(), ':') > 1) {
    const auto colon = rest.rfind(':');
    rest = "[" + rest.substr(0, colon) + "]" + rest.substr(colon);
  }
  return "https://" + rest;
}

size_t on_body(char* data, size_t size, size_t n, void* userp) {
  auto* body = static_cast<std::string*>(userp);
  const size_t len = size * n;
  if (body->size() + len > kMaxBody) return 0;   // aborts the transfer
  body->append(data, len);
  return len;
}

std::string one_line(std::string s) {
  std::replace(s.begin(), s.end(), '\n', ' ');
  while (!s.empty() && (s.back() == ' ' || s.back() == '\r')) s.pop_back();
  return s;
}

}  // namespace

namespace {

struct Transfer {
  std::string method = "GET";
  const std::string* request_body = nullptr;                 // sent as application/json
  std::string* body = nullptr;                               // agent_get: collect here
  const std::function<bool(std::string_view)>* sink = nullptr;  // agent_stream: hand over
  const std::function<bool()>* should_stop = nullptr;
};

size_t on_data(char* data, size_t size, size_t n, void* userp) {
  auto* t = static_cast<Transfer*>(userp);
  const size_t len = size * n;
  if (t->sink) return (*t->sink)(std::string_view(data, len)) ? len : 0;
  return on_body(data, size, n, t->body);
}

int on_progress(void* userp, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  auto* t = static_cast<Transfer*>(userp);
  return t->should_stop && *t->should_stop && (*t->should_stop)() ? 1 : 0;
}

// One request with the client certificate. timeout 0: no total limit (a stream).
AgentResponse perform(const AgentEndpoint& ep, const std::string& path, std::chrono::milliseconds timeout,
                          std::chrono::milliseconds connect_timeout, Transfer& transfer) {
  AgentResponse out;
  if (ep.url.empty()) {
    out.error = "no agent URL";
    return out;
  }
  global_init();
  CurlPtr curl(curl_easy_init());
  if (!curl) {
    out.error = "cannot initialise libcurl";
    return out;
  }
  const std::string url = https_base(ep.url) + (path.empty() || path.front() != '/' ? "/" : "") + path;
  char errbuf[CURL_ERROR_SIZE] = {};
  CURL* c = curl.get();
  CURLcode setup = CURLE_OK;   // the first failing option, if any
  auto set = [&](CURLoption opt, auto value) {
    if (setup == CURLE_OK) setup = curl_easy_setopt(c, opt, value);
  };
  set(CURLOPT_URL, url.c_str());
  set(CURLOPT_PROTOCOLS_STR, "https");
  set(CURLOPT_ERRORBUFFER, errbuf);
  set(CURLOPT_NOSIGNAL, 1L);
  set(CURLOPT_NOPROXY, "*");
  if (timeout.count() > 0) set(CURLOPT_TIMEOUT_MS, static_cast<long>(timeout.count()));
  set(CURLOPT_CONNECTTIMEOUT_MS, std::max<long>(1, static_cast<long>(connect_timeout.count())));
  set(CURLOPT_SSL_VERIFYPEER, 1L);
  set(CURLOPT_SSL_VERIFYHOST, 2L);
  set(CURLOPT_SSLVERSION, static_cast<long>(CURL_SSLVERSION_TLSv1_2));
  if (!ep.ca_cert.empty()) set(CURLOPT_CAINFO, ep.ca_cert.c_str());
  if (!ep.client_cert.empty()) set(CURLOPT_SSLCERT, ep.client_cert.c_str());
  if (!ep.client_key.empty()) set(CURLOPT_SSLKEY, ep.client_key.c_str());
  set(CURLOPT_WRITEFUNCTION, on_data);
  set(CURLOPT_WRITEDATA, &transfer);
  CurlList headers;
  if (transfer.method != "GET") set(CURLOPT_CUSTOMREQUEST, transfer.method.c_str());
  if (transfer.request_body) {
    set(CURLOPT_POSTFIELDS, transfer.request_body->c_str());
    set(CURLOPT_POSTFIELDSIZE, static_cast<long>(transfer.request_body->size()));
    headers.append("Content-Type: application/json");
    set(CURLOPT_HTTPHEADER, headers.get());
  }
  if (transfer.should_stop) {
    set(CURLOPT_XFERINFOFUNCTION, on_progress);
    set(CURLOPT_XFERINFODATA, &transfer);
    set(CURLOPT_NOPROGRESS, 0L);
    // A quiet stream still gets checked: TCP keepalive notices a peer that vanished.
    set(CURLOPT_TCP_KEEPALIVE, 1L);
    set(CURLOPT_TCP_KEEPIDLE, 10L);
    set(CURLOPT_TCP_KEEPINTVL, 5L);
  }

  if (setup != CURLE_OK) {
    out.error = std::string("cannot set up the request: ") + curl_easy_strerror(setup);
    return out;
  }
  const CURLcode rc = curl_easy_perform(c);
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out.status);
  if (rc != CURLE_OK) {
    // errbuf holds curl's first message, which may be a non-fatal note; say the result first.
    out.error = curl_easy_strerror(rc);
    if (errbuf[0] && out.error != errbuf) out.error += std::string(" (") + one_line(errbuf) + ")";
  }
  log::debug("agent", "{} {} -> {} {}", transfer.method, url, out.status, out.error);
  return out;
}

}  // namespace

AgentResponse agent_get(const AgentEndpoint& ep, const std::string& path, std::chrono::milliseconds timeout) {
  AgentResponse out;
  Transfer t;
  t.body = &out.body;
  auto r = perform(ep, path, std::max(timeout, std::chrono::milliseconds(1)), timeout, t);
  r.body = std::move(out.body);
  return r;
}

AgentResponse agent_request(const AgentEndpoint& ep, const std::string& method, const std::string& path,
                            const std::string& body, std::chrono::milliseconds timeout) {
  AgentResponse out;
  Transfer t;
  t.method = method;
  t.request_body = &body;
  t.body = &out.body;
  auto r = perform(ep, path, std::max(timeout, std::chrono::milliseconds(1)), timeout, t);
  r.body = std::move(out.body);
  return r;
}

AgentResponse agent_stream(const AgentEndpoint& ep, const std::string& path,
                           const std::function<bool(std::string_view)>& sink, const std::function<bool()>& should_stop,
                           std::chrono::milliseconds connect_timeout) {
  Transfer t;
  t.sink = &sink;
  t.should_stop = &should_stop;
  return perform(ep, path, std::chrono::milliseconds(0), connect_timeout, t);
}

std::string agent_docker_version(const AgentEndpoint& ep, std::chrono::milliseconds timeout, std::string* error) {
  auto set_error = [&](const std::string& e) {
    if (error) *error = e;
    return std::string();
  };
  const auto r = agent_get(ep, "/version", timeout);
  if (!r.error.empty()) return set_error(r.error);
  if (r.status != 200)
    return set_error("GET /version answered HTTP " + std::to_string(r.status) + ": " + one_line(r.body.substr(0, 200)));
  const auto doc = nlohmann::json::parse(r.body, nullptr, false);
  if (doc.is_discarded() || !doc.is_object()) return set_error("GET /version did not answer a JSON object");
  const auto it = doc.find("Version");
  if (it == doc.end() || !it->is_string()) return set_error("GET /version has no Version string");
  if (error) error->clear();
  return it->get<std::string>();
}

void wait_for_agent(const AgentEndpoint& ep, std::chrono::milliseconds deadline) {
  using clock = std::chrono::steady_clock;
  const auto end = clock::now() + deadline;
  std::string last_error = "no attempt was made";
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - clock::now());
    if (left.count() <= 0) break;
    const auto r = agent_get(ep, "/_ping", std::min<std::chrono::milliseconds>(left, kMaxAttempt));
    if (r.error.empty() && r.status == 200 && one_line(r.body) == "OK") return;
    last_error = !r.error.empty() ? r.error
                                  : "HTTP " + std::to_string(r.status) + " " + one_line(r.body.substr(0, 200));
    std::this_thread::sleep_for(std::min<clock::duration>(kPollInterval, std::max<clock::duration>(end - clock::now(), {})));
  }
  const auto secs = std::chrono::duration_cast<std::chrono::milliseconds>(deadline).count() / 1000.0;
  throw Error("berth-agent at " + ep.url + " did not answer /_ping within " + fmt::format("{:.1f}", secs) +
              " s (last error: " + last_error + "); check that the machine is up and its port is reachable");
}

}  // namespace berth
