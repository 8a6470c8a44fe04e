#include "agent/image/image_store.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <shared_mutex>
#include <sstream>
#include <stdexcept>

#include "agent/image/digest.h"
#include "agent/image/fs_util.h"

namespace berth::agent::image {
namespace fs = std::filesystem;
using nlohmann::json;

struct ImageStore::Impl {
  fs::path root;
  mutable std::shared_mutex mu;  // images, refs, tag_times
  std::map<std::string, ImageRecord> images;    // id -> record (without refs)
  std::map<std::string, std::string> refs;      // full reference string -> id
  std::map<std::string, std::int64_t> tag_times;  // id -> unix ns
  std::function<bool(const std::string&)> in_use;
  std::function<std::string(const std::string&)> in_use_by;

  std::mutex keys_mu;  // per-chain locks for unpacking
  std::map<std::string, std::weak_ptr<std::mutex>> key_locks;

  fs::path tmp() const { return root / "tmp"; }
  fs::path layer_dir(std::string_view chain) const {
    return root / "layers" / "sha256" / std::string(digest_hex(chain));
  }
  fs::path image_file(std::string_view id) const {
    return root / "images" / "sha256" / std::string(digest_hex(id));
  }

  std::shared_ptr<std::mutex> key_lock(const std::string& key) {
    std::lock_guard lock(keys_mu);
    auto& weak = key_locks[key];
    auto strong = weak.lock();
    if (!strong) {
      strong = std::make_shared<std::mutex>();
      weak = strong;
    }
    for (auto it = key_locks.begin(); it != key_locks.end();)
      it = it->second.expired() ? key_locks.erase(it) : std::next(it);
    return strong;
  }

  std::optional<LayerInfo> read_layer(std::string_view chain) const {
    fs::path dir = layer_dir(chain);
    auto text = read_file(dir / "layer.json");
    if (!text) return std::nullopt;
    json meta = json::parse(*text);
    LayerInfo info;
    info.chain_id = std::string(chain);
    info.diff_id = meta.value("diff_id", "");
    info.parent = meta.value("parent", "");
    info.size = meta.value("size", std::uint64_t{0});
    info.tar_size = meta.value("tar_size", std::uint64_t{0});
    const json blobs = meta.value("blobs", json::array());
    for (const auto& b : blobs)
      info.blobs.push_back({b.value("digest", ""), b.value("mediaType", ""), b.value("size", std::uint64_t{0})});
    info.dir = dir / "diff";
    return info;
  }

  static json layer_json(const LayerInfo& info) {
    json blobs = json::array();
    for (const auto& b : info.blobs)
      blobs.push_back({{"digest", b.digest}, {"mediaType", b.media_type}, {"size", b.size}});
    return {{"diff_id", info.diff_id}, {"parent", info.parent}, {"size", info.size},
            {"tar_size", info.tar_size}, {"blobs", blobs}};
  }

  ImageRecord make_record(const std::string& id, const std::string& bytes) const {
    ImageRecord rec;
    rec.id = id;
    rec.config = json::parse(bytes);
    std::string parent;
    if (rec.config.contains("rootfs") && rec.config["rootfs"].contains("diff_ids")) {
      for (const auto& d : rec.config["rootfs"]["diff_ids"]) {
        std::string diff = d.get<std::string>();
        if (!is_sha256_digest(diff)) throw std::runtime_error("image config has an invalid diff id");
        parent = chain_id(parent, diff);
        rec.diff_ids.push_back(diff);
        rec.chain_ids.push_back(parent);
      }
    }
    for (const auto& chain : rec.chain_ids)
      if (auto layer = read_layer(chain)) rec.size += layer->size;
    return rec;
  }

  // Caller holds mu.
  void save_refs() const {
    json repos = json::object();
    for (const auto& [ref, id] : refs) {
      Reference r = parse_reference(ref);
      repos[r.name()][ref] = id;
    }
    json times = json::object();
    for (const auto& [id, t] : tag_times) times[id] = t;
    json doc = {{"Repositories", repos}, {"LastTagTime", times}};
    write_file_atomic(root / "repositories.json", doc.dump(), tmp());
  }

  // Caller holds mu. Completes a record with its references.
  ImageRecord with_refs(ImageRecord rec) const {
    for (const auto& [ref, id] : refs) {
      if (id != rec.id) continue;
      Reference r = parse_reference(ref);
      (r.digest.empty() ? rec.tags : rec.digests).push_back(r);
    }
    auto t = tag_times.find(rec.id);
    rec.last_tag_time = t == tag_times.end() ? 0 : t->second;
    return rec;
  }

  // Caller holds mu.
  std::optional<std::string> find_locked(std::string_view text) const {
    if (text.empty()) return std::nullopt;
    if (is_sha256_digest(text)) {
      if (images.count(std::string(text))) return std::string(text);
      return std::nullopt;
    }
    try {
      Reference r = parse_reference_default_tag(text);
      std::string key = r.digest.empty() ? r.string() : r.name() + "@" + r.digest;
      if (auto it = refs.find(key); it != refs.end()) return it->second;
    } catch (const std::invalid_argument&) {
    }
    std::string_view prefix = text;
    if (prefix.substr(0, 7) == "sha256:") prefix = prefix.substr(7);
    if (!is_hex(prefix)) return std::nullopt;
    std::optional<std::string> found;
    for (const auto& [id, rec] : images) {
      if (digest_hex(id).substr(0, prefix.size()) != prefix) continue;
      if (found) return std::nullopt;  // ambiguous
      found = id;
    }
    return found;
  }

  std::string using_container(const std::string& id) const {
    if (in_use_by) return in_use_by(id);
    if (in_use && in_use(id)) return "?";
    return {};
  }

  // Caller holds mu exclusively. Deletes the image and the layers (and their
  // blobs) no other image uses.
  std::vector<std::string> delete_image(const std::string& id) {
    std::vector<std::string> deleted{id};
    auto it = images.find(id);
    if (it == images.end()) return deleted;
    ImageRecord rec = it->second;
    images.erase(it);
    tag_times.erase(id);
    std::error_code ec;
    fs::remove(image_file(id), ec);
    std::set<std::string> kept_chains;
    for (const auto& [other_id, other] : images)
      kept_chains.insert(other.chain_ids.begin(), other.chain_ids.end());
    std::set<std::string> kept_blobs;
    std::vector<LayerInfo> doomed;
    for (auto chain = rec.chain_ids.rbegin(); chain != rec.chain_ids.rend(); ++chain) {
      if (kept_chains.count(*chain)) continue;
      if (auto info = read_layer(*chain)) doomed.push_back(*info);
    }
    for (const auto& chain : kept_chains)
      if (auto info = read_layer(chain))
        for (const auto& b : info->blobs) kept_blobs.insert(b.digest);
    for (const auto& info : doomed) {
      fs::path gone = tmp() / ("deleted-" + std::string(digest_hex(info.chain_id)) + "-" + random_suffix());
      fs::rename(layer_dir(info.chain_id), gone, ec);
      fs::remove_all(ec ? layer_dir(info.chain_id) : gone, ec);
      for (const auto& b : info.blobs)
        if (!kept_blobs.count(b.digest)) fs::remove(root / "blobs" / "sha256" / std::string(digest_hex(b.digest)), ec);
      deleted.push_back(info.chain_id);
    }
    return deleted;
  }
};

ImageStore::ImageStore(fs::path root) : impl_(std::make_unique<Impl>()) {
  fs::create_directories(root);
  impl_->root = fs::canonical(root);
  auto& r = impl_->root;
  fs::remove_all(r / "tmp");
  for (auto sub : {"tmp", "blobs/sha256", "layers/sha256", "images/sha256"})
    fs::create_directories(r / sub);
  if (auto text = read_file(r / "repositories.json")) {
    json doc = json::parse(*text, nullptr, false);
    if (doc.is_object()) {
      const json repos = doc.value("Repositories", json::object());
      const json times = doc.value("LastTagTime", json::object());
      for (const auto& [name, entries] : repos.items())
        for (const auto& [ref, id] : entries.items()) impl_->refs[ref] = id.get<std::string>();
      for (const auto& [id, t] : times.items())
        impl_->tag_times[id] = t.get<std::int64_t>();
    }
  }
  for (const auto& entry : fs::directory_iterator(r / "images" / "sha256")) {
    std::string id = "sha256:" + entry.path().filename().string();
    if (!is_sha256_digest(id)) continue;
    try {
      if (auto bytes = read_file(entry.path())) impl_->images[id] = impl_->make_record(id, *bytes);
    } catch (const std::exception&) {
      // A damaged config: skip it rather than refuse to start.
    }
  }
  for (auto it = impl_->refs.begin(); it != impl_->refs.end();)
    it = impl_->images.count(it->second) ? std::next(it) : impl_->refs.erase(it);
}

ImageStore::~ImageStore() = default;

const fs::path& ImageStore::root() const { return impl_->root; }

void ImageStore::set_in_use_check(std::function<bool(const std::string&)> in_use) {
  std::unique_lock lock(impl_->mu);
  impl_->in_use = std::move(in_use);
}

void ImageStore::set_in_use_lookup(std::function<std::string(const std::string&)> lookup) {
  std::unique_lock lock(impl_->mu);
  impl_->in_use_by = std::move(lookup);
}

std::string ImageStore::container_using(const std::string& id) const {
  std::shared_lock lock(impl_->mu);
  return impl_->using_container(id);
}

std::size_t ImageStore::count() const {
  std::shared_lock lock(impl_->mu);
  return impl_->images.size();
}

std::optional<std::string> ImageStore::find(std::string_view reference) const {
  std::shared_lock lock(impl_->mu);
  return impl_->find_locked(reference);
}

std::optional<ResolvedImage> ImageStore::resolve(std::string_view reference) const {
  std::shared_lock lock(impl_->mu);
  auto id = impl_->find_locked(reference);
  if (!id) return std::nullopt;
  const ImageRecord& rec = impl_->images.at(*id);
  ResolvedImage out;
  out.id = *id;
  out.config = rec.config;
  try {
    out.reference = parse_reference_default_tag(reference).familiar_string();
    if (is_hex(reference) || reference.substr(0, 7) == "sha256:") out.reference = *id;
  } catch (const std::invalid_argument&) {
    out.reference = *id;
  }
  for (const auto& chain : rec.chain_ids) out.layers.push_back(impl_->layer_dir(chain) / "diff");
  return out;
}

std::optional<ImageRecord> ImageStore::image(const std::string& id) const {
  std::shared_lock lock(impl_->mu);
  auto it = impl_->images.find(id);
  if (it == impl_->images.end()) return std::nullopt;
  return impl_->with_refs(it->second);
}

std::vector<ImageRecord> ImageStore::images() const {
  std::shared_lock lock(impl_->mu);
  std::vector<ImageRecord> out;
  for (const auto& [id, rec] : impl_->images) out.push_back(impl_->with_refs(rec));
  return out;
}

std::string ImageStore::add_image(const std::string& config_bytes) {
  std::string id = sha256_digest(config_bytes);
  ImageRecord rec = impl_->make_record(id, config_bytes);
  for (const auto& chain : rec.chain_ids)
    if (!fs::exists(impl_->layer_dir(chain) / "layer.json"))
      throw std::runtime_error("image " + short_id(id) + " lacks layer " + chain);
  std::unique_lock lock(impl_->mu);
  if (!impl_->images.count(id)) {
    write_file_atomic(impl_->image_file(id), config_bytes, impl_->tmp());
    impl_->images[id] = std::move(rec);
  }
  return id;
}

void ImageStore::tag(const std::string& id, const Reference& ref) {
  std::unique_lock lock(impl_->mu);
  if (!impl_->images.count(id)) throw NoSuchImage("No such image: " + id);
  std::string key = ref.digest.empty() ? ref.string() : ref.name() + "@" + ref.digest;
  impl_->refs[key] = id;
  impl_->tag_times[id] = std::chrono::duration_cast<std::chrono::nanoseconds>(
                             std::chrono::system_clock::now().time_since_epoch())
                             .count();
  impl_->save_refs();
}

RemoveResult ImageStore::remove(std::string_view name, bool force, bool /*prune*/) {
  std::unique_lock lock(impl_->mu);
  auto& im = *impl_;
  auto found = im.find_locked(name);
  if (!found) throw NoSuchImage("No such image: " + std::string(name));
  const std::string id = *found;
  RemoveResult result;
  auto refs_of = [&](const std::string& image_id) {
    std::vector<std::string> out;
    for (const auto& [ref, rid] : im.refs)
      if (rid == image_id) out.push_back(ref);
    return out;
  };
  auto untag = [&](const std::string& ref) {
    im.refs.erase(ref);
    result.untagged.push_back(parse_reference(ref).familiar_string());
  };
  std::string user = im.using_container(id);
  auto short_user = user == "?" ? std::string("(unknown)") : short_id(user);
  std::string_view id_text = name.substr(0, 7) == "sha256:" ? name.substr(7) : name;
  bool by_id = is_hex(id_text) && digest_hex(id).substr(0, id_text.size()) == id_text;
  if (by_id) {
    try {
      by_id = !im.refs.count(parse_reference_default_tag(name).string());
    } catch (const std::invalid_argument&) {
    }
  }
  if (!by_id) {
    Reference ref = parse_reference_default_tag(name);
    std::string key = ref.digest.empty() ? ref.string() : ref.name() + "@" + ref.digest;
    auto refs = refs_of(id);
    if (!user.empty() && !force && refs.size() == 1)
      throw ConflictError("conflict: unable to remove repository reference \"" + std::string(name) +
                          "\" (must force) - container " + short_user +
                          " is using its referenced image " + short_id(id));
    untag(key);
    // A repository left with only digest references of this image loses them too.
    if (ref.digest.empty()) {
      bool other_tag = false;
      std::vector<std::string> digests;
      for (const auto& r : refs_of(id)) {
        Reference other = parse_reference(r);
        if (other.name() != ref.name()) continue;
        if (other.digest.empty())
          other_tag = true;
        else
          digests.push_back(r);
      }
      if (!other_tag)
        for (const auto& d : digests) untag(d);
    }
    if (!refs_of(id).empty() || !user.empty()) {
      im.save_refs();
      return result;  // still referenced, or kept for its container
    }
  } else {
    auto refs = refs_of(id);
    std::set<std::string> repos;
    for (const auto& r : refs) repos.insert(parse_reference(r).name());
    if (!force && repos.size() > 1)
      throw ConflictError("conflict: unable to delete " + short_id(id) +
                          " (must be forced) - image is referenced in multiple repositories");
    if (!user.empty() && !force)
      throw ConflictError("conflict: unable to delete " + short_id(id) +
                          " (must be forced) - image is being used by stopped container " + short_user);
    for (const auto& r : refs) untag(r);
    if (!user.empty()) {  // forced: untagged, but its container keeps the layers
      im.save_refs();
      return result;
    }
  }
  result.deleted = im.delete_image(id);
  im.save_refs();
  return result;
}

// --- blobs

fs::path ImageStore::blob_path(std::string_view digest) const {
  return impl_->root / "blobs" / "sha256" / std::string(digest_hex(digest));
}

bool ImageStore::has_blob(std::string_view digest) const {
  return is_sha256_digest(digest) && fs::exists(blob_path(digest));
}

std::string ImageStore::put_blob(const ReadFn& input, std::string_view expected, const ProgressFn& progress) {
  if (!expected.empty() && !is_sha256_digest(expected))
    throw std::runtime_error("unsupported digest " + std::string(expected));
  TempFile tmp(impl_->tmp());
  Sha256 hash;
  std::vector<char> buf(256 * 1024);
  std::uint64_t total = 0;
  while (std::size_t n = input(buf.data(), buf.size())) {
    hash.update(buf.data(), n);
    tmp.write(buf.data(), n);
    total += n;
    if (progress) progress(total);
  }
  std::string digest = hash.digest();
  if (!expected.empty() && digest != expected)
    throw std::runtime_error("digest mismatch: expected " + std::string(expected) + ", got " + digest);
  tmp.commit(blob_path(digest));
  return digest;
}

std::string ImageStore::put_blob_bytes(std::string_view bytes) {
  std::size_t pos = 0;
  return put_blob([&](char* buf, std::size_t n) {
    std::size_t k = std::min(n, bytes.size() - pos);
    std::memcpy(buf, bytes.data() + pos, k);
    pos += k;
    return k;
  });
}

std::optional<std::string> ImageStore::read_blob(std::string_view digest) const {
  if (!is_sha256_digest(digest)) return std::nullopt;
  return read_file(blob_path(digest));
}

// --- layers

std::optional<LayerInfo> ImageStore::layer(std::string_view chain) const {
  if (!is_sha256_digest(chain)) return std::nullopt;
  return impl_->read_layer(chain);
}

LayerInfo ImageStore::add_layer(const std::string& parent, const LayerBlob& blob,
                                std::string_view expected_diff_id, const ProgressFn& progress) {
  if (!parent.empty() && !layer(parent)) throw std::runtime_error("missing parent layer " + parent);
  auto finish_existing = [&](const std::string& chain) -> std::optional<LayerInfo> {
    auto info = impl_->read_layer(chain);
    if (!info) return std::nullopt;
    bool known = false;
    for (const auto& b : info->blobs) known |= b.digest == blob.digest;
    if (!known) {
      // A blob not seen before for this layer must really hold it.
      auto check = decompress_stream(file_reader(blob_path(blob.digest)), [](const char*, std::size_t) {});
      if (check.diff_id != info->diff_id)
        throw std::runtime_error("layer diff id mismatch: expected " + info->diff_id + ", got " + check.diff_id);
      info->blobs.push_back(blob);
      write_file_atomic(impl_->layer_dir(chain) / "layer.json", Impl::layer_json(*info).dump(), impl_->tmp());
    }
    return info;
  };
  std::shared_ptr<std::mutex> held;
  std::unique_lock<std::mutex> guard;
  if (!expected_diff_id.empty()) {
    std::string chain = chain_id(parent, expected_diff_id);
    held = impl_->key_lock(chain);
    guard = std::unique_lock(*held);
    if (auto info = finish_existing(chain)) return *info;
  }
  fs::path work = make_temp_dir();
  struct Cleanup {
    fs::path p;
    ~Cleanup() {
      std::error_code ec;
      fs::remove_all(p, ec);
    }
  } cleanup{work};
  fs::create_directory(work / "diff");
  UnpackedLayer unpacked = unpack_layer(file_reader(blob_path(blob.digest)), work / "diff", progress);
  if (!expected_diff_id.empty() && unpacked.diff_id != expected_diff_id)
    throw std::runtime_error("layer diff id mismatch: expected " + std::string(expected_diff_id) +
                             ", got " + unpacked.diff_id);
  LayerInfo info;
  info.diff_id = unpacked.diff_id;
  info.parent = parent;
  info.chain_id = chain_id(parent, unpacked.diff_id);
  info.size = unpacked.size;
  info.tar_size = unpacked.tar_size;
  info.blobs.push_back(blob);
  if (!held) {
    held = impl_->key_lock(info.chain_id);
    guard = std::unique_lock(*held);
    if (auto existing = finish_existing(info.chain_id)) return *existing;
  }
  write_file_atomic(work / "layer.json", Impl::layer_json(info).dump(), impl_->tmp());
  fs::path final_dir = impl_->layer_dir(info.chain_id);
  if (::rename(work.c_str(), final_dir.c_str()) != 0) {
    // Another process finished the same layer first.
    if (auto existing = finish_existing(info.chain_id)) return *existing;
    throw std::runtime_error("cannot store layer: " + std::string(std::strerror(errno)));
  }
  cleanup.p.clear();
  info.dir = final_dir / "diff";
  return info;
}

void ImageStore::add_layer_blob(const std::string& chain, const LayerBlob& blob) {
  auto held = impl_->key_lock(chain);
  std::lock_guard guard(*held);
  auto info = impl_->read_layer(chain);
  if (!info) throw std::runtime_error("no layer " + chain);
  for (const auto& b : info->blobs)
    if (b.digest == blob.digest) return;
  info->blobs.push_back(blob);
  write_file_atomic(impl_->layer_dir(chain) / "layer.json", Impl::layer_json(*info).dump(), impl_->tmp());
}

fs::path ImageStore::make_temp_dir() const {
  fs::path dir = impl_->tmp() / ("work-" + random_suffix());
  fs::create_directories(dir);
  return dir;
}

}  // namespace berth::agent::image
