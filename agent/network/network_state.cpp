#include "agent/network/network_state.h"

#include <algorithm>
#include <cctype>

namespace berth::agent::network {

using nlohmann::json;

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::optional<dns::Addresses> NameTable::lookup(std::string name, std::uint32_t client) {
  std::lock_guard lock(mutex);
  // "web.mynet" as well as "web".
  std::string suffix = "." + network_name;
  if (name.size() > suffix.size() && name.ends_with(suffix) && !names.count(name))
    name.resize(name.size() - suffix.size());
  if (auto mine = links.find(client); client && mine != links.end())
    if (auto link = mine->second.find(name); link != mine->second.end()) name = link->second;
  auto it = names.find(name);
  if (it != names.end()) return it->second;
  return std::nullopt;
}

json EndpointRec::to_json() const {
  return {{"ContainerID", container_id}, {"ContainerName", container_name},
          {"EndpointID", endpoint_id},   {"Mac", mac},
          {"HostVeth", host_veth},       {"Ifname", ifname},
          {"Sandbox", sandbox},          {"IP", ip ? format_ipv4(ip) : ""},
          {"IP6", ip6 ? format_ipv6(ip6) : ""}, {"Aliases", aliases},
          {"Links", links}};
}

EndpointRec EndpointRec::from_json(const json& j) {
  EndpointRec e;
  e.container_id = j.value("ContainerID", "");
  e.container_name = j.value("ContainerName", "");
  e.endpoint_id = j.value("EndpointID", "");
  e.mac = j.value("Mac", "");
  e.host_veth = j.value("HostVeth", "");
  e.ifname = j.value("Ifname", "");
  e.sandbox = j.value("Sandbox", "");
  e.ip = parse_ipv4(j.value("IP", "")).value_or(0);
  e.ip6 = parse_ipv6(j.value("IP6", "")).value_or(0);
  e.aliases = j.value("Aliases", std::vector<std::string>{});
  e.links = j.value("Links", std::vector<std::string>{});
  return e;
}

std::vector<std::string> EndpointRec::dns_names() const {
  std::vector<std::string> out = {container_name};
  for (const std::string& a : aliases)
    if (std::find(out.begin(), out.end(), a) == out.end()) out.push_back(a);
  out.push_back(container_id.substr(0, 12));
  return out;
}

json Net::to_state() const {
  json eps = json::object();
  for (const auto& [cid, e] : endpoints) eps[cid] = e.to_json();
  json j = {{"Id", id},
            {"Name", name},
            {"Driver", driver},
            {"Created", created},
            {"Bridge", bridge},
            {"Internal", internal},
            {"Attachable", attachable},
            {"Predefined", predefined},
            {"Labels", labels},
            {"Options", options},
            {"Endpoints", eps}};
  if (has_links()) j["IPAM"] = ipam.to_json();
  if (ipv6) j["IPAM6"] = ipam6.to_json();
  if (is_overlay()) {
    j["VNI"] = vni;
    if (ip_range) j["IPRange"] = ip_range->str();
    j["CreatedBy"] = created_by;
    j["MTU"] = mtu;
    json peer_list = json::array();
    for (const auto& [cid, p] : peers) peer_list.push_back(p.to_json());
    j["Peers"] = peer_list;
  }
  return j;
}

std::unique_ptr<Net> Net::from_state(const json& j) {
  auto n = std::make_unique<Net>();
  n->id = j.at("Id").get<std::string>();
  n->name = j.at("Name").get<std::string>();
  n->driver = j.value("Driver", "bridge");
  n->created = j.value("Created", "");
  n->bridge = j.value("Bridge", "");
  n->internal = j.value("Internal", false);
  n->attachable = j.value("Attachable", false);
  n->predefined = j.value("Predefined", false);
  n->labels = j.value("Labels", std::map<std::string, std::string>{});
  n->options = j.value("Options", std::map<std::string, std::string>{});
  if (j.contains("IPAM")) n->ipam = Ipam::from_json(j["IPAM"]);
  if (j.contains("IPAM6")) {
    n->ipv6 = true;
    n->ipam6 = Ipam6::from_json(j["IPAM6"]);
  }
  if (j.contains("Endpoints"))
    for (auto& [cid, e] : j["Endpoints"].items()) n->endpoints[cid] = EndpointRec::from_json(e);
  if (n->is_overlay()) {
    n->vni = j.value("VNI", 0u);
    if (j.contains("IPRange") && j["IPRange"].is_string()) n->ip_range = Ipv4Net::parse(j["IPRange"]);
    n->created_by = j.value("CreatedBy", "");
    n->mtu = j.value("MTU", 1450);
    if (j.contains("Peers") && j["Peers"].is_array())
      for (const json& p : j["Peers"]) {
        ClusterEndpoint ep = ClusterEndpoint::from_json(p);
        n->peers[ep.container_id] = ep;
      }
  }
  n->names->network_name = lower(n->name);
  return n;
}

void Net::refresh_names() {
  if (!user_defined()) return;
  std::map<std::string, dns::Addresses> table;
  std::map<std::uint32_t, std::map<std::string, std::string>> link_table;
  auto add = [&](const std::string& name, std::uint32_t ip, Ipv6Addr ip6) {
    dns::Addresses& a = table[lower(name)];
    if (ip && std::find(a.v4.begin(), a.v4.end(), ip) == a.v4.end()) a.v4.push_back(ip);
    if (ip6 && std::find(a.v6.begin(), a.v6.end(), ipv6_bytes(ip6)) == a.v6.end())
      a.v6.push_back(ipv6_bytes(ip6));
  };
  for (const auto& [cid, e] : endpoints) {
    for (const std::string& name : e.dns_names()) add(name, e.ip, e.ip6);
    for (const std::string& link : e.links) {
      auto colon = link.find(':');
      std::string target = link.substr(0, colon);
      std::string alias = colon == std::string::npos ? target : link.substr(colon + 1);
      if (target.starts_with("/")) target.erase(0, 1);
      if (e.ip) link_table[e.ip][lower(alias)] = lower(target);
    }
  }
  for (const auto& [cid, p] : peers) {
    if (endpoints.count(cid) || !p.ip) continue;
    add(p.container_name, p.ip, 0);
    for (const std::string& a : p.aliases) add(a, p.ip, 0);
    add(cid.substr(0, 12), p.ip, 0);
  }
  std::lock_guard lock(names->mutex);
  names->names = std::move(table);
  names->links = std::move(link_table);
}

}  // namespace berth::agent::network
