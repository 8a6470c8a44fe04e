// libFuzzer: the bytes as a POST /containers/create body, through the runtime's
// own parsing: image-config merge, port specs, mounts (Binds, Mounts, Volumes),
// the OCI spec built from them, filters and signals. Bad input may only end in
// api::HttpError (a dockerd-style 4xx) or a json error the API turns into one;
// anything else (a crash, a sanitizer report) is a bug.
#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "agent/api/http.h"
#include "agent/runtime/container_format.h"
#include "agent/runtime/oci_spec.h"

using namespace berth::agent;
using nlohmann::json;

namespace {

const json kImageConfig = json::parse(R"({"config": {"Cmd": ["sh"], "Env": ["PATH=/bin"],
  "WorkingDir": "/", "ExposedPorts": {"80/tcp": {}}, "Volumes": {"/data": {}}}})");

template <class Fn>
void guarded(Fn fn) {
  try {
    fn();
  } catch (const api::HttpError&) {
  } catch (const json::exception&) {
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  json body = json::parse(data, data + size, nullptr, false);
  if (body.is_discarded() || !body.is_object()) return 0;
  const json config = body.value("Config", body);
  const json host_config = body.value("HostConfig", json::object());
  guarded([&] {
    json merged = runtime::merge_image_config(config, kImageConfig["config"]);
    runtime::validate_ports(merged, host_config);
    runtime::validate_resources(host_config, 2);
    auto bindings = runtime::wanted_port_bindings(merged, host_config);
    (void)runtime::summary_ports(runtime::ports_map(merged, bindings));
    auto mounts = runtime::collect_mounts(merged, host_config);
    runtime::SpecInput in;
    in.id = "0123456789ab";
    in.config = merged;
    in.host_config = host_config;
    in.rootfs = "/tmp/rootfs";
    in.hostname = "fuzz";
    in.cgroups_path = "/berth/fuzz";
    (void)runtime::build_oci_spec(in);
  });
  guarded([&] {
    if (auto f = body.find("filters"); f != body.end()) (void)runtime::parse_filters(*f);
  });
  guarded([&] {
    if (auto s = body.find("StopSignal"); s != body.end() && s->is_string())
      (void)runtime::parse_signal(s->get<std::string>());
    if (auto u = body.find("User"); u != body.end() && u->is_string())
      (void)runtime::resolve_user(u->get<std::string>(), "root:x:0:0::/root:/bin/sh\n",
                                  "root:x:0:\n");
  });
  return 0;
}
