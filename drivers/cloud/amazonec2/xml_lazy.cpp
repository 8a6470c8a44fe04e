// libxml2, opened on the first EC2 response (core/lazy_library.h): berth is
// not linked with it, so the commands that never parse XML do not load it and ICU.
#include <libxml/parser.h>
#include <libxml/tree.h>

#include "core/lazy_library.h"

namespace {
berth::LazyLibrary& libxml2() {
  static berth::LazyLibrary lib("libxml2.so.2", "the amazonec2 driver needs libxml2: apt install libxml2");
  return lib;
}
}  // namespace

BERTH_LAZY_FUNCTION(libxml2(), xmlDocPtr, xmlReadMemory,
                    (const char* buffer, int size, const char* URL, const char* encoding, int options),
                    (buffer, size, URL, encoding, options))
BERTH_LAZY_FUNCTION(libxml2(), void, xmlFreeDoc, (xmlDocPtr cur), (cur))
BERTH_LAZY_FUNCTION(libxml2(), xmlNodePtr, xmlDocGetRootElement, (const xmlDoc* doc), (doc))
BERTH_LAZY_FUNCTION(libxml2(), xmlChar*, xmlNodeGetContent, (const xmlNode* cur), (cur))

namespace berth::cloud::xml {
// xmlFree is a variable (the allocator's free), not a function: read it there.
void free_string(xmlChar* s) { (*reinterpret_cast<xmlFreeFunc*>(libxml2().symbol("xmlFree")))(s); }
}  // namespace berth::cloud::xml
