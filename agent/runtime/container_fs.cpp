// A container's files for docker cp, export and diff: ContainerManager's
// open_files, changes and emit_event.
#include "agent/runtime/container_fs.h"

#include "agent/runtime/changes.h"
#include "agent/runtime/container_impl.h"

namespace berth::agent::runtime {

struct ContainerFiles::State {
  ContainerManager::Impl* m = nullptr;
  ContainerPtr c;
  std::unique_lock<std::mutex> op;  // start, stop and remove wait meanwhile
  bool mounted = false;             // the root file system was mounted for us
  std::unique_ptr<ContainerTree> tree;
  std::string user;
  bool readonly_rootfs = false;

  ~State() {
    tree.reset();
    if (mounted) ::umount2(c->rootfs().c_str(), MNT_DETACH);
  }
};

ContainerFiles::ContainerFiles(std::unique_ptr<State> state) : state_(std::move(state)) {}
ContainerFiles::~ContainerFiles() = default;

const ContainerTree& ContainerFiles::tree() const { return *state_->tree; }
const std::string& ContainerFiles::id() const { return state_->c->id; }
bool ContainerFiles::readonly_rootfs() const { return state_->readonly_rootfs; }

std::optional<std::pair<std::uint32_t, std::uint32_t>> ContainerFiles::user_ids() const {
  if (state_->user.empty()) return std::nullopt;
  ResolvedUser u = resolve_user_in(state_->c->rootfs(), state_->user);
  return std::make_pair(u.uid, u.gid);
}

void ContainerFiles::emit(const std::string& action) const { state_->m->emit_locked(*state_->c, action); }

namespace {

// The volumes and bind mounts of a container's record, and the /etc/hosts,
// /etc/resolv.conf and /etc/hostname it was given, as dockerd's view has them
// (tmpfs mounts live only in the container's own mount namespace).
std::vector<TreeMount> tree_mounts(const Container& c, const json& doc) {
  std::vector<TreeMount> out;
  for (const json& m : doc.value("Mounts", json::array())) {
    const std::string type = m.value("Type", "");
    if (type != "bind" && type != "volume") continue;
    out.push_back({m.value("Destination", ""), m.value("Source", ""), m.value("RW", true)});
  }
  for (const auto& [file, dest] : {std::pair{"hosts", "/etc/hosts"}, std::pair{"resolv.conf", "/etc/resolv.conf"},
                                   std::pair{"hostname", "/etc/hostname"}}) {
    const bool taken = std::any_of(out.begin(), out.end(), [&](const TreeMount& m) { return m.destination == dest; });
    std::error_code ec;
    if (!taken && fs::is_regular_file(c.dir / file, ec)) out.push_back({dest, c.dir / file, true});
  }
  return out;
}

}  // namespace

std::unique_ptr<ContainerFiles> ContainerManager::open_files(const std::string& ref) {
  Impl& m = *impl_;
  auto s = std::make_unique<ContainerFiles::State>();
  s->m = &m;
  s->c = m.get(ref);
  s->op = std::unique_lock(s->c->op);
  json doc;
  bool running = false;
  {
    std::lock_guard l(m.mu);
    if (s->c->removed) throw HttpError(404, "No such container: " + ref);
    doc = s->c->doc;
    running = s->c->running();
  }
  if (!running) {  // its root file system is not mounted: mount it meanwhile
    m.prepare_rootfs(*s->c, doc);
    s->mounted = m.opt.mount_overlay;
  }
  const json& config = doc.contains("Config") ? doc["Config"] : json::object();
  const json& hc = doc.contains("HostConfig") ? doc["HostConfig"] : json::object();
  s->user = config.value("User", "");
  s->readonly_rootfs = hc.value("ReadonlyRootfs", false);
  s->tree = std::make_unique<ContainerTree>(s->c->rootfs(), tree_mounts(*s->c, doc));
  s->tree->make_mount_points();
  return std::make_unique<ContainerFiles>(std::move(s));
}

json ContainerManager::changes(const std::string& ref) const {
  Impl& m = *impl_;
  ContainerPtr c = m.get(ref);
  std::string image_ref;
  {
    std::lock_guard l(m.mu);
    image_ref = c->doc.value("Image", "");
  }
  std::vector<fs::path> lowers;
  if (m.opt.mount_overlay) lowers.push_back(m.init_layer());
  if (auto image = m.resolve_image(image_ref))
    for (auto it = image->layers.rbegin(); it != image->layers.rend(); ++it) lowers.push_back(*it);
  std::vector<Change> found = overlay_changes(c->dir / "diff", lowers);
  if (found.empty()) return nullptr;
  json out = json::array();
  for (const Change& ch : found) out.push_back({{"Path", ch.path}, {"Kind", static_cast<int>(ch.kind)}});
  return out;
}

void ContainerManager::emit_event(const std::string& ref, const std::string& action,
                                  const std::map<std::string, std::string>& extra) {
  ContainerPtr c = impl_->get(ref);
  impl_->emit_locked(*c, action, events::Attributes(extra.begin(), extra.end()));
}

}  // namespace berth::agent::runtime
