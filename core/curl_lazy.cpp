// libcurl, opened on the first transfer (core/lazy_library.h). berth is not
// linked with it: env, url, inspect and ls -q then load none of the 30
// libraries it brings (Kerberos, LDAP, RTMP, nghttp2, ...).
#include <curl/curl.h>

#include <cstdarg>

#include "core/lazy_library.h"

namespace {
berth::LazyLibrary& libcurl() {
  static berth::LazyLibrary lib("libcurl.so.4", "berth needs libcurl: apt install libcurl4");
  return lib;
}

using SetoptFn = CURLcode (*)(CURL*, CURLoption, ...);

// The argument after `option` comes off the list as the type the option's
// number range says it is (curl.h's CURLOPTTYPE_*).
CURLcode forward_setopt(SetoptFn real, CURL* curl, CURLoption option, va_list ap) {
  const long type = static_cast<long>(option) / 10000 * 10000;
  if (type < CURLOPTTYPE_OBJECTPOINT) return real(curl, option, va_arg(ap, long));
  if (type == CURLOPTTYPE_OFF_T) return real(curl, option, va_arg(ap, curl_off_t));
  return real(curl, option, va_arg(ap, void*));  // object, string, function or blob pointer
}
}  // namespace

BERTH_LAZY_FUNCTION(libcurl(), CURLcode, curl_global_init, (long flags), (flags))
BERTH_LAZY_FUNCTION(libcurl(), CURL*, curl_easy_init, (void), ())
BERTH_LAZY_FUNCTION(libcurl(), CURLcode, curl_easy_perform, (CURL* curl), (curl))
BERTH_LAZY_FUNCTION(libcurl(), void, curl_easy_cleanup, (CURL* curl), (curl))
BERTH_LAZY_FUNCTION(libcurl(), const char*, curl_easy_strerror, (CURLcode code), (code))
BERTH_LAZY_FUNCTION(libcurl(), struct curl_slist*, curl_slist_append, (struct curl_slist* list, const char* data),
                    (list, data))
BERTH_LAZY_FUNCTION(libcurl(), void, curl_slist_free_all, (struct curl_slist* list), (list))

extern "C" CURLcode curl_easy_setopt(CURL* curl, CURLoption option, ...) {
  static const auto real = reinterpret_cast<SetoptFn>(libcurl().symbol("curl_easy_setopt"));
  va_list ap;
  va_start(ap, option);
  CURLcode rc = forward_setopt(real, curl, option, ap);
  va_end(ap);
  return rc;
}

extern "C" CURLcode curl_easy_getinfo(CURL* curl, CURLINFO info, ...) {
  using Fn = CURLcode (*)(CURL*, CURLINFO, ...);
  static const auto real = reinterpret_cast<Fn>(libcurl().symbol("curl_easy_getinfo"));
  va_list ap;
  va_start(ap, info);
  CURLcode rc = real(curl, info, va_arg(ap, void*));  // every CURLINFO_* takes a pointer
  va_end(ap);
  return rc;
}
