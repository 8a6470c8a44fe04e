#include "agent/runtime/oci_spec.h"

#include <gtest/gtest.h>

#include <csignal>
#include <set>

#include "agent/api/http.h"

namespace berth::agent::runtime {
namespace {

using nlohmann::json;

const json kImage = {{"Env", {"PATH=/usr/bin:/bin", "LANG=C"}},
                     {"Cmd", {"sh"}},
                     {"WorkingDir", "/srv"},
                     {"ExposedPorts", {{"80/tcp", json::object()}}},
                     {"Volumes", {{"/data", json::object()}}},
                     {"Labels", {{"a", "image"}, {"b", "image"}}},
                     {"StopSignal", "SIGQUIT"}};

TEST(MergeImageConfigTest, BodyWinsAndImageFillsTheRest) {
  json body = {{"Image", "x"},
               {"Env", {"LANG=en", "EXTRA=1"}},
               {"Labels", {{"b", "body"}}},
               {"ExposedPorts", {{"443/tcp", json::object()}}}};
  json c = merge_image_config(body, kImage);
  EXPECT_EQ(c["Env"], json({"LANG=en", "EXTRA=1", "PATH=/usr/bin:/bin"}));
  EXPECT_EQ(c["Cmd"], json({"sh"}));
  EXPECT_EQ(c["WorkingDir"], "/srv");
  EXPECT_EQ(c["StopSignal"], "SIGQUIT");
  EXPECT_EQ(c["Labels"], json({{"a", "image"}, {"b", "body"}}));
  EXPECT_TRUE(c["ExposedPorts"].contains("80/tcp"));
  EXPECT_TRUE(c["ExposedPorts"].contains("443/tcp"));
  EXPECT_TRUE(c["Volumes"].contains("/data"));
  EXPECT_EQ(c["Tty"], false);
}

TEST(MergeImageConfigTest, EntrypointFromTheBodyDropsTheImagesCmd) {
  json image = {{"Entrypoint", {"/entry"}}, {"Cmd", {"default"}}};
  json c = merge_image_config({{"Entrypoint", {"/mine"}}}, image);
  EXPECT_EQ(c["Entrypoint"], json({"/mine"}));
  EXPECT_TRUE(c["Cmd"].is_null());
  c = merge_image_config({{"Cmd", {"arg"}}}, image);
  EXPECT_EQ(c["Entrypoint"], json({"/entry"}));
  EXPECT_EQ(c["Cmd"], json({"arg"}));
  c = merge_image_config({{"Entrypoint", {""}}, {"Cmd", {"ls"}}}, image);
  EXPECT_EQ(c["Entrypoint"], json::array());
  EXPECT_EQ(c["Cmd"], json({"ls"}));
}

TEST(ParseBindTest, BindsVolumesAndErrors) {
  MountRequest b = parse_bind("/host:/ctr:ro");
  EXPECT_EQ(b.kind, MountRequest::Kind::Bind);
  EXPECT_EQ(b.source, "/host");
  EXPECT_EQ(b.destination, "/ctr");
  EXPECT_TRUE(b.read_only);
  EXPECT_EQ(b.propagation, "rprivate");
  MountRequest v = parse_bind("data:/var/lib/data");
  EXPECT_EQ(v.kind, MountRequest::Kind::Volume);
  EXPECT_EQ(v.source, "data");
  EXPECT_FALSE(v.read_only);
  MountRequest anon = parse_bind("/only");
  EXPECT_EQ(anon.kind, MountRequest::Kind::Volume);
  EXPECT_TRUE(anon.source.empty());
  try {
    parse_bind("a:b:c:d");
    FAIL();
  } catch (const api::HttpError& e) {
    EXPECT_EQ(e.status(), 400u);
    EXPECT_EQ(std::string(e.what()), "invalid volume specification: 'a:b:c:d'");
  }
  EXPECT_THROW(parse_bind("/x:relative"), api::HttpError);
  EXPECT_THROW(parse_bind("/x:/y:bogus"), api::HttpError);
  EXPECT_THROW(parse_bind("/x:/"), api::HttpError);
}

TEST(CollectMountsTest, ImageVolumesBecomeAnonymousUnlessCovered) {
  json config = {{"Volumes", {{"/data", json::object()}, {"/cache", json::object()}}}};
  json hc = {{"Binds", {"named:/data"}}};
  auto mounts = collect_mounts(config, hc);
  ASSERT_EQ(mounts.size(), 2u);
  EXPECT_EQ(mounts[0].source, "named");
  EXPECT_EQ(mounts[1].destination, "/cache");
  EXPECT_TRUE(mounts[1].source.empty());
  EXPECT_THROW(collect_mounts(json::object(), {{"Binds", {"a:/x", "b:/x"}}}), api::HttpError);
  auto m = collect_mounts(json::object(),
                          {{"Mounts", {{{"Type", "tmpfs"}, {"Target", "/t"}}}}});
  EXPECT_EQ(m[0].kind, MountRequest::Kind::Tmpfs);
  EXPECT_THROW(collect_mounts(json::object(), {{"Mounts", {{{"Type", "nfs"}, {"Target", "/t"}}}}}),
               api::HttpError);
}

// An image config is data from a registry: its Volumes keys are container paths
// only. "/:/host" once bind-mounted the machine's whole / into the container.
TEST(CollectMountsTest, HostileImageVolumesNeverMountTheHost) {
  json image = {{"Volumes", {{"/:/host", json::object()},
                             {"/etc:/x:rw", json::object()},
                             {"/data/../data/", json::object()}}}};
  json config = merge_image_config({{"Image", "x"}}, image);
  auto mounts = collect_mounts(config, json::object());
  ASSERT_EQ(mounts.size(), 3u);
  std::set<std::string> dests;
  for (const MountRequest& m : mounts) {
    EXPECT_EQ(m.kind, MountRequest::Kind::Volume) << m.destination;
    EXPECT_TRUE(m.source.empty()) << m.destination << " would mount " << m.source;
    dests.insert(m.destination);
  }
  EXPECT_EQ(dests, (std::set<std::string>{"/:/host", "/etc:/x:rw", "/data"}));
}

TEST(CollectMountsTest, ImageVolumesMustBeAbsoluteAndNotTheRoot) {
  EXPECT_THROW(collect_mounts({{"Volumes", {{"relative", json::object()}}}}, json::object()),
               api::HttpError);
  EXPECT_THROW(collect_mounts({{"Volumes", {{"named:/y", json::object()}}}}, json::object()),
               api::HttpError);
  EXPECT_THROW(collect_mounts({{"Volumes", {{"/", json::object()}}}}, json::object()),
               api::HttpError);
  EXPECT_THROW(collect_mounts({{"Volumes", {{"/a/..", json::object()}}}}, json::object()),
               api::HttpError);
  // A bind at the same (cleaned) path covers the image's volume.
  auto m = collect_mounts({{"Volumes", {{"/data/", json::object()}}}}, {{"Binds", {"/srv:/data"}}});
  ASSERT_EQ(m.size(), 1u);
  EXPECT_EQ(m[0].kind, MountRequest::Kind::Bind);
}

const char* kPasswd =
    "root:x:0:0:root:/root:/bin/sh\n"
    "# comment\n"
    "app:x:1000:1001:app:/home/app:/bin/sh\n"
    "broken line\n";
const char* kGroup = "root:x:0:\napp:x:1001:\nextra:x:2000:app,other\nwheel:x:10:other\n";

TEST(ResolveUserTest, NamesNumbersAndGroups) {
  ResolvedUser root = resolve_user("", kPasswd, kGroup);
  EXPECT_EQ(root.uid, 0u);
  EXPECT_EQ(root.home, "/root");
  ResolvedUser app = resolve_user("app", kPasswd, kGroup);
  EXPECT_EQ(app.uid, 1000u);
  EXPECT_EQ(app.gid, 1001u);
  EXPECT_EQ(app.additional_gids, std::vector<std::uint32_t>{2000});
  EXPECT_EQ(app.home, "/home/app");
  ResolvedUser by_uid = resolve_user("1000:wheel", kPasswd, kGroup);
  EXPECT_EQ(by_uid.uid, 1000u);
  EXPECT_EQ(by_uid.gid, 10u);
  ResolvedUser unknown_uid = resolve_user("4242:4343", kPasswd, kGroup);
  EXPECT_EQ(unknown_uid.uid, 4242u);
  EXPECT_EQ(unknown_uid.gid, 4343u);
  EXPECT_EQ(unknown_uid.home, "/");
  EXPECT_EQ(resolve_user("4242", "", "").gid, 0u);
  try {
    resolve_user("nobody", kPasswd, kGroup);
    FAIL();
  } catch (const api::HttpError& e) {
    EXPECT_EQ(std::string(e.what()), "unable to find user nobody: no matching entries in passwd file");
  }
  EXPECT_THROW(resolve_user("app:nogroup", kPasswd, kGroup), api::HttpError);
}

SpecInput sample_input() {
  SpecInput in;
  in.id = "abc";
  in.config = merge_image_config({{"Cmd", {"echo", "hi"}},
                                  {"Env", {"FOO=bar", "PATH=/custom"}},
                                  {"Tty", true},
                                  {"WorkingDir", "/work"}},
                                 json::object());
  in.host_config = {{"Memory", 64 * 1024 * 1024},
                    {"NanoCpus", 1500000000},
                    {"PidsLimit", 50},
                    {"CapAdd", {"NET_ADMIN"}},
                    {"CapDrop", {"MKNOD"}},
                    {"ConsoleSize", {30, 100}},
                    {"Sysctls", {{"net.ipv4.ip_forward", "1"}}}};
  in.rootfs = "/var/lib/berth/containers/abc/rootfs";
  in.hostname = "abc123";
  in.user.uid = 1000;
  in.user.gid = 1001;
  in.user.additional_gids = {2000};
  in.user.home = "/home/app";
  in.netns_path = "/run/berth/netns/abc";
  in.extra_mounts = {{"/etc/hosts", "bind", "/c/hosts", {"rbind", "rprivate"}},
                     {"/dev/shm", "tmpfs", "tmpfs", {"size=1m"}}};
  in.cgroups_path = "/berth/abc";
  return in;
}

TEST(BuildOciSpecTest, ProcessFields) {
  json s = build_oci_spec(sample_input());
  EXPECT_EQ(s["ociVersion"], "1.0.2");
  const json& p = s["process"];
  EXPECT_EQ(p["args"], json({"echo", "hi"}));
  EXPECT_EQ(p["terminal"], true);
  EXPECT_EQ(p["cwd"], "/work");
  EXPECT_EQ(p["user"], json({{"uid", 1000}, {"gid", 1001}, {"additionalGids", {2000}}}));
  EXPECT_EQ(p["env"], json({"PATH=/custom", "HOSTNAME=abc123", "TERM=xterm", "FOO=bar",
                            "HOME=/home/app"}));
  EXPECT_EQ(p["consoleSize"], json({{"height", 30}, {"width", 100}}));
  auto caps = p["capabilities"]["bounding"].get<std::vector<std::string>>();
  EXPECT_NE(std::find(caps.begin(), caps.end(), "CAP_NET_ADMIN"), caps.end());
  EXPECT_EQ(std::find(caps.begin(), caps.end(), "CAP_MKNOD"), caps.end());
  EXPECT_NE(std::find(caps.begin(), caps.end(), "CAP_KILL"), caps.end());
  EXPECT_EQ(std::find(caps.begin(), caps.end(), "CAP_SYS_ADMIN"), caps.end());
  EXPECT_EQ(p["capabilities"]["effective"], p["capabilities"]["bounding"]);
  EXPECT_EQ(p["rlimits"][0]["type"], "RLIMIT_NOFILE");
  EXPECT_EQ(s["root"], json({{"path", "/var/lib/berth/containers/abc/rootfs"}, {"readonly", false}}));
  EXPECT_EQ(s["hostname"], "abc123");
}

TEST(BuildOciSpecTest, MountsNamespacesAndResources) {
  json s = build_oci_spec(sample_input());
  std::map<std::string, json> mounts;
  for (const json& m : s["mounts"]) mounts[m["destination"]] = m;
  EXPECT_EQ(mounts["/proc"]["type"], "proc");
  EXPECT_EQ(mounts["/dev/pts"]["options"],
            json({"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}));
  EXPECT_EQ(mounts["/sys"]["options"], json({"nosuid", "noexec", "nodev", "ro"}));
  EXPECT_EQ(mounts["/sys/fs/cgroup"]["type"], "cgroup");
  EXPECT_EQ(mounts["/dev/mqueue"]["type"], "mqueue");
  EXPECT_EQ(mounts["/etc/hosts"]["source"], "/c/hosts");
  EXPECT_EQ(mounts["/dev/shm"]["options"], json({"size=1m"}));  // replaced the default
  EXPECT_EQ(std::count_if(s["mounts"].begin(), s["mounts"].end(),
                          [](const json& m) { return m["destination"] == "/dev/shm"; }),
            1);

  const json& l = s["linux"];
  json ns = l["namespaces"];
  EXPECT_EQ(ns, json({{{"type", "pid"}},
                      {{"type", "ipc"}},
                      {{"type", "uts"}},
                      {{"type", "mount"}},
                      {{"type", "network"}, {"path", "/run/berth/netns/abc"}},
                      {{"type", "cgroup"}}}));
  EXPECT_EQ(l["cgroupsPath"], "/berth/abc");
  EXPECT_EQ(l["resources"]["memory"]["limit"], 64 * 1024 * 1024);
  EXPECT_FALSE(l["resources"]["memory"].contains("swap"));
  EXPECT_EQ(l["resources"]["cpu"]["quota"], 150000);
  EXPECT_EQ(l["resources"]["cpu"]["period"], 100000);
  EXPECT_EQ(l["resources"]["pids"]["limit"], 50);
  EXPECT_EQ(l["resources"]["devices"][0], json({{"allow", false}, {"access", "rwm"}}));
  EXPECT_EQ(l["sysctl"]["net.ipv4.ip_forward"], "1");
  auto masked = l["maskedPaths"].get<std::vector<std::string>>();
  EXPECT_NE(std::find(masked.begin(), masked.end(), "/proc/kcore"), masked.end());
  auto ro = l["readonlyPaths"].get<std::vector<std::string>>();
  EXPECT_NE(std::find(ro.begin(), ro.end(), "/proc/sys"), ro.end());
}

TEST(BuildOciSpecTest, HostNetworkPrivilegedAndNoCommand) {
  SpecInput in = sample_input();
  in.netns_path.reset();
  in.host_config = {{"Privileged", true}, {"ReadonlyRootfs", true}, {"PidMode", "host"}};
  json s = build_oci_spec(in);
  for (const json& n : s["linux"]["namespaces"]) {
    EXPECT_NE(n["type"], "network");
    EXPECT_NE(n["type"], "pid");
  }
  EXPECT_FALSE(s["linux"].contains("maskedPaths"));
  EXPECT_EQ(s["root"]["readonly"], true);
  auto caps = s["process"]["capabilities"]["bounding"].get<std::vector<std::string>>();
  EXPECT_NE(std::find(caps.begin(), caps.end(), "CAP_SYS_ADMIN"), caps.end());
  EXPECT_EQ(s["linux"]["resources"]["devices"], json::array({{{"allow", true}, {"access", "rwm"}}}));
  in.config["Cmd"] = nullptr;
  EXPECT_THROW(build_oci_spec(in), api::HttpError);
}

TEST(BuildOciSpecTest, ConfinementFromTheInput) {
  SpecInput in = sample_input();
  json s = build_oci_spec(in);
  EXPECT_EQ(s["process"]["noNewPrivileges"], false);
  EXPECT_FALSE(s["linux"].contains("seccomp"));
  EXPECT_FALSE(s["process"].contains("apparmorProfile"));
  in.seccomp = json{{"defaultAction", "SCMP_ACT_ERRNO"}};
  in.apparmor_profile = "berth-test";
  in.no_new_privileges = true;
  in.writable_cgroups = true;
  s = build_oci_spec(in);
  EXPECT_EQ(s["linux"]["seccomp"]["defaultAction"], "SCMP_ACT_ERRNO");
  EXPECT_EQ(s["process"]["apparmorProfile"], "berth-test");
  EXPECT_EQ(s["process"]["noNewPrivileges"], true);
  for (const json& m : s["mounts"]) {
    if (m["destination"] == "/sys/fs/cgroup") {
      EXPECT_EQ(m["options"].back(), "rw");
    }
  }
}

TEST(BuildOciSpecTest, MaskedAndReadonlyPathsFromTheHostConfig) {
  SpecInput in = sample_input();
  in.host_config["MaskedPaths"] = json::array();  // --security-opt systempaths=unconfined
  in.host_config["ReadonlyPaths"] = {"/proc/sys"};
  json s = build_oci_spec(in);
  EXPECT_EQ(s["linux"]["maskedPaths"], json::array());
  EXPECT_EQ(s["linux"]["readonlyPaths"], json({"/proc/sys"}));
  in.host_config["MaskedPaths"] = nullptr;  // absent: dockerd's defaults
  s = build_oci_spec(in);
  EXPECT_GT(s["linux"]["maskedPaths"].size(), 5u);
}

TEST(BuildExecProcessTest, InheritsTheContainerAndOverrides) {
  json spec = build_oci_spec(sample_input());
  json p = build_exec_process(spec, {{"Cmd", {"ls", "-l"}}, {"Env", {"FOO=baz"}}, {"Tty", false}},
                              nullptr);
  EXPECT_EQ(p["args"], json({"ls", "-l"}));
  EXPECT_EQ(p["terminal"], false);
  EXPECT_EQ(p["cwd"], "/work");
  EXPECT_EQ(p["user"]["uid"], 1000);
  auto env = p["env"].get<std::vector<std::string>>();
  EXPECT_NE(std::find(env.begin(), env.end(), "FOO=baz"), env.end());
  EXPECT_EQ(std::find(env.begin(), env.end(), "FOO=bar"), env.end());
  ResolvedUser root;
  p = build_exec_process(spec, {{"Cmd", {"id"}}, {"WorkingDir", "/tmp"}}, &root);
  EXPECT_EQ(p["user"], json({{"uid", 0}, {"gid", 0}}));
  EXPECT_EQ(p["cwd"], "/tmp");
  EXPECT_THROW(build_exec_process(spec, {{"Cmd", json::array()}}, nullptr), api::HttpError);
}

TEST(ParseSignalTest, NamesNumbersAndRealtime) {
  EXPECT_EQ(parse_signal("SIGTERM"), SIGTERM);
  EXPECT_EQ(parse_signal("kill"), SIGKILL);
  EXPECT_EQ(parse_signal("9"), 9);
  EXPECT_EQ(parse_signal("RTMIN+1"), SIGRTMIN + 1);
  EXPECT_FALSE(parse_signal("SIGNOPE"));
  EXPECT_FALSE(parse_signal("0"));
  EXPECT_FALSE(parse_signal(""));
}

}  // namespace
}  // namespace berth::agent::runtime
