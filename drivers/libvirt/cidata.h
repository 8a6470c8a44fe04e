#pragma once
// The NoCloud seed berth-os (and cloud-init images) read at boot: an ISO9660
// volume labelled CIDATA with meta-data and user-data.
#include <filesystem>
#include <string>
#include <vector>

namespace berth::virt {

struct CidataSpec {
  std::string instance_id;
  std::string hostname;
  std::vector<std::string> authorized_keys;  // "ssh-ed25519 AAAA... comment"
  std::string host_private_key;              // OpenSSH PEM; empty: the guest makes its own
  std::string host_public_key;
  // For cloud-init images: the blank data disk to format (ext4, once) and mount on
  // /var/lib/berth. berth-os finds its data disk itself and ignores this.
  std::string data_device;
  // Host folders berth-os mounts at boot (virtio-9p): the file berth-mounts, one
  // "TAG GUESTPATH" line each. cloud-init ignores it.
  struct Mount {
    std::string tag;
    std::string path;
  };
  std::vector<Mount> mounts;
};

std::string cidata_meta_data(const CidataSpec& spec);
std::string cidata_user_data(const CidataSpec& spec);   // #cloud-config
std::string cidata_mounts(const CidataSpec& spec);      // berth-mounts; "" when there are none

// Writes the ISO (Rock Ridge + Joliet, label CIDATA) atomically, mode 0600.
// Throws berth::Error naming `iso` when libisofs fails.
void write_cidata_iso(const std::filesystem::path& iso, const CidataSpec& spec);

}  // namespace berth::virt
