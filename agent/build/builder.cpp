#include "agent/build/builder.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <set>
#include <sstream>

#include "agent/build/config_changes.h"
#include "agent/build/copy.h"
#include "agent/build/dockerignore.h"
#include "agent/build/error.h"
#include "agent/build/fetch.h"
#include "agent/build/instructions.h"
#include "agent/build/text.h"
#include "agent/image/digest.h"
#include "agent/image/fs_util.h"
#include "agent/image/time_util.h"
#include "agent/runtime/in_root.h"
#include "agent/runtime/oci_spec.h"

namespace berth::agent::build {
namespace fs = std::filesystem;
using nlohmann::json;
using text::clean_path;
using text::to_lower;

namespace {

constexpr const char* kDefaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
constexpr std::size_t kDockerfileLimit = 16 << 20;

// Usable in every build without an ARG line; left out of the cache key and history.
const std::set<std::string>& proxy_args() {
  static const std::set<std::string> names = {"HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy",
                                              "FTP_PROXY",  "ftp_proxy",  "NO_PROXY",    "no_proxy",
                                              "ALL_PROXY",  "all_proxy"};
  return names;
}

std::string short_id(const std::string& id) {
  std::string hex = id.rfind("sha256:", 0) == 0 ? id.substr(7) : id;
  return hex.substr(0, 12);
}

std::string now_text() {
  auto now = std::chrono::system_clock::now().time_since_epoch();
  return image::format_rfc3339_nano(std::chrono::duration_cast<std::chrono::nanoseconds>(now).count());
}

std::string join(const std::vector<std::string>& v, const std::string& sep) {
  std::string out;
  for (const std::string& s : v) out += (out.empty() ? "" : sep) + s;
  return out;
}

std::vector<std::string> strings_of(const json& j) {
  std::vector<std::string> out;
  if (j.is_array())
    for (const json& v : j)
      if (v.is_string()) out.push_back(v.get<std::string>());
  return out;
}

std::string env_key(const std::string& kv) { return kv.substr(0, kv.find('=')); }

// A path joined to WORKDIR as dockerd does (trailing '/' kept).
std::string in_workdir(const std::string& workdir, const std::string& path) {
  if (!path.empty() && path[0] == '/') return path;
  bool slash = !path.empty() && path.back() == '/';
  std::string out = clean_path("/" + workdir + "/" + path);
  if (slash && out != "/") out += "/";
  return out;
}

// Build arguments as dockerd keeps them: what the client gave, what the
// Dockerfile declared (meta ARGs before FROM, each stage's own), and which
// were used, for the "not consumed" warning.
class BuildArgs {
 public:
  explicit BuildArgs(std::map<std::string, std::optional<std::string>> given) : given_(std::move(given)) {}

  void declare_meta(const std::string& name, const std::optional<std::string>& value) {
    std::optional<std::string> v = value;
    if (auto it = given_.find(name); it != given_.end() && it->second) v = it->second;
    meta_[name] = v;
    used_.insert(name);
  }
  const std::map<std::string, std::optional<std::string>>& meta() const { return meta_; }

  // ARG in a stage: the client's value, else the default, else the meta ARG's.
  std::optional<std::string> resolve(const std::string& name, const std::optional<std::string>& def) {
    used_.insert(name);
    if (auto it = given_.find(name); it != given_.end() && it->second) return it->second;
    if (def) return def;
    if (auto it = meta_.find(name); it != meta_.end()) return it->second;
    return std::nullopt;
  }
  // Proxy args given by the client (they need no ARG line).
  std::vector<std::pair<std::string, std::string>> proxies() {
    std::vector<std::pair<std::string, std::string>> out;
    for (const auto& [k, v] : given_)
      if (proxy_args().count(k) && v) {
        out.emplace_back(k, *v);
        used_.insert(k);
      }
    return out;
  }
  std::vector<std::string> unused() const {
    std::vector<std::string> out;
    for (const auto& [k, _] : given_)
      if (!used_.count(k)) out.push_back(k);
    return out;
  }

 private:
  std::map<std::string, std::optional<std::string>> given_;
  std::map<std::string, std::optional<std::string>> meta_;
  std::set<std::string> used_;
};

// Looks a name up in the stage's ENV first, then its ARGs.
class StageVars final : public VarLookup {
 public:
  StageVars(const json& config, const std::vector<std::pair<std::string, std::string>>& args)
      : env_(strings_of(config.value("Env", json::array()))) {
    for (const auto& [k, v] : args) args_.set(k, v);
  }
  std::optional<std::string> get(std::string_view name) const override {
    if (auto v = env_.get(name)) return v;
    return args_.get(name);
  }

 private:
  EnvList env_;
  VarMap args_;
};

}  // namespace

struct Builder::Impl {
  Backend& backend;
  BuildOutput& out;
  BuildOptions opt;
  BuildArgs args;
  char escape = '\\';
  std::optional<IgnoreMatcher> ignore;
  fs::path context;
  std::vector<std::string> hidden_build_files;  // the Dockerfile/.dockerignore when .dockerignore excludes them
  int step = 0, total = 0;

  // One stage's state.
  struct State {
    std::string image_id;
    json image = json::object();  // the image config blob
    std::vector<std::pair<std::string, std::string>> args;  // declared ARGs with a value, in order
    bool cmd_set = false;
    std::string stage_name;
  };
  std::vector<std::string> stage_ids;               // by index
  std::map<std::string, std::string> stage_by_name;  // lower-cased

  Impl(Backend& b, BuildOutput& o, BuildOptions options)
      : backend(b), out(o), opt(std::move(options)), args(opt.build_args) {}

  void say(const std::string& text) { out.stream(text); }
  void check_cancelled() {
    if (out.cancelled()) {
      say("Build cancelled\n");
      throw BuildError("Build cancelled");
    }
  }
  void print_step(const std::string& source) { say(step_line(++step, total, source) + "\n"); }

  // --- the Dockerfile and .dockerignore ---
  std::string read_dockerfile() {
    const std::string name = opt.dockerfile.empty() ? "Dockerfile" : opt.dockerfile;
    auto text = runtime::read_regular_file_in_root(context, name, kDockerfileLimit);
    if (!text && name == "Dockerfile")  // dockerd also takes dockerfile in lower case
      text = runtime::read_regular_file_in_root(context, "dockerfile", kDockerfileLimit);
    if (!text) throw BuildError("Cannot locate specified Dockerfile: " + name);
    if (auto ignore_text = runtime::read_regular_file_in_root(context, ".dockerignore", kDockerfileLimit)) {
      ignore.emplace(read_dockerignore(*ignore_text));
      hidden_build_files = excluded_build_files(*ignore, name);
    }
    return *text;
  }

  // --- image configs ---
  static json& config_of(State& s) {
    if (!s.image.contains("config") || !s.image["config"].is_object()) s.image["config"] = json::object();
    return s.image["config"];
  }
  static std::vector<std::string> shell_of(const json& config) { return config_shell(config); }

  // The next image: `state`'s with a history entry and, when a layer was
  // made, its diff id. Committed, remembered under `key`, and made current.
  void commit(State& state, const std::string& created_by, const std::optional<image::LayerTar>& layer,
              const std::string& key) {
    json next = state.image;
    next["created"] = now_text();
    next["architecture"] = "amd64";
    next["os"] = "linux";
    if (!next.contains("rootfs") || !next["rootfs"].is_object())
      next["rootfs"] = {{"type", "layers"}, {"diff_ids", json::array()}};
    if (!next["rootfs"].contains("diff_ids") || !next["rootfs"]["diff_ids"].is_array())
      next["rootfs"]["diff_ids"] = json::array();
    json history = {{"created", next["created"]}, {"created_by", created_by}};
    if (layer)
      next["rootfs"]["diff_ids"].push_back(layer->diff_id);
    else
      history["empty_layer"] = true;
    if (!next.contains("history") || !next["history"].is_array()) next["history"] = json::array();
    next["history"].push_back(history);
    next.erase("container");
    next.erase("container_config");
    state.image_id = backend.commit(next);
    state.image = next;
    backend.remember(key, state.image_id);
  }

  // A step's cache key: the parent image and everything the step depends on.
  static std::string cache_key(const State& s, const std::string& what, const json& inputs) {
    return image::sha256_digest(s.image_id + "\n" + what + "\n" + inputs.dump());
  }
  // A cache hit makes the cached image current.
  bool from_cache(State& s, const std::string& key) {
    if (opt.no_cache) return false;
    auto id = backend.cached(key);
    if (!id) return false;
    Image cached = backend.image(*id, false, out);
    s.image_id = cached.id;
    s.image = cached.config;
    say(" ---> Using cache\n");
    return true;
  }

  // A step that only changes the config: ENV, LABEL, CMD...
  void metadata(State& s, const std::string& comment) {
    const std::string created_by = join(shell_of(config_of(s)), " ") + " #(nop)  " + comment;
    const std::string key = cache_key(s, created_by, config_of(s));
    if (!from_cache(s, key)) commit(s, created_by, std::nullopt, key);
  }

  // The values of build args a RUN sees, and the "|N a=b" prefix dockerd keeps in history.
  std::vector<std::pair<std::string, std::string>> run_args(const State& s) {
    std::vector<std::pair<std::string, std::string>> all = s.args;
    for (auto& p : args.proxies())
      if (std::none_of(all.begin(), all.end(), [&](auto& a) { return a.first == p.first; })) all.push_back(p);
    // ENV wins over an ARG of the same name.
    std::set<std::string> env;
    json config = s.image.value("config", json::object());
    for (const std::string& e : strings_of(config.value("Env", json::array()))) env.insert(env_key(e));
    std::erase_if(all, [&](auto& a) { return env.count(a.first) > 0; });
    return all;
  }

  // --- instructions ---
  void dispatch(State& s, const Instruction& in_raw) {
    Instruction in = in_raw;
    if (expands_variables(in)) {
      StageVars vars(config_of(s), s.args);
      expand_instruction(in, vars, escape);
    }
    json& c = config_of(s);
    if (auto comment = apply_config_instruction(c, in, s.cmd_set)) {
      metadata(s, *comment);
    } else if (auto* arg = in.as<ArgInstruction>()) {
      std::vector<std::string> parts;
      for (const auto& a : arg->args) {
        std::optional<std::string> v = args.resolve(a.name, a.value);
        std::erase_if(s.args, [&](auto& p) { return p.first == a.name; });
        if (v) s.args.emplace_back(a.name, *v);
        parts.push_back(a.value ? a.name + "=" + *a.value : a.name);
      }
      metadata(s, "ARG " + join(parts, " "));
    } else if (auto* maintainer = in.as<MaintainerInstruction>()) {
      s.image["author"] = maintainer->maintainer;
      metadata(s, "MAINTAINER " + maintainer->maintainer);
    } else if (auto* workdir = in.as<WorkdirInstruction>()) {
      dispatch_workdir(s, workdir->path);
    } else if (auto* run = in.as<RunInstruction>()) {
      dispatch_run(s, *run, in.line);
    } else if (auto* copy = in.as<CopyInstruction>()) {
      dispatch_copy(s, *copy, copy->from, "COPY", false, in.line);
    } else if (auto* add = in.as<AddInstruction>()) {
      dispatch_copy(s, *add, "", "ADD", true, in.line);
    }
  }

  void dispatch_run(State& s, const RunInstruction& run, int line) {
    for (const std::string& flag : run.flags_used)
      throw BuildError("the --" + flag + " option requires BuildKit. Refer to https://docs.docker.com/go/buildkit/ to "
                       "learn how to build images with BuildKit enabled", line);
    json& c = config_of(s);
    std::vector<std::string> argv = command_argv(c, run.command);
    auto pass = run_args(s);
    // History and the cache see the build args dockerd shows: "|2 A=1 B=2 /bin/sh -c ...".
    std::vector<std::string> shown;
    for (const auto& [k, v] : pass)
      if (!proxy_args().count(k) || std::any_of(s.args.begin(), s.args.end(), [&](auto& a) { return a.first == k; }))
        shown.push_back(k + "=" + v);
    std::string created_by = join(argv, " ");
    if (!shown.empty()) created_by = "|" + std::to_string(shown.size()) + " " + join(shown, " ") + " " + created_by;
    json inputs = {{"config", c}, {"cmd", created_by}, {"host", opt.host_config}};
    const std::string key = cache_key(s, "RUN", inputs);
    if (from_cache(s, key)) return;

    RunSpec spec;
    spec.image_id = s.image_id;
    spec.config = c;
    for (const auto& [k, v] : pass) spec.config["Env"].push_back(k + "=" + v);
    spec.config["Cmd"] = nullptr;
    spec.config["Entrypoint"] = nullptr;
    spec.config["Healthcheck"] = {{"Test", {"NONE"}}};
    spec.config["Labels"] = c.value("Labels", json::object());
    spec.argv = argv;
    spec.host_config = opt.host_config;
    spec.remove_on_success = opt.remove || opt.force_remove;
    spec.remove_on_failure = opt.force_remove;
    RunResult result = backend.run(spec, out);
    if (result.exit_code != 0) {
      throw RunFailed("The command '" + join(argv, " ") + "' returned a non-zero code: " +
                          std::to_string(result.exit_code),
                      result.exit_code);
    }
    commit(s, created_by, result.layer, key);
  }

  void dispatch_workdir(State& s, const std::string& path) {
    json& c = config_of(s);
    std::string dir = workdir_path(c.value("WorkingDir", ""), path);
    c["WorkingDir"] = dir;
    const std::string created_by = join(shell_of(c), " ") + " #(nop) WORKDIR " + dir;
    const std::string key = cache_key(s, created_by, c);
    if (from_cache(s, key)) return;
    bool exists = false;
    {
      auto view = backend.view(s.image_id);
      runtime::UniqueFd fd = runtime::open_in_root(view->root(), dir);
      struct stat st {};
      exists = fd && ::fstat(fd.get(), &st) == 0 && S_ISDIR(st.st_mode);
    }
    if (exists) {
      commit(s, created_by, std::nullopt, key);
      return;
    }
    // dockerd makes the directory in a container and commits it: a layer with it.
    auto view = backend.view(s.image_id);
    CopyPlan plan;
    plan.dest = dir + "/";
    plan.dest_root = view->root();
    plan.dest_is_dir = [](const std::string&) { return false; };
    image::LayerTar layer = backend.add_layer(s.image_id, [&](const auto& sink) { write_copy_layer(plan, sink); });
    commit(s, created_by, layer, key);
  }

  // --chown=user[:group] as the image being built names them.
  std::pair<std::uint32_t, std::uint32_t> chown_ids(const std::string& spec, const fs::path& root) {
    std::string user = spec, group;
    if (auto colon = spec.find(':'); colon != std::string::npos) {
      user = spec.substr(0, colon);
      group = spec.substr(colon + 1);
    }
    auto numeric = [](const std::string& s) {
      return !s.empty() && std::all_of(s.begin(), s.end(), [](char ch) { return ch >= '0' && ch <= '9'; });
    };
    if (numeric(user) && (group.empty() || numeric(group)))
      return {static_cast<std::uint32_t>(std::stoul(user)),
              static_cast<std::uint32_t>(std::stoul(group.empty() ? user : group))};
    auto passwd = runtime::read_regular_file_in_root(root, "/etc/passwd", 4 << 20).value_or("");
    auto groups = runtime::read_regular_file_in_root(root, "/etc/group", 4 << 20).value_or("");
    try {
      runtime::ResolvedUser u = runtime::resolve_user(spec, passwd, groups);
      if (group.empty()) u.gid = numeric(user) ? u.uid : u.gid;
      return {u.uid, u.gid};
    } catch (const std::exception&) {
      throw BuildError("unable to convert uid/gid chown string to host mapping: can't find uid for user " + user +
                       ": no such user: " + user);
    }
  }

  std::optional<std::uint32_t> chmod_mode(const std::string& text, int line) {
    if (text.empty()) return std::nullopt;
    std::uint32_t mode = 0;
    for (char ch : text) {
      if (ch < '0' || ch > '7' || mode > 07777) throw BuildError("invalid chmod parameter " + text, line);
      mode = mode * 8 + static_cast<std::uint32_t>(ch - '0');
    }
    if (mode > 07777) throw BuildError("invalid chmod parameter " + text, line);
    return mode;
  }

  void dispatch_copy(State& s, const SourcesAndDest& in, const std::string& from, const std::string& what,
                     bool is_add, int line) {
    json& c = config_of(s);
    const std::string dest = in_workdir(c.value("WorkingDir", ""), in.dest);

    // Where the sources are: the context, an earlier stage, or an image.
    std::unique_ptr<ImageView> source_view;
    fs::path root = context;
    bool from_image = false;
    if (!from.empty()) {
      std::string id;
      if (auto it = stage_by_name.find(to_lower(from)); it != stage_by_name.end()) {
        id = it->second;
      } else if (std::all_of(from.begin(), from.end(), [](char ch) { return ch >= '0' && ch <= '9'; })) {
        std::size_t index = std::stoul(from);
        if (index >= stage_ids.size())
          throw BuildError("invalid from flag value " + from + ": refers to current build stage", line);
        id = stage_ids[index];
      } else {
        id = backend.image(from, opt.pull, out).id;
      }
      source_view = backend.view(id);
      root = source_view->root();
      from_image = true;
    }

    // URLs (ADD only) are downloaded into the build's scratch space first.
    std::vector<std::string> patterns;
    std::optional<fs::path> downloads;
    for (const std::string& src : in.sources) {
      if (is_url(src)) {
        if (!is_add) throw BuildError("source can't be a URL for COPY", line);
        if (!downloads) {
          downloads = opt.work_dir / ("add-" + std::to_string(step));
          fs::create_directories(*downloads);
        }
        patterns.push_back(download(src, *downloads, out).string());
      } else {
        patterns.push_back(src);
      }
    }

    auto dest_view = backend.view(s.image_id);
    CopyPlan plan;
    plan.root = root;
    std::vector<CopySource> sources;
    std::vector<std::string> local, fetched;
    for (const std::string& p : patterns)
      (downloads && p.rfind(downloads->string(), 0) == 0 ? fetched : local).push_back(p);
    if (!local.empty()) {
      IgnoreMatcher* ignore_for = (!from_image && ignore) ? &*ignore : nullptr;
      sources = resolve_sources(root, local, ignore_for, what, from_image);
      if (!from_image) {
        std::erase_if(sources, [&](const CopySource& src) {
          return std::find(hidden_build_files.begin(), hidden_build_files.end(), src.path) !=
                 hidden_build_files.end();
        });
      }
    }
    plan.sources = sources;
    for (const std::string& f : fetched) {
      // A download: its content, mode 0600 and Last-Modified time, as dockerd writes it.
      struct stat st {};
      ::stat(f.c_str(), &st);
      plan.inline_sources.push_back({fs::path(f).filename().string(), image::read_file(f).value_or(""), 0600,
                                     static_cast<std::int64_t>(st.st_mtime)});
    }
    for (const InlineFile& f : in.inline_sources) plan.inline_sources.push_back({f.name, f.content, 0644, -1});
    plan.dest = dest;
    const fs::path dest_root = dest_view->root();
    plan.dest_root = dest_root;
    plan.dest_is_dir = [dest_root](const std::string& path) {
      runtime::UniqueFd fd = runtime::open_in_root(dest_root, path);
      struct stat st {};
      return fd && ::fstat(fd.get(), &st) == 0 && S_ISDIR(st.st_mode);
    };
    if (!in.chown.empty()) {
      auto [uid, gid] = chown_ids(in.chown, dest_root);
      plan.uid = uid;
      plan.gid = gid;
    }
    plan.mode = chmod_mode(in.chmod, line);
    plan.context_owner_root = !from_image;  // --from keeps the image's owners
    plan.unpack_archives = is_add;
    plan.ignore = (!from_image && ignore) ? &*ignore : nullptr;

    // The layer goes to a scratch file first: its checksum is the cache key.
    const fs::path tmp = opt.work_dir / ("layer-" + std::to_string(step) + ".tar");
    CopyResult result;
    {
      std::ofstream file(tmp, std::ios::binary | std::ios::trunc);
      result = write_copy_layer(plan, [&](const char* p, std::size_t n) { file.write(p, static_cast<std::streamsize>(n)); });
      if (!file) throw BuildError("cannot write the layer of step " + std::to_string(step) + " to " + tmp.string());
    }
    std::string chown_note = in.chown.empty() ? "" : "--chown=" + in.chown + " ";
    const std::string created_by =
        join(shell_of(c), " ") + " #(nop) " + what + " " + chown_note + result.checksum + " in " + dest + " ";
    const std::string key = cache_key(s, created_by, {{"chmod", in.chmod}, {"config", c}});
    if (from_cache(s, key)) {
      fs::remove(tmp);
      return;
    }
    image::LayerTar layer = backend.add_layer(s.image_id, [&](const auto& sink) {
      std::ifstream file(tmp, std::ios::binary);
      char buf[1 << 16];
      while (file.read(buf, sizeof buf) || file.gcount() > 0) sink(buf, static_cast<std::size_t>(file.gcount()));
    });
    fs::remove(tmp);
    commit(s, created_by, layer, key);
  }

  // --- stages ---
  State begin_stage(const Stage& stage) {
    VarMap meta;
    for (const auto& [k, v] : args.meta())
      if (v) meta.set(k, *v);
    ExpandOptions eo;
    eo.escape = escape;
    std::string base = expand_word(stage.base, meta, eo);
    if (base.empty()) throw BuildError("base name (" + stage.base + ") should not be blank", stage.line);
    if (!stage.platform.empty()) {
      std::string platform = expand_word(stage.platform, meta, eo);
      if (platform != "linux/amd64" && platform != "linux" && platform != "linux/amd64/v1")
        throw BuildError("\"" + platform + "\" is not a platform this machine builds for: only linux/amd64",
                         stage.line);
    }
    State s;
    s.stage_name = stage.name;
    if (auto it = stage_by_name.find(to_lower(base)); it != stage_by_name.end()) {
      Image img = backend.image(it->second, false, out);
      s.image_id = img.id;
      s.image = img.config;
    } else if (to_lower(base) != "scratch") {
      Image img = backend.image(base, opt.pull, out);
      s.image_id = img.id;
      s.image = img.config;
    }
    json& c = config_of(s);
    if (strings_of(c.value("Env", json::array())).empty()) c["Env"] = {kDefaultPath};
    // The base image's ONBUILD triggers run first, then are dropped.
    std::vector<std::string> triggers = strings_of(c.value("OnBuild", json::array()));
    c["OnBuild"] = nullptr;
    if (!triggers.empty()) {
      say("# Executing " + std::to_string(triggers.size()) + " build trigger" +
          (triggers.size() == 1 ? "" : "s") + "\n");
      for (const std::string& t : triggers) dispatch(s, parse_trigger(t));
    }
    return s;
  }

  std::string run(const fs::path& ctx) {
    context = ctx;
    Dockerfile df = load_dockerfile(read_dockerfile(), opt.dockerfile);
    escape = df.directives.escape;
    if (df.stages.empty()) throw BuildError("No image was generated. Is your Dockerfile empty?");
    std::vector<Stage> stages(stages_for_target(df, opt.target).begin(), stages_for_target(df, opt.target).end());
    // --label: LABEL lines at the end of the last stage, sorted by key.
    for (const auto& [k, v] : opt.labels) {
      Instruction label;
      label.keyword = "LABEL";
      label.source = "LABEL " + k + "=" + v;
      label.body = LabelInstruction{{{k, v}}};
      stages.back().instructions.push_back(label);
    }
    total = static_cast<int>(df.meta_args.size() + stages.size());
    for (const Stage& st : stages) total += static_cast<int>(st.instructions.size());

    for (const Instruction& meta : df.meta_args) {
      print_step(meta.source);
      Instruction in = meta;
      VarMap known;
      for (const auto& [k, v] : args.meta())
        if (v) known.set(k, *v);
      expand_instruction(in, known, escape);
      for (const auto& a : in.as<ArgInstruction>()->args) args.declare_meta(a.name, a.value);
    }
    State s;
    for (const Stage& stage : stages) {
      check_cancelled();
      print_step(stage.source);
      s = begin_stage(stage);
      if (!s.image_id.empty()) say(" ---> " + short_id(s.image_id) + "\n");
      for (const Instruction& in : stage.instructions) {
        check_cancelled();
        print_step(in.source);
        try {
          dispatch(s, in);
        } catch (const RunFailed&) {
          throw;
        } catch (const BuildError& e) {
          if (e.line()) throw;
          throw BuildError(e.what(), in.line);
        }
        say(" ---> " + short_id(s.image_id) + "\n");
      }
      if (s.image_id.empty()) throw BuildError("No image was generated. Is your Dockerfile empty?");
      out.message({{"aux", {{"ID", s.image_id}}}});
      stage_ids.push_back(s.image_id);
      if (!stage.name.empty()) stage_by_name[to_lower(stage.name)] = s.image_id;
    }
    if (auto unused = args.unused(); !unused.empty()) {
      std::sort(unused.begin(), unused.end());
      say("[Warning] One or more build-args [" + join(unused, " ") + "] were not consumed\n");
    }
    return s.image_id;
  }
};

Builder::Builder(Backend& backend, BuildOutput& out, BuildOptions options)
    : impl_(std::make_unique<Impl>(backend, out, std::move(options))) {}
Builder::~Builder() = default;

std::string Builder::build(const fs::path& context) {
  std::string id = impl_->run(context);
  Impl& m = *impl_;
  m.say("Successfully built " + short_id(id) + "\n");
  for (const std::string& tag : m.opt.tags) {
    m.backend.tag(id, tag);
    m.say("Successfully tagged " + tag + "\n");
  }
  return id;
}

}  // namespace berth::agent::build
