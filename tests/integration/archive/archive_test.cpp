// docker cp, diff, export and commit end to end on the shared berth-os VM
// (tests/integration/containers/shared_vm.h), through the real docker CLI and
// Debian's python3-docker. The escape cases look at the VM itself with
// `berth ssh`: nothing outside a container's root is ever written, and a file
// of the VM's is never read in place of the container's.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <random>

#include "tests/integration/containers/harness.h"
#include "tests/integration/containers/shared_vm.h"

namespace berth::it::containers {
namespace {

// python3-docker: put_archive, get_archive, diff and export against the agent.
const char* kPythonSdk = R"py(
import io, json, sys, tarfile, docker
client = docker.from_env(timeout=120)
c = client.containers.run("busybox:latest", ["sleep", "600"], detach=True, name=sys.argv[1])
try:
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as t:
        body = b"from python\n"
        info = tarfile.TarInfo("py-dir/hello.txt"); info.size = len(body); info.mode = 0o640
        t.addfile(info, io.BytesIO(body))
    assert c.put_archive("/tmp", data.getvalue()) is True
    stream, stat = c.get_archive("/tmp/py-dir/hello.txt")
    raw = b"".join(stream)
    with tarfile.open(fileobj=io.BytesIO(raw)) as t:
        member = t.getmembers()[0]
        content = t.extractfile(member).read().decode()
    exported = b"".join(c.export())
    with tarfile.open(fileobj=io.BytesIO(exported)) as t:
        has_file = "tmp/py-dir/hello.txt" in t.getnames()
    print(json.dumps({"stat": stat, "name": member.name, "mode": member.mode, "content": content,
                      "diff": c.diff(), "exported": has_file}))
finally:
    c.remove(force=True)
)py";

class Archive : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    try {
      lease_ = std::make_unique<SharedVmLease>();
      tag_ = std::to_string(::getpid());
    } catch (const std::exception& e) {
      setup_error_ = std::string("suite setup failed: ") + e.what();
    }
  }
  static void TearDownTestSuite() {
    if (lease_) {
      auto left = vm().docker({"ps", "-a", "-q", "--filter", "name=ar-"});
      for (const std::string& id : lines(left.out)) vm().docker({"rm", "-f", "-v", id});
      vm().docker({"rmi", "-f", "it-archive/committed:v1", "it-archive/running:latest"});
      vm().docker({"volume", "rm", "-f", "ar-vol"});
      vm().ssh("rm -rf /var/lib/berth/ar-bind /tmp/ar-marker /x /y /tmp/ar-new");
    }
    lease_.reset();
  }
  void SetUp() override { ASSERT_TRUE(setup_error_.empty()) << setup_error_; }
  void TearDown() override {
    for (const std::string& name : made_) vm().docker({"rm", "-f", "-v", name});
    made_.clear();
  }

  static Machine& vm() { return *lease_->vm().machine; }
  static std::string ok(const std::vector<std::string>& args, std::chrono::milliseconds timeout = 120s) {
    auto r = vm().docker(args, timeout);
    EXPECT_TRUE(r.ok()) << describe_call(args, r);
    return trim(r.out);
  }
  // `docker run -d --name NAME [opts] busybox sh -c SCRIPT`, removed after the test.
  std::string running(const std::string& name, const std::string& script, std::vector<std::string> opts = {}) {
    std::vector<std::string> args = {"run", "-d", "--name", name};
    args.insert(args.end(), opts.begin(), opts.end());
    args.insert(args.end(), {"busybox:latest", "sh", "-c", script + " && exec sleep 600"});
    made_.push_back(name);
    return ok(args);
  }
  static fs::path scratch(const std::string& name) {
    const fs::path dir = vm().scratch() / ("archive-" + name);
    fs::remove_all(dir);
    fs::create_directories(dir);
    return dir;
  }
  static std::string random_text(std::size_t n) {
    std::mt19937 gen(static_cast<unsigned>(::getpid()));
    std::string out;
    for (std::size_t i = 0; i < n; ++i) out += static_cast<char>('a' + gen() % 26);
    return out + "\n";
  }
  static std::string exec_out(const std::string& name, const std::string& script) {
    return ok({"exec", name, "sh", "-c", script});
  }

  static inline std::unique_ptr<SharedVmLease> lease_;
  static inline std::string setup_error_;
  static inline std::string tag_;
  std::vector<std::string> made_;
};

TEST_F(Archive, CopiesFilesAndDirectoriesBothWaysWithARunningContainer) {
  running("ar-run", "mkdir -p /srv/tree/sub && echo one > /srv/tree/a && echo two > /srv/tree/sub/b && "
                    "ln -s a /srv/tree/link");
  const fs::path dir = scratch("run");
  const std::string text = random_text(5000);
  write_text(dir / "up.txt", text);
  fs::create_directories(dir / "updir/nested");
  write_text(dir / "updir/nested/n.txt", "nested\n");

  ok({"cp", (dir / "up.txt").string(), "ar-run:/tmp/"});
  EXPECT_EQ(exec_out("ar-run", "cat /tmp/up.txt"), trim(text));
  ok({"cp", (dir / "updir").string(), "ar-run:/srv/updir"});
  EXPECT_EQ(exec_out("ar-run", "cat /srv/updir/nested/n.txt"), "nested");

  ok({"cp", "ar-run:/srv/tree", (dir / "down").string()});
  EXPECT_EQ(read_text(dir / "down/a"), "one\n");
  EXPECT_EQ(read_text(dir / "down/sub/b"), "two\n");
  EXPECT_TRUE(fs::is_symlink(dir / "down/link")) << "a link inside a copied directory stays a link";
  ok({"cp", "ar-run:/tmp/up.txt", (dir / "back.txt").string()});
  EXPECT_EQ(read_text(dir / "back.txt"), text);
  // To stdout: a tar of the resource named after it.
  auto tar = vm().sh("docker cp ar-run:/srv/tree/a - | tar -t");
  EXPECT_EQ(trim(tar.out), "a") << tar.describe();
  // A missing path is dockerd's 404.
  auto missing = vm().docker({"cp", "ar-run:/no/such/file", (dir / "x").string()});
  EXPECT_FALSE(missing.ok());
  EXPECT_NE(missing.err.find("Could not find the file /no/such/file in container ar-run"), std::string::npos)
      << missing.describe();
}

TEST_F(Archive, CopiesWithAStoppedContainerAndUnmountsAfter) {
  made_.push_back("ar-created");
  ok({"create", "--name", "ar-created", "busybox:latest", "cat", "/tmp/in.txt"});
  const fs::path dir = scratch("stopped");
  write_text(dir / "in.txt", "into a container never started\n");
  ok({"cp", (dir / "in.txt").string(), "ar-created:/tmp/in.txt"});
  auto started = vm().docker({"start", "-a", "ar-created"}, 60s);
  EXPECT_EQ(trim(started.out), "into a container never started") << started.describe();

  made_.push_back("ar-exited");
  ok({"run", "--name", "ar-exited", "busybox:latest", "sh", "-c", "echo made after exit > /made.txt"}, 60s);
  ok({"cp", "ar-exited:/made.txt", (dir / "made.txt").string()});
  EXPECT_EQ(read_text(dir / "made.txt"), "made after exit\n");
  write_text(dir / "later.txt", "later\n");
  ok({"cp", (dir / "later.txt").string(), "ar-exited:/"});
  const std::string id = ok({"inspect", "-f", "{{.Id}}", "ar-exited"});
  auto mounts = vm().ssh("grep -c " + id + "/rootfs /proc/mounts || true");
  EXPECT_EQ(trim(mounts.out), "0") << "a stopped container's root file system is unmounted after the copy";
  auto later = vm().sh("docker cp ar-exited:/later.txt - | tar -xO");
  EXPECT_EQ(later.out, "later\n") << later.describe();
}

TEST_F(Archive, CopiesIntoAndOutOfANamedVolumeAndABindMount) {
  ok({"volume", "create", "ar-vol"});
  ASSERT_TRUE(vm().ssh("mkdir -p /var/lib/berth/ar-bind && echo from-vm > /var/lib/berth/ar-bind/vm.txt").ok());
  running("ar-vols", "true",
          {"-v", "ar-vol:/data", "-v", "/var/lib/berth/ar-bind:/bind", "-v", "/var/lib/berth/ar-bind:/robind:ro"});
  const fs::path dir = scratch("vols");
  write_text(dir / "v.txt", "into the volume\n");
  ok({"cp", (dir / "v.txt").string(), "ar-vols:/data/"});
  const std::string mountpoint = ok({"volume", "inspect", "-f", "{{.Mountpoint}}", "ar-vol"});
  EXPECT_EQ(trim(vm().ssh("cat " + mountpoint + "/v.txt").out), "into the volume");
  ok({"cp", (dir / "v.txt").string(), "ar-vols:/bind/b.txt"});
  EXPECT_EQ(trim(vm().ssh("cat /var/lib/berth/ar-bind/b.txt").out), "into the volume");
  ok({"cp", "ar-vols:/bind/vm.txt", (dir / "vm.txt").string()});
  EXPECT_EQ(read_text(dir / "vm.txt"), "from-vm\n");
  // The directory above a volume carries its content.
  auto listed = vm().sh("docker cp ar-vols:/data - | tar -t | sort");
  EXPECT_EQ(trim(listed.out), "data/\ndata/v.txt") << listed.describe();
  // A read-only bind mount takes nothing.
  auto ro = vm().docker({"cp", (dir / "v.txt").string(), "ar-vols:/robind/"});
  EXPECT_FALSE(ro.ok());
  EXPECT_NE(ro.err.find("mounted volume is marked read-only"), std::string::npos) << ro.describe();
  // Stopped, the volume is still there to copy from.
  ok({"stop", "-t", "1", "ar-vols"}, 60s);
  ok({"cp", "ar-vols:/data/v.txt", (dir / "again.txt").string()});
  EXPECT_EQ(read_text(dir / "again.txt"), "into the volume\n");
}

TEST_F(Archive, SymlinksToTheRootNeverReachTheVm) {
  ASSERT_TRUE(vm().ssh("echo VM-ONLY > /tmp/ar-marker && rm -f /x /y /tmp/ar-new").ok());
  running("ar-esc", "echo CONTAINER > /tmp/ar-marker && ln -s ../../../.. /tmp/up && ln -s / /tmp/slash && "
                    "ln -s /var/lib/berth /tmp/berth-dir");
  const fs::path dir = scratch("escape");
  write_text(dir / "f", "copied through a link\n");

  // Written through /tmp/up (-> ../../../..) and /tmp/slash (-> /): the container's /, not the VM's.
  ok({"cp", (dir / "f").string(), "ar-esc:/tmp/up/x"});
  ok({"cp", (dir / "f").string(), "ar-esc:/tmp/slash/y"});
  ok({"cp", (dir / "f").string(), "ar-esc:/tmp/up/tmp/ar-new"});
  EXPECT_EQ(exec_out("ar-esc", "cat /x /y /tmp/ar-new"),
            "copied through a link\ncopied through a link\ncopied through a link");
  auto vm_side = vm().ssh("ls -d /x /y /tmp/ar-new 2>/dev/null; cat /tmp/ar-marker");
  EXPECT_EQ(trim(vm_side.out), "VM-ONLY") << "nothing was written in the VM's own / " << vm_side.describe();

  // Read through the links: the container's marker, never the VM's.
  for (const char* path : {"ar-esc:/tmp/up/tmp/ar-marker", "ar-esc:/tmp/slash/tmp/ar-marker"}) {
    ok({"cp", path, (dir / "marker").string()});
    EXPECT_EQ(read_text(dir / "marker"), "CONTAINER\n") << path;
    fs::remove(dir / "marker");
  }
  // With the container's marker gone there is nothing to copy: the VM's is not read instead.
  exec_out("ar-esc", "rm /tmp/ar-marker");
  auto gone = vm().docker({"cp", "ar-esc:/tmp/up/tmp/ar-marker", (dir / "marker").string()});
  EXPECT_FALSE(gone.ok());
  EXPECT_NE(gone.err.find("Could not find the file"), std::string::npos) << gone.describe();
  EXPECT_FALSE(fs::exists(dir / "marker"));
  // A link naming a VM directory names nothing in the container.
  auto berth_dir = vm().docker({"cp", "ar-esc:/tmp/berth-dir/.", (dir / "berth").string()});
  EXPECT_FALSE(berth_dir.ok()) << "the VM's /var/lib/berth was copied: " << berth_dir.describe();
  auto into = vm().docker({"cp", (dir / "f").string(), "ar-esc:/tmp/berth-dir/planted"});
  EXPECT_FALSE(into.ok()) << into.describe();
  EXPECT_FALSE(vm().ssh("test -e /var/lib/berth/planted").ok()) << "a file was planted in the VM's /var/lib/berth";
  EXPECT_EQ(trim(vm().ssh("cat /tmp/ar-marker").out), "VM-ONLY");
}

TEST_F(Archive, DiffListsAddedChangedAndDeletedPaths) {
  made_.push_back("ar-diff");
  ok({"run", "--name", "ar-diff", "busybox:latest", "sh", "-c",
      "echo new > /added && echo app:x:1000:1000::/:/bin/sh >> /etc/passwd && rm /bin/ls && mkdir -p /opt/dir"},
     60s);
  auto diff = lines(ok({"diff", "ar-diff"}));
  auto has = [&](const std::string& line) { return std::find(diff.begin(), diff.end(), line) != diff.end(); };
  for (const char* want : {"A /added", "C /etc/passwd", "C /bin", "D /bin/ls", "A /opt", "A /opt/dir"})
    EXPECT_TRUE(has(want)) << want << " missing from:\n" << ok({"diff", "ar-diff"});
  for (const char* never : {"A /etc/hosts", "C /etc/hosts", "A /.dockerenv", "A /proc", "A /sys", "A /dev"})
    EXPECT_FALSE(has(never)) << never << " is the runtime's, not the container's";
  made_.push_back("ar-same");
  ok({"run", "--name", "ar-same", "busybox:latest", "true"}, 60s);
  EXPECT_EQ(ok({"diff", "ar-same"}), "") << "a container that changed nothing";
}

TEST_F(Archive, ExportIsTheWholeFileSystem) {
  made_.push_back("ar-export");
  ok({"run", "--name", "ar-export", "busybox:latest", "sh", "-c", "echo exported > /exported.txt && rm /bin/ls"}, 60s);
  const fs::path dir = scratch("export");
  ok({"export", "-o", (dir / "fs.tar").string(), "ar-export"});
  auto names = lines(run({"tar", "-tf", (dir / "fs.tar").string()}).out);
  auto has = [&](const std::string& n) { return std::find(names.begin(), names.end(), n) != names.end(); };
  EXPECT_TRUE(has("bin/busybox"));
  EXPECT_TRUE(has("exported.txt"));
  EXPECT_TRUE(has("etc/passwd"));
  EXPECT_TRUE(has(".dockerenv"));
  EXPECT_FALSE(has("bin/ls")) << "a deleted file is not exported";
  auto content = run({"tar", "-xOf", (dir / "fs.tar").string(), "exported.txt"});
  EXPECT_EQ(content.out, "exported\n");
  auto piped = vm().sh("docker export ar-export | tar -t | grep -c '^bin/'");
  EXPECT_GT(std::stoi("0" + trim(piped.out)), 100) << piped.describe();
}

TEST_F(Archive, CommitMakesARunnableImageWithChangesAuthorAndMessage) {
  made_.push_back("ar-commit");
  ok({"run", "--name", "ar-commit", "busybox:latest", "sh", "-c", "echo committed > /data.txt"}, 60s);
  const auto since = std::to_string(std::chrono::duration_cast<std::chrono::seconds>(
                                        std::chrono::system_clock::now().time_since_epoch())
                                        .count() -
                                    1);
  const std::string id = ok({"commit", "-m", "my message", "-a", "Ann Author <ann@example.com>", "--change",
                             "ENV FOO=bar", "--change", "CMD [\"cat\", \"/data.txt\"]", "--change", "LABEL it=archive",
                             "--change", "WORKDIR /tmp", "ar-commit", "it-archive/committed:v1"});
  EXPECT_EQ(id.rfind("sha256:", 0), 0u) << id;
  EXPECT_EQ(ok({"run", "--rm", "it-archive/committed:v1"}, 60s), "committed");
  EXPECT_EQ(ok({"run", "--rm", "it-archive/committed:v1", "sh", "-c", "echo $FOO; pwd"}, 60s), "bar\n/tmp");
  EXPECT_EQ(ok({"inspect", "-f", "{{.Author}}|{{.Comment}}|{{.Config.Labels.it}}", "it-archive/committed:v1"}),
            "Ann Author <ann@example.com>|my message|archive");
  EXPECT_EQ(ok({"inspect", "-f", "{{len .RootFS.Layers}}", "it-archive/committed:v1"}),
            std::to_string(std::stoi(ok({"inspect", "-f", "{{len .RootFS.Layers}}", "busybox:latest"})) + 1));
  auto history = lines(ok({"history", "--no-trunc", "--format", "{{.CreatedBy}}|{{.Comment}}", "it-archive/committed:v1"}));
  ASSERT_FALSE(history.empty());
  EXPECT_EQ(history[0], "sh -c echo committed > /data.txt|my message");
  auto events = ok({"events", "--since", since, "--until", "0s", "--filter", "event=commit", "--format",
                    "{{.Action}} {{.Actor.Attributes.imageRef}} {{.Actor.Attributes.comment}}"});
  EXPECT_EQ(events, "commit it-archive/committed:v1 my message");
  // Only dockerd's commit commands.
  auto bad = vm().docker({"commit", "--change", "RUN echo no", "ar-commit"});
  EXPECT_FALSE(bad.ok());
  EXPECT_NE(bad.err.find("run is not a valid change command"), std::string::npos) << bad.describe();
  // A running container is paused for the commit and runs on after it.
  running("ar-live", "echo live > /live.txt");
  ok({"commit", "ar-live", "it-archive/running"});
  EXPECT_EQ(ok({"inspect", "-f", "{{.State.Status}}", "ar-live"}), "running");
  EXPECT_EQ(ok({"run", "--rm", "it-archive/running", "cat", "/live.txt"}, 60s), "live");
}

TEST_F(Archive, PythonSdkPutsAndGetsArchives) {
  Env env = vm().docker_env();
  // requests lets these override the CA from DOCKER_CERT_PATH: TLS verification would fail.
  env["REQUESTS_CA_BUNDLE"] = std::nullopt;
  env["CURL_CA_BUNDLE"] = std::nullopt;
  auto r = run({"python3", "-c", kPythonSdk, "ar-py-" + tag_}, env, 180s);
  ASSERT_TRUE(r.ok()) << r.describe();
  auto out = nlohmann::json::parse(trim(r.out));
  EXPECT_EQ(out["stat"]["name"], "hello.txt");
  EXPECT_EQ(out["stat"]["size"], 12);
  EXPECT_EQ(out["name"], "hello.txt");
  EXPECT_EQ(out["mode"], 0640);
  EXPECT_EQ(out["content"], "from python\n");
  EXPECT_TRUE(out["exported"].get<bool>());
  bool added = false;
  for (const auto& change : out["diff"])
    if (change["Path"] == "/tmp/py-dir/hello.txt" && change["Kind"] == 1) added = true;
  EXPECT_TRUE(added) << out["diff"].dump();
}

}  // namespace
}  // namespace berth::it::containers
