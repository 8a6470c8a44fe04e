#include "agent/runtime/security.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <set>

#include "agent/api/http.h"
#include "agent/runtime/oci_spec.h"

namespace berth::agent::runtime {
namespace {

using nlohmann::json;

SecurityOptions parse(std::vector<std::string> opts, bool apparmor = false) {
  return parse_security_opts({{"SecurityOpt", opts}}, apparmor);
}

unsigned status_of(const std::function<void()>& fn, std::string* message = nullptr) {
  try {
    fn();
  } catch (const api::HttpError& e) {
    if (message) *message = e.what();
    return e.status();
  }
  return 0;
}

// The calls a rule of the converted profile lets through with SCMP_ACT_ALLOW and no args.
std::set<std::string> allowed_outright(const json& oci) {
  std::set<std::string> out;
  for (const json& r : oci["syscalls"])
    if (r["action"] == "SCMP_ACT_ALLOW" && !r.contains("args"))
      for (const json& n : r["names"]) out.insert(n);
  return out;
}

Platform linux_6_1() {
  Platform p;
  p.kernel_major = 6;
  p.kernel_minor = 1;
  return p;
}

TEST(SecurityOptTest, DockerdsSpellings) {
  EXPECT_EQ(parse({}).seccomp, SecurityOptions::Seccomp::Default);
  EXPECT_EQ(parse({"seccomp=unconfined"}).seccomp, SecurityOptions::Seccomp::Unconfined);
  EXPECT_EQ(parse({"seccomp:unconfined"}).seccomp, SecurityOptions::Seccomp::Unconfined);
  EXPECT_EQ(parse({"seccomp=builtin"}).seccomp, SecurityOptions::Seccomp::Default);
  SecurityOptions custom = parse({R"(seccomp={"defaultAction":"SCMP_ACT_ALLOW"})"});
  EXPECT_EQ(custom.seccomp, SecurityOptions::Seccomp::Custom);
  EXPECT_EQ(custom.seccomp_profile["defaultAction"], "SCMP_ACT_ALLOW");
  EXPECT_EQ(parse({"no-new-privileges"}).no_new_privileges, true);
  EXPECT_EQ(parse({"no-new-privileges=false"}).no_new_privileges, false);
  EXPECT_EQ(parse({"no-new-privileges:true"}).no_new_privileges, true);
  EXPECT_FALSE(parse({}).no_new_privileges.has_value());
  EXPECT_TRUE(parse({"writable-cgroups=true"}).writable_cgroups);
  EXPECT_EQ(parse({"apparmor=unconfined"}).apparmor, "unconfined");
  EXPECT_EQ(parse({"apparmor=my-profile"}, true).apparmor, "my-profile");
  EXPECT_EQ(status_of([] { parse({"label=disable"}); }), 0u);
}

TEST(SecurityOptTest, UnknownOrInapplicableOptionsAreErrors) {
  std::string msg;
  EXPECT_EQ(status_of([] { parse({"bogus"}); }, &msg), 400u);
  EXPECT_EQ(msg, "invalid --security-opt 1: \"bogus\"");
  EXPECT_EQ(status_of([] { parse({"bogus=1"}); }, &msg), 400u);
  EXPECT_EQ(msg, "invalid --security-opt 2: \"bogus=1\"");
  EXPECT_EQ(status_of([] { parse({"no-new-privileges=maybe"}); }), 400u);
  EXPECT_EQ(status_of([] { parse({"seccomp="}); }), 400u);
  EXPECT_EQ(status_of([] { parse({"seccomp=/etc/profile.json"}); }, &msg), 400u);
  EXPECT_NE(msg.find("Decoding seccomp profile failed"), std::string::npos) << msg;
  EXPECT_EQ(status_of([] { parse({"apparmor=my-profile"}, false); }, &msg), 400u);
  EXPECT_NE(msg.find("AppArmor is not enabled"), std::string::npos) << msg;
  EXPECT_EQ(status_of([] { parse({"label=type:svirt_apache_t"}); }, &msg), 400u);
  EXPECT_NE(msg.find("SELinux"), std::string::npos) << msg;
  EXPECT_EQ(status_of([] { parse_security_opts({{"SecurityOpt", "seccomp=unconfined"}}, false); }),
            400u);
}

TEST(SeccompTest, TheDefaultProfileBlocksWhatDockerdsBlocks) {
  json oci = oci_seccomp(default_seccomp_profile(), default_capabilities(), linux_6_1());
  EXPECT_EQ(oci["defaultAction"], "SCMP_ACT_ERRNO");
  EXPECT_EQ(oci["defaultErrnoRet"], 1);
  EXPECT_EQ(oci["architectures"], json({"SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"}));
  auto allowed = allowed_outright(oci);
  for (const char* ok : {"read", "write", "execve", "openat", "ptrace", "arch_prctl", "chroot",
                         "socketpair"})
    EXPECT_TRUE(allowed.count(ok)) << ok;
  for (const char* blocked : {"unshare", "mount", "umount2", "keyctl", "add_key", "request_key",
                              "bpf", "userfaultfd", "kexec_load", "pivot_root", "setns",
                              "init_module", "reboot", "swapon", "perf_event_open",
                              "open_by_handle_at", "clock_settime", "syslog"})
    EXPECT_FALSE(allowed.count(blocked)) << blocked;
  // clone only without namespace flags; clone3 answers ENOSYS so libc falls back.
  bool clone_masked = false, clone3_enosys = false;
  for (const json& r : oci["syscalls"]) {
    if (r["names"] == json({"clone"}) && r.contains("args"))
      clone_masked = r["args"][0]["op"] == "SCMP_CMP_MASKED_EQ" && r["args"][0]["value"] == 0x7E020000;
    if (r["names"] == json({"clone3"}))
      clone3_enosys = r["action"] == "SCMP_ACT_ERRNO" && r["errnoRet"] == 38;
  }
  EXPECT_TRUE(clone_masked);
  EXPECT_TRUE(clone3_enosys);
}

TEST(SeccompTest, CapabilitiesOpenTheirCalls) {
  std::vector<std::string> caps = default_capabilities();
  caps.push_back("CAP_SYS_ADMIN");
  caps.push_back("CAP_SYS_TIME");
  auto allowed = allowed_outright(oci_seccomp(default_seccomp_profile(), caps, linux_6_1()));
  for (const char* now_ok : {"mount", "unshare", "setns", "clone", "clock_settime"})
    EXPECT_TRUE(allowed.count(now_ok)) << now_ok;
  EXPECT_FALSE(allowed.count("keyctl"));  // no capability opens keyctl
  // With CAP_SYS_ADMIN the masked clone rule and the clone3 ENOSYS rule are left out.
  for (const json& r : oci_seccomp(default_seccomp_profile(), caps, linux_6_1())["syscalls"])
    EXPECT_NE(r["action"], "SCMP_ACT_ERRNO") << r.dump();
}

TEST(SeccompTest, ArchesAndKernelVersionsSelectRules) {
  Platform old = linux_6_1();
  old.kernel_major = 4;
  old.kernel_minor = 4;
  auto allowed = allowed_outright(oci_seccomp(default_seccomp_profile(), default_capabilities(), old));
  EXPECT_FALSE(allowed.count("ptrace"));  // minKernel 4.8
  Platform arm = linux_6_1();
  arm.seccomp_arch = "SCMP_ARCH_AARCH64";
  arm.go_arch = "arm64";
  json oci = oci_seccomp(default_seccomp_profile(), default_capabilities(), arm);
  EXPECT_EQ(oci["architectures"], json({"SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"}));
  allowed = allowed_outright(oci);
  EXPECT_FALSE(allowed.count("arch_prctl"));
  EXPECT_TRUE(allowed.count("set_tls"));
}

TEST(SeccompTest, ACustomProfileIsCheckedAndConverted) {
  json profile = {{"defaultAction", "SCMP_ACT_ALLOW"},
                  {"architectures", {"SCMP_ARCH_X86_64"}},
                  {"syscalls",
                   {{{"name", "mkdir"}, {"action", "SCMP_ACT_ERRNO"}, {"errnoRet", 13}},
                    {{"names", {"chmod"}},
                     {"action", "SCMP_ACT_ERRNO"},
                     {"args", {{{"index", 1}, {"value", 511}, {"op", "SCMP_CMP_EQ"}}}}}}}};
  json oci = oci_seccomp(profile, default_capabilities(), linux_6_1());
  EXPECT_EQ(oci["architectures"], json({"SCMP_ARCH_X86_64"}));
  ASSERT_EQ(oci["syscalls"].size(), 2u);
  EXPECT_EQ(oci["syscalls"][0], json({{"names", {"mkdir"}}, {"action", "SCMP_ACT_ERRNO"}, {"errnoRet", 13}}));
  EXPECT_EQ(oci["syscalls"][1]["args"][0]["value"], 511);

  std::string msg;
  auto bad = [&](json p) {
    return status_of([&] { oci_seccomp(p, default_capabilities(), linux_6_1()); }, &msg);
  };
  EXPECT_EQ(bad(json::array()), 400u);
  EXPECT_EQ(bad({{"syscalls", json::array()}}), 400u);  // no defaultAction
  EXPECT_NE(msg.find("defaultAction"), std::string::npos) << msg;
  EXPECT_EQ(bad({{"defaultAction", "SCMP_ACT_ALLOW"}, {"syscalls", {{{"names", {"x"}}}}}}), 400u);
  EXPECT_NE(msg.find("syscalls[0]"), std::string::npos) << msg;
  EXPECT_EQ(bad({{"defaultAction", "SCMP_ACT_ALLOW"}, {"architectures", {"a"}}, {"archMap", json::array()}}),
            400u);
  EXPECT_EQ(bad({{"defaultAction", "SCMP_ACT_ALLOW"},
                 {"syscalls", {{{"names", {"x"}}, {"action", "SCMP_ACT_ALLOW"},
                                {"includes", {{"minKernel", "four"}}}}}}}),
            400u);
}

}  // namespace
}  // namespace berth::agent::runtime
