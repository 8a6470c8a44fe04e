#pragma once
// A layer tarball written by a TarWriter, stored in the image store on top of
// a parent chain: the blob (uncompressed, its digest is the diff id) and the
// unpacked layer. One place for the builder's steps and for docker commit.
#include <string>

#include "agent/build/backend.h"
#include "agent/image/image_store.h"

namespace berth::agent::build {

// `parent_chain_id` is the chain id of the layer below ("" for none).
// Throws std::runtime_error when the tar cannot be written or unpacked.
image::LayerTar store_layer(image::ImageStore& store, const std::string& parent_chain_id,
                            const Backend::TarWriter& write);

}  // namespace berth::agent::build
