// Published ports (docker run -p): DNAT from host ports to a container's
// address, the host port held bound while published, and the state kept in
// <root>/ports.json so an agent restart holds the ports again.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <charconv>

#include "agent/api/http.h"
#include "agent/network/network_manager_impl.h"
#include "agent/network/network_state.h"
#include "agent/network/util.h"

namespace berth::agent::network {

using nlohmann::json;

namespace {

std::optional<int> parse_port(std::string_view text) {
  int v = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || p != text.data() + text.size() || v < 1 || v > 65535)
    return std::nullopt;
  return v;
}

bool ip_overlaps(const std::string& a, const std::string& b) {
  return a == b || a == "0.0.0.0" || b == "0.0.0.0";
}

}  // namespace

json PortRec::to_json() const {
  return {{"ContainerID", container_id}, {"Proto", proto},
          {"HostIP", host_ip},           {"HostPort", host_port},
          {"ContainerIP", container_ip}, {"ContainerPort", container_port},
          {"Bridge", bridge}};
}

PortRec PortRec::from_json(const json& j) {
  PortRec p;
  p.container_id = j.value("ContainerID", "");
  p.proto = j.value("Proto", "tcp");
  p.host_ip = j.value("HostIP", "0.0.0.0");
  p.host_port = j.value("HostPort", 0);
  p.container_ip = j.value("ContainerIP", "");
  p.container_port = j.value("ContainerPort", 0);
  p.bridge = j.value("Bridge", "");
  return p;
}

Fd reserve_port(const std::string& proto, const std::string& host_ip, int port) {
  Fd s(::socket(AF_INET, (proto == "udp" ? SOCK_DGRAM : SOCK_STREAM) | SOCK_CLOEXEC, 0));
  if (s.fd < 0) return Fd();
  int one = 1;
  if (proto != "udp") ::setsockopt(s.fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  a.sin_addr.s_addr = htonl(parse_ipv4(host_ip).value_or(0));
  if (::bind(s.fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return Fd();
  return s;
}

void NetworkManager::Impl::save_ports() const {
  json j = json::array();
  for (const PortRec& p : ports) j.push_back(p.to_json());
  write_file_atomic(root / "ports.json", j.dump(2));
}

void NetworkManager::Impl::unpublish_ip(const std::string& container_id, const std::string& ip) {
  bool changed = false;
  for (auto it = ports.begin(); it != ports.end();) {
    if (it->container_id == container_id && (ip.empty() || it->container_ip == ip)) {
      try {
        ipt.remove_all(port_rules(it->spec()));
      } catch (const std::exception&) {
      }
      it = ports.erase(it);
      changed = true;
    } else {
      ++it;
    }
  }
  if (changed) save_ports();
}

void NetworkManager::Impl::restore_ports() {
  try {
    json saved = json::parse(read_file(root / "ports.json"));
    for (const json& j : saved) {
      PortRec p = PortRec::from_json(j);
      bool live = false;
      for (auto& [id, n] : nets) {
        auto it = n->endpoints.find(p.container_id);
        live = live || (it != n->endpoints.end() && n->has_links() &&
                        format_ipv4(it->second.ip) == p.container_ip);
      }
      try {
        ipt.remove_all(legacy_port_rules(p.spec()));
        if (!live) ipt.remove_all(port_rules(p.spec()));
      } catch (const std::exception&) {
      }
      if (!live) continue;
      p.reservation = reserve_port(p.proto, p.host_ip, p.host_port);
      ipt.ensure_all(port_rules(p.spec()));
      ports.push_back(std::move(p));
    }
  } catch (const std::exception&) {
  }
  save_ports();
}

std::vector<PortBinding> NetworkManager::publish(const std::string& container_id,
                                                 const std::string& container_ip,
                                                 const std::vector<PortBinding>& bindings) {
  Impl& m = *impl_;
  std::lock_guard lock(m.mutex);
  if (!m.settings.manage_host)
    throw api::HttpError(500, "container networking is disabled on this host");
  std::string bridge;
  for (auto& [id, n] : m.nets) {
    auto it = n->endpoints.find(container_id);
    if (it != n->endpoints.end() && n->has_links() && format_ipv4(it->second.ip) == container_ip)
      bridge = n->bridge;
  }
  if (bridge.empty())
    throw api::HttpError(500, "container " + container_id + " has no endpoint with address " +
                                  container_ip);
  std::vector<PortBinding> out;
  std::list<PortRec> added;
  auto allocated = [&](const std::string& proto, const std::string& ip, int port) {
    for (const std::list<PortRec>* l : {&m.ports, &added})
      for (const PortRec& p : *l)
        if (p.proto == proto && p.host_port == port && ip_overlaps(p.host_ip, ip)) return true;
    return false;
  };
  try {
    for (const PortBinding& b : bindings) {
      std::string spec = b.container_port;
      std::string proto = "tcp";
      if (auto slash = spec.find('/'); slash != std::string::npos) {
        proto = lower(spec.substr(slash + 1));
        spec = spec.substr(0, slash);
      }
      auto cport = parse_port(spec);
      if (!cport || (proto != "tcp" && proto != "udp"))
        throw api::HttpError(400, "invalid port specification: \"" + b.container_port + "\"");
      std::string host_ip = b.host_ip.empty() ? "0.0.0.0" : b.host_ip;
      if (host_ip.find(':') != std::string::npos) continue;  // no IPv6 here
      if (!parse_ipv4(host_ip))
        throw api::HttpError(400, "invalid IP address: " + host_ip);
      PortRec rec;
      rec.container_id = container_id;
      rec.proto = proto;
      rec.host_ip = host_ip;
      rec.container_ip = container_ip;
      rec.container_port = *cport;
      rec.bridge = bridge;
      if (b.host_port.empty()) {
        int first = m.settings.port_range_first, last = m.settings.port_range_last;
        int start = m.next_port.count(proto) ? m.next_port[proto] : first;
        for (int i = 0; i <= last - first && !rec.host_port; ++i) {
          int port = first + (start - first + i) % (last - first + 1);
          if (allocated(proto, host_ip, port)) continue;
          Fd fd = reserve_port(proto, host_ip, port);
          if (fd.fd < 0) continue;
          rec.host_port = port;
          rec.reservation = std::move(fd);
          m.next_port[proto] = port + 1 > last ? first : port + 1;
        }
        if (!rec.host_port)
          throw api::HttpError(500, "Bind for " + host_ip + ":0 failed: no free host port");
      } else {
        int lo = 0, hi = 0;
        auto dash = b.host_port.find('-');
        auto a = parse_port(b.host_port.substr(0, dash));
        auto z = dash == std::string::npos ? a : parse_port(b.host_port.substr(dash + 1));
        if (!a || !z || *z < *a)
          throw api::HttpError(400, "invalid port specification: \"" + b.host_port + "\"");
        lo = *a;
        hi = *z;
        std::string last_error;
        for (int port = lo; port <= hi && !rec.host_port; ++port) {
          if (allocated(proto, host_ip, port)) {
            last_error = "Bind for " + host_ip + ":" + std::to_string(port) +
                         " failed: port is already allocated";
            continue;
          }
          Fd fd = reserve_port(proto, host_ip, port);
          if (fd.fd < 0) {
            last_error = "Error starting userland proxy: listen " + proto + "4 " + host_ip + ":" +
                         std::to_string(port) + ": bind: address already in use";
            continue;
          }
          rec.host_port = port;
          rec.reservation = std::move(fd);
        }
        if (!rec.host_port) throw api::HttpError(500, last_error);
      }
      m.ipt.ensure_all(port_rules(rec.spec()));
      out.push_back({b.container_port.find('/') == std::string::npos
                         ? b.container_port + "/tcp"
                         : b.container_port,
                     host_ip, std::to_string(rec.host_port)});
      added.push_back(std::move(rec));
    }
  } catch (...) {
    for (const PortRec& p : added) {
      try {
        m.ipt.remove_all(port_rules(p.spec()));
      } catch (const std::exception&) {
      }
    }
    throw;
  }
  m.ports.splice(m.ports.end(), added);
  m.save_ports();
  return out;
}

void NetworkManager::unpublish(const std::string& container_id) {
  std::lock_guard lock(impl_->mutex);
  impl_->unpublish_ip(container_id, "");
}

}  // namespace berth::agent::network
