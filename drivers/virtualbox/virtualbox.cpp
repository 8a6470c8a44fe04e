#include "drivers/virtualbox/virtualbox.h"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>
#include <set>
#include <thread>

#include "core/error.h"
#include "core/fs.h"
#include "core/live_line.h"
#include "core/log.h"
#include "core/net.h"
#include "drivers/ports.h"
#include "core/ssh.h"
#include "drivers/libvirt/cidata.h"
#include "drivers/libvirt/download.h"
#include "drivers/libvirt/image.h"
#include "drivers/virtualbox/parse.h"
#include "drivers/virtualbox/vboxmanage.h"

namespace berth {
namespace {

using namespace std::chrono_literals;
using vbox::ProcessResult;
constexpr const char* kLog = "virtualbox";
constexpr const char* kController = "SATA";
constexpr const char* kPortRulePrefix = "berth-tcp-";  // NAT rules of published container ports
const char* const kNicTypes[] = {"Am79C970A", "Am79C973", "Am79C960", "82540EM",
                                 "82543GC",   "82545EM",  "virtio",   "usbnet"};
const char* const kUiTypes[] = {"headless", "gui", "sdl", "separate"};

struct VBoxState {
  std::string vm;  // the VirtualBox VM name (the machine name)
  int cpus = 1;
  int memory_mb = 1024;
  int disk_mb = 20000;
  std::string image;  // the ISO (absolute); for a URL, its cached file once downloaded
  std::string image_url;
  std::string image_sha256;
  bool hostonly = false;
  std::string hostonly_cidr = "192.168.56.1/24";
  std::string hostonly_nictype = "82540EM";
  std::string hostonly_adapter;  // vboxnetN once found or made
  std::string nat_nictype = "82540EM";
  bool share = true;
  std::string share_path;  // host directory
  std::string share_name;  // the name the guest sees
  bool vtx_check = true;
  std::string ui_type = "headless";
  int ssh_port = 0;
  int agent_port = 0;
  int guest_agent_port = 2376;
  std::string vm_base_dir;  // where the VM's settings must lie; empty: the machine dir (imports set it)
};

bool one_of(const std::string& v, const auto& list) {
  for (const char* c : list)
    if (v == c) return true;
  return false;
}

std::string joined(const auto& list) {
  std::string s;
  for (const char* c : list) s += (s.empty() ? "" : ", ") + std::string(c);
  return s;
}

void remove_path(const fs::path& p) {
  std::error_code ec;
  fs::remove_all(p, ec);
  if (ec) log::warn(kLog, "cannot remove {}: {}", p.string(), ec.message());
}

// berth-os ISOs carry the volume id BERTH_OS (image/build.sh); berth-os has no vboxsf.
bool is_berth_os_iso(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  char id[32] = {};
  if (!in.seekg(32808) || !in.read(id, sizeof id)) return false;
  return std::string(id, sizeof id).rfind("BERTH_OS ", 0) == 0;
}

bool cpu_has_virtualization() {
  std::error_code ec;
  if (!fs::exists("/proc/cpuinfo", ec)) return true;  // cannot tell: let VirtualBox say
  const std::string info = read_file("/proc/cpuinfo");
  return info.find(" vmx") != std::string::npos || info.find(" svm") != std::string::npos;
}

class VirtualBoxDriver final : public Driver {
 public:
  VirtualBoxDriver(VBoxState s, DriverContext ctx, VirtualBoxTuning tuning)
      : s_(std::move(s)), ctx_(std::move(ctx)), t_(std::move(tuning)) {
    std::error_code ec;
    dir_ = fs::absolute(ctx_.machine_dir, ec).lexically_normal();
    if (dir_.filename().empty()) dir_ = dir_.parent_path();
    if (s_.vm.empty()) s_.vm = name();
  }

  void pre_create_check() override {
    auto program = vbox::find_vboxmanage();
    if (!program)
      throw PreCreateCheckFailed(
          "VirtualBox is not installed (VBoxManage not found on PATH); install VirtualBox 6.1 or newer"
          " (or point BERTH_VBOXMANAGE at VBoxManage)");
    ProcessResult r;
    try {
      r = vbox::VBoxManage(options(*program)).run({"--version"});
    } catch (const Error& e) {
      throw PreCreateCheckFailed(e.what());
    }
    auto v = r.exit_code == 0 ? vbox::parse_version(r.out) : std::nullopt;
    if (!v)
      throw PreCreateCheckFailed(
          fmt::format("'{} --version' did not print a version ({}); check the VirtualBox "
                      "installation",
                      program->string(), vbox::error_summary(r)));
    if (!v->at_least(6, 1))
      throw PreCreateCheckFailed(
          fmt::format("VirtualBox {} is too old: berth needs VirtualBox 6.1 or newer; "
                      "upgrade VirtualBox",
                      v->text));
    if (s_.vtx_check && !cpu_has_virtualization())
      throw PreCreateCheckFailed(
          "this computer does not have VT-x/AMD-V enabled (no vmx or svm in /proc/cpuinfo); enable it in the "
          "firmware settings, or pass --virtualbox-no-vtx-check to try anyway");
    if (s_.image_url.empty()) check_iso(s_.image);
    if (s_.share) {
      std::error_code ec;
      if (!fs::is_directory(s_.share_path, ec))
        throw PreCreateCheckFailed(
            fmt::format("machine '{}': the folder to share, {}, is not a directory; fix "
                        "--virtualbox-share-folder or pass --virtualbox-no-share",
                        name(), s_.share_path));
    }
  }

  void create() override {
    bool registered = false;
    try {
      ensure_private_dir(dir_);
      refuse_foreign_vm();
      resolve_image();
      ctx_.cancel.throw_if_cancelled();
      generate_ed25519_key(key_path(), "berth@" + name());
      generate_ed25519_key(host_key_path(), "root@" + name());
      write_cidata();
      checkpoint();
      ctx_.cancel.throw_if_cancelled();
      vbm().check({"createvm", "--name", s_.vm, "--basefolder", dir_.string(), "--register"});
      registered = true;
      checkpoint();
      ctx_.cancel.throw_if_cancelled();
      vbm().check({"modifyvm",
                   s_.vm,
                   "--firmware",
                   "bios",
                   "--ostype",
                   "Linux26_64",
                   "--cpus",
                   std::to_string(s_.cpus),
                   "--memory",
                   std::to_string(s_.memory_mb),
                   "--acpi",
                   "on",
                   "--ioapic",
                   "on",
                   "--rtcuseutc",
                   "on",
                   "--natdnshostresolver1",
                   "off",
                   "--natdnsproxy1",
                   "on",
                   "--boot1",
                   "dvd",
                   "--boot2",
                   "disk",
                   "--boot3",
                   "none",
                   "--boot4",
                   "none",
                   "--nic1",
                   "nat",
                   "--nictype1",
                   s_.nat_nictype,
                   "--cableconnected1",
                   "on",
                   "--uart1",
                   "0x3F8",
                   "4",
                   "--uartmode1",
                   "file",
                   console_path().string()});
      vbm().check(
          {"storagectl", s_.vm, "--name", kController, "--add", "sata", "--hostiocache", "on", "--portcount", "4"});
      ctx_.cancel.throw_if_cancelled();
      vbm().check({"createmedium", "disk", "--filename", disk_path().string(), "--size", std::to_string(s_.disk_mb),
                   "--format", "VDI"});
      attach(0, "dvddrive", s_.image);
      attach(1, "hdd", disk_path().string());
      attach(2, "dvddrive", cidata_path().string());
      if (s_.share) {
        vbm().check(
            {"sharedfolder", "add", s_.vm, "--name", s_.share_name, "--hostpath", s_.share_path, "--automount"});
        if (is_berth_os_iso(s_.image)) {
          LiveLine::Pause pause;
          fmt::print(stderr,
                     "machine '{}': berth-os cannot mount VirtualBox shared folders (no vboxsf); the folder is "
                     "registered but not mounted in the guest; use 'berth mount' or the libvirt driver\n",
                     name());
        }
      }
      ctx_.cancel.throw_if_cancelled();
      boot();
    } catch (...) {
      log::debug(kLog, "create of {} failed; removing what it made", name());
      try {
        if (registered || fs::exists(disk_path()))
          remove();
        else
          remove_files();
      } catch (const std::exception& e) {
        log::warn(kLog, "machine '{}': cleanup after the failed create: {}", name(), e.what());
      }
      throw;
    }
  }

  void start() override {
    auto info = require_vm();
    const std::string st = info["VMState"];
    if (st == "running" || st == "starting" || st == "restoring") return;
    if (st == "paused") {
      vbm().check({"controlvm", s_.vm, "resume"});
      return;
    }
    boot(info);
  }

  void stop() override {
    auto info = require_vm();
    const std::string st = info["VMState"];
    if (st != "running" && st != "paused" && st != "stuck" && st != "starting") return;
    if (st == "running") {
      vbm().check({"controlvm", s_.vm, "acpipowerbutton"});
      const auto deadline = std::chrono::steady_clock::now() + t_.stop_timeout;
      while (std::chrono::steady_clock::now() < deadline && !ctx_.cancel.cancelled()) {
        std::this_thread::sleep_for(t_.poll_interval);
        if (!vm_running(vm_state())) return;
      }
      log::warn(kLog, "machine '{}' did not power off within {} s; forcing it off", name(),
                std::chrono::duration_cast<std::chrono::seconds>(t_.stop_timeout).count());
    }
    power_off();
  }

  void restart() override {
    stop();
    start();
  }

  void kill() override {
    require_vm();
    power_off();
  }

  // Everything create() made, found by the VM's name (and checked to live under this
  // machine's directory), so a create killed at any point is cleaned up.
  void remove() override {
    if (!vbm_ && !vbox::find_vboxmanage()) {
      // No VirtualBox (any more): no VM can be registered; the files are all that is left.
      log::warn(kLog, "machine '{}': VBoxManage not found; removing the machine's files only", name());
      remove_files();
      return;
    }
    std::string err;
    auto r = showvminfo();
    if (r.exit_code == 0) {
      auto info = vbox::parse_machinereadable(r.out);
      if (!owned(info)) {
        log::warn(kLog, "machine '{}': the VirtualBox VM '{}' belongs to {}, not to this machine; leaving it alone",
                  name(), s_.vm, info["CfgFile"]);
      } else {
        if (vm_running(info["VMState"])) power_off();
        auto u = vbm().run({"unregistervm", s_.vm, "--delete"});
        if (u.exit_code != 0 && !vbox::is_vm_not_found(u))
          err = fmt::format("machine '{}': VBoxManage unregistervm failed: {}", name(), vbox::error_summary(u));
      }
    } else if (!vbox::is_vm_not_found(r)) {
      err = fmt::format("machine '{}': VBoxManage showvminfo failed: {}", name(), vbox::error_summary(r));
    }
    // A disk made before the VM took it (a create stopped in between) stays in VirtualBox's media registry.
    std::error_code ec;
    if (err.empty() && fs::exists(disk_path(), ec))
      vbm().run({"closemedium", "disk", disk_path().string(), "--delete"});
    remove_files();
    if (!err.empty())
      throw DriverError(err + fmt::format("; its files are gone, but the VM may still be registered "
                                          "(VBoxManage unregistervm {} --delete)",
                                          s_.vm));
  }

  MachineState state(std::chrono::milliseconds timeout) override {
    try {
      auto o = options(program());
      o.timeout = std::max(timeout, std::chrono::milliseconds(1000));
      o.attempts = 2;
      o.lock_timeout = o.timeout;
      auto r = vbox::VBoxManage(o).run({"showvminfo", s_.vm, "--machinereadable"});
      if (r.timed_out) return MachineState::Timeout;
      if (vbox::is_vm_not_found(r)) return MachineState::NotFound;
      if (r.exit_code != 0) return MachineState::Error;
      auto info = vbox::parse_machinereadable(r.out);
      if (!owned(info)) return MachineState::NotFound;
      return to_machine_state(info["VMState"]);
    } catch (const std::exception& e) {
      log::debug(kLog, "state of {}: {}", name(), e.what());
      return MachineState::Error;
    }
  }

  std::optional<SshEndpoint> ssh_endpoint() const override {
    if (s_.ssh_port <= 0) return std::nullopt;
    return SshEndpoint{"127.0.0.1", s_.ssh_port, "root", key_path()};
  }

  std::string ip() const override { return "127.0.0.1"; }

  std::string url(int) const override { return fmt::format("tcp://127.0.0.1:{}", s_.agent_port); }

  nlohmann::json save_state() const override {
    nlohmann::json j = {{"vm", s_.vm},
            {"cpus", s_.cpus},
            {"memory_mb", s_.memory_mb},
            {"disk_mb", s_.disk_mb},
            {"image", s_.image},
            {"image_url", s_.image_url},
            {"image_sha256", s_.image_sha256},
            {"hostonly", s_.hostonly},
            {"hostonly_cidr", s_.hostonly_cidr},
            {"hostonly_nictype", s_.hostonly_nictype},
            {"hostonly_adapter", s_.hostonly_adapter},
            {"nat_nictype", s_.nat_nictype},
            {"share", s_.share},
            {"share_path", s_.share_path},
            {"share_name", s_.share_name},
            {"vtx_check", s_.vtx_check},
            {"ui_type", s_.ui_type},
            {"ssh_port", s_.ssh_port},
            {"agent_port", s_.agent_port},
            {"guest_agent_port", s_.guest_agent_port}};
    if (!s_.vm_base_dir.empty()) j["vm_base_dir"] = s_.vm_base_dir;
    return j;
  }

  static MachineState to_machine_state(const std::string& st) {
    if (st == "running") return MachineState::Running;
    if (st == "poweroff" || st == "saved" || st == "aborted" || st == "teleported") return MachineState::Stopped;
    if (st == "paused") return MachineState::Paused;
    if (st == "starting" || st == "restoring" || st == "teleporting") return MachineState::Starting;
    if (st == "stopping" || st == "saving") return MachineState::Stopping;
    if (st == "stuck" || st == "gurumeditation") return MachineState::Error;
    return MachineState::Unknown;
  }

 private:
  const std::string& name() const { return ctx_.machine_name; }
  fs::path store_root() const { return dir_.parent_path().parent_path(); }
  fs::path key_path() const { return dir_ / "id_ed25519"; }
  fs::path host_key_path() const { return dir_ / "ssh_host_ed25519_key"; }
  fs::path cidata_path() const { return dir_ / "cidata.iso"; }
  fs::path disk_path() const { return dir_ / "disk.vdi"; }
  fs::path console_path() const { return dir_ / "console.log"; }
  fs::path vm_dir() const { return dir_ / s_.vm; }  // createvm --basefolder DIR puts DIR/NAME/NAME.vbox

  fs::path program() const {
    auto p = vbox::find_vboxmanage();
    if (!p)
      throw DriverError(
          fmt::format("machine '{}': VBoxManage not found (install VirtualBox 6.1 or newer, or set "
                      "BERTH_VBOXMANAGE)",
                      name()));
    return *p;
  }

  vbox::VBoxManageOptions options(const fs::path& program) const {
    vbox::VBoxManageOptions o;
    o.program = program;
    o.lock_file = t_.lock_file.empty() ? home_dir() / ".berth" / "vbox.lock" : t_.lock_file;
    o.attempts = t_.attempts;
    o.retry_delay = t_.retry_delay;
    o.machine = name();
    return o;
  }

  const vbox::VBoxManage& vbm() {
    if (!vbm_) vbm_.emplace(options(program()));
    return *vbm_;
  }

  void checkpoint() const {
    if (ctx_.checkpoint) ctx_.checkpoint(save_state());
  }

  ProcessResult showvminfo() { return vbm().run({"showvminfo", s_.vm, "--machinereadable"}); }

  // The VM is ours when its settings file lies under this machine's directory.
  bool owned(std::map<std::string, std::string>& info) const {
    const std::string cfg = info["CfgFile"];
    if (cfg.empty()) return true;  // a double or an old VirtualBox that does not say: trust the name
    const fs::path base = s_.vm_base_dir.empty() ? dir_ : fs::path(s_.vm_base_dir).lexically_normal();
    const auto rel = fs::path(cfg).lexically_normal().lexically_relative(base);
    return !rel.empty() && *rel.begin() != "..";
  }

  std::map<std::string, std::string> require_vm() {
    auto r = showvminfo();
    if (r.exit_code != 0) {
      if (vbox::is_vm_not_found(r))
        throw DriverError(
            fmt::format("machine '{}': its VirtualBox VM '{}' is gone; remove the machine with "
                        "'berth rm -f {}' and create it again",
                        name(), s_.vm, name()));
      throw DriverError(fmt::format("machine '{}': VBoxManage showvminfo failed: {}", name(), vbox::error_summary(r)));
    }
    auto info = vbox::parse_machinereadable(r.out);
    if (!owned(info))
      throw DriverError(fmt::format("machine '{}': the VirtualBox VM '{}' belongs to {}, not to this machine", name(),
                                    s_.vm, info["CfgFile"]));
    return info;
  }

  std::string vm_state() {
    auto r = showvminfo();
    if (r.exit_code != 0) return vbox::is_vm_not_found(r) ? "notfound" : "";
    return vbox::parse_machinereadable(r.out)["VMState"];
  }

  static bool vm_running(const std::string& st) {
    return st == "running" || st == "paused" || st == "stuck" || st == "starting" || st == "stopping" ||
           st == "restoring" || st == "saving";
  }

  void power_off() {
    auto r = vbm().run({"controlvm", s_.vm, "poweroff"});
    if (r.exit_code == 0) return;
    const std::string st = vm_state();
    if (!vm_running(st)) return;  // it went off by itself meanwhile ("Invalid machine state: PoweredOff")
    throw DriverError(
        fmt::format("machine '{}': VBoxManage controlvm poweroff failed: {}", name(), vbox::error_summary(r)));
  }

  // Refuses to create over a registered VM of the same name that is not ours.
  void refuse_foreign_vm() {
    auto r = showvminfo();
    if (r.exit_code != 0) return;
    auto info = vbox::parse_machinereadable(r.out);
    if (owned(info)) {
      remove();  // a leftover of an earlier create of this very machine
      ensure_private_dir(dir_);
      return;
    }
    throw DriverError(
        fmt::format("machine '{}': VirtualBox already has a VM named '{}' ({}); remove or rename "
                    "it, or choose another machine name",
                    name(), s_.vm, info["CfgFile"]));
  }

  void attach(int port, const std::string& type, const std::string& medium) {
    vbm().check({"storageattach", s_.vm, "--storagectl", kController, "--port", std::to_string(port), "--device", "0",
                 "--type", type, "--medium", medium});
  }

  void remove_files() const {
    remove_path(vm_dir());
    for (const char* f : {"disk.vdi", "cidata.iso", "console.log", "id_ed25519", "id_ed25519.pub",
                          "ssh_host_ed25519_key", "ssh_host_ed25519_key.pub"})
      remove_path(dir_ / f);
  }

  // --- the image -------------------------------------------------------------

  void check_iso(const std::string& path) const {
    run_pre_create_check([&] {
      auto img = virt::inspect_image(path, name());
      if (img.kind != virt::ImageKind::Iso)
        throw UserError(
            fmt::format("machine '{}': {} is a {} image; VirtualBox boots an ISO (use the berth-os "
                        "ISO or pass --virtualbox-image with a bootable .iso)",
                        name(), path, to_string(img.kind)));
    });
  }

  void resolve_image() {
    if (s_.image_url.empty()) return;
    virt::DownloadRequest req;
    req.url = s_.image_url;
    req.cache_dir = store_root() / "cache";
    req.sha256 = s_.image_sha256;
    req.machine = name();
    req.progress = ctx_.quiet ? nullptr : stderr;
    req.cancelled = [this] { return ctx_.cancel.cancelled(); };
    s_.image = virt::download_image(req).string();
    check_iso(s_.image);
  }

  void write_cidata() const {
    virt::CidataSpec spec;
    spec.instance_id = fmt::format("berth-{}-{}", name(), virt::sha256_hex(dir_.string()).substr(0, 8));
    spec.hostname = name();
    spec.authorized_keys = {read_public_key(key_path())};
    spec.host_private_key = read_file(host_key_path());
    spec.host_public_key = read_public_key(host_key_path());
    virt::write_cidata_iso(cidata_path(), spec);
  }

  // --- published ports ---------------------------------------------------------

  // A container's published port as a NAT rule on 127.0.0.1 of the running VM.
  std::string add_port_forward(int port) override {
    try {
      vbm().run({"controlvm", s_.vm, "natpf1", "delete", port_rule(port)});  // one left by a killed forwarder
      auto r = vbm().run({"controlvm", s_.vm, "natpf1", fmt::format("{},tcp,127.0.0.1,{},,{}", port_rule(port), port, port)});
      return r.exit_code == 0 ? "" : vbox::error_summary(r);
    } catch (const Error& e) {
      return e.what();
    }
  }

  void remove_port_forward(int port) override {
    try {
      vbm().run({"controlvm", s_.vm, "natpf1", "delete", port_rule(port)});
    } catch (const Error&) {
      // VirtualBox is gone, and the VM's rules with it.
    }
  }

  static std::string port_rule(int port) { return fmt::format("{}{}", kPortRulePrefix, port); }

  // VirtualBox keeps controlvm NAT rules in the VM's settings: a published-port rule left by
  // a forwarder that never cleaned up would take that port at the next boot.
  void drop_port_rules_left_behind(const std::map<std::string, std::string>& info) {
    for (const auto& [key, value] : info) {
      if (key.rfind("Forwarding(", 0) != 0) continue;
      const std::string rule = value.substr(0, value.find(','));
      if (rule.rfind(kPortRulePrefix, 0) == 0) vbm().run({"modifyvm", s_.vm, "--natpf1", "delete", rule});
    }
  }

  // --- start -----------------------------------------------------------------

  void choose_ports() {
    choose_forward_ports(dir_, name(), s_.ssh_port, s_.agent_port);
  }


  void forward(const std::string& rule, int host_port, int guest_port) {
    vbm().run({"modifyvm", s_.vm, "--natpf1", "delete", rule});  // fails when there is none: fine
    vbm().check({"modifyvm", s_.vm, "--natpf1", fmt::format("{},tcp,127.0.0.1,{},,{}", rule, host_port, guest_port)});
  }

  // Finds a host-only interface with our address and mask, or makes one; then its DHCP server.
  void setup_hostonly() {
    auto cidr = vbox::parse_cidr(s_.hostonly_cidr);
    if (!cidr) throw UserError(fmt::format("--virtualbox-hostonly-cidr '{}' is not a CIDR", s_.hostonly_cidr));
    const auto plan = vbox::plan_hostonly(*cidr);
    std::string adapter;
    for (const auto& hif : vbox::parse_hostonlyifs(vbm().check({"list", "hostonlyifs"})))
      if (hif.ip == plan.host_ip && hif.netmask == plan.netmask) {
        adapter = hif.name;
        break;
      }
    if (adapter.empty()) {
      const std::string out = vbm().check({"hostonlyif", "create"});
      // "Interface 'vboxnet0' was successfully created"
      const auto a = out.find('\'');
      const auto b = a == std::string::npos ? a : out.find('\'', a + 1);
      if (b == std::string::npos)
        throw DriverError(
            fmt::format("machine '{}': VBoxManage hostonlyif create did not name the interface: {}", name(), out));
      adapter = out.substr(a + 1, b - a - 1);
      vbm().check({"hostonlyif", "ipconfig", adapter, "--ip", plan.host_ip, "--netmask", plan.netmask});
    }
    s_.hostonly_adapter = adapter;
    checkpoint();
    const std::string net = "HostInterfaceNetworking-" + adapter;
    bool exists = false;
    for (const auto& d : vbox::parse_dhcpservers(vbm().check({"list", "dhcpservers"})))
      if (d.network_name == net) {
        if (d.ip == plan.dhcp_ip && d.netmask == plan.netmask && d.lower_ip == plan.lower_ip &&
            d.upper_ip == plan.upper_ip && d.enabled)
          exists = true;
        else
          vbm().check({"dhcpserver", "remove", "--netname", net});
      }
    if (!exists)
      vbm().check({"dhcpserver", "add", "--ifname", adapter, "--ip", plan.dhcp_ip, "--netmask", plan.netmask,
                   "--lowerip", plan.lower_ip, "--upperip", plan.upper_ip, "--enable"});
    vbm().check({"modifyvm", s_.vm, "--nic2", "hostonly", "--nictype2", s_.hostonly_nictype, "--hostonlyadapter2",
                 adapter, "--cableconnected2", "on"});
  }

  // Forwards on free ports (a saved VM keeps its settings), the host-only adapter, startvm, SSH.
  // `info`: the VM's showvminfo (empty for a VM just made).
  void boot(const std::map<std::string, std::string>& info = {}) {
    const bool saved = info.count("VMState") && info.at("VMState") == "saved";
    if (!saved || s_.ssh_port <= 0 || s_.agent_port <= 0) {
      choose_ports();
      drop_port_rules_left_behind(info);
      forward("ssh", s_.ssh_port, 22);
      forward("agent", s_.agent_port, s_.guest_agent_port);
      if (s_.hostonly) setup_hostonly();
      checkpoint();
    }
    ctx_.cancel.throw_if_cancelled();
    vbm().check({"startvm", s_.vm, "--type", s_.ui_type});
    wait_for_ssh();
  }

  void wait_for_ssh() {
    const auto deadline = std::chrono::steady_clock::now() + t_.ssh_timeout;
    auto next_state_check = std::chrono::steady_clock::now() + 5s;
    while (std::chrono::steady_clock::now() < deadline) {
      ctx_.cancel.throw_if_cancelled();
      if (loopback_ssh_banner(s_.ssh_port, 1500ms)) return;
      if (std::chrono::steady_clock::now() >= next_state_check) {
        const std::string st = vm_state();
        if (st == "poweroff" || st == "aborted" || st == "notfound")
          throw DriverError(fmt::format("machine '{}': the VM stopped while booting (VirtualBox state {}); see {}",
                                        name(), st, console_path().string()));
        next_state_check = std::chrono::steady_clock::now() + 5s;
      }
      std::this_thread::sleep_for(200ms);
    }
    throw DriverError(fmt::format(
        "machine '{}' started, but SSH on 127.0.0.1:{} did not answer within {} s; see {}", name(), s_.ssh_port,
        std::chrono::duration_cast<std::chrono::seconds>(t_.ssh_timeout).count(), console_path().string()));
  }

  VBoxState s_;
  DriverContext ctx_;
  VirtualBoxTuning t_;
  fs::path dir_;
  std::optional<vbox::VBoxManage> vbm_;
};

VBoxState state_from_json(const nlohmann::json& j) {
  VBoxState s;
  s.vm = j.value("vm", "");
  s.cpus = j.value("cpus", 1);
  s.memory_mb = j.value("memory_mb", 1024);
  s.disk_mb = j.value("disk_mb", 20000);
  s.image = j.value("image", "");
  s.image_url = j.value("image_url", "");
  s.image_sha256 = j.value("image_sha256", "");
  s.hostonly = j.value("hostonly", false);
  s.hostonly_cidr = j.value("hostonly_cidr", "192.168.56.1/24");
  s.hostonly_nictype = j.value("hostonly_nictype", "82540EM");
  s.hostonly_adapter = j.value("hostonly_adapter", "");
  s.nat_nictype = j.value("nat_nictype", "82540EM");
  s.share = j.value("share", false);
  s.share_path = j.value("share_path", "");
  s.share_name = j.value("share_name", "");
  s.vtx_check = j.value("vtx_check", true);
  s.ui_type = j.value("ui_type", "headless");
  s.ssh_port = j.value("ssh_port", 0);
  s.agent_port = j.value("agent_port", 0);
  s.guest_agent_port = j.value("guest_agent_port", 2376);
  s.vm_base_dir = j.value("vm_base_dir", "");
  return s;
}

bool is_hex64(const std::string& s) {
  return s.size() == 64 && s.find_first_not_of("0123456789abcdef") == std::string::npos;
}

std::string read_networks_conf() {
  std::error_code ec;
  return fs::exists("/etc/vbox/networks.conf", ec) ? read_file("/etc/vbox/networks.conf") : "";
}

}  // namespace

std::vector<FlagSpec> VirtualBoxDriverFactory::flags() const {
  using K = FlagSpec::Kind;
  return {
      {"virtualbox-cpu-count", "number of virtual CPUs", K::Int, "1", "VIRTUALBOX_CPU_COUNT", false},
      {"virtualbox-memory", "memory in MB", K::Int, "1024", "VIRTUALBOX_MEMORY_SIZE", false},
      {"virtualbox-disk-size", "size of the data disk in MB", K::Int, "20000", "VIRTUALBOX_DISK_SIZE", false},
      {"virtualbox-boot2docker-url", "the ISO to boot: a path or http(s) URL (default: the locally built berth-os)",
       K::String, "", "VIRTUALBOX_BOOT2DOCKER_URL", false},
      {"virtualbox-image", "the same as --virtualbox-boot2docker-url", K::String, "", "VIRTUALBOX_IMAGE", false},
      {"virtualbox-image-sha256", "expected SHA-256 of the ISO (hex)", K::String, "", "VIRTUALBOX_IMAGE_SHA256", false},
      {"virtualbox-hostonly", "also attach a host-only adapter (NIC 2) with a DHCP server", K::Bool, "",
       "VIRTUALBOX_HOSTONLY", false},
      {"virtualbox-hostonly-cidr", "the host-only network's host address and prefix", K::String, "192.168.56.1/24",
       "VIRTUALBOX_HOSTONLY_CIDR", false},
      {"virtualbox-hostonly-nictype", "the host-only adapter's NIC type", K::String, "82540EM",
       "VIRTUALBOX_HOSTONLY_NIC_TYPE", false},
      {"virtualbox-nat-nictype", "the NAT adapter's NIC type", K::String, "82540EM", "VIRTUALBOX_NAT_NICTYPE", false},
      {"virtualbox-no-share", "do not share the home folder with the VM", K::Bool, "", "VIRTUALBOX_NO_SHARE", false},
      {"virtualbox-share-folder", "the folder to share instead of the home folder, as DIR:NAME", K::String, "",
       "VIRTUALBOX_SHARE_FOLDER", false},
      {"virtualbox-no-vtx-check", "skip the check for VT-x/AMD-V", K::Bool, "", "VIRTUALBOX_NO_VTX_CHECK", false},
      {"virtualbox-ui-type", "startvm --type: headless, gui, sdl or separate", K::String, "headless",
       "VIRTUALBOX_UI_TYPE", false},
  };
}

Capabilities VirtualBoxDriverFactory::capabilities() const {
  Capabilities c;
  c.can_start = c.can_stop = c.can_kill = c.can_restart = true;
  c.has_ssh = true;
  c.remove_destroys_host = true;
  return c;
}

std::unique_ptr<Driver> VirtualBoxDriverFactory::make(const FlagValues& flags, const DriverContext& ctx) const {
  const std::string& m = ctx.machine_name;
  VBoxState s;
  s.vm = m;
  s.cpus = flags.get_int("virtualbox-cpu-count", 1);
  s.memory_mb = flags.get_int("virtualbox-memory", 1024);
  s.disk_mb = flags.get_int("virtualbox-disk-size", 20000);
  s.hostonly = flags.get_bool("virtualbox-hostonly");
  s.hostonly_cidr = flags.get("virtualbox-hostonly-cidr", "192.168.56.1/24");
  s.hostonly_nictype = flags.get("virtualbox-hostonly-nictype", "82540EM");
  s.nat_nictype = flags.get("virtualbox-nat-nictype", "82540EM");
  s.share = !flags.get_bool("virtualbox-no-share");
  s.vtx_check = !flags.get_bool("virtualbox-no-vtx-check");
  s.ui_type = flags.get("virtualbox-ui-type", "headless");
  s.guest_agent_port = ctx.engine_port;
  s.image_sha256 = flags.get("virtualbox-image-sha256");
  for (auto& c : s.image_sha256) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));

  if (s.cpus < 1 || s.cpus > 64) throw UserError("--virtualbox-cpu-count must be between 1 and 64");
  if (s.memory_mb < 256) throw UserError("--virtualbox-memory must be at least 256 (MB)");
  if (s.disk_mb < 100) throw UserError("--virtualbox-disk-size must be at least 100 (MB)");
  if (!one_of(s.nat_nictype, kNicTypes))
    throw UserError(
        fmt::format("--virtualbox-nat-nictype must be one of {}, not '{}'", joined(kNicTypes), s.nat_nictype));
  if (!one_of(s.hostonly_nictype, kNicTypes))
    throw UserError(fmt::format("--virtualbox-hostonly-nictype must be one of {}, not '{}'", joined(kNicTypes),
                                s.hostonly_nictype));
  if (!one_of(s.ui_type, kUiTypes))
    throw UserError(fmt::format("--virtualbox-ui-type must be one of {}, not '{}'", joined(kUiTypes), s.ui_type));
  if (!s.image_sha256.empty() && !is_hex64(s.image_sha256))
    throw UserError("--virtualbox-image-sha256 must be 64 hex digits");

  auto cidr = vbox::parse_cidr(s.hostonly_cidr);
  if (!cidr || cidr->prefix < 8 || cidr->prefix > 24 || cidr->ip == cidr->network() ||
      cidr->ip == (cidr->network() | ~cidr->mask()))
    throw UserError(
        fmt::format("--virtualbox-hostonly-cidr '{}' must be the host's address and a prefix of /8 to "
                    "/24, e.g. 192.168.56.1/24",
                    s.hostonly_cidr));
  // Checked with or without --virtualbox-hostonly: a CIDR given by flag or env var is meant to be used.
  if (!vbox::hostonly_range_allowed(*cidr, read_networks_conf()))
    throw UserError(
        fmt::format("--virtualbox-hostonly-cidr {} is outside 192.168.56.0/21, which VirtualBox 6.1.28 "
                    "and newer refuse unless /etc/vbox/networks.conf allows it; choose an address in "
                    "192.168.56.0/21 or add '* {}' to /etc/vbox/networks.conf",
                    s.hostonly_cidr, vbox::format_ipv4(cidr->network()) + "/" + std::to_string(cidr->prefix)));

  if (s.share) {
    const std::string spec = flags.get("virtualbox-share-folder");
    if (spec.empty()) {
      s.share_path = home_dir().string();
      s.share_name = "hosthome";
    } else {
      const auto colon = spec.rfind(':');
      s.share_path = colon == std::string::npos ? spec : spec.substr(0, colon);
      s.share_name = colon == std::string::npos ? fs::path(spec).filename().string() : spec.substr(colon + 1);
      if (s.share_path.empty() || s.share_name.empty())
        throw UserError(fmt::format("--virtualbox-share-folder '{}' must be DIR:NAME (or DIR)", spec));
      std::error_code ec;
      s.share_path = fs::absolute(s.share_path, ec).lexically_normal().string();
    }
  }

  const std::string url = flags.get("virtualbox-boot2docker-url");
  const std::string alias = flags.get("virtualbox-image");
  if (!url.empty() && !alias.empty() && url != alias)
    throw UserError("--virtualbox-boot2docker-url and --virtualbox-image are the same flag; give only one");
  const std::string image = url.empty() ? alias : url;
  if (virt::is_url(image)) {
    s.image_url = image;
  } else if (!image.empty()) {
    std::error_code ec;
    fs::path p = fs::absolute(image, ec).lexically_normal();
    if (fs::is_directory(p, ec)) p /= "berth-os.iso";  // a berth-os build directory
    s.image = p.string();
  } else {
    fs::path dir = virt::find_berth_os();
    std::error_code ec;
    if (dir.empty() || !fs::exists(dir / "berth-os.iso", ec)) {
      std::string looked;
      for (const auto& c : virt::berth_os_candidates()) looked += (looked.empty() ? "" : ", ") + c.string();
      throw UserError("machine '" + m + "': no berth-os ISO (berth-os.iso) found (looked in " + looked +
                      "); build it with image/build.sh, set BERTH_OS_DIR, or pass --virtualbox-boot2docker-url");
    }
    s.image = (dir / "berth-os.iso").string();
  }
  return std::make_unique<VirtualBoxDriver>(std::move(s), ctx, tuning_);
}

std::unique_ptr<Driver> VirtualBoxDriverFactory::load(const nlohmann::json& state, const DriverContext& ctx) const {
  return std::make_unique<VirtualBoxDriver>(state_from_json(state), ctx, tuning_);
}

}  // namespace berth
