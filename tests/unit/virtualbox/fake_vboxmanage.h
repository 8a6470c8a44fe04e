#pragma once
// A recording VBoxManage test double: a /bin/sh script that logs each argv (one
// line, arguments joined by spaces) to DIR/log and keeps a tiny VM registry in DIR,
// answering like VBoxManage (showvminfo --machinereadable with its Forwarding(N) NAT rules,
// not-found errors, ...).
// Knobs (files in DIR): version, transient (count of "object is not ready" failures
// to give), fail_on (a subcommand to fail), ignore_acpi, sleep (seconds per call),
// hostonlyifs / dhcpservers (canned list output). On startvm it writes DIR/listen with
// the ssh forward's host port; SshBanner serves "SSH-2.0" there while it exists.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace berth::vboxtest {

namespace fs = std::filesystem;

inline void write_text(const fs::path& p, const std::string& s) {
  std::ofstream(p, std::ios::binary | std::ios::trunc) << s;
}

inline std::string read_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline const char* kFakeScript = R"SH(#!/bin/sh
S='@DIR@'
echo "$*" >> "$S/log"
[ -f "$S/sleep" ] && { echo "start $(date +%s%N)" >> "$S/times"; sleep "$(cat "$S/sleep")"; echo "end $(date +%s%N)" >> "$S/times"; }
if [ -s "$S/transient" ]; then
  n=$(cat "$S/transient")
  if [ "$n" -gt 0 ]; then
    echo $((n - 1)) > "$S/transient"
    echo 'VBoxManage: error: The object is not ready' >&2
    echo 'VBoxManage: error: Details: code E_ACCESSDENIED (0x80070005), callee nsISupports' >&2
    exit 1
  fi
fi
if [ -f "$S/fail_on" ] && [ "$(cat "$S/fail_on")" = "$1" ]; then
  echo "VBoxManage: error: injected failure of $1" >&2
  exit 1
fi
notfound() {
  echo "VBoxManage: error: Could not find a registered machine named '$1'" >&2
  echo "VBoxManage: error: Details: code VBOX_E_OBJECT_NOT_FOUND (0x80bb0001), component VirtualBoxWrap, interface IVirtualBox, callee nsISupports" >&2
  exit 1
}
need() { [ -f "$S/vm_$1" ] || notfound "$1"; }
state() { cat "$S/state_$1"; }
case "$1" in
  --version) cat "$S/version" ;;
  createvm)
    name=$3; base=$5
    [ -f "$S/vm_$name" ] && { echo "VBoxManage: error: Machine settings file '$base/$name/$name.vbox' already exists" >&2; exit 1; }
    mkdir -p "$base/$name" && touch "$base/$name/$name.vbox"
    echo "$base/$name/$name.vbox" > "$S/vm_$name"; echo poweroff > "$S/state_$name"
    echo "Virtual machine '$name' is created and registered."
    echo "UUID: 6ea8cd8e-d4e6-4a5c-a5b3-8f2b1c8a2f10"
    echo "Settings file: '$base/$name/$name.vbox'" ;;
  showvminfo)
    need "$2"
    printf 'name="%s"\nCfgFile="%s"\nVMState="%s"\n' "$2" "$(cat "$S/vm_$2")" "$(state "$2")"
    i=0
    for f in "$S"/pf_"$2"_*; do
      [ -f "$f" ] || continue
      printf 'Forwarding(%d)="%s"\n' "$i" "$(cat "$f")"; i=$((i + 1))
    done ;;
  modifyvm)
    need "$2"
    if [ "$3" = --natpf1 ] && [ "$4" = delete ]; then
      [ -f "$S/pf_$2_$5" ] || { echo "VBoxManage: error: Code NS_ERROR_INVALID_ARG (0x80070057) - Invalid argument value" >&2; exit 1; }
      rm -f "$S/pf_$2_$5"
    elif [ "$3" = --natpf1 ]; then
      echo "$4" > "$S/pf_$2_${4%%,*}"
    fi ;;
  storagectl|storageattach) need "$2"
    [ "$1" = storageattach ] && [ "${10}" = hdd ] && echo "${12}" > "$S/hdd_$2" ;;
  sharedfolder) need "$3" ;;
  createmedium) touch "$4"; echo "Medium created. UUID: 0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0" ;;
  closemedium) rm -f "$3" ;;
  startvm)
    need "$2"
    echo running > "$S/state_$2"
    cut -d, -f4 "$S/pf_$2_ssh" > "$S/listen.tmp" && mv "$S/listen.tmp" "$S/listen"
    echo "Waiting for VM \"$2\" to power on..."
    echo "VM \"$2\" has been successfully started." ;;
  controlvm)
    need "$2"
    case "$3" in
      poweroff|acpipowerbutton)
        [ "$(state "$2")" = running ] || { echo "VBoxManage: error: Invalid machine state: PoweredOff (must be Running, Paused or Stuck)" >&2; exit 1; }
        [ "$3" = acpipowerbutton ] && [ -f "$S/ignore_acpi" ] && exit 0
        echo poweroff > "$S/state_$2"; rm -f "$S/listen" ;;
      resume) echo running > "$S/state_$2" ;;
      natpf1)
        [ "$(state "$2")" = running ] || { echo "VBoxManage: error: Machine '$2' is not currently running" >&2; exit 1; }
        if [ "$4" = delete ]; then
          [ -f "$S/pf_$2_$5" ] || { echo "VBoxManage: error: Code NS_ERROR_INVALID_ARG (0x80070057) - Invalid argument value" >&2; exit 1; }
          rm -f "$S/pf_$2_$5"
        else
          [ -f "$S/pf_$2_${4%%,*}" ] && { echo "VBoxManage: error: A NAT rule of this name already exists" >&2; exit 1; }
          echo "$4" > "$S/pf_$2_${4%%,*}"
        fi ;;
    esac ;;
  unregistervm)
    need "$2"
    [ "$(state "$2")" = running ] && { echo "VBoxManage: error: Cannot unregister the machine '$2' while it is locked" >&2; exit 1; }
    [ "$3" = --delete ] && { [ -f "$S/hdd_$2" ] && rm -f "$(cat "$S/hdd_$2")"; rm -rf "$(dirname "$(cat "$S/vm_$2")")"; }
    rm -f "$S/vm_$2" "$S/state_$2" "$S/hdd_$2" "$S"/pf_"$2"_* ;;
  list)
    case "$2" in
      hostonlyifs) cat "$S/hostonlyifs" 2>/dev/null ;;
      dhcpservers) cat "$S/dhcpservers" 2>/dev/null ;;
    esac ;;
  hostonlyif)
    case "$2" in
      create) echo "0%...10%...20%...30%...40%...50%...60%...70%...80%...90%...100%"
              echo "Interface 'vboxnet0' was successfully created" ;;
    esac ;;
  dhcpserver) ;;
  *) echo "VBoxManage: error: Unknown command '$1'" >&2; exit 2 ;;
esac
exit 0
)SH";

// Serves "SSH-2.0-fake" on 127.0.0.1:<port in DIR/listen> while that file exists: the
// guest's sshd behind VirtualBox's NAT forward.
class SshBanner {
 public:
  explicit SshBanner(fs::path listen_file) : file_(std::move(listen_file)), t_([this] { loop(); }) {}
  ~SshBanner() {
    stop_ = true;
    t_.join();
  }

 private:
  void loop() {
    int fd = -1, port = 0;
    while (!stop_) {
      int want = 0;
      try {
        auto txt = read_text(file_);
        if (!txt.empty()) want = std::stoi(txt);
      } catch (...) {
      }
      if (want != port) {
        if (fd >= 0) ::close(fd);
        fd = -1;
        port = want;
        if (port > 0) {
          fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
          int one = 1;
          ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
          sockaddr_in a{};
          a.sin_family = AF_INET;
          a.sin_port = htons(static_cast<uint16_t>(port));
          a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
          if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(fd, 8) != 0) {
            ::close(fd);
            fd = -1;
            port = 0;
          }
        }
      }
      if (fd >= 0) {
        int c = ::accept4(fd, nullptr, nullptr, SOCK_CLOEXEC);
        if (c >= 0) {
          const char banner[] = "SSH-2.0-fake\r\n";
          (void)!::send(c, banner, sizeof banner - 1, MSG_NOSIGNAL);
          ::close(c);
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    if (fd >= 0) ::close(fd);
  }
  fs::path file_;
  std::atomic<bool> stop_{false};
  std::thread t_;
};

class FakeVBoxManage {
 public:
  explicit FakeVBoxManage(const fs::path& dir) : dir_(dir) {
    fs::create_directories(dir_);
    std::string script = kFakeScript;
    script.replace(script.find("@DIR@"), 5, dir_.string());
    write_text(program(), script);
    fs::permissions(program(), fs::perms::owner_all);
    write_text(dir_ / "version", "7.0.14r161095\n");
  }
  fs::path program() const { return dir_ / "VBoxManage"; }
  const fs::path& dir() const { return dir_; }
  void set(const std::string& knob, const std::string& value) { write_text(dir_ / knob, value); }
  void unset(const std::string& knob) { fs::remove(dir_ / knob); }
  std::vector<std::string> calls() const {
    std::vector<std::string> out;
    std::istringstream in(read_text(dir_ / "log"));
    for (std::string line; std::getline(in, line);) out.push_back(line);
    return out;
  }
  void clear_log() { fs::remove(dir_ / "log"); }
  bool registered(const std::string& vm) const { return fs::exists(dir_ / ("vm_" + vm)); }
  std::string vm_state(const std::string& vm) const {
    auto s = read_text(dir_ / ("state_" + vm));
    while (!s.empty() && s.back() == '\n') s.pop_back();
    return s;
  }
  // Registers a VM as if made by another tool / another store.
  void add_vm(const std::string& vm, const std::string& cfg, const std::string& state) {
    write_text(dir_ / ("vm_" + vm), cfg + "\n");
    write_text(dir_ / ("state_" + vm), state + "\n");
  }

 private:
  fs::path dir_;
};

}  // namespace berth::vboxtest
