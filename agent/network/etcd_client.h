#pragma once
// A client of etcd 3.4's v3 API through its gRPC gateway (JSON over HTTPS with
// a client certificate): kv range/put/deleterange/txn, watch (a streaming
// response), leases and cluster membership. Keys and values are bytes here;
// the base64 of the wire format stays inside.
//
// Endpoints are tried in turn, starting with the last one that answered. An
// endpoint that cannot be reached, or whose member has no leader (quorum
// lost), moves on to the next; when none answers, the call throws
// StoreUnavailable with one line naming why ("... no quorum", "cannot reach
// ..."). Thread-safe: each call takes a pooled keep-alive connection.
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace berth::agent::network {

struct EtcdTls {
  std::string ca, cert, key;  // PEM files
};

struct EtcdOptions {
  std::vector<std::string> endpoints;  // "https://192.168.200.11:2379"
  EtcdTls tls;
  std::chrono::milliseconds connect_timeout{1500};
  std::chrono::milliseconds request_timeout{4000};  // per endpoint
};

// The cluster store cannot serve the request: every endpoint is unreachable
// or without quorum. what(): "the cluster store (etcd) is unavailable: ...".
class StoreUnavailable : public std::runtime_error {
 public:
  explicit StoreUnavailable(const std::string& reason)
      : std::runtime_error("the cluster store (etcd) is unavailable: " + reason) {}
};

// etcd answered with an error that is not about availability (a bad
// request, a compacted revision, ...).
class EtcdError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct KeyValue {
  std::string key, value;
  std::int64_t create_revision = 0, mod_revision = 0, version = 0, lease = 0;
};

struct RangeResult {
  std::int64_t revision = 0;  // the store's revision when it was read
  std::vector<KeyValue> kvs;
  std::int64_t count = 0;
  bool more = false;
};

// The end of the range of every key that starts with `prefix`.
std::string prefix_end(const std::string& prefix);

struct RangeOptions {
  std::string range_end;  // "" for the key alone
  std::int64_t revision = 0;  // 0: the newest
  std::int64_t limit = 0;
  bool keys_only = false;
  bool count_only = false;
  bool serializable = false;  // read the member's copy without a quorum round
};

// One condition of a transaction. With a range_end it must hold for every
// key in the range; an empty range compares as a key that does not exist.
struct Compare {
  enum class Target { Version, Create, Mod, Value };
  enum class Result { Equal, Greater, Less, NotEqual };
  std::string key, range_end;
  Target target = Target::Version;
  Result result = Result::Equal;
  std::int64_t number = 0;  // version / create_revision / mod_revision
  std::string value;        // Target::Value

  static Compare absent(std::string key);  // create_revision == 0
  static Compare exists(std::string key);  // version > 0
  static Compare value_is(std::string key, std::string value);
  static Compare mod_revision_is(std::string key, std::int64_t revision);
  static Compare prefix_empty(const std::string& prefix);  // no key starts with prefix
  // Nothing under prefix changed after `revision` (keys deleted since are not seen).
  static Compare prefix_unchanged_since(const std::string& prefix, std::int64_t revision);
};

struct TxnOp {
  enum class Kind { Put, Delete, Range };
  Kind kind = Kind::Put;
  std::string key, range_end, value;
  std::int64_t lease = 0;

  static TxnOp put(std::string key, std::string value, std::int64_t lease = 0);
  static TxnOp del(std::string key);
  static TxnOp del_prefix(const std::string& prefix);
  static TxnOp get(std::string key);
  static TxnOp get_prefix(const std::string& prefix);
};

struct TxnResult {
  bool succeeded = false;
  std::int64_t revision = 0;
  std::vector<RangeResult> ranges;  // one per Range op of the branch that ran, in order
};

struct EtcdMember {
  std::uint64_t id = 0;
  std::string name;  // empty for a member added but not started yet
  std::vector<std::string> peer_urls, client_urls;
  bool learner = false;
};

enum class EventType { Put, Delete };
struct WatchEvent {
  EventType type = EventType::Put;
  KeyValue kv;  // for a Delete: key and mod_revision
};

struct WatchBatch {
  std::int64_t revision = 0;  // the header's revision
  std::vector<WatchEvent> events;
};

// The revision a watch started from was compacted away: list again.
class WatchCompacted : public EtcdError {
 public:
  explicit WatchCompacted(std::int64_t compact_revision)
      : EtcdError("watch revision compacted (now " + std::to_string(compact_revision) + ")"),
        compact_revision_(compact_revision) {}
  std::int64_t compact_revision() const { return compact_revision_; }

 private:
  std::int64_t compact_revision_;
};

class EtcdClient;

// One watch stream on [key, range_end) from start_revision. Not thread-safe
// (one reader); close() may be called from another thread.
class EtcdWatch {
 public:
  ~EtcdWatch();
  EtcdWatch(const EtcdWatch&) = delete;
  EtcdWatch& operator=(const EtcdWatch&) = delete;

  // The next batch of events, or nullopt when none came within `wait`.
  // Throws StoreUnavailable when the stream breaks, WatchCompacted when the
  // start revision is gone.
  std::optional<WatchBatch> next(std::chrono::milliseconds wait);
  void close();

  struct Impl;

 private:
  friend class EtcdClient;
  explicit EtcdWatch(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

class EtcdClient {
 public:
  // Reads the TLS files now; throws std::runtime_error when they are unusable.
  explicit EtcdClient(EtcdOptions options);
  ~EtcdClient();
  EtcdClient(const EtcdClient&) = delete;
  EtcdClient& operator=(const EtcdClient&) = delete;

  const EtcdOptions& options() const;

  RangeResult range(const std::string& key, const RangeOptions& options = {});
  std::optional<KeyValue> get(const std::string& key);
  RangeResult get_prefix(const std::string& prefix);
  std::int64_t put(const std::string& key, const std::string& value, std::int64_t lease = 0);
  // Returns how many keys were deleted.
  std::int64_t del(const std::string& key, const std::string& range_end = "");
  TxnResult txn(const std::vector<Compare>& compares, const std::vector<TxnOp>& success,
                const std::vector<TxnOp>& failure = {});

  // Leases: a key put with a lease goes away when the lease expires.
  std::int64_t lease_grant(std::int64_t ttl_seconds);
  // Returns the TTL left; 0 when the lease is gone.
  std::int64_t lease_keepalive(std::int64_t id);
  void lease_revoke(std::int64_t id);

  // Cluster membership (the CLI's join and leave go through an agent).
  std::vector<EtcdMember> member_list();
  // A learner does not count for the quorum until promoted (etcd 3.4).
  EtcdMember member_add(const std::vector<std::string>& peer_urls, bool learner = false);
  void member_promote(std::uint64_t id);
  void member_remove(std::uint64_t id);

  // Opens a watch; the first next() may already carry events.
  std::unique_ptr<EtcdWatch> watch(const std::string& key, const std::string& range_end,
                                   std::int64_t start_revision);

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace berth::agent::network
