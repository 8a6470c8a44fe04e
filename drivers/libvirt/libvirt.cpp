#include "drivers/libvirt/libvirt.h"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <libvirt/virterror.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <optional>
#include <set>
#include <thread>
#include <utility>
#include <vector>

#include "core/error.h"
#include "core/fs.h"
#include "core/live_line.h"
#include "core/lock.h"
#include "core/log.h"
#include "core/net.h"
#include "drivers/ports.h"
#include "core/ssh.h"
#include "drivers/libvirt/accel.h"
#include "drivers/libvirt/boot_diagnosis.h"
#include "drivers/libvirt/cidata.h"
#include "drivers/libvirt/domain_xml.h"
#include "drivers/libvirt/download.h"
#include "drivers/libvirt/hostfwd.h"
#include "drivers/libvirt/image.h"
#include "drivers/libvirt/shares.h"
#include "drivers/libvirt/virt.h"

namespace berth {
namespace {

using namespace std::chrono_literals;
constexpr const char* kLog = "libvirt";
constexpr auto kStopTimeout = 30s;
constexpr auto kSshTimeout = 120s;
constexpr auto kLeaseTimeout = 60s;
constexpr auto kConsoleTimeout = 60s;
constexpr std::chrono::duration<double> kSlowDefine = 5s;
constexpr auto kProbeTimeout = 4s;
constexpr int kGuestAgentPort = 2376;
// What a machine's disks need on the host to boot: berth-os formats its data
// disk (ext4's journal alone is 128 MB) before SSH starts.
constexpr std::uintmax_t kMinFreeBytes = 256ull << 20;

struct LibvirtState {
  std::string uri;
  int cpus = 1;
  int memory_mb = 1024;
  int disk_mb = 5000;
  std::string image;         // absolute path; for a URL, its cached file once downloaded
  std::string image_url;
  std::string image_sha256;
  std::string image_kind;    // berth-os | iso | qcow2; "" until inspected
  std::string network = "user";
  std::string accel_wanted = "auto";
  std::string accel;         // kvm | tcg; "" until decided
  int ssh_port = 0;          // host side of the forwards (user networking)
  int agent_port = 0;
  int guest_agent_port = 2376;  // --engine-port: where the agent listens in the guest
  std::string mac;
  std::string ip;            // named networks: the DHCP lease
  std::vector<virt::Share> shares;  // host folders over virtio-9p, mounted by berth-os
  std::string cluster_vde;   // a cluster's VDE switch (eth1 on its private segment); "" for none
  std::string cluster_mac;
};

std::string default_uri() { return ::geteuid() == 0 ? "qemu:///system" : "qemu:///session"; }

std::string hex8(const std::string& s) { return virt::sha256_hex(s).substr(0, 8); }

std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> out;
  std::string line;
  for (char c : text) {
    if (c == '\n') {
      out.push_back(line);
      line.clear();
    } else if (c != '\r' && (static_cast<unsigned char>(c) >= 0x20 || c == '\t')) {
      line += c;
    }
  }
  if (!line.empty()) out.push_back(line);
  return out;
}

nlohmann::json shares_json(const std::vector<virt::Share>& shares) {
  auto out = nlohmann::json::array();
  for (const auto& s : shares) out.push_back({{"tag", s.tag}, {"host", s.host}, {"guest", s.guest}});
  return out;
}

void remove_file(const fs::path& p) {
  std::error_code ec;
  fs::remove(p, ec);
  if (ec) log::warn(kLog, "cannot remove {}: {}", p.string(), ec.message());
}

class LibvirtDriver final : public Driver {
 public:
  LibvirtDriver(LibvirtState s, DriverContext ctx) : s_(std::move(s)), ctx_(std::move(ctx)) {
    std::error_code ec;
    dir_ = fs::absolute(ctx_.machine_dir, ec).lexically_normal();
    if (dir_.filename().empty()) dir_ = dir_.parent_path();
    if (s_.mac.empty()) s_.mac = mac_for(domain_name());
    if (ctx_.cluster_link) {
      s_.cluster_vde = ctx_.cluster_link->vde_socket.string();
      s_.cluster_mac = ctx_.cluster_link->mac;
    }
  }

  void pre_create_check() override {
    run_pre_create_check([&] {
      virt::check_share_dirs(s_.shares, name());
      check_free_space();
      if (const long pages = ::sysconf(_SC_PHYS_PAGES); pages > 0) {
        const long long host_mb = static_cast<long long>(pages) * ::sysconf(_SC_PAGESIZE) / (1024 * 1024);
        if (s_.memory_mb > host_mb)
          throw UserError(fmt::format("machine '{}': --libvirt-memory {} MB is more than this host has ({} MB)",
                                      name(), s_.memory_mb, host_mb));
      }
      auto conn = virt::connect(s_.uri, name());
      if (!user_net()) {
        auto net = virt::find_network(conn.get(), s_.network, name());
        if (!net)
          throw UserError(fmt::format("machine '{}': there is no libvirt network '{}' on {}; use --libvirt-network "
                                      "user (the default) or the name of an existing network",
                                      name(), s_.network, s_.uri));
        if (virNetworkIsActive(net.get()) != 1)
          throw UserError(fmt::format("machine '{}': libvirt network '{}' is not running and berth never starts "
                                      "networks; start it yourself or use --libvirt-network user",
                                      name(), s_.network));
      }
      if (s_.image_url.empty()) s_.image_kind = to_string(virt::inspect_image(s_.image, name()).kind);
      decide_accel(conn.get());
    });
  }

  void create() override {
    try {
      ensure_private_dir(dir_);
      step("libvirt: image");
      resolve_image();
      ctx_.cancel.throw_if_cancelled();
      step("libvirt: keys and cidata");
      generate_ed25519_key(key_path(), "berth@" + name());
      generate_ed25519_key(host_key_path(), "root@" + name());
      write_cidata();
      auto conn = virt::connect(s_.uri, name());
      if (s_.accel.empty()) decide_accel(conn.get());
      ctx_.cancel.throw_if_cancelled();
      step("libvirt: storage pool and disks");
      remove_domain(conn.get());  // a leftover with our name can only be ours
      make_volumes(conn.get());
      ctx_.cancel.throw_if_cancelled();
      boot(conn.get());
      if (!user_net()) {
        step("libvirt: waiting for a DHCP lease");
        wait_for_lease(conn.get());
      }
      step("booting to the first console line");
      wait_for_console();
      step("booting to SSH");
      wait_for_ssh();
    } catch (...) {
      log::debug(kLog, "create of {} failed; removing what it made", name());
      try {
        remove();
      } catch (const std::exception& e) {
        log::warn(kLog, "machine '{}': cleanup after the failed create: {}", name(), e.what());
      }
      throw;
    }
  }

  void start() override {
    auto conn = virt::connect(s_.uri, name());
    auto dom = require_domain(conn.get());
    if (virDomainIsActive(dom.get()) == 1) return;
    for (const auto& share : s_.shares) {  // QEMU would refuse to start, with a vaguer message
      std::error_code ec;
      if (!fs::is_directory(share.host, ec))
        throw UserError(fmt::format("machine '{}': the shared folder {} (mounted on {} in the guest) is gone; "
                                    "create it again, then start the machine",
                                    name(), share.host, share.guest));
    }
    boot(conn.get());
    if (!user_net()) wait_for_lease(conn.get());
    wait_for_ssh();
  }

  void stop() override {
    auto conn = virt::connect(s_.uri, name());
    auto dom = require_domain(conn.get());
    if (virDomainIsActive(dom.get()) != 1) return;
    // ACPI power button; asked again now and then in case the guest missed it while booting.
    const auto deadline = std::chrono::steady_clock::now() + kStopTimeout;
    auto next_ask = std::chrono::steady_clock::now();
    while (std::chrono::steady_clock::now() < deadline) {
      if (ctx_.cancel.cancelled()) break;  // Ctrl-C while waiting: force it off now
      if (std::chrono::steady_clock::now() >= next_ask) {
        if (virDomainShutdown(dom.get()) < 0 && virDomainIsActive(dom.get()) == 1)
          log::debug(kLog, "ACPI shutdown of {}: {}", name(), virGetLastErrorMessage());
        next_ask += 10s;
      }
      if (virDomainIsActive(dom.get()) != 1) return;
      std::this_thread::sleep_for(200ms);
    }
    log::warn(kLog, "machine '{}' did not power off within {} s; forcing it off", name(), kStopTimeout.count());
    destroy(dom.get());
  }

  void restart() override {
    stop();
    start();
  }

  void kill() override {
    auto conn = virt::connect(s_.uri, name());
    auto dom = require_domain(conn.get());
    destroy(dom.get());
  }

  // Everything create() made, derived from the machine's name and directory, so a
  // create killed at any point is cleaned up from the state saved before it ran.
  void remove() override {
    std::string unreachable;
    try {
      auto conn = virt::connect(s_.uri, name());
      remove_domain(conn.get());
      remove_volumes(conn.get());
    } catch (const DriverError& e) {
      unreachable = e.what();
    }
    for (const auto& v : {data_volume(), boot_volume()}) remove_file(pool_dir() / v);
    for (const char* f : {"cidata.iso", "console.log", "id_ed25519", "id_ed25519.pub", "ssh_host_ed25519_key",
                          "ssh_host_ed25519_key.pub"})
      remove_file(dir_ / f);
    if (!unreachable.empty())
      throw DriverError(unreachable + "; its files are gone, but the libvirt domain " + domain_name() +
                        " may still be defined (virsh undefine " + domain_name() + ")");
  }

  MachineState state(std::chrono::milliseconds) override {
    try {
      auto conn = virt::connect(s_.uri, name());
      auto dom = virt::find_domain(conn.get(), domain_name(), name());
      if (!dom) return MachineState::NotFound;
      int st = 0, reason = 0;
      if (virDomainGetState(dom.get(), &st, &reason, 0) < 0) return MachineState::Error;
      switch (st) {
        case VIR_DOMAIN_RUNNING:
        case VIR_DOMAIN_BLOCKED: return MachineState::Running;
        case VIR_DOMAIN_PAUSED:
        case VIR_DOMAIN_PMSUSPENDED: return MachineState::Paused;
        case VIR_DOMAIN_SHUTDOWN: return MachineState::Stopping;
        case VIR_DOMAIN_SHUTOFF: return MachineState::Stopped;
        case VIR_DOMAIN_CRASHED: return MachineState::Error;
        default: return MachineState::Unknown;
      }
    } catch (const std::exception& e) {
      log::debug(kLog, "state of {}: {}", name(), e.what());
      return MachineState::Error;
    }
  }

  std::optional<SshEndpoint> ssh_endpoint() const override {
    if (user_net()) {
      if (s_.ssh_port <= 0) return std::nullopt;
      return SshEndpoint{"127.0.0.1", s_.ssh_port, "root", key_path()};
    }
    if (s_.ip.empty()) return std::nullopt;
    return SshEndpoint{s_.ip, 22, "root", key_path()};
  }

  std::string ip() const override { return user_net() ? "127.0.0.1" : s_.ip; }

  std::string add_port_forward(int port) override {
    if (!user_net()) return "the machine is on a libvirt network, not user-mode networking";
    auto conn = virt::connect(s_.uri, name());
    return virt::add_hostfwd(require_domain(conn.get()).get(), port);
  }

  void remove_port_forward(int port) override {
    if (!user_net()) return;
    try {
      auto conn = virt::connect(s_.uri, name());
      if (auto dom = virt::find_domain(conn.get(), domain_name(), name())) virt::remove_hostfwd(dom.get(), port);
    } catch (const Error&) {
      // The VM or the daemon is gone, and the forward with it.
    }
  }

  // With user networking the agent's guest port is forwarded from agent_port on 127.0.0.1.
  std::string url(int agent_port) const override {
    if (user_net()) return fmt::format("tcp://127.0.0.1:{}", s_.agent_port);
    return fmt::format("tcp://{}:{}", host_for_url(s_.ip), agent_port);
  }

  nlohmann::json save_state() const override {
    return {{"uri", s_.uri},
            {"cpus", s_.cpus},
            {"memory_mb", s_.memory_mb},
            {"disk_mb", s_.disk_mb},
            {"image", s_.image},
            {"image_url", s_.image_url},
            {"image_sha256", s_.image_sha256},
            {"image_kind", s_.image_kind},
            {"network", s_.network},
            {"accel_wanted", s_.accel_wanted},
            {"accel", s_.accel},
            {"ssh_port", s_.ssh_port},
            {"agent_port", s_.agent_port},
            {"guest_agent_port", s_.guest_agent_port},
            {"mac", s_.mac},
            {"ip", s_.ip},
            {"shares", shares_json(s_.shares)},
            {"cluster_vde", s_.cluster_vde},
            {"cluster_mac", s_.cluster_mac},
            {"domain", domain_name()}};
  }

 private:
  const std::string& name() const { return ctx_.machine_name; }
  bool user_net() const { return s_.network == "user"; }
  fs::path store_root() const { return dir_.parent_path().parent_path(); }
  fs::path cache_dir() const { return store_root() / "cache"; }
  fs::path pool_dir() const { return store_root() / "pool"; }
  // The hash keeps it unique per store; the name is cut so volume file names stay short.
  std::string domain_name() const { return "berth-" + name().substr(0, 40) + "-" + hex8(dir_.string()); }
  // A version-4-shaped UUID from the machine dir's hash.
  std::string domain_uuid() const {
    std::string h = virt::sha256_hex("uuid:" + dir_.string()).substr(0, 32);
    h[12] = '4';
    h[16] = "89ab"[h[16] % 4];
    return h.substr(0, 8) + "-" + h.substr(8, 4) + "-" + h.substr(12, 4) + "-" + h.substr(16, 4) + "-" + h.substr(20);
  }
  std::string pool_name() const { return "berth-" + hex8(store_root().string()); }
  std::string data_volume() const { return domain_name() + "-data.qcow2"; }
  std::string boot_volume() const { return domain_name() + "-boot.qcow2"; }
  fs::path key_path() const { return dir_ / "id_ed25519"; }
  fs::path host_key_path() const { return dir_ / "ssh_host_ed25519_key"; }
  fs::path cidata_path() const { return dir_ / "cidata.iso"; }
  fs::path console_path() const { return dir_ / "console.log"; }
  // QEMU from the system daemon runs as libvirt-qemu, which cannot enter the 0700 machine
  // dir, so it runs as us instead. Root's connections all reach the system daemon,
  // whatever the URI says.
  std::string dac_label() const {
    if (::geteuid() != 0 && s_.uri.find("/system") == std::string::npos) return "";
    return fmt::format("+{}:+{}", ::geteuid(), ::getegid());
  }

  static std::string mac_for(const std::string& seed) {
    const std::string h = virt::sha256_hex(seed);
    return fmt::format("52:54:00:{}:{}:{}", h.substr(0, 2), h.substr(2, 2), h.substr(4, 2));
  }

  virt::Domain require_domain(virConnectPtr conn) const {
    auto dom = virt::find_domain(conn, domain_name(), name());
    if (!dom)
      throw DriverError(fmt::format("machine '{}': its libvirt domain {} is gone from {}; remove the machine with "
                                    "'berth rm -f {}' and create it again",
                                    name(), domain_name(), s_.uri, name()));
    return dom;
  }

  void destroy(virDomainPtr dom) const {
    if (virDomainIsActive(dom) == 1 && virDomainDestroy(dom) < 0 && virDomainIsActive(dom) == 1)
      virt::fail(name(), "force off domain " + domain_name());
  }

  // --- image, keys, cidata ---------------------------------------------------

  void resolve_image() {
    if (!s_.image_url.empty()) {
      virt::DownloadRequest req;
      req.url = s_.image_url;
      req.cache_dir = cache_dir();
      req.sha256 = s_.image_sha256;
      req.machine = name();
      req.progress = ctx_.quiet ? nullptr : stderr;
      auto cancel = ctx_.cancel;
      req.cancelled = [cancel] { return cancel.cancelled(); };
      s_.image = virt::download_image(req).string();
    } else if (!s_.image_sha256.empty()) {
      const std::string got = virt::sha256_file(s_.image);
      if (got != s_.image_sha256)
        throw UserError(fmt::format("machine '{}': {} has SHA-256 {}, not {} as --libvirt-image-sha256 says",
                                    name(), s_.image, got, s_.image_sha256));
    }
    auto img = virt::inspect_image(s_.image, name());
    s_.image = img.path.string();
    s_.image_kind = to_string(img.kind);
  }

  void write_cidata() const {
    virt::CidataSpec spec;
    spec.instance_id = domain_name();
    spec.hostname = name();
    spec.authorized_keys = {read_public_key(key_path())};
    spec.host_private_key = read_file(host_key_path());
    spec.host_public_key = read_public_key(host_key_path());
    if (s_.image_kind == "qcow2") spec.data_device = "/dev/vdb";  // vda is the cloud image
    for (const auto& share : s_.shares) spec.mounts.push_back({share.tag, share.guest});
    virt::write_cidata_iso(cidata_path(), spec);
  }

  // --- KVM or TCG ------------------------------------------------------------

  void decide_accel(virConnectPtr conn) {
    const fs::path kernel = probe_kernel();
    auto decision = virt::decide_accel(
        s_.accel_wanted, virt::kvm_device_usable(), cache_dir() / "accel.json", virt::host_kernel_key(),
        [&] { return kernel.empty() ? true : probe_kvm(conn, kernel); }, name());
    s_.accel = decision.accel;
    if (decision.kvm_broken) {
      LiveLine::Pause pause;
      fmt::print(stderr, "{}: KVM does not boot guests on this host (a probe guest hung); using TCG software "
                         "emulation, which is slower\n", name());
    }
  }

  // The berth-os kernel the probe boots (the machine's own when it is berth-os).
  fs::path probe_kernel() const {
    std::error_code ec;
    if (s_.image_kind == "berth-os" && fs::is_regular_file(fs::path(s_.image) / "vmlinuz", ec))
      return fs::path(s_.image) / "vmlinuz";
    fs::path dir = virt::find_berth_os();
    return dir.empty() ? fs::path() : dir / "vmlinuz";
  }

  // Boots `kernel` under KVM with no disks and watches its console for the banner.
  bool probe_kvm(virConnectPtr conn, const fs::path& kernel) const {
    const fs::path work = cache_dir() / fmt::format("kvm-probe-{}", ::getpid());
    ensure_private_dir(work);
    const fs::path console = work / "console.log";
    const std::string dom_name = fmt::format("berth-kvm-probe-{}-{}", ::getpid(), hex8(work.string() + name()));
    const std::string xml = virt::kvm_probe_xml(dom_name, kernel, console, dac_label());
    bool booted = false;
    {
      virt::Domain dom(virDomainCreateXML(conn, xml.c_str(), VIR_DOMAIN_START_AUTODESTROY));
      if (!dom) {
        log::debug(kLog, "KVM probe guest did not start: {}", virGetLastErrorMessage());
      } else {
        const auto deadline = std::chrono::steady_clock::now() + kProbeTimeout;
        while (!booted && std::chrono::steady_clock::now() < deadline && !ctx_.cancel.cancelled()) {
          std::this_thread::sleep_for(100ms);
          std::error_code ec;
          if (fs::exists(console, ec)) booted = read_file(console).find("Linux version") != std::string::npos;
        }
        if (virDomainIsActive(dom.get()) == 1) virDomainDestroy(dom.get());
      }
    }
    std::error_code ec;
    fs::remove_all(work, ec);
    ctx_.cancel.throw_if_cancelled();
    log::debug(kLog, "KVM probe: {}", booted ? "the kernel booted" : "no kernel output");
    return booted;
  }

  // --- storage ---------------------------------------------------------------

  // Serializes pool setup/teardown and volume creation between berth processes on one store.
  FileLock pool_lock() const {
    ensure_private_dir(store_root());
    auto lock = FileLock::acquire(store_root() / "libvirt-pool.lock", 120s);
    if (!lock)
      throw DriverError(fmt::format("machine '{}': another berth kept the libvirt pool lock for 2 minutes; try again",
                                    name()));
    return std::move(*lock);
  }

  virt::Pool ensure_pool(virConnectPtr conn) const {
    auto pool = virt::find_pool(conn, pool_name(), name());
    if (!pool) {
      ensure_private_dir(pool_dir());
      pool.reset(virStoragePoolDefineXML(conn, virt::pool_xml(pool_name(), pool_dir()).c_str(), 0));
      if (!pool) virt::fail(name(), "define storage pool " + pool_name());
    }
    if (virStoragePoolIsActive(pool.get()) != 1) {
      ensure_private_dir(pool_dir());
      virt::check(virStoragePoolCreate(pool.get(), 0), name(), "start storage pool " + pool_name());
    }
    virt::check(virStoragePoolSetAutostart(pool.get(), 1), name(), "autostart storage pool " + pool_name());
    virt::check(virStoragePoolRefresh(pool.get(), 0), name(), "refresh storage pool " + pool_name());
    return pool;
  }

  void create_volume(virStoragePoolPtr pool, const std::string& vol, std::uint64_t bytes,
                     const std::optional<fs::path>& backing) const {
    if (auto old = virt::find_volume(pool, vol, name())) virStorageVolDelete(old.get(), 0);
    virt::Volume v(virStorageVolCreateXML(pool, virt::volume_xml(vol, bytes, backing).c_str(), 0));
    if (!v) virt::fail(name(), "create volume " + vol + " in pool " + pool_name());
  }

  void make_volumes(virConnectPtr conn) const {
    auto lock = pool_lock();
    auto pool = ensure_pool(conn);
    create_volume(pool.get(), data_volume(), static_cast<std::uint64_t>(s_.disk_mb) * 1024 * 1024, std::nullopt);
    if (s_.image_kind == "qcow2") {
      auto img = virt::inspect_image(s_.image, name());
      create_volume(pool.get(), boot_volume(), img.virtual_size, img.path);
    }
  }

  void remove_volumes(virConnectPtr conn) const {
    auto lock = pool_lock();
    auto pool = virt::find_pool(conn, pool_name(), name());
    if (!pool) return;
    if (virStoragePoolIsActive(pool.get()) != 1) {
      std::error_code ec;
      if (!fs::is_directory(pool_dir(), ec) || virStoragePoolCreate(pool.get(), 0) < 0) {
        // Its directory is gone (or it will not start): nothing of ours can be in it.
        virStoragePoolUndefine(pool.get());
        return;
      }
    }
    virStoragePoolRefresh(pool.get(), 0);
    for (const auto& v : {data_volume(), boot_volume()})
      if (auto vol = virt::find_volume(pool.get(), v, name()))
        virt::check(virStorageVolDelete(vol.get(), 0), name(), "delete volume " + v);
    // The pool is per store; the last machine out takes it down.
    if (virStoragePoolNumOfVolumes(pool.get()) == 0) {
      virStoragePoolDestroy(pool.get());
      virStoragePoolUndefine(pool.get());
      std::error_code ec;
      fs::remove(pool_dir(), ec);  // only when empty
    }
  }

  // --- the domain ------------------------------------------------------------

  void remove_domain(virConnectPtr conn) const {
    auto dom = virt::find_domain(conn, domain_name(), name());
    if (!dom) return;
    destroy(dom.get());
    const unsigned flags = VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA |
                           VIR_DOMAIN_UNDEFINE_NVRAM | VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA;
    if (virDomainUndefineFlags(dom.get(), flags) < 0 && virDomainUndefine(dom.get()) < 0 &&
        virt::last_error_code() != VIR_ERR_NO_DOMAIN)
      virt::fail(name(), "undefine domain " + domain_name());
  }

  virt::DomainSpec spec() const {
    virt::DomainSpec d;
    d.name = domain_name();
    d.uuid = domain_uuid();
    d.machine = name();
    d.type = s_.accel == "kvm" ? "kvm" : "qemu";
    d.memory_mb = s_.memory_mb;
    d.cpus = s_.cpus;
    const auto kind = virt::image_kind_from_string(s_.image_kind.empty() ? "berth-os" : s_.image_kind);
    if (kind == virt::ImageKind::BerthOs) {
      auto img = virt::inspect_image(s_.image, name());
      d.boot = virt::BootMode::Kernel;
      d.kernel = img.kernel();
      d.initrd = img.initrd();
      d.cmdline = img.cmdline;
    } else if (kind == virt::ImageKind::Iso) {
      d.boot = virt::BootMode::Cdrom;
      d.boot_iso = s_.image;
    } else {
      d.boot = virt::BootMode::Disk;
      d.boot_disk = pool_dir() / boot_volume();
    }
    d.data_disk = pool_dir() / data_volume();
    d.cidata_iso = cidata_path();
    d.console_log = console_path();
    d.network = s_.network;
    d.ssh_port = s_.ssh_port;
    d.agent_port = s_.agent_port;
    d.guest_agent_port = s_.guest_agent_port;
    d.mac = s_.mac;
    d.dac_label = dac_label();
    d.shares = s_.shares;
    d.cluster_vde = s_.cluster_vde;
    d.cluster_mac = s_.cluster_mac;
    return d;
  }

  void choose_ports(bool force_new) {
    choose_forward_ports(dir_, name(), s_.ssh_port, s_.agent_port, force_new);
  }

  // (Re)defines the domain from the current state and starts it. With user
  // networking a forward port taken in the meantime means new ports and a retry.
  void boot(virConnectPtr conn) {
    for (int attempt = 1;; ++attempt) {
      if (user_net()) choose_ports(attempt > 1);
      virt::DomainSpec d = spec();
      if (auto old = virt::find_domain(conn, domain_name(), name())) {
        char uuid[VIR_UUID_STRING_BUFLEN] = {};
        if (virDomainGetUUIDString(old.get(), uuid) == 0) d.uuid = uuid;  // redefine that very domain
      }
      const std::string xml = virt::domain_xml(d);
      step("libvirt: defining the domain");
      const auto defining = std::chrono::steady_clock::now();
      virt::Domain dom(virDomainDefineXML(conn, xml.c_str()));
      if (!dom) virt::fail(name(), "define domain " + domain_name());
      explain_slow_define(std::chrono::steady_clock::now() - defining);
      ctx_.cancel.throw_if_cancelled();
      step("libvirt: starting the domain");
      if (virDomainCreate(dom.get()) == 0) {
        log::debug(kLog, "{} started (ssh {}, agent {})", domain_name(), s_.ssh_port, s_.agent_port);
        return;
      }
      const std::string msg = virGetLastErrorMessage();
      if (user_net() && attempt < 3 && msg.find("host forwarding") != std::string::npos) {
        log::debug(kLog, "{}: {}; choosing new ports", name(), msg);
        continue;
      }
      throw DriverError(fmt::format("machine '{}': cannot start domain {}: {}{}", name(), domain_name(), msg,
                                    msg.find("virtlogd") != std::string::npos
                                        ? "; start virtlogd with 'virtlogd -d' (or systemctl start virtlogd)"
                                        : ""));
    }
  }

  void wait_for_lease(virConnectPtr conn) {
    auto net = virt::find_network(conn, s_.network, name());
    if (!net) throw DriverError(fmt::format("machine '{}': libvirt network '{}' is gone", name(), s_.network));
    const auto deadline = std::chrono::steady_clock::now() + kLeaseTimeout;
    while (std::chrono::steady_clock::now() < deadline) {
      ctx_.cancel.throw_if_cancelled();
      virNetworkDHCPLeasePtr* leases = nullptr;
      int n = virNetworkGetDHCPLeases(net.get(), s_.mac.c_str(), &leases, 0);
      std::string found;
      for (int i = 0; i < n; ++i) {
        if (found.empty() && leases[i]->type == VIR_IP_ADDR_TYPE_IPV4 && leases[i]->ipaddr) found = leases[i]->ipaddr;
        virNetworkDHCPLeaseFree(leases[i]);
      }
      std::free(leases);
      if (!found.empty()) {
        s_.ip = found;
        return;
      }
      std::this_thread::sleep_for(1s);
    }
    throw DriverError(fmt::format("machine '{}': no DHCP lease for {} on libvirt network '{}' within {} s; see "
                                  "'berth logs {}'",
                                  name(), s_.mac, s_.network, kLeaseTimeout.count(), name()));
  }

  // Waits for sshd in the guest. QEMU's user networking accepts connections on the
  // forwarded port before the guest is up and retries its SYN to the guest only after
  // seconds, so short attempts (a fresh SYN each) notice a ready guest soonest.
  void step(std::string_view what) const {
    if (ctx_.step) ctx_.step(what);
  }

  // A define normally takes well under a second; say why when it did not.
  void explain_slow_define(std::chrono::steady_clock::duration took) const {
    const double secs = std::chrono::duration<double>(took).count();
    if (secs < kSlowDefine.count() || ctx_.quiet) return;
    const std::string why = virt::slow_define_reason(virt::read_kvm_node());
    LiveLine::Pause pause;
    fmt::print(stderr, "{}: libvirtd took {:.1f} s to define the domain; {}\n", name(), secs,
               why.empty() ? "see libvirtd's log (journalctl -u libvirtd) for why" : why);
  }

  // The nearest existing directory on the way to the pool (the store may be new),
  // and the bytes free there (nullopt when that cannot be read).
  std::pair<fs::path, std::optional<std::uintmax_t>> pool_free_space() const {
    std::error_code ec;
    fs::path dir = pool_dir();
    while (!dir.empty() && !fs::exists(dir, ec) && dir != dir.parent_path()) dir = dir.parent_path();
    const auto space = fs::space(dir, ec);
    if (ec) return {dir, std::nullopt};
    return {dir, space.available};
  }

  std::string free_space_text(std::uintmax_t bytes) const {
    return bytes >= (10ull << 30) ? fmt::format("{} GB", bytes >> 30) : fmt::format("{} MB", bytes >> 20);
  }

  void check_free_space() const {
    const auto [dir, free] = pool_free_space();
    if (!free || *free >= kMinFreeBytes) return;
    throw UserError(fmt::format("machine '{}': the disk holding {} has {} free, and a machine needs {} MB there to "
                                "boot (its disk then grows with its containers); free some space, or use "
                                "--storage-path on a bigger disk",
                                name(), dir.string(), free_space_text(*free), kMinFreeBytes >> 20));
  }

  // QEMU pauses a guest whose disk write failed on the host (a full disk, most
  // often): the guest then never answers, so say it at once.
  void throw_if_stopped_at_boot(virConnectPtr conn) const {
    auto dom = virt::find_domain(conn, domain_name(), name());
    int st = 0, reason = 0;
    if (!dom || virDomainGetState(dom.get(), &st, &reason, 0) < 0) return;
    if (st == VIR_DOMAIN_PAUSED && reason == VIR_DOMAIN_PAUSED_IOERROR) {
      const auto [dir, free] = pool_free_space();
      throw DriverError(fmt::format(
          "machine '{}' stopped at boot: QEMU paused it on a disk write error in {}{}; free some space, or use "
          "--storage-path on a bigger disk",
          name(), dir.string(), free ? fmt::format(" ({} free: the host's disk is full)", free_space_text(*free)) : ""));
    }
    if (st == VIR_DOMAIN_SHUTOFF || st == VIR_DOMAIN_CRASHED)
      throw DriverError(fmt::format("machine '{}' powered off during boot; its console is in 'berth logs {}'", name(),
                                    name()));
  }

  // The console's first line: the kernel started. Not fatal: SSH's wait names the problem.
  void wait_for_console() const {
    const auto deadline = std::chrono::steady_clock::now() + kConsoleTimeout;
    std::error_code ec;
    while (std::chrono::steady_clock::now() < deadline) {
      ctx_.cancel.throw_if_cancelled();
      if (fs::file_size(console_path(), ec) > 0 && !ec) return;
      std::this_thread::sleep_for(100ms);
    }
  }

  std::string console_text() const {
    std::error_code ec;
    return fs::exists(console_path(), ec) ? read_file(console_path()) : std::string();
  }

  void wait_for_ssh() {
    const auto deadline = std::chrono::steady_clock::now() + kSshTimeout;
    auto conn = virt::connect(s_.uri, name());
    while (std::chrono::steady_clock::now() < deadline) {
      ctx_.cancel.throw_if_cancelled();
      if (user_net() ? loopback_ssh_banner(s_.ssh_port, 1500ms) : tcp_port_open(s_.ip, 22, 2s)) return;
      // A panic, berth-os giving up or a paused guest will not heal: say so now, not at the timeout.
      if (auto d = virt::diagnose_console(console_text()); d.fatal)
        throw DriverError(fmt::format("machine '{}' did not boot: {}", name(), d.cause));
      throw_if_stopped_at_boot(conn.get());
      std::this_thread::sleep_for(100ms);
    }
    // A failed create removes the console with everything else, so say what it showed.
    const std::string console = console_text();
    if (auto d = virt::diagnose_console(console); !d.cause.empty())
      throw DriverError(fmt::format("machine '{}' started, but SSH did not answer within {} s: {}", name(),
                                    kSshTimeout.count(), d.cause));
    std::string last;
    for (const auto& line : split_lines(console))
      if (!line.empty()) last = line;
    throw DriverError(fmt::format("machine '{}' started, but SSH did not answer within {} s{}", name(),
                                  kSshTimeout.count(),
                                  last.empty() ? "; the console stayed empty, so the kernel never started"
                                               : "; the console's last line: '" + last.substr(0, 200) + "'"));
  }

  LibvirtState s_;
  DriverContext ctx_;
  fs::path dir_;
};

LibvirtState state_from_json(const nlohmann::json& j) {
  LibvirtState s;
  s.uri = j.value("uri", default_uri());
  s.cpus = j.value("cpus", 1);
  s.memory_mb = j.value("memory_mb", 1024);
  s.disk_mb = j.value("disk_mb", 5000);
  s.image = j.value("image", "");
  s.image_url = j.value("image_url", "");
  s.image_sha256 = j.value("image_sha256", "");
  s.image_kind = j.value("image_kind", "");
  s.network = j.value("network", "user");
  s.accel_wanted = j.value("accel_wanted", "auto");
  s.accel = j.value("accel", "");
  s.ssh_port = j.value("ssh_port", 0);
  s.agent_port = j.value("agent_port", 0);
  s.guest_agent_port = j.value("guest_agent_port", kGuestAgentPort);
  s.mac = j.value("mac", "");
  s.ip = j.value("ip", "");
  if (auto it = j.find("shares"); it != j.end() && it->is_array())
    for (const auto& share : *it)
      s.shares.push_back({share.value("tag", ""), share.value("host", ""), share.value("guest", "")});
  s.cluster_vde = j.value("cluster_vde", "");
  s.cluster_mac = j.value("cluster_mac", "");
  return s;
}

bool is_hex64(const std::string& s) {
  return s.size() == 64 && s.find_first_not_of("0123456789abcdef") == std::string::npos;
}

}  // namespace

std::vector<FlagSpec> LibvirtDriverFactory::flags() const {
  using K = FlagSpec::Kind;
  return {
      {"libvirt-uri", "libvirt connection URI", K::String, default_uri(), "LIBVIRT_URI", false},
      {"libvirt-cpus", "number of virtual CPUs", K::Int, "1", "LIBVIRT_CPUS", false},
      {"libvirt-memory", "memory in MB", K::Int, "1024", "LIBVIRT_MEMORY", false},
      {"libvirt-disk-size", "size of the data disk (/var/lib/berth) in MB", K::Int, "5000", "LIBVIRT_DISK_SIZE",
       false},
      {"libvirt-image",
       "boot image: a path or http(s) URL of an ISO or qcow2 cloud image, or a berth-os build directory "
       "(default: the locally built berth-os)",
       K::String, "", "LIBVIRT_IMAGE", false},
      {"libvirt-image-sha256", "expected SHA-256 of --libvirt-image (hex)", K::String, "", "LIBVIRT_IMAGE_SHA256",
       false},
      {"libvirt-network",
       "'user' (user-mode networking, forwards on 127.0.0.1) or the name of a running libvirt network", K::String,
       "user", "LIBVIRT_NETWORK", false},
      {"libvirt-accel", "auto, kvm or tcg (auto: KVM when it really boots guests here)", K::String, "auto",
       "LIBVIRT_ACCEL", false},
      {"libvirt-share",
       "share a host folder with the VM over virtio-9p, as HOSTDIR or HOSTDIR:GUESTDIR (absolute paths; "
       "repeatable); berth-os mounts it at boot",
       K::StringList, "", "", false},
      {"libvirt-no-share", "do not share the home folder (shared at the same path by default)", K::Bool, "",
       "LIBVIRT_NO_SHARE", false},
  };
}

Capabilities LibvirtDriverFactory::capabilities() const {
  Capabilities c;
  c.can_start = c.can_stop = c.can_kill = c.can_restart = true;
  c.has_ssh = true;
  c.remove_destroys_host = true;
  return c;
}

std::unique_ptr<Driver> LibvirtDriverFactory::make(const FlagValues& flags, const DriverContext& ctx) const {
  const std::string& m = ctx.machine_name;
  LibvirtState s;
  s.uri = flags.get("libvirt-uri", default_uri());
  s.cpus = flags.get_int("libvirt-cpus", 1);
  s.memory_mb = flags.get_int("libvirt-memory", 1024);
  s.disk_mb = flags.get_int("libvirt-disk-size", 5000);
  s.network = flags.get("libvirt-network", "user");
  s.accel_wanted = flags.get("libvirt-accel", "auto");
  s.guest_agent_port = ctx.engine_port;
  s.image_sha256 = flags.get("libvirt-image-sha256");
  for (auto& c : s.image_sha256) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (s.uri.empty()) throw UserError("machine '" + m + "': --libvirt-uri must not be empty");
  if (s.cpus < 1 || s.cpus > 256) throw UserError("--libvirt-cpus must be between 1 and 256");
  if (s.memory_mb < 256) throw UserError("--libvirt-memory must be at least 256 (MB)");
  if (s.disk_mb < 100) throw UserError("--libvirt-disk-size must be at least 100 (MB)");
  if (s.accel_wanted != "auto" && s.accel_wanted != "kvm" && s.accel_wanted != "tcg")
    throw UserError("--libvirt-accel must be auto, kvm or tcg, not '" + s.accel_wanted + "'");
  if (s.network.empty()) throw UserError("--libvirt-network must be 'user' or a libvirt network name");
  if (!s.image_sha256.empty() && !is_hex64(s.image_sha256))
    throw UserError("--libvirt-image-sha256 must be 64 hex digits");

  auto plan = virt::plan_shares(flags.get_list("libvirt-share"), !flags.get_bool("libvirt-no-share"), home_dir());
  s.shares = std::move(plan.shares);
  if (!plan.note.empty() && !ctx.quiet) fmt::print(stderr, "machine '{}': {}\n", m, plan.note);

  const std::string image = flags.get("libvirt-image");
  if (virt::is_url(image)) {
    s.image_url = image;
  } else if (!image.empty()) {
    std::error_code ec;
    s.image = fs::absolute(image, ec).lexically_normal().string();
    try {
      s.image_kind = to_string(virt::inspect_image(s.image, m).kind);
    } catch (const UserError&) {
      // pre_create_check() says what is wrong with it
    }
  } else {
    fs::path dir = virt::find_berth_os();
    if (dir.empty()) {
      std::string looked;
      for (const auto& c : virt::berth_os_candidates()) looked += (looked.empty() ? "" : ", ") + c.string();
      throw UserError("machine '" + m + "': no berth-os image found (looked in " + looked +
                      "); build it with image/build.sh, set BERTH_OS_DIR, or pass --libvirt-image");
    }
    s.image = dir.string();
    s.image_kind = "berth-os";
  }
  return std::make_unique<LibvirtDriver>(std::move(s), ctx);
}

std::unique_ptr<Driver> LibvirtDriverFactory::load(const nlohmann::json& state, const DriverContext& ctx) const {
  return std::make_unique<LibvirtDriver>(state_from_json(state), ctx);
}

}  // namespace berth
