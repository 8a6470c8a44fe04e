#include "core/lazy_library.h"

#include <dlfcn.h>

#include "core/error.h"

namespace berth {

void* LazyLibrary::symbol(const char* name) {
  std::lock_guard l(mu_);
  if (!handle_) {
    handle_ = ::dlopen(soname_, RTLD_NOW | RTLD_LOCAL);
    if (!handle_) {
      const char* why = ::dlerror();
      throw Error(std::string("cannot load ") + soname_ + " (" + (why ? why : "not found") + "); " + install_hint_);
    }
  }
  ::dlerror();
  void* address = ::dlsym(handle_, name);
  if (!address) {
    const char* why = ::dlerror();
    throw Error(std::string(soname_) + " has no " + name + " (" + (why ? why : "null symbol") +
                "): it is older than berth needs; " + install_hint_);
  }
  return address;
}

}  // namespace berth
