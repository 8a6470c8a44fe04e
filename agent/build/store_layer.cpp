#include "agent/build/store_layer.h"

#include "agent/image/digest.h"
#include "agent/image/fs_util.h"

namespace berth::agent::build {

image::LayerTar store_layer(image::ImageStore& store, const std::string& parent_chain_id,
                            const Backend::TarWriter& write) {
  image::TempFile tmp(store.root() / "tmp");
  image::Sha256 hash;
  image::LayerTar info;
  write([&](const char* p, std::size_t n) {
    hash.update(p, n);
    tmp.write(p, n);
    info.tar_size += n;
  });
  info.diff_id = hash.digest();
  const std::uint64_t size = tmp.size();
  if (!store.has_blob(info.diff_id)) tmp.commit(store.blob_path(info.diff_id));
  image::LayerInfo layer =
      store.add_layer(parent_chain_id, {info.diff_id, std::string(image::kMediaLayerTar), size}, info.diff_id);
  info.size = layer.size;
  return info;
}

}  // namespace berth::agent::build
