#pragma once
// Unpacking a layer tarball (any compression libarchive knows) into a directory
// usable as an overlayfs lowerdir, with docker's whiteouts converted:
//   .wh.NAME      -> NAME as a 0:0 character device
//   .wh..wh..opq  -> xattr trusted.overlay.opaque=y on its directory
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>

namespace berth::agent::image {

// Reads up to n bytes into buf; 0 at the end. Throws on error.
using ReadFn = std::function<std::size_t(char* buf, std::size_t n)>;
// Called with the bytes consumed from the (compressed) input so far.
using ProgressFn = std::function<void(std::uint64_t done)>;

struct UnpackedLayer {
  std::string diff_id;          // sha256 of the uncompressed tar
  std::uint64_t tar_size = 0;   // bytes of the uncompressed tar
  std::uint64_t size = 0;       // bytes of file content (docker's layer Size)
};

// `dest` must exist and be empty. Every entry is written beneath it without
// following a symlink (see beneath.h). Throws std::runtime_error on malformed
// input, and BreakoutError (beneath.h), naming the member, for an entry that
// names "..", crosses a symlink of the layer, or is a symlink pointing above
// `dest` (dockerd's "breakout" refusals).
UnpackedLayer unpack_layer(const ReadFn& input, const std::filesystem::path& dest,
                           const ProgressFn& progress = {});

// Decompresses (when compressed) `input` to `output`, returning the sha256 and
// size of the uncompressed bytes.
UnpackedLayer decompress_stream(const ReadFn& input,
                                const std::function<void(const char*, std::size_t)>& output);

// A ReadFn over a file. Throws when it cannot be opened.
ReadFn file_reader(const std::filesystem::path& path);

}  // namespace berth::agent::image
