#include <fmt/format.h>
#include <fmt/ranges.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <atomic>

#include "core/error.h"
#include "core/fs.h"
#include "drivers/libvirt/cidata.h"
#include "drivers/virtualbox/virtualbox.h"
#include "fake_vboxmanage.h"

namespace berth {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;
using Calls = std::vector<std::string>;

class VirtualBoxDriverTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/berth-vboxd-XXXXXX";
    root_ = ::mkdtemp(tmpl);
    fake_ = std::make_unique<vboxtest::FakeVBoxManage>(root_ / "fake");
    ::setenv("BERTH_VBOXMANAGE", fake_->program().c_str(), 1);
    dir_ = root_ / "store" / "machines" / "dev";
    fs::create_directories(dir_);
    fs::create_directories(root_ / "share");
    // Any ISO9660 image will do as the boot ISO here.
    iso_ = root_ / "boot.iso";
    virt::CidataSpec spec;
    spec.instance_id = "boot";
    spec.hostname = "boot";
    virt::write_cidata_iso(iso_, spec);
    flags_.set("virtualbox-image", {iso_.string()});
    flags_.set("virtualbox-share-folder", {(root_ / "share").string() + ":share"});
    flags_.set("virtualbox-no-vtx-check", {"true"});
    tuning_.lock_file = root_ / "vbox.lock";
    tuning_.retry_delay = 10ms;
    tuning_.poll_interval = 50ms;
    tuning_.stop_timeout = 2s;
    tuning_.ssh_timeout = 20s;
    banner_ = std::make_unique<vboxtest::SshBanner>(root_ / "fake" / "listen");
  }
  void TearDown() override {
    banner_.reset();
    ::unsetenv("BERTH_VBOXMANAGE");
    std::error_code ec;
    fs::remove_all(root_, ec);
  }

  DriverContext ctx() {
    DriverContext c;
    c.machine_name = "dev";
    c.machine_dir = dir_;
    c.cancel.flag = &cancel_;
    c.quiet = true;
    c.checkpoint = [this](const nlohmann::json& st) {
      checkpoints_.push_back(st);
      auto calls = fake_->calls();
      checkpoint_after_.push_back(calls.empty() ? "" : calls.back());
      if (cancel_at_checkpoint_ > 0 && static_cast<int>(checkpoints_.size()) == cancel_at_checkpoint_) cancel_ = true;
    };
    return c;
  }
  std::unique_ptr<Driver> make() { return VirtualBoxDriverFactory(tuning_).make(flags_, ctx()); }
  std::unique_ptr<Driver> load(const nlohmann::json& st) { return VirtualBoxDriverFactory(tuning_).load(st, ctx()); }

  std::string d() const { return dir_.string(); }
  Calls create_calls(int ssh, int agent) const {
    return {
        "showvminfo dev --machinereadable",
        "createvm --name dev --basefolder " + d() + " --register",
        "modifyvm dev --firmware bios --ostype Linux26_64 --cpus 1 --memory 1024 --acpi on --ioapic on --rtcuseutc on "
        "--natdnshostresolver1 off --natdnsproxy1 on --boot1 dvd --boot2 disk --boot3 none --boot4 none --nic1 nat "
        "--nictype1 82540EM --cableconnected1 on --uart1 0x3F8 4 --uartmode1 file " +
            d() + "/console.log",
        "storagectl dev --name SATA --add sata --hostiocache on --portcount 4",
        "createmedium disk --filename " + d() + "/disk.vdi --size 20000 --format VDI",
        "storageattach dev --storagectl SATA --port 0 --device 0 --type dvddrive --medium " + iso_.string(),
        "storageattach dev --storagectl SATA --port 1 --device 0 --type hdd --medium " + d() + "/disk.vdi",
        "storageattach dev --storagectl SATA --port 2 --device 0 --type dvddrive --medium " + d() + "/cidata.iso",
        "sharedfolder add dev --name share --hostpath " + (root_ / "share").string() + " --automount",
        "modifyvm dev --natpf1 delete ssh",
        fmt::format("modifyvm dev --natpf1 ssh,tcp,127.0.0.1,{},,22", ssh),
        "modifyvm dev --natpf1 delete agent",
        fmt::format("modifyvm dev --natpf1 agent,tcp,127.0.0.1,{},,2376", agent),
        "startvm dev --type headless",
    };
  }
  // Creates the machine and returns its state; the log is cleared afterwards.
  nlohmann::json create_running() {
    auto drv = make();
    drv->create();
    auto st = drv->save_state();
    fake_->clear_log();
    return st;
  }

  fs::path root_, dir_, iso_;
  std::unique_ptr<vboxtest::FakeVBoxManage> fake_;
  std::unique_ptr<vboxtest::SshBanner> banner_;
  FlagValues flags_;
  VirtualBoxTuning tuning_;
  std::atomic<bool> cancel_{false};
  int cancel_at_checkpoint_ = 0;
  std::vector<nlohmann::json> checkpoints_;
  std::vector<std::string> checkpoint_after_;
};

TEST_F(VirtualBoxDriverTest, CreateRunsTheExactCommandSequence) {
  auto drv = make();
  drv->create();
  auto st = drv->save_state();
  const int ssh = st["ssh_port"], agent = st["agent_port"];
  EXPECT_GT(ssh, 0);
  EXPECT_GT(agent, 0);
  EXPECT_NE(ssh, agent);
  EXPECT_EQ(fake_->calls(), create_calls(ssh, agent));
  EXPECT_EQ(fake_->vm_state("dev"), "running");
  EXPECT_EQ(drv->url(2376), fmt::format("tcp://127.0.0.1:{}", agent));
  auto ep = drv->ssh_endpoint();
  ASSERT_TRUE(ep);
  EXPECT_EQ(ep->host, "127.0.0.1");
  EXPECT_EQ(ep->port, ssh);
  EXPECT_EQ(ep->user, "root");
  EXPECT_EQ(ep->key_path, dir_ / "id_ed25519");
  EXPECT_TRUE(fs::exists(dir_ / "id_ed25519"));
  EXPECT_TRUE(fs::exists(dir_ / "cidata.iso"));
  EXPECT_EQ(drv->state(5s), MachineState::Running);
  // A checkpoint right after createvm, so `berth rm` of a killed create finds the VM.
  bool after_createvm = false;
  for (const auto& c : checkpoint_after_) after_createvm |= c.rfind("createvm ", 0) == 0;
  EXPECT_TRUE(after_createvm);
}

// berth-os has no vboxsf: create registers the folder and says in one line that it is not mounted.
TEST_F(VirtualBoxDriverTest, BerthOsGetsAWarningThatTheSharedFolderIsNotMounted) {
  ::testing::internal::CaptureStderr();
  make()->create();
  std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(err.find("vboxsf"), std::string::npos) << "not berth-os: " << err;
  make()->remove();

  // The volume id berth-os's ISO carries (image/build.sh: -V BERTH_OS), space-padded.
  std::string bytes = read_file(iso_);
  ASSERT_GT(bytes.size(), 32840u);
  bytes.replace(32808, 32, fmt::format("{:<32}", "BERTH_OS"));
  write_file_atomic(iso_, bytes);
  fake_->clear_log();
  ::testing::internal::CaptureStderr();
  make()->create();
  err = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("machine 'dev': berth-os cannot mount VirtualBox shared folders (no vboxsf); the folder is "
                     "registered but not mounted in the guest; use 'berth mount' or the libvirt driver\n"),
            std::string::npos)
      << err;
  bool registered = false;
  for (const auto& c : fake_->calls()) registered |= c.rfind("sharedfolder add dev --name share ", 0) == 0;
  EXPECT_TRUE(registered);
}

TEST_F(VirtualBoxDriverTest, FlagsReachTheCommandLines) {
  flags_.set("virtualbox-cpu-count", {"2"});
  flags_.set("virtualbox-memory", {"2048"});
  flags_.set("virtualbox-disk-size", {"5000"});
  flags_.set("virtualbox-nat-nictype", {"virtio"});
  flags_.set("virtualbox-ui-type", {"gui"});
  flags_.set("virtualbox-no-share", {"true"});
  auto drv = make();
  drv->create();
  auto calls = fake_->calls();
  auto has = [&](const std::string& needle) {
    for (const auto& c : calls)
      if (c.find(needle) != std::string::npos) return true;
    return false;
  };
  EXPECT_TRUE(has("--cpus 2 --memory 2048 "));
  EXPECT_TRUE(has("--nictype1 virtio "));
  EXPECT_TRUE(has("--size 5000 --format VDI"));
  EXPECT_TRUE(has("startvm dev --type gui"));
  EXPECT_FALSE(has("sharedfolder"));
}

TEST_F(VirtualBoxDriverTest, StopPressesThePowerButton) {
  auto st = create_running();
  load(st)->stop();
  EXPECT_EQ(fake_->calls(), (Calls{"showvminfo dev --machinereadable", "controlvm dev acpipowerbutton",
                                   "showvminfo dev --machinereadable"}));
  EXPECT_EQ(fake_->vm_state("dev"), "poweroff");
  EXPECT_EQ(load(st)->state(5s), MachineState::Stopped);
}

TEST_F(VirtualBoxDriverTest, StopPowersOffAGuestThatIgnoresTheButton) {
  auto st = create_running();
  fake_->set("ignore_acpi", "");
  tuning_.stop_timeout = 500ms;
  const auto t0 = std::chrono::steady_clock::now();
  load(st)->stop();
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 500ms);
  auto calls = fake_->calls();
  ASSERT_GE(calls.size(), 5u);
  EXPECT_EQ(calls[0], "showvminfo dev --machinereadable");
  EXPECT_EQ(calls[1], "controlvm dev acpipowerbutton");
  for (size_t i = 2; i + 1 < calls.size(); ++i) EXPECT_EQ(calls[i], "showvminfo dev --machinereadable");
  EXPECT_EQ(calls.back(), "controlvm dev poweroff");
  EXPECT_EQ(fake_->vm_state("dev"), "poweroff");
}

TEST_F(VirtualBoxDriverTest, StopOfAStoppedMachineDoesNothing) {
  auto st = create_running();
  load(st)->kill();
  fake_->clear_log();
  load(st)->stop();
  EXPECT_EQ(fake_->calls(), (Calls{"showvminfo dev --machinereadable"}));
}

TEST_F(VirtualBoxDriverTest, StartForwardsThePortsAgainAndBoots) {
  auto st = create_running();
  load(st)->stop();
  fake_->clear_log();
  auto drv = load(st);
  drv->start();
  const int ssh = st["ssh_port"], agent = st["agent_port"];
  EXPECT_EQ(
      fake_->calls(),
      (Calls{"showvminfo dev --machinereadable", "modifyvm dev --natpf1 delete ssh",
             fmt::format("modifyvm dev --natpf1 ssh,tcp,127.0.0.1,{},,22", ssh), "modifyvm dev --natpf1 delete agent",
             fmt::format("modifyvm dev --natpf1 agent,tcp,127.0.0.1,{},,2376", agent), "startvm dev --type headless"}));
  EXPECT_EQ(drv->save_state()["ssh_port"], ssh);  // the same ports while they are free
  fake_->clear_log();
  drv->start();  // running: nothing to do
  EXPECT_EQ(fake_->calls(), (Calls{"showvminfo dev --machinereadable"}));
}

TEST_F(VirtualBoxDriverTest, APublishedPortIsANatRuleOfTheRunningVm) {
  auto drv = load(create_running());
  EXPECT_EQ(drv->add_port_forward(8080), "");
  EXPECT_EQ(fake_->calls(), (Calls{"controlvm dev natpf1 delete berth-tcp-8080",
                                   "controlvm dev natpf1 berth-tcp-8080,tcp,127.0.0.1,8080,,8080"}));
  fake_->clear_log();
  drv->remove_port_forward(8080);
  EXPECT_EQ(fake_->calls(), (Calls{"controlvm dev natpf1 delete berth-tcp-8080"}));
  drv->remove_port_forward(8080);  // already gone: no error
}

TEST_F(VirtualBoxDriverTest, ARefusedNatRuleIsAReasonNotAnError) {
  auto drv = load(create_running());
  fake_->set("fail_on", "controlvm");
  const std::string why = drv->add_port_forward(8080);
  EXPECT_NE(why.find("injected failure of controlvm"), std::string::npos) << why;  // the forwarder then uses SSH
}

TEST_F(VirtualBoxDriverTest, StartDropsPublishedPortRulesLeftBehind) {
  auto st = create_running();
  auto drv = load(st);
  ASSERT_EQ(drv->add_port_forward(8080), "");
  drv->kill();  // as if the forwarder died with the VM: the rule stays in the VM's settings
  fake_->clear_log();
  drv->start();
  const auto calls = fake_->calls();
  const auto drop = std::find(calls.begin(), calls.end(), "modifyvm dev --natpf1 delete berth-tcp-8080");
  const auto boot = std::find(calls.begin(), calls.end(), "startvm dev --type headless");
  ASSERT_NE(drop, calls.end()) << fmt::format("{}", fmt::join(calls, "\n"));
  EXPECT_LT(drop, boot);
  EXPECT_FALSE(fs::exists(root_ / "fake" / "pf_dev_berth-tcp-8080"));
  EXPECT_TRUE(fs::exists(root_ / "fake" / "pf_dev_ssh"));  // its own rules stay
}

TEST_F(VirtualBoxDriverTest, RestartIsStopThenStart) {
  auto st = create_running();
  load(st)->restart();
  auto calls = fake_->calls();
  ASSERT_GE(calls.size(), 4u);
  EXPECT_EQ(calls[1], "controlvm dev acpipowerbutton");
  EXPECT_EQ(calls.back(), "startvm dev --type headless");
  EXPECT_EQ(fake_->vm_state("dev"), "running");
}

TEST_F(VirtualBoxDriverTest, KillPowersOff) {
  auto st = create_running();
  load(st)->kill();
  EXPECT_EQ(fake_->calls(), (Calls{"showvminfo dev --machinereadable", "controlvm dev poweroff"}));
  EXPECT_EQ(fake_->vm_state("dev"), "poweroff");
}

TEST_F(VirtualBoxDriverTest, RemoveUnregistersAndDeletesEverything) {
  auto st = create_running();
  load(st)->remove();
  EXPECT_EQ(fake_->calls(),
            (Calls{"showvminfo dev --machinereadable", "controlvm dev poweroff", "unregistervm dev --delete"}));
  EXPECT_FALSE(fake_->registered("dev"));
  for (const char* f : {"dev", "disk.vdi", "cidata.iso", "id_ed25519", "id_ed25519.pub", "ssh_host_ed25519_key"})
    EXPECT_FALSE(fs::exists(dir_ / f)) << f;
  EXPECT_EQ(load(st)->state(5s), MachineState::NotFound);
}

TEST_F(VirtualBoxDriverTest, RemoveOfAStoppedMachineSkipsPoweroff) {
  auto st = create_running();
  load(st)->kill();
  fake_->clear_log();
  load(st)->remove();
  EXPECT_EQ(fake_->calls(), (Calls{"showvminfo dev --machinereadable", "unregistervm dev --delete"}));
}

TEST_F(VirtualBoxDriverTest, RemoveOfAMissingVmSucceeds) {
  auto st = create_running();
  load(st)->remove();
  fake_->clear_log();
  EXPECT_NO_THROW(load(st)->remove());
  EXPECT_EQ(fake_->calls(), (Calls{"showvminfo dev --machinereadable"}));
}

TEST_F(VirtualBoxDriverTest, AnImportedVmIsOwnedWhereItsBaseDirSays) {
  // docker-machine keeps its VMs under its own store; the importer records that as vm_base_dir.
  fake_->add_vm("dev", "/home/u/.docker/machine/machines/dev/dev/dev.vbox", "running");
  const nlohmann::json st = {{"vm", "dev"}, {"vm_base_dir", "/home/u/.docker/machine/machines/dev"}};
  EXPECT_EQ(load(st)->state(5s), MachineState::Running);
  EXPECT_EQ(load(st)->save_state().value("vm_base_dir", ""), "/home/u/.docker/machine/machines/dev");
  EXPECT_EQ(load(nlohmann::json{{"vm", "dev"}})->state(5s), MachineState::NotFound);  // not without it
  EXPECT_FALSE(load(nlohmann::json{{"vm", "dev"}})->save_state().contains("vm_base_dir"));
}

TEST_F(VirtualBoxDriverTest, RemoveLeavesAnotherStoresVmOfTheSameNameAlone) {
  fake_->add_vm("dev", "/elsewhere/machines/dev/dev/dev.vbox", "running");
  EXPECT_NO_THROW(load(nlohmann::json{{"vm", "dev"}})->remove());
  EXPECT_EQ(fake_->calls(), (Calls{"showvminfo dev --machinereadable"}));
  EXPECT_TRUE(fake_->registered("dev"));
  EXPECT_EQ(load(nlohmann::json{{"vm", "dev"}})->state(5s), MachineState::NotFound);
  // and create refuses to take it over
  try {
    make()->create();
    FAIL() << "no exception";
  } catch (const DriverError& e) {
    EXPECT_NE(std::string(e.what()).find("VirtualBox already has a VM named 'dev'"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(fake_->registered("dev"));
}

TEST_F(VirtualBoxDriverTest, CreateReplacesALeftoverOfThisVeryMachine) {
  fake_->add_vm("dev", d() + "/dev/dev.vbox", "running");
  auto drv = make();
  drv->create();
  auto calls = fake_->calls();
  ASSERT_GE(calls.size(), 5u);
  EXPECT_EQ(Calls(calls.begin(), calls.begin() + 5),
            (Calls{"showvminfo dev --machinereadable", "showvminfo dev --machinereadable", "controlvm dev poweroff",
                   "unregistervm dev --delete", "createvm --name dev --basefolder " + d() + " --register"}));
  EXPECT_TRUE(fs::exists(dir_ / "id_ed25519"));
  EXPECT_TRUE(fs::exists(dir_ / "cidata.iso"));
  EXPECT_EQ(drv->state(5s), MachineState::Running);
}

TEST_F(VirtualBoxDriverTest, AFailedCreateUnregistersWhatItMade) {
  fake_->set("fail_on", "storageattach");
  auto drv = make();
  try {
    drv->create();
    FAIL() << "no exception";
  } catch (const DriverError& e) {
    EXPECT_STREQ(e.what(), "machine 'dev': VBoxManage storageattach failed: injected failure of storageattach");
  }
  EXPECT_FALSE(fake_->registered("dev"));
  // The first storageattach failed, so the disk was never the VM's: unregistervm leaves it, closemedium takes it.
  auto calls = fake_->calls();
  ASSERT_GE(calls.size(), 3u);
  EXPECT_EQ(calls[calls.size() - 2], "unregistervm dev --delete");
  EXPECT_EQ(calls.back(), "closemedium disk " + d() + "/disk.vdi --delete");
  EXPECT_FALSE(fs::exists(dir_ / "disk.vdi"));
  EXPECT_FALSE(fs::exists(dir_ / "dev"));
  EXPECT_FALSE(fs::exists(dir_ / "id_ed25519"));
}

TEST_F(VirtualBoxDriverTest, AGuestWithoutSshIsPoweredOffAndUnregistered) {
  banner_.reset();  // the guest never answers
  tuning_.ssh_timeout = 1s;
  try {
    make()->create();
    FAIL() << "no exception";
  } catch (const DriverError& e) {
    EXPECT_NE(std::string(e.what()).find("did not answer within 1 s"), std::string::npos) << e.what();
  }
  auto calls = fake_->calls();
  ASSERT_GE(calls.size(), 3u);
  EXPECT_EQ(calls[calls.size() - 3], "showvminfo dev --machinereadable");
  EXPECT_EQ(calls[calls.size() - 2], "controlvm dev poweroff");
  EXPECT_EQ(calls.back(), "unregistervm dev --delete");
  EXPECT_FALSE(fake_->registered("dev"));
}

TEST_F(VirtualBoxDriverTest, RmWithoutVirtualBoxRemovesTheFiles) {
  auto st = create_running();
  ::setenv("BERTH_VBOXMANAGE", (root_ / "uninstalled").c_str(), 1);
  EXPECT_NO_THROW(load(st)->remove());
  EXPECT_FALSE(fs::exists(dir_ / "id_ed25519"));
  EXPECT_FALSE(fs::exists(dir_ / "disk.vdi"));
}

TEST_F(VirtualBoxDriverTest, ADiskMadeBeforeTheVmTookItIsClosedAndDeleted) {
  fake_->set("fail_on", "storagectl");
  flags_.set("virtualbox-disk-size", {"100"});
  EXPECT_THROW(make()->create(), DriverError);
  fake_->unset("fail_on");
  EXPECT_FALSE(fake_->registered("dev"));
  // storagectl failed before createmedium: nothing to close. Now fail after createmedium.
  fake_->clear_log();
  fake_->set("fail_on", "storageattach");
  EXPECT_THROW(make()->create(), DriverError);
  EXPECT_FALSE(fs::exists(dir_ / "disk.vdi"));
}

TEST_F(VirtualBoxDriverTest, CtrlCDuringCreateLeavesNothingRegistered) {
  cancel_at_checkpoint_ = 2;  // the checkpoint right after createvm
  auto drv = make();
  EXPECT_THROW(drv->create(), Interrupted);
  EXPECT_FALSE(fake_->registered("dev"));
  auto calls = fake_->calls();
  EXPECT_EQ(calls[1], "createvm --name dev --basefolder " + d() + " --register");
  EXPECT_EQ(calls.back(), "unregistervm dev --delete");
  // what the checkpoint saved is enough for `berth rm` (nothing left to do now)
  fake_->clear_log();
  EXPECT_NO_THROW(load(checkpoints_.back())->remove());
}

TEST_F(VirtualBoxDriverTest, RmFromACheckpointFindsTheVmOfAKilledCreate) {
  // As if berth was SIGKILLed right after createvm: the VM is registered, the state has no ports.
  fake_->add_vm("dev", d() + "/dev/dev.vbox", "poweroff");
  fs::create_directories(dir_ / "dev");
  load(nlohmann::json{{"vm", "dev"}})->remove();
  EXPECT_EQ(fake_->calls(), (Calls{"showvminfo dev --machinereadable", "unregistervm dev --delete"}));
  EXPECT_FALSE(fake_->registered("dev"));
}

TEST_F(VirtualBoxDriverTest, StateMapsVirtualBoxStates) {
  auto drv = load(nlohmann::json{{"vm", "dev"}});
  EXPECT_EQ(drv->state(5s), MachineState::NotFound);
  const std::pair<const char*, MachineState> cases[] = {
      {"running", MachineState::Running},   {"poweroff", MachineState::Stopped}, {"saved", MachineState::Stopped},
      {"aborted", MachineState::Stopped},   {"paused", MachineState::Paused},    {"starting", MachineState::Starting},
      {"stopping", MachineState::Stopping}, {"stuck", MachineState::Error},      {"what", MachineState::Unknown}};
  for (auto [vbox_state, want] : cases) {
    fake_->add_vm("dev", d() + "/dev/dev.vbox", vbox_state);
    EXPECT_EQ(drv->state(5s), want) << vbox_state;
  }
  fake_->set("fail_on", "showvminfo");
  EXPECT_EQ(drv->state(5s), MachineState::Error);
}

TEST_F(VirtualBoxDriverTest, HostOnlyAdapterIsMadeWithItsDhcpServer) {
  flags_.set("virtualbox-hostonly", {"true"});
  auto drv = make();
  drv->create();
  auto calls = fake_->calls();
  const Calls want{"list hostonlyifs",
                   "hostonlyif create",
                   "hostonlyif ipconfig vboxnet0 --ip 192.168.56.1 --netmask 255.255.255.0",
                   "list dhcpservers",
                   "dhcpserver add --ifname vboxnet0 --ip 192.168.56.100 --netmask 255.255.255.0 --lowerip "
                   "192.168.56.101 --upperip 192.168.56.254 --enable",
                   "modifyvm dev --nic2 hostonly --nictype2 82540EM --hostonlyadapter2 vboxnet0 --cableconnected2 on",
                   "startvm dev --type headless"};
  ASSERT_GE(calls.size(), want.size());
  EXPECT_EQ(Calls(calls.end() - static_cast<long>(want.size()), calls.end()), want);
  EXPECT_EQ(drv->save_state()["hostonly_adapter"], "vboxnet0");
}

TEST_F(VirtualBoxDriverTest, HostOnlyReusesAMatchingAdapterAndDhcpServer) {
  // Real `list hostonlyifs` / `list dhcpservers` output: 192.168.56.1/24 exists with its DHCP server.
  fake_->set("hostonlyifs", vboxtest::read_text(fs::path(BERTH_VBOX_SAMPLES) / "hostonlyifs-windows-toolbox-692.txt"));
  fake_->set("dhcpservers",
             vboxtest::read_text(fs::path(BERTH_VBOX_SAMPLES) / "dhcpservers-windows-kitematic-1539.txt"));
  flags_.set("virtualbox-hostonly", {"true"});
  make()->create();
  auto calls = fake_->calls();
  const Calls want{"list hostonlyifs", "list dhcpservers",
                   "modifyvm dev --nic2 hostonly --nictype2 82540EM --hostonlyadapter2 VirtualBox Host-Only "
                   "Ethernet Adapter --cableconnected2 on",
                   "startvm dev --type headless"};
  EXPECT_EQ(Calls(calls.end() - static_cast<long>(want.size()), calls.end()), want);
}

TEST_F(VirtualBoxDriverTest, HostOnlyReplacesADhcpServerWithOtherSettings) {
  fake_->set("hostonlyifs", vboxtest::read_text(fs::path(BERTH_VBOX_SAMPLES) / "hostonlyifs-windows-toolbox-692.txt"));
  fake_->set("dhcpservers",
             vboxtest::read_text(fs::path(BERTH_VBOX_SAMPLES) / "dhcpservers-windows-kitematic-1539.txt"));
  flags_.set("virtualbox-hostonly", {"true"});
  flags_.set("virtualbox-hostonly-cidr", {"192.168.57.1/24"});
  make()->create();
  auto calls = fake_->calls();
  auto pos =
      std::find(calls.begin(), calls.end(), "hostonlyif ipconfig vboxnet0 --ip 192.168.57.1 --netmask 255.255.255.0");
  EXPECT_NE(pos, calls.end());
  EXPECT_NE(std::find(calls.begin(), calls.end(),
                      "dhcpserver add --ifname vboxnet0 --ip 192.168.57.100 --netmask 255.255.255.0 --lowerip "
                      "192.168.57.101 --upperip 192.168.57.254 --enable"),
            calls.end());
}

TEST_F(VirtualBoxDriverTest, HostOnlyCidrIsValidated) {
  flags_.set("virtualbox-hostonly", {"true"});
  flags_.set("virtualbox-hostonly-cidr", {"192.168.99.1/24"});
  std::error_code ec;
  if (!fs::exists("/etc/vbox/networks.conf", ec)) {
    try {
      make();
      FAIL() << "no exception";
    } catch (const UserError& e) {
      EXPECT_NE(std::string(e.what()).find("outside 192.168.56.0/21"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("* 192.168.99.0/24"), std::string::npos) << e.what();
    }
  }
  if (!fs::exists("/etc/vbox/networks.conf", ec)) {
    FlagValues no_hostonly = flags_;
    no_hostonly.set("virtualbox-hostonly", {});
    EXPECT_THROW(VirtualBoxDriverFactory(tuning_).make(no_hostonly, ctx()), UserError);
  }
  for (const char* bad : {"192.168.56.0/24", "192.168.56.255/24", "192.168.56.1/30", "192.168.56.1", "nonsense"}) {
    flags_.set("virtualbox-hostonly-cidr", {bad});
    EXPECT_THROW(make(), UserError) << bad;
  }
  flags_.set("virtualbox-hostonly-cidr", {"192.168.60.1/24"});
  EXPECT_NO_THROW(make());
}

TEST_F(VirtualBoxDriverTest, OtherFlagsAreValidated) {
  const std::pair<const char*, const char*> bad[] = {
      {"virtualbox-nat-nictype", "e1000"}, {"virtualbox-hostonly-nictype", "rtl8139"},
      {"virtualbox-ui-type", "vnc"},       {"virtualbox-cpu-count", "0"},
      {"virtualbox-memory", "64"},         {"virtualbox-image-sha256", "xyz"},
      {"virtualbox-share-folder", ":name"}};
  for (auto [flag, value] : bad) {
    FlagValues f = flags_;
    f.set(flag, {value});
    EXPECT_THROW(VirtualBoxDriverFactory(tuning_).make(f, ctx()), UserError) << flag << "=" << value;
  }
  FlagValues both = flags_;
  both.set("virtualbox-boot2docker-url", {"http://127.0.0.1:1/other.iso"});
  EXPECT_THROW(VirtualBoxDriverFactory(tuning_).make(both, ctx()), UserError);
}

TEST_F(VirtualBoxDriverTest, FlagsFollowDockerMachine) {
  auto flags = VirtualBoxDriverFactory().flags();
  auto find = [&](const std::string& n) -> const FlagSpec* {
    for (const auto& f : flags)
      if (f.name == n) return &f;
    return nullptr;
  };
  const std::tuple<const char*, const char*, const char*> want[] = {
      {"virtualbox-cpu-count", "VIRTUALBOX_CPU_COUNT", "1"},
      {"virtualbox-memory", "VIRTUALBOX_MEMORY_SIZE", "1024"},
      {"virtualbox-disk-size", "VIRTUALBOX_DISK_SIZE", "20000"},
      {"virtualbox-boot2docker-url", "VIRTUALBOX_BOOT2DOCKER_URL", ""},
      {"virtualbox-hostonly-cidr", "VIRTUALBOX_HOSTONLY_CIDR", "192.168.56.1/24"},
      {"virtualbox-no-share", "VIRTUALBOX_NO_SHARE", ""},
      {"virtualbox-share-folder", "VIRTUALBOX_SHARE_FOLDER", ""},
      {"virtualbox-nat-nictype", "VIRTUALBOX_NAT_NICTYPE", "82540EM"},
      {"virtualbox-hostonly-nictype", "VIRTUALBOX_HOSTONLY_NIC_TYPE", "82540EM"},
      {"virtualbox-no-vtx-check", "VIRTUALBOX_NO_VTX_CHECK", ""},
      {"virtualbox-ui-type", "VIRTUALBOX_UI_TYPE", "headless"},
      {"virtualbox-image", "VIRTUALBOX_IMAGE", ""}};
  for (auto [name, env, def] : want) {
    const FlagSpec* f = find(name);
    ASSERT_NE(f, nullptr) << name;
    EXPECT_EQ(f->env_var, env) << name;
    EXPECT_EQ(f->default_value, def) << name;
  }
  EXPECT_EQ(VirtualBoxDriverFactory().name(), "virtualbox");
}

TEST_F(VirtualBoxDriverTest, PreCreateCheckWantsVirtualBox61OrNewer) {
  auto drv = make();
  EXPECT_NO_THROW(drv->pre_create_check());
  fake_->set("version", "6.1.50_Ubuntur161033\n");
  EXPECT_NO_THROW(drv->pre_create_check());
  fake_->set("version", "5.2.44r139111\n");
  try {
    drv->pre_create_check();
    FAIL() << "no exception";
  } catch (const PreCreateCheckFailed& e) {
    EXPECT_STREQ(e.what(),
                 "VirtualBox 5.2.44r139111 is too old: berth needs VirtualBox 6.1 or newer; upgrade VirtualBox");
    EXPECT_EQ(e.exit_code(), kExitPreCreateCheck);
  }
  fake_->set("version", "");
  EXPECT_THROW(drv->pre_create_check(), PreCreateCheckFailed);
}

TEST_F(VirtualBoxDriverTest, PreCreateCheckSaysWhenVirtualBoxIsMissing) {
  auto drv = make();
  ::setenv("BERTH_VBOXMANAGE", (root_ / "nothing-here").c_str(), 1);
  try {
    drv->pre_create_check();
    FAIL() << "no exception";
  } catch (const PreCreateCheckFailed& e) {
    EXPECT_NE(std::string(e.what()).find(
                  "VirtualBox is not installed (VBoxManage not found on PATH); install VirtualBox 6.1 or newer"),
              std::string::npos)
        << e.what();
  }
}

TEST_F(VirtualBoxDriverTest, PreCreateCheckRefusesWhatIsNotAnIso) {
  fs::path junk = root_ / "junk.img";
  vboxtest::write_text(junk, std::string(70000, 'x'));
  flags_.set("virtualbox-image", {junk.string()});
  EXPECT_THROW(make()->pre_create_check(), PreCreateCheckFailed);
}

}  // namespace
}  // namespace berth
