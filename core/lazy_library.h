#pragma once
// A shared library opened on first use. Commands that never touch it (env,
// url, inspect, ls -q) then do not pay for loading it and everything it
// links, and a machine without it can still run the other drivers.
// BERTH_LAZY_FUNCTION defines one C function of the library's own header: the
// first call opens the library, and every call goes to its real symbol.
#include <mutex>
#include <string>

namespace berth {

class LazyLibrary {
 public:
  // soname: "libvirt.so.0"; install_hint: what gets it ("apt install libvirt0").
  LazyLibrary(const char* soname, const char* install_hint) : soname_(soname), install_hint_(install_hint) {}
  LazyLibrary(const LazyLibrary&) = delete;
  LazyLibrary& operator=(const LazyLibrary&) = delete;

  // The address of `name`. Throws Error with the library, the loader's reason
  // and the install hint when it cannot be opened or lacks the symbol.
  void* symbol(const char* name);

 private:
  const char* soname_;
  const char* install_hint_;
  std::mutex mu_;
  void* handle_ = nullptr;
};

}  // namespace berth

// BERTH_LAZY_FUNCTION(lib, int, virDomainFree, (virDomainPtr d), (d)): the
// header's declaration checks the signature.
#define BERTH_LAZY_FUNCTION(library, ret, name, params, args)                                  \
  extern "C" ret name params {                                                                  \
    static const auto real = reinterpret_cast<ret(*) params>((library).symbol(#name));         \
    return real args;                                                                           \
  }
