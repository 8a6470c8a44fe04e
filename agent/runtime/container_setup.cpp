#include "agent/runtime/container_impl.h"
#include "agent/network/ipam.h"
#include "agent/runtime/links.h"

namespace berth::agent::runtime {

// ---------------------------------------------------------------- start

json ContainerManager::Impl::build_mounts_record(const json& config, const json& hc,
                                                 std::vector<std::string>& anon) {
  json out = json::array();
  for (const MountRequest& m : collect_mounts(config, hc)) {
    switch (m.kind) {
      case MountRequest::Kind::Bind: {
        std::error_code ec;
        if (!fs::exists(m.source, ec)) {
          bool from_binds = false;
          for (const json& b : hc.value("Binds", json::array()))
            if (b.is_string() && starts_with(b.get<std::string>(), m.source + ":")) from_binds = true;
          if (!from_binds)
            throw HttpError(400, "invalid mount config for type \"bind\": bind source path does not exist: " +
                                     m.source);
          fs::create_directories(m.source, ec);
        }
        out.push_back({{"Type", "bind"},
                       {"Source", m.source},
                       {"Destination", m.destination},
                       {"Mode", m.mode},
                       {"RW", !m.read_only},
                       {"Propagation", m.propagation}});
        break;
      }
      case MountRequest::Kind::Volume: {
        bool anonymous = m.source.empty();
        std::map<std::string, std::string> labels;
        if (anonymous) labels[volume::kAnonymousLabel] = "";
        volume::Volume v = engine->volumes.ensure(m.source, labels, anonymous);
        if (anonymous) anon.push_back(v.name);
        out.push_back({{"Type", "volume"},
                       {"Name", v.name},
                       {"Source", v.mountpoint.string()},
                       {"Destination", m.destination},
                       {"Driver", v.driver},
                       {"Mode", m.mode.empty() ? "z" : m.mode},
                       {"RW", !m.read_only},
                       {"Propagation", ""}});
        break;
      }
      case MountRequest::Kind::Tmpfs:
        out.push_back({{"Type", "tmpfs"},
                       {"Source", ""},
                       {"Destination", m.destination},
                       {"Mode", ""},
                       {"RW", !m.read_only},
                       {"Propagation", ""}});
        break;
    }
  }
  if (auto t = hc.find("Tmpfs"); t != hc.end() && t->is_object())
    for (auto& [dest, opts] : t->items())
      out.push_back({{"Type", "tmpfs"}, {"Source", ""}, {"Destination", dest},
                     {"Mode", opts.is_string() ? opts.get<std::string>() : ""},
                     {"RW", true}, {"Propagation", ""}});
  return out;
}

namespace detail {

void confine(SpecInput& in, const json& hc, const EngineOptions& daemon) {
  SecurityOptions sec = parse_security_opts(hc, apparmor_enabled());
  in.no_new_privileges = sec.no_new_privileges.value_or(daemon.no_new_privileges);
  in.writable_cgroups = sec.writable_cgroups;
  if (sec.apparmor && *sec.apparmor != "unconfined") in.apparmor_profile = sec.apparmor;
  if (hc.value("Privileged", false)) return;  // dockerd: privileged means unconfined
  const json* profile = &default_seccomp_profile();
  if (sec.seccomp == SecurityOptions::Seccomp::Unconfined) return;
  if (sec.seccomp == SecurityOptions::Seccomp::Custom) {
    profile = &sec.seccomp_profile;
  } else if (daemon.seccomp_profile) {
    if (daemon.seccomp_profile->is_null()) return;  // the daemon runs unconfined
    profile = daemon.seccomp_profile.get();
  }
  static const Platform platform = host_platform();
  in.seccomp = oci_seccomp(*profile, container_capabilities(hc), platform);
}

// Read inside its root (symlinks cannot leave it), regular files of bounded size only.
ResolvedUser resolve_user_in(const fs::path& rootfs, const std::string& spec) {
  constexpr std::size_t kLimit = 4 << 20;
  return resolve_user(spec, read_regular_file_in_root(rootfs, "/etc/passwd", kLimit).value_or(""),
                      read_regular_file_in_root(rootfs, "/etc/group", kLimit).value_or(""));
}

}  // namespace detail

namespace {

// Like dockerd: an empty volume mounted over a directory the image has gets a
// copy of that directory (modes, owners and links kept) before first use.
// `dest` is relative to `rootfs`; a path through a symlink is never followed
// (it could point out of the container's root).
void seed_volume(const fs::path& rootfs, const fs::path& dest, const fs::path& volume_dir) {
  std::error_code ec;
  fs::path image_dir = rootfs;
  for (const fs::path& part : dest) {
    if (part == "." || part.empty()) continue;
    if (part == "..") return;
    image_dir /= part;
    if (fs::is_symlink(image_dir, ec) || ec) return;
  }
  if (!fs::is_directory(image_dir, ec)) return;
  if (!fs::is_empty(volume_dir, ec) || ec) return;
  fs::copy(image_dir, volume_dir,
           fs::copy_options::recursive | fs::copy_options::copy_symlinks, ec);
  if (ec) return;  // a partial copy still leaves the container usable
  auto own = [](const fs::path& from, const fs::path& to) {
    struct stat st {};
    if (::lstat(from.c_str(), &st) == 0) {
      if (::lchown(to.c_str(), st.st_uid, st.st_gid) != 0) return;
    }
  };
  own(image_dir, volume_dir);
  for (auto it = fs::recursive_directory_iterator(image_dir, ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    own(it->path(), volume_dir / fs::relative(it->path(), image_dir));
  }
}

}  // namespace

std::vector<OciMount> ContainerManager::Impl::setup_mounts(Container& c, const json& doc) {
  std::vector<OciMount> out;
  for (const json& m : doc.value("Mounts", json::array())) {
    std::string type = m.value("Type", "");
    bool rw = m.value("RW", true);
    if (type == "tmpfs") {
      std::vector<std::string> o = {"nosuid", "nodev", "noexec"};
      std::string mode = m.value("Mode", "");
      if (!mode.empty() && mode != "ro" && mode != "rw")
        for (std::size_t s = 0, e; s < mode.size(); s = e + 1) {
          e = mode.find(',', s);
          if (e == std::string::npos) e = mode.size();
          o.push_back(mode.substr(s, e - s));
        }
      if (!rw) o.push_back("ro");
      out.push_back({m.value("Destination", ""), "tmpfs", "tmpfs", o});
      continue;
    }
    std::string prop = m.value("Propagation", "");
    if (prop.empty()) prop = "rprivate";
    std::vector<std::string> o = {"rbind", prop};
    if (!rw) o.push_back("ro");
    std::string source = m.value("Source", "");
    if (type == "volume") {
      // The volume may have been removed with -f meanwhile: ensure it again.
      source = engine->volumes.ensure(m.value("Name", "")).mountpoint.string();
      if (opt.mount_overlay) {
        fs::path dest = fs::path(m.value("Destination", "/")).relative_path();
        seed_volume(c.rootfs(), dest, source);
      }
    }
    out.push_back({m.value("Destination", ""), "bind", source, o});
  }
  return out;
}

// As dockerd's init layer: what crun mounts over (and /.dockerenv), so that
// these mount points never show among the container's own changes.
fs::path ContainerManager::Impl::init_layer() {
  const fs::path dir = root.parent_path() / "init-layer";
  if (fs::exists(dir / ".dockerenv")) return dir;
  const fs::path tmp = root.parent_path() / ("init-layer.tmp" + std::to_string(::getpid()));
  fs::remove_all(tmp);
  for (const char* d : {"dev/pts", "dev/shm", "proc", "sys", "etc"}) fs::create_directories(tmp / d);
  for (const char* f : {"etc/hosts", "etc/hostname", "etc/resolv.conf", "dev/console", ".dockerenv"}) {
    UniqueFd fd(::open((tmp / f).c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0755));
    if (!fd) throw std::runtime_error("cannot make the init layer: " + std::string(std::strerror(errno)));
  }
  fs::create_symlink("/proc/mounts", tmp / "etc/mtab");
  std::error_code ec;
  fs::rename(tmp, dir, ec);  // another start may have won: its layer is the same
  fs::remove_all(tmp, ec);
  return dir;
}

void ContainerManager::Impl::prepare_rootfs(Container& c, const json& doc) {
  fs::path rootfs = c.rootfs();
  fs::create_directories(rootfs);
  if (!opt.mount_overlay) return;
  auto image = resolve_image(doc.value("Image", ""));
  if (!image) throw HttpError(404, "No such image: " + doc["Config"].value("Image", ""));
  fs::create_directories(c.dir / "diff");
  fs::create_directories(c.dir / "work");
  ::umount2(rootfs.c_str(), MNT_DETACH);  // a stale mount from a crash
  std::string lower = init_layer().string();
  for (auto it = image->layers.rbegin(); it != image->layers.rend(); ++it) lower += ":" + it->string();
  std::string data = "lowerdir=" + lower + ",upperdir=" + (c.dir / "diff").string() +
                     ",workdir=" + (c.dir / "work").string();
  if (::mount("overlay", rootfs.c_str(), "overlay", 0, data.c_str()) != 0)
    throw std::runtime_error("cannot mount the container's rootfs: " +
                             std::string(std::strerror(errno)));
}

std::optional<std::string> ContainerManager::Impl::setup_network(Container& c, json& doc,
                                                                  std::vector<OciMount>& mounts,
                                                                  std::string& hostname) {
  const json& hc = doc["HostConfig"];
  std::string mode = hc.value("NetworkMode", "bridge");
  json& ns = doc["NetworkSettings"];
  std::optional<std::string> netns;
  std::string hosts = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
                      "fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\n"
                      "ff02::2\tip6-allrouters\n";
  std::string resolv;
  std::string my_ip;
  const std::string name = doc.value("Name", "/").substr(1);
  hostname = doc["Config"].value("Hostname", "");

  auto bind_file = [&](const fs::path& src, const char* dest) {
    mounts.push_back({dest, "bind", src.string(), {"rbind", "rprivate"}});
  };

  if (mode == "host") {
    if (hostname.empty()) hostname = host_hostname();
    hosts = read_file("/etc/hosts").value_or(hosts);
    resolv = read_file("/etc/resolv.conf").value_or("");
  } else if (starts_with(mode, "container:")) {
    std::string other_ref = mode.substr(10);
    ContainerPtr other;
    {
      std::lock_guard l(mu);
      other = find(other_ref);
      if (!other) throw HttpError(404, "No such container: " + other_ref);
      if (!other->running())
        throw HttpError(409, "cannot join network namespace of a non running container: " +
                                 other->id);
      std::string key = other->doc["NetworkSettings"].value("SandboxKey", "");
      if (!key.empty()) netns = key;
      hostname = other->doc["Config"].value("Hostname", "");
    }
    bind_file(other->dir / "hosts", "/etc/hosts");
    bind_file(other->dir / "resolv.conf", "/etc/resolv.conf");
    bind_file(other->dir / "hostname", "/etc/hostname");
    ns["SandboxKey"] = netns.value_or("");
    write_file_atomic(c.dir / "hostname", hostname + "\n");
    return netns;
  } else {
    fs::path sandbox = engine->networks.create_sandbox(c.id);
    netns = sandbox.string();
    ns["SandboxKey"] = sandbox.string();
    ns["SandboxID"] = c.id;
    {
      std::lock_guard l(mu);
      c.berth()["Sandbox"] = true;  // teardown must undo it even if the rest fails
    }
    if (mode != "none") {
      std::vector<std::string> nets = {mode};
      json& eps = c.berth()["EndpointsConfig"];
      if (eps.is_object())
        for (auto& [n, _] : eps.items())
          if (n != mode) nets.push_back(n);
      json networks = json::object();
      bool first = true;
      for (const std::string& net : nets) {
        json req = eps.is_object() && eps.contains(net) ? eps[net] : json::object();
        network::EndpointRequest er = network::EndpointRequest::from_json(req);
        if (er.mac.empty() && net == mode) {  // API < 1.44 sent it in Config
          er.mac = doc["Config"].value("MacAddress", "");
        }
        if (net == mode && mode != "bridge" && hc.contains("Links") && hc["Links"].is_array())
          for (const json& l : hc["Links"])  // --link on a user-defined network: DNS only
            if (l.is_string()) er.links.push_back(network::normalize_link(l.get<std::string>()));
        er.mac = network::normalize_mac(er.mac);
        network::Endpoint ep = engine->networks.connect(net, c.id, name, sandbox, er);
        json ej = empty_endpoint(req);
        json ep_json = ep.to_json();
        for (auto& [k, v] : ep_json.items()) ej[k] = v;
        networks[net] = ej;
        if (first) {
          my_ip = ep.ip;
          if (net == "bridge") {
            ns["IPAddress"] = ep.ip;
            ns["IPPrefixLen"] = ep.prefix_len;
            ns["Gateway"] = ep.gateway;
            ns["MacAddress"] = ep.mac;
            ns["EndpointID"] = ep.endpoint_id;
          }
          first = false;
        }
      }
      ns["Networks"] = networks;
      auto wanted = wanted_port_bindings(doc["Config"], hc);
      std::vector<network::PortBinding> published;
      if (!wanted.empty()) published = engine->networks.publish(c.id, my_ip, wanted);
      ns["Ports"] = ports_map(doc["Config"], published);
      resolv = engine->networks.resolv_conf(mode);
    } else {
      resolv = read_file("/etc/resolv.conf").value_or("");
    }
  }
  if (mode == "bridge" && hc.contains("Links") && hc["Links"].is_array()) {
    // --link on the default bridge: /etc/hosts entries and the legacy variables,
    // ahead of the container's own Env (which wins), as dockerd.
    std::vector<std::string> link_vars;
    for (const json& l : hc["Links"]) {
      if (!l.is_string()) continue;
      auto [target, alias] = parse_link(l.get<std::string>());
      LinkTarget t;
      {
        std::lock_guard lk(mu);
        ContainerPtr other = find(target);
        if (!other) throw HttpError(404, "could not get container for " + target);
        if (!other->running())
          throw HttpError(409, "Cannot link to a non running container: /" + target + " AS /" +
                                   name + "/" + alias);
        const json& od = other->doc;
        t.name = od.value("Name", "/").substr(1);
        t.hostname = od["Config"].value("Hostname", "");
        if (od["Config"].contains("ExposedPorts")) t.exposed_ports = od["Config"]["ExposedPorts"];
        if (od["Config"].contains("Env") && od["Config"]["Env"].is_array())
          for (const json& e : od["Config"]["Env"])
            if (e.is_string()) t.env.push_back(e.get<std::string>());
        const json& nets = od["NetworkSettings"]["Networks"];
        if (nets.is_object() && nets.contains("bridge")) t.ip = nets["bridge"].value("IPAddress", "");
      }
      if (t.ip.empty()) continue;
      hosts += link_hosts_line(alias, t);
      for (std::string& v : link_env(name, alias, t)) link_vars.push_back(std::move(v));
    }
    json& env = doc["Config"]["Env"];
    if (env.is_array())
      for (const json& e : env) link_vars.push_back(e.get<std::string>());
    if (!link_vars.empty()) env = link_vars;
  }
  if (hc.contains("Dns") && hc["Dns"].is_array() && !hc["Dns"].empty()) {
    std::string r;
    for (const json& d : hc["Dns"]) r += "nameserver " + d.get<std::string>() + "\n";
    resolv = r;
  }
  if (hc.contains("DnsSearch") && hc["DnsSearch"].is_array() && !hc["DnsSearch"].empty()) {
    std::string line = "search";
    for (const json& d : hc["DnsSearch"]) line += " " + d.get<std::string>();
    resolv += line + "\n";
  }
  if (hc.contains("DnsOptions") && hc["DnsOptions"].is_array() && !hc["DnsOptions"].empty()) {
    std::string line = "options";
    for (const json& d : hc["DnsOptions"]) line += " " + d.get<std::string>();
    resolv += line + "\n";
  }
  if (mode != "host") {
    std::string fqdn = hostname;
    std::string domain = doc["Config"].value("Domainname", "");
    if (!domain.empty()) fqdn += "." + domain;
    if (!my_ip.empty()) hosts += my_ip + "\t" + (fqdn != hostname ? fqdn + " " : "") + hostname + "\n";
  }
  if (hc.contains("ExtraHosts") && hc["ExtraHosts"].is_array())
    for (const json& e : hc["ExtraHosts"]) {
      std::string s = e.get<std::string>();
      auto colon = s.find(':');
      if (colon == std::string::npos) continue;
      std::string ip = s.substr(colon + 1);
      if (ip == "host-gateway") {  // dockerd: the default bridge's gateway, the host as containers see it
        ip.clear();
        try {
          const json net = engine->networks.inspect("bridge", false);
          if (net.contains("IPAM") && net["IPAM"].contains("Config") && net["IPAM"]["Config"].is_array() &&
              !net["IPAM"]["Config"].empty())
            ip = net["IPAM"]["Config"][0].value("Gateway", "");
        } catch (const std::exception&) {
        }
        if (ip.empty()) throw HttpError(400, "unable to derive the IP value for host-gateway");
      }
      hosts += ip + "\t" + s.substr(0, colon) + "\n";
    }
  write_file_atomic(c.dir / "hosts", hosts);
  write_file_atomic(c.dir / "resolv.conf", resolv);
  write_file_atomic(c.dir / "hostname", hostname + "\n");
  bind_file(c.dir / "hosts", "/etc/hosts");
  bind_file(c.dir / "resolv.conf", "/etc/resolv.conf");
  bind_file(c.dir / "hostname", "/etc/hostname");
  return netns;
}

void ContainerManager::Impl::teardown(Container& c) {
  bool sandbox;
  {
    std::lock_guard l(mu);
    sandbox = c.berth().value("Sandbox", false);
    c.berth()["Sandbox"] = false;
    json& ns = c.doc["NetworkSettings"];
    for (const char* k : {"IPAddress", "Gateway", "MacAddress", "EndpointID", "SandboxKey",
                          "SandboxID"})
      ns[k] = "";
    ns["IPPrefixLen"] = 0;
    ns["Ports"] = json::object();
    if (ns.contains("Networks") && ns["Networks"].is_object())
      for (auto& [n, ep] : ns["Networks"].items())
        for (const char* k : {"IPAddress", "Gateway", "MacAddress", "EndpointID", "NetworkID"})
          ep[k] = "";
  }
  if (sandbox) {
    try {
      engine->networks.destroy_sandbox(c.id);
    } catch (const std::exception& e) {
      log().warn("network teardown of " + short_id(c.id) + ": " + e.what());
    }
  }
  if (opt.mount_overlay) ::umount2(c.rootfs().c_str(), MNT_DETACH);
}

}  // namespace berth::agent::runtime
