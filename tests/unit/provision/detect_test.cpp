#include <gtest/gtest.h>

#include "core/error.h"
#include "provision/provision.h"
#include "tests/unit/provision/test_hosts.h"

namespace berth::provision {
namespace {

using testing::FakeRemote;

TEST(ParseOsRelease, ReadsQuotedAndBareValues) {
  OsInfo os = parse_os_release(testing::kDebianOsRelease);
  EXPECT_EQ(os.id, "debian");
  EXPECT_EQ(os.version_id, "12");
  EXPECT_EQ(os.pretty_name, "Debian GNU/Linux 12 (bookworm)");
  EXPECT_EQ(os.id_like, "");
}

TEST(ParseOsRelease, HandlesCommentsBlankLinesEscapesAndSingleQuotes) {
  OsInfo os = parse_os_release(
      "# comment line\n"
      "\n"
      "  ID=ubuntu   \n"
      "ID_LIKE='debian'\n"
      "PRETTY_NAME=\"Say \\\"hi\\\" \\$HOME\"  # trailing comment\n"
      "VERSION_ID=22.04 # bare value, then a comment\n"
      "garbage line without equals\n"
      "=no key\n");
  EXPECT_EQ(os.id, "ubuntu");
  EXPECT_EQ(os.id_like, "debian");
  EXPECT_EQ(os.pretty_name, "Say \"hi\" $HOME");
  EXPECT_EQ(os.version_id, "22.04");
}

TEST(ParseOsRelease, MissingFieldsGetDefaults) {
  OsInfo os = parse_os_release("NAME=Plan9\n");
  EXPECT_EQ(os.id, "linux");  // os-release(5) default for ID
  EXPECT_EQ(os.pretty_name, "Plan9");
  EXPECT_EQ(os.version_id, "");
  EXPECT_EQ(parse_os_release("").pretty_name, "Linux");
}

TEST(Detect, DebianWithSystemd) {
  FakeRemote r;
  testing::make_debian_systemd(r);
  auto p = detect(r);
  EXPECT_EQ(p->os().id, "debian");
  EXPECT_EQ(p->init_system(), InitSystem::Systemd);
}

TEST(Detect, UbuntuWithSystemd) {
  FakeRemote r;
  testing::make_debian_systemd(r);
  r.files["/etc/os-release"].content = testing::kUbuntuOsRelease;
  auto p = detect(r);
  EXPECT_EQ(p->os().id, "ubuntu");
  EXPECT_EQ(p->os().version_id, "22.04");
  EXPECT_EQ(p->init_system(), InitSystem::Systemd);
}

TEST(Detect, DebianDerivativeByIdLike) {
  FakeRemote r;
  testing::make_debian_systemd(r);
  r.files["/etc/os-release"].content = "ID=linuxmint\nID_LIKE=\"ubuntu debian\"\nPRETTY_NAME=\"Linux Mint 21\"\n";
  EXPECT_EQ(detect(r)->os().id, "linuxmint");
}

TEST(Detect, AlpineWithOpenRc) {
  FakeRemote r;
  testing::OpenRcState state;
  testing::make_alpine_openrc(r, state);
  auto p = detect(r);
  EXPECT_EQ(p->os().id, "alpine");
  EXPECT_EQ(p->init_system(), InitSystem::OpenRC);
}

TEST(Detect, RcServiceWithoutOpenRcRunIsNotOpenRc) {
  FakeRemote r;
  testing::OpenRcState state;
  testing::make_alpine_openrc(r, state);
  r.files.erase("/sbin/openrc-run");
  EXPECT_EQ(detect(r)->init_system(), InitSystem::Supervisor);
}

TEST(Detect, DebianWithoutSystemdUsesSupervisor) {
  FakeRemote r;
  testing::make_debian_sysvinit(r);
  EXPECT_EQ(detect(r)->init_system(), InitSystem::Supervisor);
}

TEST(Detect, BerthOsUsesTheSupervisor) {
  FakeRemote r;
  testing::make_debian_sysvinit(r);
  r.files["/etc/os-release"].content = "NAME=\"berth-os\"\nID=berth-os\nPRETTY_NAME=\"berth-os 0.1.0\"\n";
  auto p = detect(r);
  EXPECT_EQ(p->os().id, "berth-os");
  EXPECT_EQ(p->init_system(), InitSystem::Supervisor);
}

TEST(Detect, FallsBackToUsrLibOsRelease) {
  FakeRemote r;
  testing::make_debian_systemd(r);
  r.files.erase("/etc/os-release");
  r.add_file("/usr/lib/os-release", testing::kUbuntuOsRelease);
  EXPECT_EQ(detect(r)->os().id, "ubuntu");
}

TEST(Detect, UnsupportedOsNamesItAndTheHost) {
  FakeRemote r;
  testing::make_debian_systemd(r);
  r.hostname = "box7";
  r.files["/etc/os-release"].content = "NAME=\"Fedora Linux\"\nID=fedora\nPRETTY_NAME=\"Fedora Linux 39 (Server Edition)\"\n";
  try {
    detect(r);
    FAIL() << "expected berth::Error";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(),
                 "unsupported OS 'Fedora Linux 39 (Server Edition)' on host 'box7': berth can provision Debian, "
                 "Ubuntu, Alpine and berth-os hosts");
  }
}

TEST(Detect, NonRootWithoutPasswordlessSudoIsRefused) {
  FakeRemote r;
  testing::make_debian_systemd(r);
  r.root = false;
  r.sudo_allowed = false;
  try {
    detect(r);
    FAIL() << "expected berth::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("user 'deploy'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("passwordless sudo"), std::string::npos) << e.what();
  }
}

TEST(InitSystemName, ToString) {
  EXPECT_EQ(to_string(InitSystem::Systemd), "systemd");
  EXPECT_EQ(to_string(InitSystem::OpenRC), "openrc");
  EXPECT_EQ(to_string(InitSystem::Supervisor), "supervisor");
}

}  // namespace
}  // namespace berth::provision
