// airlock snapshot | snapshots | restore | fork | rmsnap | snapshot-export |
// snapshot-import: filesystem snapshots through airlockd.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>

#include "harness/client/commands.h"
#include "harness/client/output.h"
#include "runtime/core/io.h"

namespace airlock::client {
namespace {

constexpr const char* kSnapshotUsage =
    "usage: airlock snapshot ID [--label K=V]... [--keep-last N] [--full] [--json]\n"
    "\n"
    "Snapshots the sandbox's writable layer (the workspace included; not output\n"
    "directories bound to the host) and prints the snapshot's id. The sandbox\n"
    "is frozen only while the snapshot is taken. Nothing changed since its last\n"
    "snapshot: that one again. --keep-last N keeps only its newest N.\n"
    "--full: its processes too, checkpointed with CRIU (a sandbox created\n"
    "--checkpointable); a restore continues them.\n";
constexpr const char* kSnapshotsUsage = "usage: airlock snapshots [ID] [--json]\n";
constexpr const char* kRestoreUsage =
    "usage: airlock restore SNAP [--label K=V]... [--filesystem-only] [--json]\n"
    "\n"
    "Creates a sandbox on a writable copy of the snapshot (the source's image,\n"
    "limits and network) and prints its id. A full snapshot's processes come\n"
    "back too, in the id range of the sandbox it was taken of (which must be\n"
    "gone), unless --filesystem-only.\n";
constexpr const char* kForkUsage = "usage: airlock fork SNAP N [--label K=V]... [--json]   (N: 1-32)\n";
constexpr const char* kRmsnapUsage = "usage: airlock rmsnap SNAP... [--json]\n";
constexpr const char* kExportUsage =
    "usage: airlock snapshot-export SNAP FILE|-\n"
    "\n"
    "Writes the snapshot as one archive (checksummed; airlock snapshot-import\n"
    "takes it on another host). A file is written beside FILE and renamed.\n";
constexpr const char* kImportUsage = "usage: airlock snapshot-import FILE|- [--label K=V]... [--json]\n";

void Print(const std::string& text) {
  fputs(text.c_str(), stdout);
  fflush(stdout);
}

std::string SnapshotLine(const v1::SnapshotInfo& s) {
  return s.id() + (s.reused() ? " (unchanged)" : "") + (s.full() ? " (full)" : "") + "\n";
}

int Export(Connection& conn, const std::string& id, const std::string& path) {
  int fd = 1;
  std::string tmp;
  if (path == "-") {
    if (isatty(1)) return Failed("snapshot-export: stdout is a terminal; name a FILE or redirect it");
  } else {
    tmp = path + ".airlock-tmp-" + std::to_string(getpid());
    fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) return Failed("snapshot-export: " + tmp + ": " + strerror(errno));
  }
  grpc::ClientContext ctx;
  v1::SnapshotRef ref;
  ref.set_id(id);
  auto reader = conn.stub().ExportSnapshot(&ctx, ref);
  v1::FileChunk chunk;
  bool ok = true;
  while (reader->Read(&chunk))
    if (ok && !WriteAll(fd, chunk.data(), path)) ok = false;
  grpc::Status st = reader->Finish();
  if (path != "-") {
    if (ok && fsync(fd) < 0) ok = false;
    close(fd);
    if (!st.ok() || !ok || rename(tmp.c_str(), path.c_str()) < 0) {
      unlink(tmp.c_str());
      if (st.ok()) return Failed("snapshot-export: writing " + path + ": " + strerror(errno));
    }
  }
  if (!st.ok()) return Failed(StatusMessage(st, conn.socket()));
  if (!ok) return Failed("snapshot-export: write failed");
  return 0;
}

int Import(Connection& conn, const std::string& path, const ParsedArgs& a, bool json) {
  int fd = path == "-" ? 0 : open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Failed("snapshot-import: " + path + ": " + strerror(errno));
  grpc::ClientContext ctx;
  v1::SnapshotInfo info;
  auto writer = conn.stub().ImportSnapshot(&ctx, &info);
  v1::ImportSnapshotRequest m;
  for (const auto& kv : a.All("--label")) {
    auto p = ParseKeyValue("--label", kv);
    if (!p) return Failed(p.error().detail);
    (*m.mutable_labels())[p->first] = p->second;
  }
  std::string buf(1 << 20, '\0');
  bool first = true, read_failed = false;
  for (;;) {
    ssize_t n = read(fd, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) read_failed = true;
    if (n <= 0 && !first) break;
    m.set_data(buf.data(), n > 0 ? static_cast<size_t>(n) : 0);
    if (!writer->Write(m)) break;
    m.clear_labels();
    first = false;
    if (n <= 0) break;
  }
  if (fd != 0) close(fd);
  writer->WritesDone();
  grpc::Status st = writer->Finish();
  if (read_failed) return Failed("snapshot-import: reading " + path + " failed");
  if (!st.ok()) return Failed(StatusMessage(st, conn.socket()));
  Print(json ? ToJson(info, true) + "\n" : info.id() + "\n");
  return 0;
}

}  // namespace

int SnapshotCommand(const Globals& g0, const std::string& cmd, const std::vector<std::string>& args) {
  Globals g = g0;
  ParsedArgs a;
  int code;
  const char* usage = cmd == "snapshot"         ? kSnapshotUsage
                      : cmd == "snapshots"      ? kSnapshotsUsage
                      : cmd == "restore"        ? kRestoreUsage
                      : cmd == "fork"           ? kForkUsage
                      : cmd == "rmsnap"         ? kRmsnapUsage
                      : cmd == "snapshot-export" ? kExportUsage
                                                 : kImportUsage;
  if (!ParseCommandArgs(args,
                        {{"--label", 'l', true},
                         {"--keep-last", 0, true},
                         {"--full", 0, false},
                         {"--filesystem-only", 0, false}},
                        usage, false, &g, &a, &code))
    return code;
  const auto& pos = a.positional;
  auto usage_error = [&] { return Failed(std::string(usage).substr(0, std::string(usage).find('\n'))); };
  google::protobuf::Map<std::string, std::string> labels;
  for (const auto& kv : a.All("--label")) {
    auto p = ParseKeyValue("--label", kv);
    if (!p) return Failed(p.error().detail);
    labels[p->first] = p->second;
  }
  Connection conn(g.socket);
  grpc::ClientContext ctx;
  grpc::Status st;
  if (cmd == "snapshot") {
    if (pos.size() != 1) return usage_error();
    v1::SnapshotRequest req;
    req.set_sandbox_id(pos[0]);
    *req.mutable_labels() = labels;
    req.set_full(a.Has("--full"));
    if (auto k = a.Last("--keep-last")) {
      char* end = nullptr;
      unsigned long n = strtoul(k->c_str(), &end, 10);
      if (k->empty() || *end || n > 1000000) return Failed("--keep-last: not a count: \"" + *k + "\"");
      req.set_keep_last(static_cast<uint32_t>(n));
    }
    v1::SnapshotInfo info;
    st = conn.stub().Snapshot(&ctx, req, &info);
    if (!st.ok()) return Failed(StatusMessage(st, g.socket));
    Print(g.json ? ToJson(info, true) + "\n" : SnapshotLine(info));
  } else if (cmd == "snapshots") {
    if (pos.size() > 1) return usage_error();
    v1::ListSnapshotsRequest req;
    if (!pos.empty()) req.set_sandbox_id(pos[0]);
    v1::ListSnapshotsResponse resp;
    st = conn.stub().ListSnapshots(&ctx, req, &resp);
    if (!st.ok()) return Failed(StatusMessage(st, g.socket));
    if (g.json) return Print(ToJson(resp, true) + "\n"), 0;
    std::vector<std::vector<std::string>> rows{{"SNAPSHOT", "SANDBOX", "IMAGE", "KIND", "BYTES", "CREATED"}};
    const int64_t now = static_cast<int64_t>(time(nullptr)) * 1000;
    for (const auto& s : resp.snapshots())
      rows.push_back({s.id(), s.sandbox_id(), s.image(), s.full() ? "full" : "files", std::to_string(s.bytes()),
                      Ago(s.created_unix_ms(), now)});
    Print(FormatTable(rows));
  } else if (cmd == "restore" || cmd == "fork") {
    if (pos.size() != (cmd == "fork" ? 2u : 1u)) return usage_error();
    if (cmd == "restore") {
      v1::RestoreRequest req;
      req.set_snapshot_id(pos[0]);
      *req.mutable_labels() = labels;
      req.set_filesystem_only(a.Has("--filesystem-only"));
      v1::Sandbox s;
      st = conn.stub().Restore(&ctx, req, &s);
      if (!st.ok()) return Failed(StatusMessage(st, g.socket));
      Print(g.json ? ToJson(s, true) + "\n" : s.id() + "\n");
    } else {
      v1::ForkRequest req;
      req.set_snapshot_id(pos[0]);
      char* end = nullptr;
      unsigned long n = strtoul(pos[1].c_str(), &end, 10);
      if (pos[1].empty() || *end || n > 1000) return Failed("fork: N must be a count (got \"" + pos[1] + "\")");
      req.set_count(static_cast<uint32_t>(n));
      *req.mutable_labels() = labels;
      v1::ForkResponse resp;
      st = conn.stub().Fork(&ctx, req, &resp);
      if (!st.ok()) return Failed(StatusMessage(st, g.socket));
      if (g.json) return Print(ToJson(resp, true) + "\n"), 0;
      for (const auto& s : resp.sandboxes()) Print(s.id() + "\n");
    }
  } else if (cmd == "rmsnap") {
    if (pos.empty()) return usage_error();
    int rc = 0;
    for (const auto& id : pos) {
      grpc::ClientContext one;
      v1::SnapshotRef ref;
      ref.set_id(id);
      v1::SnapshotInfo info;
      grpc::Status s = conn.stub().DeleteSnapshot(&one, ref, &info);
      if (!s.ok()) rc = Failed(StatusMessage(s, g.socket));
      else Print(g.json ? ToJson(info, false) + "\n" : id + "\n");
    }
    return rc;
  } else if (cmd == "snapshot-export") {
    if (pos.size() != 2) return usage_error();
    return Export(conn, pos[0], pos[1]);
  } else {
    if (pos.size() != 1) return usage_error();
    return Import(conn, pos[0], a, g.json);
  }
  return 0;
}

}  // namespace airlock::client
