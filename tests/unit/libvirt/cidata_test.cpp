#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdlib>
#include <fstream>

#include "core/error.h"
#include "core/fs.h"
#include "drivers/libvirt/cidata.h"
#include "drivers/libvirt/image.h"
#include "tests/unit/libvirt/test_util.h"

namespace berth::virt {
namespace {

using testing::TempDir;

const char* kPrivate =
    "-----BEGIN OPENSSH PRIVATE KEY-----\n"
    "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n"
    "QyNTUxOQAAACBfakekeyfakekeyfakekeyfakekeyfakekeyfakekeyAAAAA==\n"
    "-----END OPENSSH PRIVATE KEY-----\n";

CidataSpec spec() {
  CidataSpec s;
  s.instance_id = "berth-dev-0123abcd";
  s.hostname = "dev";
  s.authorized_keys = {"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIClientKey berth@dev"};
  s.host_private_key = kPrivate;
  s.host_public_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHostKey root@dev\n";
  return s;
}

// berth-os's parser, from the source tree this test was built from.
std::filesystem::path cidata_awk() {
  return std::filesystem::path(BERTH_TEST_SOURCE_DIR) / "image/rootfs/etc/berth-os/cidata.awk";
}

int sh(const std::string& command) { return std::system(command.c_str()); }

TEST(Cidata, MetaDataNamesTheInstanceAndHost) {
  EXPECT_EQ(cidata_meta_data(spec()), "instance-id: berth-dev-0123abcd\nlocal-hostname: dev\n");
}

TEST(Cidata, UserDataIsCloudConfigForRoot) {
  const std::string u = cidata_user_data(spec());
  EXPECT_EQ(u.rfind("#cloud-config\n", 0), 0u) << u;
  EXPECT_NE(u.find("disable_root: false\n"), std::string::npos) << u;
  EXPECT_NE(u.find("ssh_authorized_keys:\n  - \"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIClientKey berth@dev\"\n"),
            std::string::npos)
      << u;
  EXPECT_NE(u.find("  ed25519_private: |\n    -----BEGIN OPENSSH PRIVATE KEY-----\n"), std::string::npos) << u;
}

TEST(Cidata, CloudImagesGetTheirDataDiskFormattedAndMounted) {
  EXPECT_EQ(cidata_user_data(spec()).find("mounts:"), std::string::npos);
  CidataSpec s = spec();
  s.data_device = "/dev/vdb";
  const std::string u = cidata_user_data(s);
  EXPECT_NE(u.find("fs_setup:\n  - label: berth-data\n    filesystem: ext4\n    device: /dev/vdb\n"),
            std::string::npos)
      << u;
  EXPECT_NE(u.find("mounts:\n  - [/dev/vdb, /var/lib/berth, ext4, "), std::string::npos) << u;
}

// The contract with the image: berth-os's own parser must get back exactly what we put in.
TEST(Cidata, BerthOsParserReadsBackKeysAndHostname) {
  ASSERT_TRUE(std::filesystem::exists(cidata_awk())) << cidata_awk();
  TempDir t;
  write_file_atomic(t.path / "meta-data", cidata_meta_data(spec()));
  CidataSpec with_extras = spec();
  with_extras.data_device = "/dev/vdb";  // cloud-init keys berth-os must skip
  write_file_atomic(t.path / "user-data", cidata_user_data(with_extras));
  std::filesystem::create_directory(t.path / "out");
  const std::string awk = "awk -v dir=" + (t.path / "out").string() + " -f " + cidata_awk().string();
  ASSERT_EQ(sh(awk + " -v mode=meta " + (t.path / "meta-data").string()), 0);
  ASSERT_EQ(sh(awk + " -v mode=user " + (t.path / "user-data").string()), 0);
  EXPECT_EQ(read_file(t.path / "out/instance-id"), "berth-dev-0123abcd\n");
  EXPECT_EQ(read_file(t.path / "out/local-hostname"), "dev\n");
  EXPECT_EQ(read_file(t.path / "out/hostname"), "dev\n");
  EXPECT_EQ(read_file(t.path / "out/authorized_keys"), spec().authorized_keys[0] + "\n");
  EXPECT_EQ(read_file(t.path / "out/ed25519_private"), kPrivate);
  EXPECT_EQ(read_file(t.path / "out/ed25519_public"), "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHostKey root@dev\n");
}

TEST(Cidata, IsoIsLabelledCidataAndHoldsBothFiles) {
  TempDir t;
  const auto iso = t.path / "cidata.iso";
  write_cidata_iso(iso, spec());
  struct stat st {};
  ASSERT_EQ(::stat(iso.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  // The primary volume descriptor: "CD001" at 32769, the volume id at 32808 (what berth-os's init reads).
  const std::string bytes = read_file(iso);
  ASSERT_GT(bytes.size(), 32840u);
  EXPECT_EQ(bytes.substr(32769, 5), "CD001");
  EXPECT_EQ(bytes.substr(32808, 6), "CIDATA");
  EXPECT_EQ(inspect_image(iso, "m").kind, ImageKind::Iso);

  if (sh("command -v xorriso >/dev/null") != 0) GTEST_SKIP() << "no xorriso to read the ISO back";
  const auto out = t.path / "x";
  ASSERT_EQ(sh("xorriso -osirrox on -indev " + iso.string() + " -extract / " + out.string() + " >/dev/null 2>&1"), 0);
  EXPECT_EQ(read_file(out / "meta-data"), cidata_meta_data(spec()));
  EXPECT_EQ(read_file(out / "user-data"), cidata_user_data(spec()));
}

TEST(Cidata, HostFoldersAreTagAndGuestPathLinesInBerthMounts) {
  TempDir t;
  const auto plain = t.path / "plain.iso";
  write_cidata_iso(plain, spec());
  EXPECT_EQ(cidata_mounts(spec()), "");
  CidataSpec s = spec();
  s.mounts = {{"berth0", "/home/me"}, {"berth1", "/mnt/my host"}};
  EXPECT_EQ(cidata_mounts(s), "berth0 /home/me\nberth1 /mnt/my host\n");
  // cloud-init's files stay as they were.
  EXPECT_EQ(cidata_user_data(s), cidata_user_data(spec()));
  const auto iso = t.path / "cidata.iso";
  write_cidata_iso(iso, s);
  if (sh("command -v xorriso >/dev/null") != 0) GTEST_SKIP() << "no xorriso to read the ISO back";
  ASSERT_EQ(sh("xorriso -osirrox on -indev " + iso.string() + " -extract / " + (t.path / "x").string() +
               " >/dev/null 2>&1"),
            0);
  EXPECT_EQ(read_file(t.path / "x/berth-mounts"), "berth0 /home/me\nberth1 /mnt/my host\n");
  ASSERT_EQ(sh("xorriso -osirrox on -indev " + plain.string() + " -extract / " + (t.path / "p").string() +
               " >/dev/null 2>&1"),
            0);
  EXPECT_FALSE(std::filesystem::exists(t.path / "p/berth-mounts")) << "no shares, no file";
}

TEST(Image, RecognizesQcow2IsoAndBerthOsDirs) {
  TempDir t;
  // A qcow2 header: magic, version 3, no backing file, cluster bits 16, size 2 GiB.
  std::string h("QFI\xfb\0\0\0\x03", 8);
  h += std::string(12, '\0') + std::string("\0\0\0\x10", 4);
  h += std::string("\0\0\0\0\x80\0\0\0", 8);
  h += std::string(100, '\0');
  write_file_atomic(t.path / "cloud.qcow2", h);
  auto q = inspect_image(t.path / "cloud.qcow2", "m");
  EXPECT_EQ(q.kind, ImageKind::Qcow2);
  EXPECT_EQ(q.virtual_size, 2ull << 30);

  std::filesystem::create_directory(t.path / "os");
  write_file_atomic(t.path / "os/vmlinuz", "k");
  write_file_atomic(t.path / "os/initrd", "i");
  write_file_atomic(t.path / "os/cmdline", "console=ttyS0 berth.x\n");
  auto os = inspect_image(t.path / "os", "m");
  EXPECT_EQ(os.kind, ImageKind::BerthOs);
  EXPECT_EQ(os.cmdline, "console=ttyS0 berth.x");
  EXPECT_EQ(os.kernel(), t.path / "os/vmlinuz");

  write_file_atomic(t.path / "junk.img", std::string(40000, 'x'));
  EXPECT_THROW(inspect_image(t.path / "junk.img", "m"), UserError);
  EXPECT_THROW(inspect_image(t.path / "missing.iso", "m"), UserError);
  std::filesystem::create_directory(t.path / "empty");
  EXPECT_THROW(inspect_image(t.path / "empty", "m"), UserError);
}

}  // namespace
}  // namespace berth::virt
