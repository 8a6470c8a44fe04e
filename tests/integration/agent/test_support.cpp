#include "test_support.h"

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <functional>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace berth::agent::testing {

TempDir::TempDir() {
  std::string tmpl = (fs::temp_directory_path() / "berth-agent-it-XXXXXX").string();
  if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  path = tmpl;
}

TempDir::~TempDir() {
  std::error_code ec;
  fs::remove_all(path, ec);
}

CommandResult run(const std::string& command) {
  struct PipeCloser {
    void operator()(FILE* f) const { ::pclose(f); }
  };
  std::string full = command + " 2>&1";
  FILE* raw = ::popen(full.c_str(), "r");
  if (raw == nullptr) throw std::runtime_error("cannot run: " + command);
  std::unique_ptr<FILE, PipeCloser> pipe(raw);
  CommandResult result;
  char buf[4096];
  for (size_t n; (n = std::fread(buf, 1, sizeof buf, pipe.get())) > 0;)
    result.output.append(buf, n);
  int status = ::pclose(pipe.release());
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return result;
}

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'')
      out += "'\\''";
    else
      out += c;
  }
  return out + "'";
}

std::string read_text(const fs::path& path) {
  std::ifstream in(path);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

void write_text(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::trunc);
  out << text;
}

bool wait_until(const std::function<bool()>& condition, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (condition()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return condition();
}

namespace {

void check(const std::string& command) {
  CommandResult r = run(command);
  if (r.exit_code != 0) throw std::runtime_error(command + " failed: " + r.output);
}

}  // namespace

void TestPki::make_ca(const std::string& name, const std::string& cn) {
  check(
      "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -sha256 -days 2"
      " -subj " +
      shell_quote("/CN=" + cn) + " -keyout " + shell_quote(key(name).string()) + " -out " +
      shell_quote(cert(name).string()) +
      " -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign");
}

void TestPki::sign(const std::string& ca, const std::string& name, const std::string& cn,
                   const std::string& extensions) {
  fs::path csr = dir_ / (name + ".csr");
  fs::path ext = dir_ / (name + ".ext");
  write_text(ext, extensions);
  check("openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj " +
        shell_quote("/CN=" + cn) + " -keyout " + shell_quote(key(name).string()) + " -out " +
        shell_quote(csr.string()));
  check("openssl x509 -req -sha256 -days 2 -in " + shell_quote(csr.string()) + " -CA " +
        shell_quote(cert(ca).string()) + " -CAkey " + shell_quote(key(ca).string()) +
        " -set_serial 0x$(openssl rand -hex 8) -extfile " + shell_quote(ext.string()) + " -out " +
        shell_quote(cert(name).string()));
  fs::permissions(key(name), fs::perms::owner_read | fs::perms::owner_write);
}

void TestPki::make_server_cert(const std::string& ca, const std::string& name,
                               const std::string& cn) {
  sign(ca, name, cn,
       "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"
       "keyUsage=critical,digitalSignature,keyEncipherment\n");
}

void TestPki::make_client_cert(const std::string& ca, const std::string& name,
                               const std::string& cn) {
  sign(ca, name, cn, "extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature\n");
}

std::string TestPki::fingerprint(const std::string& name) const {
  CommandResult r =
      run("openssl x509 -noout -fingerprint -sha256 -in " + shell_quote(cert(name).string()));
  auto eq = r.output.find('=');
  if (r.exit_code != 0 || eq == std::string::npos)
    throw std::runtime_error("fingerprint: " + r.output);
  std::string fp = r.output.substr(eq + 1);
  while (!fp.empty() && (fp.back() == '\n' || fp.back() == '\r')) fp.pop_back();
  return fp;
}

}  // namespace berth::agent::testing
