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
};

std::string cidata_meta_data(const CidataSpec& spec);
std::string cidata_user_data(const CidataSpec& spec);   // #cloud-config

// Writes the ISO (Rock Ridge + Joliet, label CIDATA) atomically, mode 0600.
// Throws berth::Error naming `iso` when libisofs fails.
void write_cidata_iso(const std::filesystem::path& iso, const CidataSpec& spec);

}  // namespace berth::virt
