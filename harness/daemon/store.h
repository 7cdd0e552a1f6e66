// The daemon's state in SQLite (WAL): sandboxes with their owners and create
// requests, and the event log. Every write is one transaction, committed
// before the API call that made it returns: a kill -9 of airlockd loses
// nothing it acknowledged.
#pragma once

#include <sqlite3.h>
#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "runtime/core/error.h"

namespace airlock::daemon {

struct SandboxRow {
  std::string id;
  uid_t owner = 0;
  std::string state;    // "running", "paused", "stopped"
  std::string info;     // a serialized airlock.v1.Sandbox
  std::string request;  // the serialized airlock.v1.CreateRequest
};

struct SnapshotRow {
  std::string id;
  std::string sandbox_id;
  uid_t owner = 0;
  uint64_t generation = 0;  // the layer's when it was taken
  std::string info;         // a serialized airlock.v1.SnapshotInfo
  std::string request;      // the source sandbox's serialized CreateRequest
};

struct EventRow {
  uint64_t seq = 0;
  std::string sandbox_id;
  uid_t owner = 0;
  int type = 0;  // airlock.v1.EventType
  std::string message;
  int64_t unix_ms = 0;
  std::string detail;  // EVENT_TYPE_EGRESS: a serialized airlock.v1.EgressAudit
};

class Store {
 public:
  // Opens (creating) the database at `path`, mode 0600, in WAL mode.
  static Result<std::unique_ptr<Store>> Open(const std::string& path);
  ~Store();

  Result<void> PutSandbox(const SandboxRow& row);
  // Updates state and info, keeping the stored create request.
  Result<void> UpdateSandbox(const std::string& id, const std::string& state, const std::string& info);
  Result<void> DeleteSandbox(const std::string& id);
  Result<std::vector<SandboxRow>> Sandboxes();
  // Snapshots. Written in one statement: a crash leaves the row or not.
  Result<void> PutSnapshot(const SnapshotRow& row);
  Result<void> DeleteSnapshot(const std::string& id);
  Result<std::vector<SnapshotRow>> Snapshots();
  // Appends an event; returns its sequence number.
  Result<uint64_t> AppendEvent(const EventRow& event);
  // Events with seq > since (at most `limit`), oldest first.
  Result<std::vector<EventRow>> EventsSince(uint64_t since, size_t limit);
  // The newest event's seq, 0 if none.
  Result<uint64_t> LastEventSeq();
  // Keeps the newest `keep` events.
  Result<void> TrimEvents(uint64_t keep);

 private:
  Store() = default;
  Result<void> Exec(const char* sql);
  std::mutex mu_;
  sqlite3* db_ = nullptr;
};

}  // namespace airlock::daemon
