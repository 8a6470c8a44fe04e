// /networks/*: docker network create/ls/inspect/rm/connect/disconnect/prune.
#include <nlohmann/json.hpp>

#include "agent/api/request_body.h"
#include "agent/api/routes.h"
#include "agent/network/ipam.h"
#include "agent/network/network_manager.h"
#include "agent/network/network_routes.h"
#include "agent/network/util.h"

namespace berth::agent::api {
namespace {

using network::ContainerHooks;
using network::ContainerInfo;
using network::NetworkManager;
using nlohmann::json;

bool bool_field(const json& body, const char* key) {
  auto it = body.find(key);
  if (it == body.end() || it->is_null()) return false;
  if (!it->is_boolean()) throw HttpError(400, std::string("invalid ") + key);
  return it->get<bool>();
}

std::map<std::string, std::string> labels_of(const json& n) {
  std::map<std::string, std::string> out;
  if (n.contains("Labels") && n["Labels"].is_object())
    for (auto& [k, v] : n["Labels"].items()) out[k] = v.get<std::string>();
  return out;
}

Response list(NetworkManager& nm, const Request& req) {
  auto filters = network::parse_filters(req.query_param("filters").value_or(""),
                                        {"name", "id", "driver", "label", "type", "scope", "dangling"});
  for (const std::string& t : filters["type"])
    if (t != "custom" && t != "builtin")
      throw HttpError(400, "invalid filter: 'type'='" + t + "'");
  std::optional<bool> dangling;
  for (const std::string& d : filters["dangling"]) dangling = network::filter_bool("dangling", d);
  auto any = [](const std::vector<std::string>& wanted, auto&& pred) {
    if (wanted.empty()) return true;
    for (const std::string& w : wanted)
      if (pred(w)) return true;
    return false;
  };
  json out = json::array();
  for (json& n : nm.list()) {
    const std::string name = n["Name"], id = n["Id"], driver = n["Driver"], scope = n["Scope"];
    bool builtin = name == "bridge" || name == "host" || name == "none";
    builtin = builtin && nm.is_predefined(id);
    auto labels = labels_of(n);
    bool ok = any(filters["name"], [&](const std::string& w) { return name.find(w) != std::string::npos; }) &&
              any(filters["id"], [&](const std::string& w) { return id.find(w) != std::string::npos; }) &&
              any(filters["driver"], [&](const std::string& w) { return w == driver; }) &&
              any(filters["scope"], [&](const std::string& w) { return w == scope; }) &&
              any(filters["type"],
                  [&](const std::string& w) { return (w == "builtin") == builtin; });
    for (const std::string& l : filters["label"]) ok = ok && network::label_matches(labels, l);
    if (ok && dangling) ok = (!builtin && !nm.has_endpoints(id)) == *dangling;
    if (ok) out.push_back(std::move(n));
  }
  return Response::json(200, out);
}

Response inspect(NetworkManager& nm, const Request& req) {
  return Response::json(200, nm.inspect(req.params.at("id"), true));
}

Response create(NetworkManager& nm, const Request& req) {
  json body = parse_json_object(req);
  network::NetworkCreate c;
  c.name = string_field(body, "Name");
  if (c.name.empty()) throw HttpError(400, "network name cannot be empty");
  c.driver = string_field(body, "Driver");
  c.internal = bool_field(body, "Internal");
  c.attachable = bool_field(body, "Attachable");
  c.labels = string_map_field(body, "Labels");
  c.options = string_map_field(body, "Options");
  c.enable_ipv6 = bool_field(body, "EnableIPv6");
  if (bool_field(body, "Ingress")) throw HttpError(400, "ingress networks need swarm mode");
  if (bool_field(body, "ConfigOnly") || body.contains("ConfigFrom"))
    if (bool_field(body, "ConfigOnly") || !body["ConfigFrom"].is_null())
      throw HttpError(400, "config-only networks are not supported");
  if (auto ipam = body.find("IPAM"); ipam != body.end() && ipam->is_object()) {
    std::string driver = string_field(*ipam, "Driver");
    if (!driver.empty() && driver != "default")
      throw HttpError(400, "IPAM driver " + driver + " is not supported");
    if (auto config = ipam->find("Config"); config != ipam->end() && config->is_array()) {
      for (const json& entry : *config) {
        if (!entry.is_object()) throw HttpError(400, "invalid IPAM Config");
        std::string subnet = string_field(entry, "Subnet");
        if (subnet.find(':') != std::string::npos) {
          if (!c.enable_ipv6)
            throw HttpError(400, "IPv6 subnet " + subnet + " needs IPv6 enabled on the network (--ipv6)");
          if (!c.subnet6.empty()) throw HttpError(400, "only one IPv6 subnet per network is supported");
          c.subnet6 = subnet;
          c.gateway6 = string_field(entry, "Gateway");
          continue;
        }
        if (!c.subnet.empty()) throw HttpError(400, "only one IPv4 subnet per network is supported");
        c.subnet = subnet;
        c.gateway = string_field(entry, "Gateway");
        c.ip_range = string_field(entry, "IPRange");
        if (c.subnet.empty() && !c.gateway.empty())
          throw HttpError(400, "a gateway needs a subnet");
      }
    }
  }
  std::string id = nm.create_network(c);
  return Response::json(201, {{"Id", id}, {"Warning", ""}});
}

Response remove(NetworkManager& nm, const Request& req) {
  nm.remove_network(req.params.at("id"));
  Response r;
  r.status = 204;
  return r;
}

Response ok_empty() {
  Response r;
  r.status = 200;
  return r;
}

ContainerInfo resolve_container(const ContainerHooks& hooks, const std::string& name_or_id) {
  if (!hooks.resolve) throw HttpError(500, "container lookup is not available");
  if (name_or_id.empty()) throw HttpError(400, "no container given");
  auto c = hooks.resolve(name_or_id);
  if (!c) throw HttpError(404, "No such container: " + name_or_id);
  return *c;
}

Response connect(NetworkManager& nm, const Request& req) {
  json body = parse_json_object(req);
  std::string network = req.params.at("id");
  std::string net_id = nm.network_id(network);
  json net = nm.inspect(net_id, false);
  const std::string net_name = net["Name"];
  ContainerHooks hooks = nm.container_hooks();
  ContainerInfo c = resolve_container(hooks, string_field(body, "Container"));
  if (net_name == "host" || net_name == "none" || c.network_mode == "host")
    throw HttpError(400, "container cannot be disconnected from host network or connected to host network");
  if (c.network_mode == "none" || c.network_mode.starts_with("container:"))
    throw HttpError(400, "container sharing network namespace with another container or host cannot be connected to any other network");
  network::EndpointRequest request =
      network::EndpointRequest::from_json(body.value("EndpointConfig", json::object()));
  request.mac = network::normalize_mac(request.mac);
  if (nm.endpoint(net_id, c.id))
    throw HttpError(403, "endpoint with name " + c.name + " already exists in network " + net_name);
  std::optional<network::Endpoint> endpoint;
  if (c.running) endpoint = nm.connect(net_id, c.id, c.name, c.sandbox, request);
  try {
    if (hooks.attached) hooks.attached(c.id, net_name, request, endpoint);
  } catch (...) {
    if (endpoint) nm.disconnect(net_id, c.id);
    throw;
  }
  return ok_empty();
}

Response disconnect(NetworkManager& nm, const Request& req) {
  json body = parse_json_object(req);
  std::string net_id = nm.network_id(req.params.at("id"));
  const std::string net_name = nm.inspect(net_id, false)["Name"];
  ContainerHooks hooks = nm.container_hooks();
  std::string who = string_field(body, "Container");
  std::optional<ContainerInfo> c;
  try {
    c = resolve_container(hooks, who);
  } catch (const HttpError& e) {
    // Force removes an endpoint left behind by a container that is gone.
    if (e.status() != 404 || !bool_field(body, "Force")) throw;
    nm.disconnect(net_id, who);
    return ok_empty();
  }
  if (net_name == "host" && c->network_mode == "host")
    throw HttpError(400, "container cannot be disconnected from host network or connected to host network");
  bool live = nm.endpoint(net_id, c->id).has_value();
  if (c->running && !live)
    throw HttpError(403, "container " + c->id + " is not connected to network " + net_name);
  if (hooks.detached) hooks.detached(c->id, net_name);
  if (live) nm.disconnect(net_id, c->id);
  return ok_empty();
}

Response prune(NetworkManager& nm, const Request& req) {
  auto filters = network::parse_filters(req.query_param("filters").value_or(""),
                                        {"label", "label!", "until"});
  json deleted = json::array();
  for (const json& n : nm.list()) {
    const std::string id = n["Id"];
    if (nm.is_predefined(id) || nm.has_endpoints(id)) continue;
    auto labels = labels_of(n);
    bool ok = true;
    for (const std::string& l : filters["label"]) ok = ok && network::label_matches(labels, l);
    for (const std::string& l : filters["label!"]) ok = ok && !network::label_matches(labels, l);
    if (!ok) continue;
    try {
      nm.remove_network(id);
      deleted.push_back(n["Name"]);
    } catch (const HttpError&) {
      // In use meanwhile.
    }
  }
  return Response::json(200, {{"NetworksDeleted", deleted.empty() ? json(nullptr) : deleted}});
}

}  // namespace

void add_network_routes(Router& router, Engine& engine) { add_network_routes(router, engine.networks); }

void add_network_routes(Router& router, NetworkManager& nm) {
  router.add("GET", "/networks", [&nm](const Request& r) { return list(nm, r); });
  router.add("POST", "/networks/create", [&nm](const Request& r) { return create(nm, r); });
  router.add("POST", "/networks/prune", [&nm](const Request& r) { return prune(nm, r); });
  router.add("GET", "/networks/{id}", [&nm](const Request& r) { return inspect(nm, r); });
  router.add("DELETE", "/networks/{id}", [&nm](const Request& r) { return remove(nm, r); });
  router.add("POST", "/networks/{id}/connect", [&nm](const Request& r) { return connect(nm, r); });
  router.add("POST", "/networks/{id}/disconnect",
             [&nm](const Request& r) { return disconnect(nm, r); });
}

}  // namespace berth::agent::api
