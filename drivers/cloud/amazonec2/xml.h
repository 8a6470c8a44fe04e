#pragma once
// A small read-only view of an XML document over libxml2, with RAII.
// Lookups are namespace-aware: a child matches by local name and must be in
// its parent's namespace (EC2 answers put every element in one default
// namespace; error documents have none).
#include <memory>
#include <string>
#include <string_view>
#include <vector>

struct _xmlDoc;
struct _xmlNode;

namespace berth::cloud::xml {

class Node {
 public:
  Node() = default;
  explicit Node(_xmlNode* n) : n_(n) {}
  explicit operator bool() const { return n_ != nullptr; }

  std::string name() const;                                      // local name
  std::string ns() const;                                        // namespace URI, "" for none
  std::string text() const;                                      // the text content, "" for a missing node
  Node child(std::string_view name) const;                       // first element child with this name, or an empty Node
  std::vector<Node> children(std::string_view name = {}) const;  // element children (all when name is empty)
  // child(a).child(b)... in one call: path("instancesSet/item").
  Node path(std::string_view slash_path) const;
  std::string text_at(std::string_view slash_path) const { return path(slash_path).text(); }
  // Every element below this one (any depth) with this local name, in document order.
  std::vector<Node> descendants(std::string_view name) const;

 private:
  _xmlNode* n_ = nullptr;
};

class Document {
 public:
  // Throws DriverError naming `what` when the text is not well-formed XML.
  // No network access, no entity expansion, no DTD loading.
  static Document parse(std::string_view text, const std::string& what);
  Node root() const;

 private:
  struct Free {
    void operator()(_xmlDoc* d) const;
  };
  std::unique_ptr<_xmlDoc, Free> doc_;
};

}  // namespace berth::cloud::xml
