// docker run flags that reach the OCI spec outside build_oci_spec:
// --device, --privileged's host devices, --group-add.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <set>

#include "agent/api/http.h"
#include "agent/network/ipam.h"
#include "agent/runtime/devices.h"
#include "agent/runtime/exec_lookup.h"
#include "agent/runtime/fd.h"
#include "agent/runtime/host_config_defaults.h"
#include "agent/runtime/init_process.h"
#include "agent/runtime/json_log.h"
#include "agent/runtime/links.h"
#include "agent/runtime/log_rotate.h"
#include "agent/runtime/oci_spec.h"

namespace berth::agent::runtime {
namespace {

using nlohmann::json;

json base_spec() {
  return {{"process", {{"user", {{"uid", 0}, {"gid", 0}}}}},
          {"linux", {{"resources", {{"devices", json::array({{{"allow", false}, {"access", "rwm"}}})}}}}}};
}

TEST(DevicesTest, DeviceNodeAndItsCgroupRuleReachTheSpec) {
  json spec = base_spec();
  apply_devices(spec, {{"Devices", {{{"PathOnHost", "/dev/null"}, {"PathInContainer", "/dev/mynull"},
                                     {"CgroupPermissions", "r"}}}}});
  ASSERT_EQ(spec["linux"]["devices"].size(), 1u);
  const json& d = spec["linux"]["devices"][0];
  EXPECT_EQ(d["path"], "/dev/mynull");
  EXPECT_EQ(d["type"], "c");
  EXPECT_EQ(d["major"], 1);
  EXPECT_EQ(d["minor"], 3);
  EXPECT_EQ(d["fileMode"], 0666);
  const json& rule = spec["linux"]["resources"]["devices"].back();
  EXPECT_EQ(rule, json({{"allow", true}, {"type", "c"}, {"major", 1}, {"minor", 3}, {"access", "r"}}));
  // The default deny rule stays first.
  EXPECT_EQ(spec["linux"]["resources"]["devices"][0]["allow"], false);
}

TEST(DevicesTest, SamePathInContainerByDefaultAndRwm) {
  json spec = base_spec();
  apply_devices(spec, {{"Devices", {{{"PathOnHost", "/dev/zero"}, {"PathInContainer", ""},
                                     {"CgroupPermissions", ""}}}}});
  EXPECT_EQ(spec["linux"]["devices"][0]["path"], "/dev/zero");
  EXPECT_EQ(spec["linux"]["resources"]["devices"].back()["access"], "rwm");
}

TEST(DevicesTest, MissingPathNonDeviceAndBadModeAre400) {
  json spec = base_spec();
  try {
    apply_devices(spec, {{"Devices", {{{"PathOnHost", "/dev/berth-none"}}}}});
    FAIL();
  } catch (const api::HttpError& e) {
    EXPECT_EQ(e.status(), 400u);
    EXPECT_EQ(std::string(e.what()),
              "error gathering device information while adding custom device \"/dev/berth-none\": "
              "no such file or directory");
  }
  EXPECT_THROW(apply_devices(spec, {{"Devices", {{{"PathOnHost", "/etc/hostname"}}}}}), api::HttpError);
  EXPECT_THROW(apply_devices(spec, {{"Devices", {{{"PathOnHost", "/dev/null"},
                                                  {"CgroupPermissions", "rx"}}}}}),
               api::HttpError);
}

class DeviceDirTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir = std::filesystem::temp_directory_path() /
          ("berth-dev-" + std::to_string(::getpid()) + "-" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir / "sub");
    std::filesystem::create_directories(dir / "pts");
    if (::mknod((dir / "null").c_str(), S_IFCHR | 0600, ::makedev(1, 3)) != 0 ||
        ::mknod((dir / "sub" / "loop9").c_str(), S_IFBLK | 0660, ::makedev(7, 9)) != 0 ||
        ::mknod((dir / "pts" / "0").c_str(), S_IFCHR | 0620, ::makedev(136, 0)) != 0)
      GTEST_SKIP() << "mknod needs CAP_MKNOD";
    std::filesystem::permissions(dir / "sub" / "loop9", static_cast<std::filesystem::perms>(0660));  // past the umask
    std::filesystem::create_symlink("null", dir / "link");
  }
  void TearDown() override { std::filesystem::remove_all(dir); }
  std::filesystem::path dir;
};

TEST_F(DeviceDirTest, ADirectoryAddsEveryDeviceUnderIt) {
  json spec = base_spec();
  apply_devices(spec, {{"Devices", {{{"PathOnHost", dir.string()}, {"PathInContainer", "/dev/x"},
                                     {"CgroupPermissions", "rw"}}}}});
  std::set<std::string> paths;
  for (const json& d : spec["linux"]["devices"]) paths.insert(d["path"].get<std::string>());
  EXPECT_EQ(paths, (std::set<std::string>{"/dev/x/null", "/dev/x/pts/0", "/dev/x/sub/loop9"}));
  for (const json& d : spec["linux"]["devices"])
    if (d["path"] == "/dev/x/sub/loop9") {
      EXPECT_EQ(d["type"], "b");
      EXPECT_EQ(d["major"], 7);
      EXPECT_EQ(d["minor"], 9);
      EXPECT_EQ(d["fileMode"], 0660);
    }
}

TEST_F(DeviceDirTest, PrivilegedAddsTheHostsDevicesButPts) {
  json spec = base_spec();
  apply_devices(spec, {{"Privileged", true}}, dir);
  std::set<std::string> paths;
  for (const json& d : spec["linux"]["devices"]) paths.insert(d["path"].get<std::string>());
  EXPECT_EQ(paths, (std::set<std::string>{"/dev/null", "/dev/sub/loop9"}));
}

TEST(GroupAddTest, NamesResolveInTheContainersGroupFileNumbersAsThey) {
  json spec = base_spec();
  spec["process"]["user"]["additionalGids"] = {10};
  const std::string group = "root:x:0:\nwheel:x:10:\naudio:x:29:pulse\nvideo:x:44:\n";
  apply_group_add(spec, {{"GroupAdd", {"audio", "video", "1234", "wheel"}}}, group);
  EXPECT_EQ(spec["process"]["user"]["additionalGids"], json({10, 29, 44, 1234}));
  try {
    apply_group_add(spec, {{"GroupAdd", {"nosuch"}}}, group);
    FAIL();
  } catch (const api::HttpError& e) {
    EXPECT_EQ(e.status(), 400u);
    EXPECT_EQ(std::string(e.what()), "Unable to find group nosuch: no matching entries in group file");
  }
}

TEST(GroupAddTest, NoGroupAddLeavesTheUserAlone) {
  json spec = base_spec();
  apply_group_add(spec, json::object(), "");
  EXPECT_FALSE(spec["process"]["user"].contains("additionalGids"));
}

// ---------------------------------------------------------------- log rotation

class TempDirTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/brf.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir); }
  std::filesystem::path dir;
};

using LogRotationTest = TempDirTest;

TEST(LogOptsTest, SizesAsGoUnitsAndDockerdsErrors) {
  EXPECT_EQ(parse_ram_in_bytes("10m"), 10 * 1024 * 1024);
  EXPECT_EQ(parse_ram_in_bytes("1k"), 1024);
  EXPECT_EQ(parse_ram_in_bytes("1.5KB"), 1536);
  EXPECT_EQ(parse_ram_in_bytes("2g"), 2LL * 1024 * 1024 * 1024);
  EXPECT_EQ(parse_ram_in_bytes("512"), 512);
  EXPECT_EQ(parse_ram_in_bytes("3 MiB"), 3 * 1024 * 1024);
  EXPECT_FALSE(parse_ram_in_bytes("ten"));
  EXPECT_FALSE(parse_ram_in_bytes("10x"));
  EXPECT_FALSE(parse_ram_in_bytes(""));

  LogRotation r = parse_log_rotation({{"Type", "json-file"},
                                      {"Config", {{"max-size", "1k"}, {"max-file", "3"}}}});
  EXPECT_EQ(r.max_size, 1024);
  EXPECT_EQ(r.max_file, 3);
  r = parse_log_rotation({{"Type", ""}, {"Config", json::object()}});
  EXPECT_EQ(r.max_size, -1);
  EXPECT_EQ(r.max_file, 1);
  auto error = [](json cfg) {
    try {
      parse_log_rotation({{"Type", "json-file"}, {"Config", cfg}});
    } catch (const api::HttpError& e) {
      EXPECT_EQ(e.status(), 400u);
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_EQ(error({{"max-size", "big"}}), "invalid size: 'big'");
  EXPECT_EQ(error({{"max-file", "0"}, {"max-size", "1m"}}), "max-file cannot be less than 1");
  EXPECT_EQ(error({{"max-file", "3"}}), "max-file cannot be greater than 1 when max-size is not set");
  EXPECT_EQ(error({{"mode", "non-blocking"}}), "unknown log opt 'mode' for json-file log driver");
}

TEST(LogOptsTest, CreateFillsLogConfigAndRuntimeAsDockerd) {
  json hc = {{"LogConfig", {{"Type", ""}, {"Config", nullptr}}}};
  fill_run_defaults(hc);
  EXPECT_EQ(hc["LogConfig"], json({{"Type", "json-file"}, {"Config", json::object()}}));
  EXPECT_EQ(hc["Runtime"], "runc");
  json absent = json::object();
  fill_run_defaults(absent);
  EXPECT_EQ(absent["LogConfig"]["Type"], "json-file");
  json bad = {{"LogConfig", {{"Type", "json-file"}, {"Config", {{"max-size", "-1k"}}}}}};
  EXPECT_THROW(fill_run_defaults(bad), api::HttpError);
}

std::string record(int i) {
  return format_log_line("line " + std::to_string(i) + "\n", "stdout", 1700000000000000000LL + i);
}

TEST_F(LogRotationTest, FullFilesMoveToDot1AndTheOldestIsDropped) {
  const std::filesystem::path log = dir / "c-json.log";
  const std::size_t one = record(0).size();
  {
    RotatingLogFile f(log, {static_cast<std::int64_t>(one * 3), 3});
    for (int i = 0; i < 12; ++i) f.write(record(i));
  }
  // 12 records, 3 a file: the current file holds 9..11, .1 6..8, .2 3..5; 0..2 are gone.
  EXPECT_FALSE(std::filesystem::exists(dir / "c-json.log.3"));
  EXPECT_EQ(read_file(log), record(9) + record(10) + record(11));
  EXPECT_EQ(read_file(dir / "c-json.log.1"), record(6) + record(7) + record(8));
  EXPECT_EQ(read_file(dir / "c-json.log.2"), record(3) + record(4) + record(5));
  auto files = rotated_log_files(log);
  ASSERT_EQ(files.size(), 3u);
  EXPECT_EQ(files[0], dir / "c-json.log.2");
  EXPECT_EQ(files[2], log);
  // Reopened (a restart of the container): the size already written counts.
  {
    RotatingLogFile f(log, {static_cast<std::int64_t>(one * 3), 3});
    f.write(record(12));
  }
  EXPECT_EQ(read_file(log), record(12));
  EXPECT_EQ(read_file(dir / "c-json.log.1"), record(9) + record(10) + record(11));
}

TEST_F(LogRotationTest, MaxFileOneStartsTheFileOverAndNoLimitNeverRotates) {
  const std::filesystem::path log = dir / "one.log";
  const std::size_t one = record(0).size();
  {
    RotatingLogFile f(log, {static_cast<std::int64_t>(one * 2), 1});
    for (int i = 0; i < 5; ++i) f.write(record(i));
  }
  EXPECT_EQ(read_file(log), record(4));
  EXPECT_FALSE(std::filesystem::exists(dir / "one.log.1"));
  const std::filesystem::path big = dir / "big.log";
  {
    RotatingLogFile f(big, {});
    EXPECT_FALSE(f.rotates());
    for (int i = 0; i < 100; ++i) f.write(record(i));
  }
  std::size_t all = 0;
  for (int i = 0; i < 100; ++i) all += record(i).size();
  EXPECT_EQ(std::filesystem::file_size(big), all);
  EXPECT_EQ(rotated_log_files(big), std::vector<std::filesystem::path>{big});
}

// ---------------------------------------------------------------- --link

TEST(LinksTest, HostsLineAndLegacyVariablesAsDockerd) {
  EXPECT_EQ(parse_link("db:database"), std::make_pair(std::string("db"), std::string("database")));
  EXPECT_EQ(parse_link("db"), std::make_pair(std::string("db"), std::string("db")));
  EXPECT_EQ(parse_link("/db:/web/database"), std::make_pair(std::string("db"), std::string("database")));
  LinkTarget t{"db", "a1b2c3", "172.17.0.2",
               {{"6379/tcp", json::object()}, {"53/udp", json::object()}, {"53/tcp", json::object()}},
               {"PATH=/bin", "REDIS_VERSION=7", "HOME=/root", "EMPTY="}};
  EXPECT_EQ(link_hosts_line("my-db", t), "172.17.0.2\tmy-db a1b2c3 db\n");
  EXPECT_EQ(link_hosts_line("db", t), "172.17.0.2\tdb a1b2c3\n");
  EXPECT_EQ(link_env("web", "my-db", t),
            (std::vector<std::string>{
                "MY_DB_PORT=tcp://172.17.0.2:53",
                "MY_DB_PORT_53_TCP=tcp://172.17.0.2:53", "MY_DB_PORT_53_TCP_ADDR=172.17.0.2",
                "MY_DB_PORT_53_TCP_PORT=53", "MY_DB_PORT_53_TCP_PROTO=tcp",
                "MY_DB_PORT_53_UDP=udp://172.17.0.2:53", "MY_DB_PORT_53_UDP_ADDR=172.17.0.2",
                "MY_DB_PORT_53_UDP_PORT=53", "MY_DB_PORT_53_UDP_PROTO=udp",
                "MY_DB_PORT_6379_TCP=tcp://172.17.0.2:6379", "MY_DB_PORT_6379_TCP_ADDR=172.17.0.2",
                "MY_DB_PORT_6379_TCP_PORT=6379", "MY_DB_PORT_6379_TCP_PROTO=tcp",
                "MY_DB_NAME=/web/my-db", "MY_DB_ENV_REDIS_VERSION=7", "MY_DB_ENV_EMPTY="}));
  LinkTarget bare{"x", "", "10.0.0.3", json(nullptr), {}};
  EXPECT_EQ(link_env("web", "x", bare), std::vector<std::string>{"X_NAME=/web/x"});
}

// ---------------------------------------------------------------- --init

TEST(InitTest, DockerInitRunsInFrontOfTheCommand) {
  json spec = {{"process", {{"args", {"sleep", "9"}}}}, {"mounts", json::array()}};
  apply_init(spec, {{"Init", false}}, std::filesystem::path("/usr/bin/tini"));
  EXPECT_EQ(spec["process"]["args"], json({"sleep", "9"}));
  apply_init(spec, {{"Init", nullptr}}, std::filesystem::path("/usr/bin/tini"));
  EXPECT_EQ(spec["process"]["args"], json({"sleep", "9"}));
  apply_init(spec, {{"Init", true}}, std::filesystem::path("/usr/bin/tini-static"));
  EXPECT_EQ(spec["process"]["args"], json({"/sbin/docker-init", "--", "sleep", "9"}));
  ASSERT_EQ(spec["mounts"].size(), 1u);
  EXPECT_EQ(spec["mounts"][0], json({{"destination", "/sbin/docker-init"}, {"type", "bind"},
                                     {"source", "/usr/bin/tini-static"}, {"options", {"bind", "ro"}}}));
  json again = {{"process", {{"args", {"true"}}}}, {"mounts", json::array()}};
  EXPECT_THROW(apply_init(again, {{"Init", true}}, std::nullopt), api::HttpError);
}

TEST(InitTest, TheFirstExecutableCandidateIsTheInit) {
  char tmpl[] = "/tmp/brinit.XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::filesystem::path dir = tmpl;
  write_file_atomic(dir / "plain", "x");
  std::filesystem::permissions(dir / "plain", static_cast<std::filesystem::perms>(0644));
  write_file_atomic(dir / "tini", "x");
  std::filesystem::permissions(dir / "tini", static_cast<std::filesystem::perms>(0755));
  EXPECT_EQ(find_init_binary({"/nonexistent/docker-init", dir, dir / "plain", dir / "tini"}), dir / "tini");
  std::filesystem::remove_all(dir);
  EXPECT_FALSE(find_init_binary({"/nonexistent/docker-init"}));
}

// ---------------------------------------------------------------- --mac-address

TEST(MacAddressTest, NormalizedOrRejectedAsDockerd) {
  EXPECT_EQ(network::normalize_mac("92:D0:C6:0A:29:33"), "92:d0:c6:0a:29:33");
  EXPECT_EQ(network::normalize_mac("02-42-ac-11-00-09"), "02:42:ac:11:00:09");
  EXPECT_EQ(network::normalize_mac(""), "");
  for (const char* bad : {"92:d0:c6:0a:29", "zz:d0:c6:0a:29:33", "01:00:5e:00:00:01", "9:2d0:c6:0a:29:33"}) {
    try {
      network::normalize_mac(bad);
      ADD_FAILURE() << bad;
    } catch (const api::HttpError& e) {
      EXPECT_EQ(e.status(), 400u);
      EXPECT_EQ(std::string(e.what()), std::string("invalid MAC address: ") + bad);
    }
  }
}

// ---------------------------------------------------------------- exec lookup

class ExecLookupTest : public TempDirTest {
 protected:
  void SetUp() override {
    TempDirTest::SetUp();
    std::filesystem::create_directories(dir / "bin");
    std::filesystem::create_directories(dir / "usr/bin");
    std::filesystem::create_directories(dir / "srv");
    make(dir / "bin/sh", 0755);
    make(dir / "srv/tool", 0755);
    make(dir / "srv/data.txt", 0644);
    make(dir / "usr/bin/notexec", 0644);
    std::filesystem::create_symlink("/bin/sh", dir / "usr/bin/ash");
    std::filesystem::create_symlink("../../../../bin/sh", dir / "srv/escape");
  }
  static void make(const std::filesystem::path& p, std::filesystem::perms mode) {
    write_file_atomic(p, "#!/bin/sh\n");
    std::filesystem::permissions(p, mode);
  }
  static void make(const std::filesystem::path& p, int mode) {
    make(p, static_cast<std::filesystem::perms>(mode));
  }
  json process(std::vector<std::string> args, std::string cwd = "/") {
    return {{"args", args}, {"cwd", cwd}, {"env", {"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/"}}};
  }
};

TEST_F(ExecLookupTest, FoundCommandsRun) {
  const json mounts = json::array();
  EXPECT_FALSE(check_exec_command(dir, process({"sh", "-c", "true"}), mounts));
  EXPECT_FALSE(check_exec_command(dir, process({"ash"}), mounts));  // a link inside the root
  EXPECT_FALSE(check_exec_command(dir, process({"/srv/tool"}), mounts));
  EXPECT_FALSE(check_exec_command(dir, process({"./tool"}, "/srv"), mounts));
  EXPECT_FALSE(check_exec_command(dir, process({"/srv/escape"}), mounts));  // ../ stays in the root
}

TEST_F(ExecLookupTest, MissingIs127AndUnrunnableIs126InRuncsWords) {
  const json mounts = json::array();
  auto r = check_exec_command(dir, process({"nosuch"}), mounts);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->exit_code, 127);
  EXPECT_EQ(r->message,
            "OCI runtime exec failed: exec failed: unable to start container process: exec: "
            "\"nosuch\": executable file not found in $PATH: unknown");
  // In $PATH but without an x bit: not found either, as Go's LookPath.
  r = check_exec_command(dir, process({"notexec"}), mounts);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->exit_code, 127);
  r = check_exec_command(dir, process({"/nope/x"}), mounts);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->exit_code, 127);
  EXPECT_NE(r->message.find("no such file or directory"), std::string::npos);
  r = check_exec_command(dir, process({"/srv/data.txt"}), mounts);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->exit_code, 126);
  EXPECT_NE(r->message.find("exec: \"/srv/data.txt\": permission denied"), std::string::npos);
  r = check_exec_command(dir, process({"/srv"}), mounts);  // a directory
  ASSERT_TRUE(r);
  EXPECT_EQ(r->exit_code, 126);
}

TEST_F(ExecLookupTest, CommandsOnMountsAreLeftToTheRuntime) {
  json mounts = json::array({{{"destination", "/data"}, {"type", "bind"}, {"source", "/x"}},
                             {{"destination", "/etc/hosts"}, {"type", "bind"}, {"source", "/y"}}});
  EXPECT_FALSE(check_exec_command(dir, process({"/data/run.sh"}), mounts));
  EXPECT_TRUE(check_exec_command(dir, process({"/etc/hosts"}), mounts));
  json p = process({"tool"});
  p["env"] = {"PATH=/data/bin:/bin"};
  EXPECT_FALSE(check_exec_command(dir, p, mounts));
}

TEST(ExecProcessTest, WorkingDirAndUserByNameReachTheProcess) {
  json spec = {{"process", {{"args", {"sh"}}, {"env", {"PATH=/bin"}}, {"cwd", "/"},
                            {"user", {{"uid", 0}, {"gid", 0}}}, {"rlimits", json::array()}}}};
  ResolvedUser u = resolve_user("www", "root:x:0:0::/root:/bin/sh\nwww:x:33:33::/var/www:/bin/sh\n",
                                "www:x:33:\nlog:x:4:www\n");
  json p = build_exec_process(spec, {{"Cmd", {"pwd"}}, {"WorkingDir", "/tmp"}}, &u);
  EXPECT_EQ(p["cwd"], "/tmp");
  EXPECT_EQ(p["user"], json({{"uid", 33}, {"gid", 33}, {"additionalGids", {4}}}));
  EXPECT_EQ(p["args"], json({"pwd"}));
}

}  // namespace
}  // namespace berth::agent::runtime
