#include "drivers/cloud/amazonec2/xml.h"

#include <libxml/parser.h>
#include <libxml/tree.h>

#include <climits>
#include <cstring>

#include "core/error.h"

namespace berth::cloud::xml {

void free_string(xmlChar* s);  // xml_lazy.cpp

namespace {

const char* href(const xmlNode* n) {
  return n && n->ns && n->ns->href ? reinterpret_cast<const char*>(n->ns->href) : "";
}

bool same_ns(const xmlNode* a, const xmlNode* b) { return std::strcmp(href(a), href(b)) == 0; }

bool named(const xmlNode* n, std::string_view name) {
  return n->type == XML_ELEMENT_NODE && reinterpret_cast<const char*>(n->name) == name;
}

void collect(xmlNode* n, std::string_view name, std::vector<Node>& out) {
  for (xmlNode* c = n->children; c; c = c->next) {
    if (c->type != XML_ELEMENT_NODE) continue;
    if (named(c, name)) out.emplace_back(c);
    collect(c, name, out);
  }
}

}  // namespace

std::string Node::name() const { return n_ ? reinterpret_cast<const char*>(n_->name) : ""; }

std::string Node::ns() const { return href(n_); }

std::string Node::text() const {
  if (!n_) return "";
  xmlChar* s = xmlNodeGetContent(n_);
  if (!s) return "";
  std::string out(reinterpret_cast<const char*>(s));
  free_string(s);
  return out;
}

Node Node::child(std::string_view name) const {
  if (!n_) return Node{};
  for (xmlNode* c = n_->children; c; c = c->next)
    if (named(c, name) && same_ns(c, n_)) return Node(c);
  return Node{};
}

std::vector<Node> Node::children(std::string_view name) const {
  std::vector<Node> out;
  if (!n_) return out;
  for (xmlNode* c = n_->children; c; c = c->next)
    if (c->type == XML_ELEMENT_NODE && same_ns(c, n_) && (name.empty() || named(c, name))) out.emplace_back(c);
  return out;
}

Node Node::path(std::string_view slash_path) const {
  Node cur = *this;
  size_t start = 0;
  while (cur && start <= slash_path.size()) {
    size_t end = slash_path.find('/', start);
    if (end == std::string_view::npos) end = slash_path.size();
    cur = cur.child(slash_path.substr(start, end - start));
    start = end + 1;
  }
  return cur;
}

std::vector<Node> Node::descendants(std::string_view name) const {
  std::vector<Node> out;
  if (n_) collect(n_, name, out);
  return out;
}

void Document::Free::operator()(_xmlDoc* d) const { xmlFreeDoc(d); }

Document Document::parse(std::string_view text, const std::string& what) {
  if (text.size() > static_cast<size_t>(INT_MAX)) throw DriverError(what + ": the XML answer is too large");
  // No XML_PARSE_NOENT (no entity expansion), no DTD loading, no network.
  const int options = XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING | XML_PARSE_NOBLANKS;
  xmlDoc* doc = xmlReadMemory(text.data(), static_cast<int>(text.size()), "response.xml", "UTF-8", options);
  if (!doc || !xmlDocGetRootElement(doc)) {
    if (doc) xmlFreeDoc(doc);
    std::string head(text.substr(0, 80));
    for (char& c : head)
      if (c == '\n' || c == '\r') c = ' ';
    throw DriverError(what + ": the answer is not well-formed XML (starts with \"" + head + "\")");
  }
  Document d;
  d.doc_.reset(doc);
  return d;
}

Node Document::root() const { return Node(xmlDocGetRootElement(doc_.get())); }

}  // namespace berth::cloud::xml
