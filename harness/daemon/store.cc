#include "harness/daemon/store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <memory>

namespace airlock::daemon {
namespace {

// A prepared statement, finalized when it goes out of scope.
class Statement {
 public:
  Statement(sqlite3* db, const char* sql) { rc_ = sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr); }
  ~Statement() { sqlite3_finalize(stmt_); }
  bool ok() const { return rc_ == SQLITE_OK; }
  sqlite3_stmt* get() { return stmt_; }
  void Text(int i, const std::string& s) { sqlite3_bind_text(stmt_, i, s.data(), static_cast<int>(s.size()), SQLITE_TRANSIENT); }
  void Blob(int i, const std::string& s) { sqlite3_bind_blob(stmt_, i, s.data(), static_cast<int>(s.size()), SQLITE_TRANSIENT); }
  void Int(int i, int64_t v) { sqlite3_bind_int64(stmt_, i, v); }
  std::string ColumnBytes(int i) {
    const void* p = sqlite3_column_blob(stmt_, i);
    return p ? std::string(static_cast<const char*>(p), static_cast<size_t>(sqlite3_column_bytes(stmt_, i))) : std::string();
  }

 private:
  sqlite3_stmt* stmt_ = nullptr;
  int rc_;
};

std::unexpected<Error> SqlError(sqlite3* db, const char* op) {
  return Fail(op, std::string("sqlite: ") + sqlite3_errmsg(db));
}

}  // namespace

Result<std::unique_ptr<Store>> Store::Open(const std::string& path) {
  // Created 0600 before SQLite opens it: the database names every owner.
  int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return Errno("open", path);
  close(fd);
  std::unique_ptr<Store> store(new Store());
  if (sqlite3_open_v2(path.c_str(), &store->db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_FULLMUTEX, nullptr) != SQLITE_OK)
    return SqlError(store->db_, "open state database");
  sqlite3_busy_timeout(store->db_, 5000);
  // WAL with synchronous=NORMAL survives a crash of the process (not of the
  // machine, where the last transactions may roll back): what kill -9 needs.
  TRY(store->Exec("PRAGMA journal_mode=WAL"));
  TRY(store->Exec("PRAGMA synchronous=NORMAL"));
  TRY(store->Exec(
      "CREATE TABLE IF NOT EXISTS sandboxes ("
      " id TEXT PRIMARY KEY, owner INTEGER NOT NULL, state TEXT NOT NULL,"
      " info BLOB NOT NULL, request BLOB NOT NULL)"));
  TRY(store->Exec(
      "CREATE TABLE IF NOT EXISTS events ("
      " seq INTEGER PRIMARY KEY AUTOINCREMENT, sandbox_id TEXT NOT NULL, owner INTEGER NOT NULL,"
      " type INTEGER NOT NULL, message TEXT NOT NULL, unix_ms INTEGER NOT NULL)"));
  TRY(store->Exec(
      "CREATE TABLE IF NOT EXISTS snapshots ("
      " id TEXT PRIMARY KEY, sandbox_id TEXT NOT NULL, owner INTEGER NOT NULL,"
      " generation INTEGER NOT NULL, info BLOB NOT NULL, request BLOB NOT NULL)"));
  // An event's structured part (an EgressAudit); added to older databases.
  if (!store->Exec("SELECT detail FROM events LIMIT 0"))
    TRY(store->Exec("ALTER TABLE events ADD COLUMN detail BLOB NOT NULL DEFAULT x''"));
  return store;
}

Store::~Store() {
  if (db_) sqlite3_close_v2(db_);
}

Result<void> Store::Exec(const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : "unknown error";
    sqlite3_free(err);
    return Fail("sqlite", std::string(sql).substr(0, 40) + ": " + msg);
  }
  return {};
}

Result<void> Store::PutSandbox(const SandboxRow& row) {
  std::lock_guard lock(mu_);
  Statement st(db_, "INSERT OR REPLACE INTO sandboxes (id, owner, state, info, request) VALUES (?, ?, ?, ?, ?)");
  if (!st.ok()) return SqlError(db_, "prepare");
  st.Text(1, row.id);
  st.Int(2, row.owner);
  st.Text(3, row.state);
  st.Blob(4, row.info);
  st.Blob(5, row.request);
  if (sqlite3_step(st.get()) != SQLITE_DONE) return SqlError(db_, "store sandbox");
  return {};
}

Result<void> Store::UpdateSandbox(const std::string& id, const std::string& state, const std::string& info) {
  std::lock_guard lock(mu_);
  Statement st(db_, "UPDATE sandboxes SET state = ?, info = ? WHERE id = ?");
  if (!st.ok()) return SqlError(db_, "prepare");
  st.Text(1, state);
  st.Blob(2, info);
  st.Text(3, id);
  if (sqlite3_step(st.get()) != SQLITE_DONE) return SqlError(db_, "update sandbox");
  return {};
}

Result<void> Store::DeleteSandbox(const std::string& id) {
  std::lock_guard lock(mu_);
  Statement st(db_, "DELETE FROM sandboxes WHERE id = ?");
  if (!st.ok()) return SqlError(db_, "prepare");
  st.Text(1, id);
  if (sqlite3_step(st.get()) != SQLITE_DONE) return SqlError(db_, "delete sandbox");
  return {};
}

Result<std::vector<SandboxRow>> Store::Sandboxes() {
  std::lock_guard lock(mu_);
  Statement st(db_, "SELECT id, owner, state, info, request FROM sandboxes ORDER BY rowid");
  if (!st.ok()) return SqlError(db_, "prepare");
  std::vector<SandboxRow> rows;
  int rc;
  while ((rc = sqlite3_step(st.get())) == SQLITE_ROW) {
    SandboxRow r;
    r.id = st.ColumnBytes(0);
    r.owner = static_cast<uid_t>(sqlite3_column_int64(st.get(), 1));
    r.state = st.ColumnBytes(2);
    r.info = st.ColumnBytes(3);
    r.request = st.ColumnBytes(4);
    rows.push_back(std::move(r));
  }
  if (rc != SQLITE_DONE) return SqlError(db_, "list sandboxes");
  return rows;
}

Result<uint64_t> Store::AppendEvent(const EventRow& e) {
  std::lock_guard lock(mu_);
  Statement st(db_, "INSERT INTO events (sandbox_id, owner, type, message, unix_ms, detail) VALUES (?, ?, ?, ?, ?, ?)");
  if (!st.ok()) return SqlError(db_, "prepare");
  st.Text(1, e.sandbox_id);
  st.Int(2, e.owner);
  st.Int(3, e.type);
  st.Text(4, e.message);
  st.Int(5, e.unix_ms);
  st.Blob(6, e.detail);
  if (sqlite3_step(st.get()) != SQLITE_DONE) return SqlError(db_, "append event");
  return static_cast<uint64_t>(sqlite3_last_insert_rowid(db_));
}

Result<std::vector<EventRow>> Store::EventsSince(uint64_t since, size_t limit) {
  std::lock_guard lock(mu_);
  Statement st(db_, "SELECT seq, sandbox_id, owner, type, message, unix_ms, detail FROM events WHERE seq > ? ORDER BY seq LIMIT ?");
  if (!st.ok()) return SqlError(db_, "prepare");
  st.Int(1, static_cast<int64_t>(since));
  st.Int(2, static_cast<int64_t>(limit));
  std::vector<EventRow> rows;
  int rc;
  while ((rc = sqlite3_step(st.get())) == SQLITE_ROW) {
    EventRow r;
    r.seq = static_cast<uint64_t>(sqlite3_column_int64(st.get(), 0));
    r.sandbox_id = st.ColumnBytes(1);
    r.owner = static_cast<uid_t>(sqlite3_column_int64(st.get(), 2));
    r.type = sqlite3_column_int(st.get(), 3);
    r.message = st.ColumnBytes(4);
    r.unix_ms = sqlite3_column_int64(st.get(), 5);
    r.detail = st.ColumnBytes(6);
    rows.push_back(std::move(r));
  }
  if (rc != SQLITE_DONE) return SqlError(db_, "read events");
  return rows;
}

Result<uint64_t> Store::LastEventSeq() {
  std::lock_guard lock(mu_);
  Statement st(db_, "SELECT COALESCE(MAX(seq), 0) FROM events");
  if (!st.ok() || sqlite3_step(st.get()) != SQLITE_ROW) return SqlError(db_, "last event");
  return static_cast<uint64_t>(sqlite3_column_int64(st.get(), 0));
}

Result<void> Store::TrimEvents(uint64_t keep) {
  std::lock_guard lock(mu_);
  Statement st(db_, "DELETE FROM events WHERE seq <= (SELECT MAX(seq) FROM events) - ?");
  if (!st.ok()) return SqlError(db_, "prepare");
  st.Int(1, static_cast<int64_t>(keep));
  if (sqlite3_step(st.get()) != SQLITE_DONE) return SqlError(db_, "trim events");
  return {};
}

}  // namespace airlock::daemon

namespace airlock::daemon {

Result<void> Store::PutSnapshot(const SnapshotRow& r) {
  std::lock_guard lock(mu_);
  Statement st(db_,
               "INSERT OR REPLACE INTO snapshots (id, sandbox_id, owner, generation, info, request) "
               "VALUES (?, ?, ?, ?, ?, ?)");
  if (!st.ok()) return SqlError(db_, "prepare");
  st.Text(1, r.id);
  st.Text(2, r.sandbox_id);
  st.Int(3, r.owner);
  st.Int(4, static_cast<int64_t>(r.generation));
  st.Blob(5, r.info);
  st.Blob(6, r.request);
  if (sqlite3_step(st.get()) != SQLITE_DONE) return SqlError(db_, "store snapshot");
  return {};
}

Result<void> Store::DeleteSnapshot(const std::string& id) {
  std::lock_guard lock(mu_);
  Statement st(db_, "DELETE FROM snapshots WHERE id = ?");
  if (!st.ok()) return SqlError(db_, "prepare");
  st.Text(1, id);
  if (sqlite3_step(st.get()) != SQLITE_DONE) return SqlError(db_, "delete snapshot");
  return {};
}

Result<std::vector<SnapshotRow>> Store::Snapshots() {
  std::lock_guard lock(mu_);
  Statement st(db_, "SELECT id, sandbox_id, owner, generation, info, request FROM snapshots ORDER BY rowid");
  if (!st.ok()) return SqlError(db_, "prepare");
  std::vector<SnapshotRow> rows;
  int rc;
  while ((rc = sqlite3_step(st.get())) == SQLITE_ROW) {
    SnapshotRow r;
    r.id = st.ColumnBytes(0);
    r.sandbox_id = st.ColumnBytes(1);
    r.owner = static_cast<uid_t>(sqlite3_column_int64(st.get(), 2));
    r.generation = static_cast<uint64_t>(sqlite3_column_int64(st.get(), 3));
    r.info = st.ColumnBytes(4);
    r.request = st.ColumnBytes(5);
    rows.push_back(std::move(r));
  }
  if (rc != SQLITE_DONE) return SqlError(db_, "read snapshots");
  return rows;
}

}  // namespace airlock::daemon
