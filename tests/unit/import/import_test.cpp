// docker-machine import: parsing docker-machine's store, mapping each driver onto
// berth's driver_state, sealing secrets, and writing (or not writing) the machine.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <optional>

#include "core/docker_machine_store.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/store.h"
#include "tests/unit/import/docker_machine_fixture.h"

namespace berth {
namespace {

namespace dm = docker_machine;
using nlohmann::json;
using test::DockerMachineStore;

constexpr const char* kToken = "dop_v1_0123456789abcdef0123456789abcdef";
constexpr const char* kAccess = "AKIAIOSFODNN7EXAMPLE";
constexpr const char* kSecret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

// Every path, mode, size, mtime and content under `root`: equal digests mean nothing changed.
std::string digest(const fs::path& root) {
  std::string out;
  std::vector<fs::path> paths;
  for (const auto& e : fs::recursive_directory_iterator(root)) paths.push_back(e.path());
  std::sort(paths.begin(), paths.end());
  for (const auto& p : paths) {
    struct stat st {};
    ::lstat(p.c_str(), &st);
    out += p.string() + "|" + std::to_string(st.st_mode) + "|" + std::to_string(st.st_size) + "|" +
           std::to_string(st.st_mtim.tv_sec) + "." + std::to_string(st.st_mtim.tv_nsec) + "\n";
    if (S_ISREG(st.st_mode)) out += read_file(p) + "\n";
  }
  return out;
}

mode_t mode_of(const fs::path& p) {
  struct stat st {};
  ::stat(p.c_str(), &st);
  return st.st_mode & 07777;
}

class Import : public ::testing::Test {
 protected:
  void SetUp() override {
    char t[] = "/tmp/berth-import-XXXXXX";
    tmp_ = ::mkdtemp(t);
    dms_.emplace(tmp_ / "docker-machine");
    store_.emplace(tmp_ / "berth");
    secrets_.emplace(tmp_ / "berth" / "secret.key");
  }
  void TearDown() override { fs::remove_all(tmp_); }

  dm::ImportPlan plan(const std::string& name, const dm::Environment& env = {}) {
    return dm::plan_import(dm::read_host(dms_->root(), name), store_->machine_dir(name), *secrets_, env);
  }
  fs::path mdir(const std::string& name) const { return store_->machine_dir(name); }

  fs::path tmp_;
  std::optional<DockerMachineStore> dms_;
  std::optional<Store> store_;
  std::optional<StoreSecrets> secrets_;
};

TEST_F(Import, ListsHostsWithAConfigOnly) {
  dms_->add_generic("b", "10.0.0.2");
  dms_->add_none("a", "tcp://10.0.0.1:2376");
  fs::create_directories(dms_->dir("half-made"));   // no config.json: not a host
  EXPECT_EQ(dm::list_hosts(dms_->root()), (std::vector<std::string>{"a", "b"}));
  EXPECT_THROW(dm::list_hosts(tmp_ / "nothing-here"), UserError);
}

TEST_F(Import, GenericMapsOntoBerthsGenericDriver) {
  dms_->add_generic("gen", "10.0.0.2", 2222, 2377);
  auto p = plan("gen");
  const MachineRecord& r = p.record;
  EXPECT_EQ(r.name, "gen");
  EXPECT_EQ(r.driver, "generic");
  EXPECT_EQ(r.engine_kind, "dockerd");
  EXPECT_TRUE(is_engine_host(r));
  EXPECT_EQ(r.phase, "ready");
  EXPECT_EQ(r.imported_from.tool, "docker-machine");
  EXPECT_EQ(r.imported_from.path, dms_->dir("gen").string());
  EXPECT_EQ(r.driver_state["ip_address"], "10.0.0.2");
  EXPECT_EQ(r.driver_state["ssh_port"], 2222);
  EXPECT_EQ(r.driver_state["ssh_user"], "root");
  EXPECT_EQ(r.driver_state["ssh_key_source"], "/home/someone/.ssh/id_rsa");
  EXPECT_EQ(r.engine.port, 2377);
  EXPECT_EQ(r.engine.labels, std::vector<std::string>{"team=web"});
  EXPECT_EQ(r.engine.opts, std::vector<std::string>{"log-level=debug"});
  EXPECT_EQ(r.engine.insecure_registries, std::vector<std::string>{"registry.local:5000"});
  EXPECT_EQ(r.engine.registry_mirrors, std::vector<std::string>{"https://mirror.local"});
  EXPECT_EQ(r.engine.env, std::vector<std::string>{"HTTP_PROXY=http://proxy:3128"});
  // What DOCKER_CERT_PATH held for docker-machine, copied to where berth's env points it.
  EXPECT_EQ(r.tls.ca_cert, (mdir("gen") / "ca.pem").string());
  EXPECT_EQ(r.tls.client_cert, (mdir("gen") / "cert.pem").string());
  EXPECT_EQ(r.tls.client_key, (mdir("gen") / "key.pem").string());
  EXPECT_TRUE(r.tls.server_cert.empty());
  EXPECT_TRUE(r.ssh.host_key_fingerprint.empty());   // pinned at first contact
  std::map<std::string, fs::path> files;
  for (const auto& f : p.files) files[f.to] = f.from;
  EXPECT_EQ(files["ca.pem"], dms_->dir("gen") / "ca.pem");
  EXPECT_EQ(files["cert.pem"], dms_->dir("gen") / "cert.pem");
  EXPECT_EQ(files["key.pem"], dms_->dir("gen") / "key.pem");
  EXPECT_EQ(files["id_generic"], dms_->dir("gen") / "id_rsa");
  EXPECT_EQ(files.count("server-key.pem"), 0u);   // dockerd's own key stays on its side
}

TEST_F(Import, NoneKeepsItsUrl) {
  dms_->add_none("ext", "tcp://10.9.9.9:2376");
  auto r = plan("ext").record;
  EXPECT_EQ(r.driver, "none");
  EXPECT_EQ(r.driver_state, (json{{"url", "tcp://10.9.9.9:2376"}}));
  EXPECT_EQ(r.tls.ca_cert, (mdir("ext") / "ca.pem").string());
}

TEST_F(Import, VirtualBoxKeepsBoot2dockersUserKeyAndHostOnlyUrl) {
  dms_->add_virtualbox("vb");
  auto p = plan("vb");
  const auto& r = p.record;
  EXPECT_EQ(r.driver, "virtualbox");
  EXPECT_EQ(r.imported_from.ssh_user, "docker");
  EXPECT_EQ(r.imported_from.ssh_key, (mdir("vb") / "id_rsa").string());
  EXPECT_EQ(r.imported_from.docker_url, "tcp://192.168.99.100:2376");
  EXPECT_EQ(r.driver_state["vm"], "vb");
  EXPECT_EQ(r.driver_state["cpus"], 2);
  EXPECT_EQ(r.driver_state["memory_mb"], 2048);
  EXPECT_EQ(r.driver_state["disk_mb"], 30000);
  EXPECT_EQ(r.driver_state["ssh_port"], 50301);
  EXPECT_EQ(r.driver_state["hostonly"], false);   // docker-machine's NIC 2 is left as it is
  EXPECT_EQ(r.driver_state["share"], false);
  EXPECT_EQ(r.driver_state["vm_base_dir"], dms_->dir("vb").string());
}

TEST_F(Import, DigitalOceanTokenIsSealedAndTheKeyStaysOwned) {
  dms_->add_digitalocean("do1", kToken);
  auto p = plan("do1");
  const auto& s = p.record.driver_state;
  EXPECT_EQ(s["droplet_id"], 123456789);
  EXPECT_EQ(s["ssh_key_id"], 987654);   // docker-machine made this key: rm deletes it, as docker-machine did
  EXPECT_EQ(s["ssh_key_fingerprint"], "");
  EXPECT_EQ(s["region"], "ams3");
  EXPECT_EQ(s["ip_address"], "203.0.113.10");
  EXPECT_EQ(s["tags"], (json{"web", "prod"}));
  EXPECT_EQ(s["private_networking"], true);
  EXPECT_EQ(s["monitoring"], true);
  EXPECT_EQ(s["berth_id"], "");
  const std::string sealed = s["access_token_sealed"];
  EXPECT_EQ(sealed.rfind("berth-sealed-v1:", 0), 0u);
  EXPECT_EQ(secrets_->open(sealed), kToken);
  EXPECT_EQ(json(p.record).dump().find(kToken), std::string::npos);
  bool key = false;
  for (const auto& f : p.files) key = key || (f.to == "id_ed25519" && f.from == dms_->dir("do1") / "id_rsa");
  EXPECT_TRUE(key);
}

TEST_F(Import, DigitalOceanUserKeyIsNotDeletedOnRm) {
  auto config = dms_->add_digitalocean("do2", kToken);
  config["Driver"]["SSHKeyFingerprint"] = "aa:bb:cc";
  config["Driver"]["SSHKey"] = "/home/someone/.ssh/do_key";
  DockerMachineStore::write(dms_->dir("do2") / "config.json", config.dump());
  DockerMachineStore::write(dms_->dir("do2") / "do_key", "the user's key\n");
  auto p = plan("do2");
  EXPECT_EQ(p.record.driver_state["ssh_key_fingerprint"], "aa:bb:cc");
  EXPECT_EQ(p.record.driver_state["ssh_key_id"], 0);
  bool key = false;
  for (const auto& f : p.files) key = key || (f.to == "id_digitalocean" && f.from == dms_->dir("do2") / "id_rsa");
  EXPECT_TRUE(key);
}

TEST_F(Import, AmazonEc2KeysAreSealedAndFieldsMapped) {
  dms_->add_amazonec2("aws1", kAccess, kSecret);
  auto p = plan("aws1");
  const auto& s = p.record.driver_state;
  EXPECT_EQ(secrets_->open(s["access_key_sealed"]), kAccess);
  EXPECT_EQ(secrets_->open(s["secret_key_sealed"]), kSecret);
  EXPECT_FALSE(s.contains("session_token_sealed"));
  EXPECT_EQ(s["instance_id"], "i-0abc1234def567890");
  EXPECT_EQ(s["region"], "eu-west-1");
  EXPECT_EQ(s["ami"], "ami-0b541372");
  EXPECT_EQ(s["key_name"], "aws1");
  EXPECT_EQ(std::string(s["machine_id"]).size(), 16u);   // so rm deletes the key pair docker-machine made
  EXPECT_EQ(s["security_group"], "docker-machine");
  EXPECT_EQ(s["security_group_id"], "sg-0123abcd");
  EXPECT_EQ(s["security_group_created"], false);
  EXPECT_EQ(s["vpc_id"], "vpc-0abc");
  EXPECT_EQ(s["subnet_id"], "subnet-0abc");
  EXPECT_EQ(s["ssh_user"], "ubuntu");
  EXPECT_EQ(s["ip_address"], "198.51.100.7");
  EXPECT_EQ(s["private_ip_address"], "172.31.5.9");
  EXPECT_EQ(s["tags"], (json{{{"key", "team"}, {"value", "web"}}, {{"key", "env"}, {"value", "prod"}}}));
  const std::string dumped = json(p.record).dump();
  EXPECT_EQ(dumped.find(kSecret), std::string::npos);
  EXPECT_EQ(dumped.find(kAccess), std::string::npos);
}

TEST_F(Import, Ec2ExistingKeyPairIsNeverDeleted) {
  auto config = dms_->add_amazonec2("aws2", kAccess, kSecret);
  config["Driver"]["ExistingKey"] = true;
  config["Driver"]["KeyName"] = "my-team-key";
  DockerMachineStore::write(dms_->dir("aws2") / "config.json", config.dump());
  auto s = plan("aws2").record.driver_state;
  EXPECT_EQ(s["machine_id"], "");
  EXPECT_EQ(s["key_name"], "my-team-key");
}

TEST_F(Import, MissingCloudCredentialsComeFromTheEnvironmentOrFail) {
  dms_->add_digitalocean("do3", "");
  dms_->add_amazonec2("aws3", "", "");
  EXPECT_THROW(plan("do3"), UserError);
  EXPECT_THROW(plan("aws3"), UserError);
  dm::Environment env;
  env.digitalocean_token = kToken;
  env.aws_access_key = kAccess;
  env.aws_secret_key = kSecret;
  env.aws_session_token = "session";
  EXPECT_EQ(secrets_->open(plan("do3", env).record.driver_state["access_token_sealed"]), kToken);
  auto s = plan("aws3", env).record.driver_state;
  EXPECT_EQ(secrets_->open(s["secret_key_sealed"]), kSecret);
  EXPECT_EQ(secrets_->open(s["session_token_sealed"]), "session");
}

TEST_F(Import, UnknownDriverIsNamed) {
  json d = dms_->base_driver("hv", "10.0.0.5", "docker", 22);
  d["VSwitch"] = "";
  dms_->add("hv", "hyperv", d);
  try {
    plan("hv");
    FAIL() << "hyperv was planned";
  } catch (const UserError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("'hyperv'"), std::string::npos) << m;
    EXPECT_NE(m.find("hv"), std::string::npos) << m;
    EXPECT_EQ(m.find('\n'), std::string::npos) << m;
  }
}

TEST_F(Import, CorruptJsonIsOneLineNamingTheFile) {
  dms_->add_generic("bad", "10.0.0.2");
  DockerMachineStore::write(dms_->dir("bad") / "config.json", "{\n  \"ConfigVersion\": 3,\n  \"Driver\": {\n");
  try {
    dm::read_host(dms_->root(), "bad");
    FAIL() << "corrupt JSON was read";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find((dms_->dir("bad") / "config.json").string()), std::string::npos) << m;
    EXPECT_NE(m.find("not valid JSON"), std::string::npos) << m;
    EXPECT_EQ(m.find('\n'), std::string::npos) << m;
  }
}

TEST_F(Import, OnlyConfigVersion3) {
  auto config = dms_->add_generic("old", "10.0.0.2");
  config["ConfigVersion"] = 1;
  DockerMachineStore::write(dms_->dir("old") / "config.json", config.dump());
  try {
    dm::read_host(dms_->root(), "old");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("ConfigVersion 1"), std::string::npos) << e.what();
  }
  EXPECT_THROW(dm::read_host(dms_->root(), "ghost"), NotFound);
}

TEST_F(Import, FindsFilesInAStoreThatMoved) {
  // The paths in config.json name the store where docker-machine wrote it; --from points at a copy.
  auto config = dms_->add_generic("moved", "10.0.0.2");
  const std::string elsewhere = "/Users/someone/.docker/machine";
  config["Driver"]["StorePath"] = elsewhere;
  config["Driver"]["SSHKeyPath"] = elsewhere + "/machines/moved/id_rsa";
  for (auto& [k, v] : config["HostOptions"]["AuthOptions"].items())
    if (v.is_string()) v = std::string(v).replace(0, dms_->root().string().size(), elsewhere);
  DockerMachineStore::write(dms_->dir("moved") / "config.json", config.dump());
  fs::remove(dms_->dir("moved") / "ca.pem");   // only the store's certs/ca.pem is left
  auto p = plan("moved");
  std::map<std::string, fs::path> files;
  for (const auto& f : p.files) files[f.to] = f.from;
  EXPECT_EQ(files["ca.pem"], dms_->root() / "certs" / "ca.pem");
  EXPECT_EQ(files["id_generic"], dms_->dir("moved") / "id_rsa");
}

TEST_F(Import, MissingKeyOrCertsFailClearly) {
  dms_->add_generic("nokey", "10.0.0.2");
  fs::remove(dms_->dir("nokey") / "id_rsa");
  EXPECT_THROW(plan("nokey"), UserError);
  dms_->add_generic("nocert", "10.0.0.3");
  fs::remove(dms_->dir("nocert") / "key.pem");
  fs::remove(dms_->root() / "certs" / "key.pem");
  try {
    plan("nocert");
    FAIL();
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("key.pem"), std::string::npos) << e.what();
  }
}

TEST_F(Import, WritesAPrivateMachineTheStoreLoads) {
  dms_->add_generic("gen", "10.0.0.2");
  const std::string before = digest(dms_->root());
  auto p = plan("gen");
  dm::write_import(*store_, p);
  EXPECT_EQ(digest(dms_->root()), before);   // docker-machine's store is only read
  EXPECT_EQ(mode_of(mdir("gen")), 0700u);
  for (const char* f : {"ca.pem", "cert.pem", "key.pem", "id_generic", "config.json"}) {
    EXPECT_EQ(mode_of(mdir("gen") / f), 0600u) << f;
  }
  EXPECT_EQ(read_file(mdir("gen") / "id_generic"), "private key of gen\n");
  EXPECT_EQ(read_file(mdir("gen") / "key.pem"), "gen key.pem\n");
  MachineRecord loaded = store_->load("gen");
  EXPECT_EQ(loaded.engine_kind, "dockerd");
  EXPECT_EQ(loaded.imported_from.path, dms_->dir("gen").string());
  EXPECT_EQ(loaded.driver_state, p.record.driver_state);
}

TEST_F(Import, AnExistingMachineIsNeverOverwritten) {
  dms_->add_generic("taken", "10.0.0.2");
  dm::write_import(*store_, plan("taken"));
  const std::string berth_before = digest(store_->root());
  auto again = plan("taken");
  again.record.driver_state["ip_address"] = "10.9.9.9";
  EXPECT_THROW(dm::write_import(*store_, again), UserError);
  EXPECT_EQ(digest(store_->root()), berth_before);
}

TEST_F(Import, NothingIsLeftWhenWritingFails) {
  dms_->add_generic("gone", "10.0.0.2");
  auto p = plan("gone");
  fs::remove(dms_->dir("gone") / "id_rsa");   // vanishes between plan and write
  EXPECT_THROW(dm::write_import(*store_, p), Error);
  EXPECT_FALSE(fs::exists(mdir("gone")));
  EXPECT_FALSE(store_->exists("gone"));
}

TEST_F(Import, OlderRecordsAreBerthAgentMachines) {
  json j = MachineRecord{};
  j.erase("engine_kind");
  EXPECT_FALSE(j.contains("imported_from"));   // only imported machines carry it
  MachineRecord r = j.get<MachineRecord>();
  EXPECT_EQ(r.engine_kind, "berth-agent");
  EXPECT_FALSE(is_engine_host(r));
}

// ---- the berth binary, on fixtures that need no host or network ----

struct Result {
  int code;
  std::string out;
};

class ImportCli : public Import {
 protected:
  void SetUp() override {
    Import::SetUp();
    const char* build = std::getenv("BERTH_BUILD_DIR");
    ASSERT_NE(build, nullptr);
    berth_ = fs::path(build) / "cli" / "berth";
  }
  Result berth(const std::string& args, const std::string& env = "") {
    std::string cmd = "env -u DOCKER_HOST -u DOCKER_CONTEXT -u MACHINE_STORAGE_PATH -u DIGITALOCEAN_ACCESS_TOKEN "
                      "-u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY HOME=" + tmp_.string() + " DOCKER_CONFIG=" +
                      (tmp_ / "docker").string() + " " + env + " " + berth_.string() + " --storage-path " +
                      store_->root().string() + " " + args + " 2>&1 </dev/null";
    FILE* p = ::popen(cmd.c_str(), "r");
    std::string out;
    std::array<char, 4096> buf{};
    size_t n;
    while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
    int status = ::pclose(p);
    return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
  }
  void fixtures() {
    dms_->add_generic("gen", "127.0.0.1", 1, 2377);
    dms_->add_none("ext", "tcp://127.0.0.1:2");
    dms_->add_virtualbox("vb");
    dms_->add_digitalocean("do1", kToken);
    dms_->add_amazonec2("aws1", kAccess, kSecret);
    json d = dms_->base_driver("hv", "10.0.0.5", "docker", 22);
    dms_->add("hv", "hyperv", d);
  }
  fs::path berth_;
};

bool has(const std::string& out, const std::string& what) { return out.find(what) != std::string::npos; }

TEST_F(ImportCli, ImportsEveryKnownDriverAndReportsTheRest) {
  fixtures();
  const std::string before = digest(dms_->root());
  auto r = berth("import-docker-machine --from " + dms_->root().string());
  EXPECT_EQ(r.code, 1) << r.out;   // hyperv failed
  for (const char* name : {"gen", "ext", "vb", "do1", "aws1"}) {
    EXPECT_TRUE(has(r.out, std::string("Imported ") + name + " (")) << r.out;
    EXPECT_TRUE(store_->exists(name)) << name;
  }
  EXPECT_TRUE(has(r.out, "'hyperv'")) << r.out;
  EXPECT_FALSE(store_->exists("hv"));
  EXPECT_FALSE(fs::exists(mdir("hv")));
  EXPECT_TRUE(has(r.out, "5 imported, 0 skipped, 1 failed")) << r.out;
  EXPECT_FALSE(has(r.out, kToken) || has(r.out, kSecret) || has(r.out, kAccess)) << r.out;
  EXPECT_EQ(digest(dms_->root()), before);
  // No secret in clear anywhere in berth's store.
  for (const auto& e : fs::recursive_directory_iterator(store_->root()))
    if (e.is_regular_file()) {
      const std::string text = read_file(e.path());
      EXPECT_FALSE(has(text, kToken) || has(text, kSecret) || has(text, kAccess)) << e.path();
    }

  // Again: existing machines are skipped, never overwritten.
  const std::string berth_before = digest(store_->root() / "machines");
  r = berth("import-docker-machine --from " + dms_->root().string() + " gen do1");
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_TRUE(has(r.out, "gen: skipped: berth already has a machine named 'gen'")) << r.out;
  EXPECT_TRUE(has(r.out, "0 imported, 2 skipped, 0 failed")) << r.out;
  EXPECT_EQ(digest(store_->root() / "machines"), berth_before);

  // A named host that fails makes the exit code 1; one that does not exist says so.
  r = berth("import-docker-machine --from " + dms_->root().string() + " hv");
  EXPECT_EQ(r.code, 1) << r.out;
  r = berth("import-docker-machine --from " + dms_->root().string() + " ghost");
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_TRUE(has(r.out, "docker-machine host 'ghost' not found")) << r.out;
}

TEST_F(ImportCli, DefaultStoreIsMachineStoragePath) {
  dms_->add_none("ext", "tcp://127.0.0.1:2");
  auto r = berth("import-docker-machine", "MACHINE_STORAGE_PATH=" + dms_->root().string());
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_TRUE(store_->exists("ext"));
  r = berth("import-docker-machine", "MACHINE_STORAGE_PATH=" + (tmp_ / "none").string());
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_TRUE(has(r.out, "no docker-machine store at")) << r.out;
}

TEST_F(ImportCli, EnvUrlIpAndInspectOnImportedHosts) {
  fixtures();
  berth("import-docker-machine --from " + dms_->root().string());
  auto r = berth("env --shell bash gen");
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_TRUE(has(r.out, "DOCKER_HOST=\"tcp://127.0.0.1:2377\"")) << r.out;
  EXPECT_TRUE(has(r.out, "DOCKER_CERT_PATH=\"" + mdir("gen").string() + "\"")) << r.out;
  EXPECT_TRUE(has(r.out, "DOCKER_TLS_VERIFY=\"1\"")) << r.out;
  r = berth("url vb");
  EXPECT_EQ(r.out, "tcp://192.168.99.100:2376\n");
  r = berth("ip vb");
  EXPECT_EQ(r.out, "192.168.99.100\n");
  r = berth("url do1");
  EXPECT_EQ(r.out, "tcp://203.0.113.10:2376\n");
  r = berth("inspect do1");
  EXPECT_EQ(r.code, 0) << r.out;
  auto j = json::parse(r.out);
  EXPECT_EQ(j["engine_kind"], "dockerd");
  EXPECT_EQ(j["imported_from"]["tool"], "docker-machine");
  EXPECT_FALSE(j["driver_state"].contains("access_token_sealed"));
  r = berth("inspect -f '{{.engine_kind}} {{.driver}}' aws1");
  EXPECT_EQ(r.out, "dockerd amazonec2\n");
}

TEST_F(ImportCli, AgentCommandsAreRefusedOnEngineHosts) {
  fixtures();
  berth("import-docker-machine --from " + dms_->root().string());
  for (const std::string cmd : {"provision gen", "regenerate-certs -f gen", "provision vb"}) {
    auto r = berth(cmd);
    EXPECT_EQ(r.code, 1) << cmd << ": " << r.out;
    EXPECT_TRUE(has(r.out, "is a docker-machine engine host")) << cmd << ": " << r.out;
    EXPECT_TRUE(has(r.out, "'berth rm ")) << r.out;
    EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << r.out;
  }
  auto up = berth("upgrade gen");   // upgrade.cpp says it its own way
  EXPECT_EQ(up.code, 1) << up.out;
  EXPECT_TRUE(has(up.out, "docker-machine")) << up.out;
  EXPECT_EQ(std::count(up.out.begin(), up.out.end(), '\n'), 1) << up.out;
  auto r = berth("provision gen");
  EXPECT_TRUE(has(r.out, "berth create -d generic --generic-ip-address 127.0.0.1 --generic-ssh-user root")) << r.out;
  EXPECT_FALSE(fs::exists(mdir("gen") / "server.pem"));   // nothing was issued
}

// Advice must work: a none host has no SSH, so "create -d none" would give the same dockerd host back.
TEST_F(ImportCli, NoneEngineHostAdviceLeadsSomewhere) {
  fixtures();
  berth("import-docker-machine --from " + dms_->root().string());
  for (const std::string cmd : {"provision ext", "regenerate-certs -f ext"}) {
    auto r = berth(cmd);
    EXPECT_EQ(r.code, 1) << cmd << ": " << r.out;
    EXPECT_TRUE(has(r.out, "machine 'ext'")) << r.out;
    EXPECT_TRUE(has(r.out, "without SSH")) << r.out;
    EXPECT_FALSE(has(r.out, "berth create -d none")) << r.out;
  }
}

TEST_F(ImportCli, HostsBerthCantKeepAreNamedWithTheReason) {
  dms_->add_none("bad-url", "junk");
  const std::string long_name(65, 'l');
  dms_->add_none(long_name, "tcp://127.0.0.1:2");
  auto r = berth("import-docker-machine --from " + dms_->root().string());
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_TRUE(has(r.out, "machine 'bad-url': its Docker URL 'junk' is not of the form tcp://HOST:PORT")) << r.out;
  EXPECT_FALSE(has(r.out, "--url")) << r.out;
  EXPECT_TRUE(has(r.out, "docker-machine host '" + long_name + "' has a name berth can't keep (a machine name can "
                         "have at most 64 characters, this one has 65)")) << r.out;
}

TEST_F(ImportCli, RmForgetsGenericAndNoneHostsAndLeavesDockerMachineAlone) {
  fixtures();
  berth("import-docker-machine --from " + dms_->root().string());
  const std::string before = digest(dms_->root());
  for (const char* name : {"gen", "ext"}) {
    auto r = berth(std::string("rm -y ") + name);
    EXPECT_EQ(r.code, 0) << r.out;
    EXPECT_FALSE(fs::exists(mdir(name))) << name;
  }
  EXPECT_EQ(digest(dms_->root()), before);
}

}  // namespace
}  // namespace berth
