#include "agent/image/archive_io.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <ctime>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <stdexcept>

#include "agent/image/beneath.h"
#include "agent/image/digest.h"
#include "agent/image/fs_util.h"
#include "agent/image/time_util.h"

namespace berth::agent::image {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// The JSON documents a load reads into memory (manifest.json, index.json, OCI
// manifests, image configs) are refused above this; everything else stays on disk.
constexpr std::uint64_t kMaxJsonBytes = 8 << 20;

// A regular file of the tarball, spooled to disk and hashed on the way.
struct Member {
  fs::path file;
  std::string digest;
  std::uint64_t size = 0;
};

// A directory under the store's tmp holding the members of one load, removed
// with everything in it however the load ends (as dockerd does).
class Spool {
 public:
  explicit Spool(const fs::path& tmp) : dir_(tmp / ("load-" + random_suffix())) { fs::create_directory(dir_); }
  ~Spool() {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  Spool(const Spool&) = delete;
  Spool& operator=(const Spool&) = delete;

  // A fresh file in the spool, for writing.
  std::pair<fs::path, Fd> create() {
    fs::path path = dir_ / std::to_string(count_++);
    Fd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
    if (!fd) throw std::runtime_error("cannot create " + path.string() + ": " + std::strerror(errno));
    return {path, std::move(fd)};
  }

 private:
  fs::path dir_;
  std::uint64_t count_ = 0;
};

void write_all(int fd, const char* p, std::size_t n, const fs::path& path) {
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      throw std::runtime_error("cannot write " + path.string() + ": " + std::strerror(errno));
    }
    p += w;
    n -= static_cast<std::size_t>(w);
  }
}

std::string normalize_member(std::string name) {
  while (name.rfind("./", 0) == 0) name.erase(0, 2);
  while (!name.empty() && name.front() == '/') name.erase(0, 1);
  return name;
}

// "a/b/../c" -> "a/c" for symlink targets inside the archive.
std::string join_relative(const std::string& from_dir, const std::string& target) {
  fs::path p = !target.empty() && target.front() == '/' ? fs::path(target.substr(1)) : fs::path(from_dir) / target;
  return p.lexically_normal().string();
}

class LoadedArchive {
 public:
  LoadedArchive(ImageStore& store, const ReadFn& input) : store_(store), spool_(store.root() / "tmp") {
    read(input);
  }

  const Member& member(std::string name) const {
    name = normalize_member(name);
    for (int depth = 0; depth < 16; ++depth) {
      if (auto it = files_.find(name); it != files_.end()) return it->second;
      auto link = links_.find(name);
      if (link == links_.end()) break;
      name = link->second;
    }
    throw std::runtime_error("invalid archive: missing " + name);
  }
  bool has(const std::string& name) const {
    return files_.count(name) || links_.count(name);
  }
  // A JSON document of the archive, read into memory when small enough.
  std::string text(const std::string& name) const {
    const Member& m = member(name);
    if (m.size > kMaxJsonBytes)
      throw std::runtime_error("invalid archive: " + name + " is " + std::to_string(m.size) +
                               " bytes, over the limit of " + std::to_string(kMaxJsonBytes >> 20) +
                               " MiB for a JSON document");
    auto bytes = read_file(m.file);
    if (!bytes) throw std::runtime_error("invalid archive: cannot read " + name);
    return *bytes;
  }
  // The member as a blob in the store; returns its digest.
  std::string blob(const std::string& name) {
    const Member& m = member(name);
    if (!store_.has_blob(m.digest)) {
      // A second name for the spooled file: the spool can still be read, and
      // the blob appears whole. The same blob stored meanwhile is as good.
      Fd fd(::open(m.file.c_str(), O_RDONLY | O_CLOEXEC));
      if (!fd || ::fsync(fd.get()) != 0)
        throw std::runtime_error("cannot sync " + m.file.string() + ": " + std::strerror(errno));
      if (::link(m.file.c_str(), store_.blob_path(m.digest).c_str()) != 0 && errno != EEXIST)
        throw std::runtime_error("cannot store blob " + m.digest + ": " + std::strerror(errno));
    }
    return m.digest;
  }

 private:
  struct Reader {
    const ReadFn& input;
    std::vector<char> buf = std::vector<char>(256 * 1024);
    std::string error;
  };
  static la_ssize_t read_cb(archive*, void* self_p, const void** out) {
    auto* self = static_cast<Reader*>(self_p);
    try {
      *out = self->buf.data();
      return static_cast<la_ssize_t>(self->input(self->buf.data(), self->buf.size()));
    } catch (const std::exception& e) {
      self->error = e.what();
      return -1;
    }
  }

  void read(const ReadFn& input) {
    Reader reader{input, std::vector<char>(256 * 1024), {}};
    std::unique_ptr<archive, decltype(&archive_read_free)> a(archive_read_new(), archive_read_free);
    archive_read_support_filter_all(a.get());
    archive_read_support_format_tar(a.get());
    auto fail = [&](std::string_view what) {
      const char* msg = archive_error_string(a.get());
      throw std::runtime_error(!reader.error.empty() ? reader.error
                                                     : std::string(what) + (msg ? msg : "malformed archive"));
    };
    if (archive_read_open(a.get(), &reader, nullptr, &read_cb, nullptr) != ARCHIVE_OK) fail("");
    archive_entry* e = nullptr;
    std::vector<char> buf(256 * 1024);
    while (true) {
      int r = archive_read_next_header(a.get(), &e);
      if (r == ARCHIVE_EOF) break;
      if (r < ARCHIVE_WARN) fail("");
      std::string name = normalize_member(archive_entry_pathname(e) ? archive_entry_pathname(e) : "");
      auto type = archive_entry_filetype(e);
      if (type == AE_IFLNK) {
        std::string dir = fs::path(name).parent_path().string();
        links_[name] = join_relative(dir, archive_entry_symlink(e) ? archive_entry_symlink(e) : "");
        continue;
      }
      if (archive_entry_hardlink(e)) {
        links_[name] = normalize_member(archive_entry_hardlink(e));
        continue;
      }
      if (type != AE_IFREG) continue;
      Member m;
      Sha256 hash;
      auto [path, fd] = spool_.create();
      m.file = path;
      while (true) {
        la_ssize_t n = archive_read_data(a.get(), buf.data(), buf.size());
        if (n < 0) fail("");
        if (n == 0) break;
        hash.update(buf.data(), static_cast<std::size_t>(n));
        write_all(fd.get(), buf.data(), static_cast<std::size_t>(n), path);
        m.size += static_cast<std::uint64_t>(n);
      }
      m.digest = hash.digest();
      files_[name] = std::move(m);
    }
  }

  ImageStore& store_;
  Spool spool_;  // before files_, which name its files
  std::map<std::string, Member> files_;
  std::map<std::string, std::string> links_;
};

bool is_gzip(const ImageStore& store, const std::string& digest) {
  auto reader = file_reader(store.blob_path(digest));
  unsigned char magic[2] = {};
  return reader(reinterpret_cast<char*>(magic), 2) == 2 && magic[0] == 0x1f && magic[1] == 0x8b;
}

// Stores the layers and config of one image; returns its id.
std::string load_one(ImageStore& store, LoadedArchive& ar, const std::string& config_bytes,
                     const std::vector<std::string>& layer_names) {
  json config = json::parse(config_bytes);
  std::vector<std::string> diff_ids;
  for (const auto& d : config.at("rootfs").at("diff_ids")) diff_ids.push_back(d.get<std::string>());
  if (diff_ids.size() != layer_names.size())
    throw std::runtime_error("invalid manifest, layers length mismatch: expected " +
                             std::to_string(diff_ids.size()) + ", got " + std::to_string(layer_names.size()));
  std::string parent;
  for (std::size_t i = 0; i < layer_names.size(); ++i) {
    std::string chain = chain_id(parent, diff_ids[i]);
    if (!store.layer(chain)) {
      std::string digest = ar.blob(layer_names[i]);
      const Member& m = ar.member(layer_names[i]);
      std::string media(digest == diff_ids[i] ? kMediaLayerTar
                                              : (is_gzip(store, digest) ? kMediaLayerGzip : "application/octet-stream"));
      store.add_layer(parent, {digest, media, m.size}, diff_ids[i]);
    }
    parent = chain;
  }
  return store.add_image(config_bytes);
}

void load_oci_descriptor(ImageStore& store, LoadedArchive& ar, const json& desc,
                         std::vector<std::pair<std::string, std::string>>& loaded, int depth) {
  if (depth > 4) throw std::runtime_error("invalid OCI layout: nesting too deep");
  std::string digest = desc.at("digest");
  std::string blob_name = "blobs/sha256/" + std::string(digest_hex(digest));
  std::string media = desc.value("mediaType", "");
  json doc = json::parse(ar.text(blob_name));
  if (media.empty()) media = doc.value("mediaType", "");
  std::string ref_name;
  if (desc.contains("annotations")) {
    const json& ann = desc["annotations"];
    ref_name = ann.value("io.containerd.image.name", "");
    std::string short_ref = ann.value("org.opencontainers.image.ref.name", "");
    if (ref_name.empty() && !short_ref.empty()) {
      try {
        Reference r = parse_reference(short_ref);
        if (!r.tag.empty() || r.path.find('/') != std::string::npos) ref_name = short_ref;
      } catch (const std::invalid_argument&) {
      }
    }
  }
  if (doc.contains("manifests")) {
    for (const auto& m : doc["manifests"]) {
      const json platform = m.value("platform", json::object());
      if (!platform.empty() && (platform.value("os", "linux") != "linux" ||
                                platform.value("architecture", "amd64") != "amd64"))
        continue;
      json child = m;
      if (!ref_name.empty()) child["annotations"]["io.containerd.image.name"] = ref_name;
      load_oci_descriptor(store, ar, child, loaded, depth + 1);
      break;
    }
    return;
  }
  std::string config_name = "blobs/sha256/" + std::string(digest_hex(doc.at("config").at("digest").get<std::string>()));
  std::vector<std::string> layers;
  for (const auto& l : doc.at("layers")) layers.push_back("blobs/sha256/" + std::string(digest_hex(l.at("digest").get<std::string>())));
  std::string id = load_one(store, ar, ar.text(config_name), layers);
  loaded.emplace_back(id, ref_name);
}

std::string now_rfc3339() { return format_rfc3339_nano(now_unix_nanos()); }

}  // namespace

std::vector<std::string> load_images(ImageStore& store, const ReadFn& input) {
  LoadedArchive ar(store, input);
  std::vector<std::pair<std::string, std::string>> loaded;  // id, reference ("" = none)
  if (ar.has("manifest.json")) {
    json manifest = json::parse(ar.text("manifest.json"));
    for (const auto& entry : manifest) {
      std::vector<std::string> layers;
      for (const auto& l : entry.at("Layers")) layers.push_back(l.get<std::string>());
      std::string id = load_one(store, ar, ar.text(entry.at("Config").get<std::string>()), layers);
      const json tags = entry.value("RepoTags", json::array());
      if (tags.is_array() && !tags.empty()) {
        for (const auto& t : tags) loaded.emplace_back(id, t.get<std::string>());
      } else {
        loaded.emplace_back(id, "");
      }
    }
  } else if (ar.has("index.json")) {
    json index = json::parse(ar.text("index.json"));
    for (const auto& desc : index.at("manifests")) load_oci_descriptor(store, ar, desc, loaded, 0);
  } else {
    throw std::runtime_error("invalid archive: does not contain a manifest.json or index.json");
  }
  std::vector<std::string> lines;
  for (const auto& [id, ref] : loaded) {
    if (ref.empty()) {
      lines.push_back("Loaded image ID: " + id);
      continue;
    }
    Reference r = parse_reference_default_tag(ref);
    store.tag(id, r);
    lines.push_back("Loaded image: " + r.familiar_string());
  }
  return lines;
}

// --- save

namespace {

class TarWriter {
 public:
  explicit TarWriter(const std::function<bool(std::string_view)>& out) : out_(out) {
    archive_write_set_format_pax_restricted(a_.get());
    archive_write_set_bytes_per_block(a_.get(), 10240);
    if (archive_write_open(a_.get(), this, nullptr, &write_cb, nullptr) != ARCHIVE_OK) fail();
  }
  void dir(const std::string& name) {
    Entry e(name, AE_IFDIR, 0755, 0);
    header(e.e);
  }
  void file(const std::string& name, std::string_view bytes) {
    Entry e(name, AE_IFREG, 0644, bytes.size());
    header(e.e);
    data(bytes.data(), bytes.size());
  }
  // Declares a file of `size` bytes whose content follows through data().
  void begin_file(const std::string& name, std::uint64_t size) {
    Entry e(name, AE_IFREG, 0644, size);
    header(e.e);
  }
  void data(const char* p, std::size_t n) {
    if (n && archive_write_data(a_.get(), p, n) < 0) fail();
  }
  void close() {
    if (archive_write_close(a_.get()) != ARCHIVE_OK) fail();
  }

 private:
  struct Entry {
    archive_entry* e = archive_entry_new();
    Entry(const std::string& name, unsigned type, int perm, std::uint64_t size) {
      archive_entry_set_pathname(e, name.c_str());
      archive_entry_set_filetype(e, type);
      archive_entry_set_perm(e, static_cast<mode_t>(perm));
      archive_entry_set_size(e, static_cast<la_int64_t>(size));
      archive_entry_set_mtime(e, 0, 0);
    }
    ~Entry() { archive_entry_free(e); }
  };
  void header(archive_entry* e) {
    if (archive_write_header(a_.get(), e) != ARCHIVE_OK) fail();
  }
  [[noreturn]] void fail() {
    if (gone_) throw std::runtime_error("client went away");
    const char* msg = archive_error_string(a_.get());
    throw std::runtime_error(std::string("save: ") + (msg ? msg : "archive error"));
  }
  static la_ssize_t write_cb(archive*, void* self_p, const void* buf, size_t n) {
    auto* self = static_cast<TarWriter*>(self_p);
    if (!self->out_(std::string_view(static_cast<const char*>(buf), n))) {
      self->gone_ = true;
      return -1;
    }
    return static_cast<la_ssize_t>(n);
  }
  const std::function<bool(std::string_view)>& out_;
  bool gone_ = false;
  std::unique_ptr<archive, decltype(&archive_write_free)> a_{archive_write_new(), archive_write_free};
};

}  // namespace

void save_images(const ImageStore& store, const std::vector<std::string>& names,
                 const std::function<bool(std::string_view)>& out) {
  // id -> tags to record, in first-seen order.
  std::vector<std::string> order;
  std::map<std::string, std::vector<std::string>> tags;
  for (const auto& name : names) {
    auto id = store.find(name);
    if (!id) throw NoSuchImage("No such image: " + name);
    if (!tags.count(*id)) order.push_back(*id);
    auto& list = tags[*id];
    std::string_view hex = name.substr(0, 7) == "sha256:" ? std::string_view(name).substr(7) : std::string_view(name);
    bool by_id = is_hex(hex) && digest_hex(*id).substr(0, hex.size()) == hex;
    if (by_id) continue;
    Reference r = parse_reference_default_tag(name);
    if (!r.digest.empty()) continue;
    std::string tag = r.familiar_string();
    if (std::find(list.begin(), list.end(), tag) == list.end()) list.push_back(tag);
  }
  TarWriter tar(out);
  tar.dir("blobs/");
  tar.dir("blobs/sha256/");
  json manifest = json::array();
  json index = {{"schemaVersion", 2}, {"mediaType", "application/vnd.oci.image.index.v1+json"},
                {"manifests", json::array()}};
  std::set<std::string> written;
  for (const auto& id : order) {
    auto rec = store.image(id);
    if (!rec) throw NoSuchImage("No such image: " + id);
    std::string config_bytes = *read_file(store.root() / "images" / "sha256" / std::string(digest_hex(id)));
    std::string config_name = "blobs/sha256/" + std::string(digest_hex(id));
    if (written.insert(config_name).second) tar.file(config_name, config_bytes);
    json layers = json::array();
    json oci_layers = json::array();
    for (const auto& chain : rec->chain_ids) {
      auto layer = store.layer(chain);
      if (!layer || layer->blobs.empty()) throw std::runtime_error("layer " + chain + " is missing");
      std::string name = "blobs/sha256/" + std::string(digest_hex(layer->diff_id));
      layers.push_back(name);
      oci_layers.push_back({{"mediaType", "application/vnd.oci.image.layer.v1.tar"},
                            {"digest", layer->diff_id},
                            {"size", layer->tar_size}});
      if (!written.insert(name).second) continue;
      // Prefer a blob that is the uncompressed tar; else decompress one.
      const LayerBlob* pick = &layer->blobs.front();
      for (const auto& b : layer->blobs)
        if (b.digest == layer->diff_id) pick = &b;
      tar.begin_file(name, layer->tar_size);
      std::uint64_t sent = 0;
      decompress_stream(file_reader(store.blob_path(pick->digest)), [&](const char* p, std::size_t n) {
        sent += n;
        tar.data(p, n);
      });
      if (sent != layer->tar_size) throw std::runtime_error("layer " + chain + " changed size");
    }
    json oci_manifest = {{"schemaVersion", 2},
                         {"mediaType", "application/vnd.oci.image.manifest.v1+json"},
                         {"config", {{"mediaType", "application/vnd.oci.image.config.v1+json"},
                                     {"digest", id},
                                     {"size", config_bytes.size()}}},
                         {"layers", oci_layers}};
    std::string manifest_bytes = oci_manifest.dump();
    std::string manifest_digest = sha256_digest(manifest_bytes);
    std::string manifest_name = "blobs/sha256/" + std::string(digest_hex(manifest_digest));
    if (written.insert(manifest_name).second) tar.file(manifest_name, manifest_bytes);
    json repo_tags = tags[id].empty() ? json(nullptr) : json(tags[id]);
    manifest.push_back({{"Config", config_name}, {"RepoTags", repo_tags}, {"Layers", layers}});
    json desc = {{"mediaType", "application/vnd.oci.image.manifest.v1+json"},
                 {"digest", manifest_digest},
                 {"size", manifest_bytes.size()}};
    if (tags[id].empty()) {
      index["manifests"].push_back(desc);
    }
    for (const auto& t : tags[id]) {
      Reference r = parse_reference_default_tag(t);
      desc["annotations"] = {{"io.containerd.image.name", r.string()},
                             {"org.opencontainers.image.ref.name", r.tag}};
      index["manifests"].push_back(desc);
    }
  }
  tar.file("index.json", index.dump());
  tar.file("manifest.json", manifest.dump());
  tar.file("oci-layout", R"({"imageLayoutVersion":"1.0.0"})");
  tar.close();
}

// --- import

void apply_changes(json& config, const std::vector<std::string>& changes) {
  for (const auto& change : changes) {
    std::string line = change;
    auto sp = line.find_first_of(" \t=");
    std::string instr = line.substr(0, sp);
    std::string arg = sp == std::string::npos ? "" : line.substr(sp + 1);
    while (!arg.empty() && (arg.front() == ' ' || arg.front() == '\t')) arg.erase(0, 1);
    for (auto& c : instr) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    auto command = [&](const std::string& text) {
      json parsed = json::parse(text, nullptr, false);
      if (parsed.is_array()) return parsed;
      return json::array({"/bin/sh", "-c", text});
    };
    auto key_values = [&](const std::string& text) {
      std::vector<std::pair<std::string, std::string>> kv;
      auto eq = text.find('=');
      if (eq == std::string::npos) {
        auto space = text.find(' ');
        kv.emplace_back(text.substr(0, space), space == std::string::npos ? "" : text.substr(space + 1));
      } else {
        kv.emplace_back(text.substr(0, eq), text.substr(eq + 1));
      }
      for (auto& [k, v] : kv)
        if (v.size() >= 2 && v.front() == '"' && v.back() == '"') v = v.substr(1, v.size() - 2);
      return kv;
    };
    if (instr == "CMD") {
      config["Cmd"] = command(arg);
    } else if (instr == "ENTRYPOINT") {
      config["Entrypoint"] = command(arg);
    } else if (instr == "WORKDIR") {
      config["WorkingDir"] = arg;
    } else if (instr == "USER") {
      config["User"] = arg;
    } else if (instr == "ENV") {
      for (const auto& [k, v] : key_values(arg)) {
        json env = config.value("Env", json::array());
        json kept = json::array();
        for (const auto& e : env)
          if (e.get<std::string>().rfind(k + "=", 0) != 0) kept.push_back(e);
        kept.push_back(k + "=" + v);
        config["Env"] = kept;
      }
    } else if (instr == "LABEL") {
      for (const auto& [k, v] : key_values(arg)) config["Labels"][k] = v;
    } else if (instr == "EXPOSE") {
      std::string port = arg.find('/') == std::string::npos ? arg + "/tcp" : arg;
      config["ExposedPorts"][port] = json::object();
    } else if (instr == "VOLUME") {
      json paths = json::parse(arg, nullptr, false);
      if (!paths.is_array()) paths = json::array({arg});
      for (const auto& p : paths) config["Volumes"][p.get<std::string>()] = json::object();
    } else if (instr == "STOPSIGNAL") {
      config["StopSignal"] = arg;
    } else {
      throw std::invalid_argument(instr + " is not a valid change command");
    }
  }
}

std::string import_image(ImageStore& store, const ReadFn& input, const ImportOptions& options) {
  std::optional<Reference> ref;
  if (!options.repo.empty()) {
    ref = parse_reference(options.repo);
    if (!options.tag.empty()) {
      if (!is_valid_tag(options.tag)) throw std::invalid_argument("invalid tag format");
      ref->tag = options.tag;
    }
    if (!ref->digest.empty()) throw std::invalid_argument("cannot import digest reference");
    if (ref->tag.empty()) ref->tag = "latest";
  }
  json image_config = json::object();
  apply_changes(image_config, options.changes);
  std::string digest = store.put_blob(input);
  std::string media(is_gzip(store, digest) ? kMediaLayerGzip : kMediaLayerTar);
  LayerInfo layer = store.add_layer("", {digest, media, static_cast<std::uint64_t>(fs::file_size(store.blob_path(digest)))});
  if (layer.diff_id != digest && media == kMediaLayerTar) media = "application/octet-stream";
  std::string created = now_rfc3339();
  std::string message = options.message.empty() ? "Imported from -" : options.message;
  json config = {{"architecture", options.architecture},
                 {"os", options.platform_os},
                 {"created", created},
                 {"comment", message},
                 {"config", image_config},
                 {"rootfs", {{"type", "layers"}, {"diff_ids", {layer.diff_id}}}},
                 {"history", {{{"created", created}, {"comment", message}}}}};
  std::string id = store.add_image(config.dump());
  if (ref) store.tag(id, *ref);
  return id;
}

}  // namespace berth::agent::image
