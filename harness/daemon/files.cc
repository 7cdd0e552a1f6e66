#include "harness/daemon/files.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>

namespace airlock::daemon {
namespace {

// How long an operation may take to report its end once its data stream is
// done (a frozen or overloaded sandbox).
constexpr auto kReportWait = std::chrono::seconds(30);

struct Waiter {
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  InitReport report;
};

}  // namespace

ApiResult<void> RunFileOp(Live& live, proto::FileOpRequest request, const FileOpIo& io, const std::string& what) {
  live.Touch();
  {
    std::lock_guard lock(live.mu);
    if (live.stopped) return ApiFail(Code::kFailedPrecondition, what + ": sandbox " + live.id + " is stopped");
    if (live.info.state() == v1::SANDBOX_STATE_PAUSED)
      return ApiFail(Code::kFailedPrecondition, what + ": sandbox " + live.id + " is paused");
  }
  const bool writes = request.op == proto::FileOp::kWrite;
  // kSearch reads its request, then writes its results: a socket both ways.
  const bool both = request.op == proto::FileOp::kSearch;
  int p[2];
  if (both ? socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, p) < 0 : pipe2(p, O_CLOEXEC) < 0)
    return FromError(Error{errno, both ? "socketpair" : "pipe2", what});
  // The sandbox gets the end it needs; ours stays here.
  UniqueFd ours(writes ? p[1] : p[0]), theirs(writes ? p[0] : p[1]);
  auto waiter = std::make_shared<Waiter>();
  auto sent = live.session->FileOp(std::move(request), theirs.get(), [waiter](InitReport&& r) {
    if (r.kind == InitReport::Kind::kStarted) return;
    std::lock_guard lock(waiter->mu);
    waiter->report = std::move(r);
    waiter->done = true;
    waiter->cv.notify_all();
  });
  if (!sent) return FromError(sent.error(), what);
  theirs.Reset();
  bool stopped_early = false;
  if (writes || both) {
    std::string chunk;
    while (io.source && io.source(&chunk)) {
      size_t off = 0;
      while (off < chunk.size()) {
        ssize_t n = write(ours.get(), chunk.data() + off, chunk.size() - off);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) break;  // EPIPE: the op ended (its status says why)
        off += static_cast<size_t>(n);
      }
      if (off < chunk.size()) break;
    }
    if (!both) ours.Reset();  // EOF: the end of the content
  }
  if (!writes) {
    thread_local std::string buf(64 * 1024, '\0');  // per handler thread
    for (;;) {
      ssize_t n = read(ours.get(), buf.data(), buf.size());
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      if (io.sink && !io.sink(std::string_view(buf.data(), static_cast<size_t>(n)))) {
        stopped_early = true;
        break;
      }
    }
    ours.Reset();  // an op still writing gets EPIPE and ends
  }
  std::unique_lock lock(waiter->mu);
  if (!waiter->cv.wait_for(lock, kReportWait, [&] { return waiter->done; })) {
    live.session->Forget(*sent);
    return ApiFail(Code::kDeadlineExceeded, what + ": airlock-init did not report the operation's end");
  }
  const InitReport& r = waiter->report;
  switch (r.kind) {
    case InitReport::Kind::kExited:
      if (r.signal != 0) return ApiFail(Code::kAborted, what + ": killed by signal " + std::to_string(r.signal));
      if (r.code == 0) return {};
      if (stopped_early && r.code == EPIPE) return {};
      return FromError(Error{r.code, what, ""});
    case InitReport::Kind::kExecFailed:
      return FromError(Error{r.err, what, "could not start the operation"});
    case InitReport::Kind::kLost:
    default:
      return ApiFail(Code::kUnavailable, what + ": sandbox " + live.id + " stopped");
  }
}

ApiResult<std::string> FileOpToString(Live& live, proto::FileOpRequest request, size_t max_output,
                                      const std::string& what) {
  std::string out;
  bool too_big = false;
  FileOpIo io;
  io.sink = [&](std::string_view data) {
    if (out.size() + data.size() > max_output) {
      too_big = true;
      return false;
    }
    out.append(data);
    return true;
  };
  TRY(RunFileOp(live, std::move(request), io, what));
  if (too_big) return ApiFail(Code::kResourceExhausted, what + ": more than " + std::to_string(max_output) + " bytes");
  return out;
}

ApiResult<void> FileOpFromString(Live& live, proto::FileOpRequest request, std::string_view input,
                                 const std::string& what) {
  bool given = false;
  FileOpIo io;
  io.source = [&](std::string* chunk) {
    if (given) return false;
    given = true;
    chunk->assign(input);
    return true;
  };
  return RunFileOp(live, std::move(request), io, what);
}

ApiResult<Identity> ResolveIdentity(Live& live, const std::string& field, const std::string& user) {
  if (user.empty() || user == "root") return Identity{0, 0};
  auto it = live.users.find(user);
  if (it != live.users.end()) return Identity{it->second.uid(), it->second.gid()};
  auto number = [](std::string_view s, uint32_t* out) {
    if (s.empty() || s.size() > 5) return false;
    uint32_t v = 0;
    for (char c : s) {
      if (c < '0' || c > '9') return false;
      v = v * 10 + static_cast<uint32_t>(c - '0');
    }
    *out = v;
    return v <= 65535;
  };
  Identity id;
  size_t colon = user.find(':');
  std::string_view u = std::string_view(user).substr(0, colon);
  if (!number(u, &id.uid)) return BadField(field, "unknown user \"" + user + "\" (a manifest user's name, or uid[:gid] 0-65535)");
  id.gid = id.uid;
  if (colon != std::string::npos && !number(std::string_view(user).substr(colon + 1), &id.gid))
    return BadField(field, "bad gid in \"" + user + "\"");
  return id;
}

ApiResult<std::string> SandboxPath(const Live& live, const std::string& field, const std::string& path) {
  if (path.empty()) return BadField(field, "empty path");
  if (path.find('\0') != std::string::npos) return BadField(field, "contains NUL");
  if (path.size() > 4095) return BadField(field, "longer than 4095 bytes");
  if (path[0] == '/') return path;
  return live.workspace + "/" + path;
}

v1::FileInfo ToFileInfo(const proto::StatRecord& r) {
  v1::FileInfo f;
  f.set_name(r.name);
  switch (r.type) {
    case proto::FileType::kRegular: f.set_type(v1::FILE_TYPE_FILE); break;
    case proto::FileType::kDirectory: f.set_type(v1::FILE_TYPE_DIRECTORY); break;
    case proto::FileType::kSymlink: f.set_type(v1::FILE_TYPE_SYMLINK); break;
    default: f.set_type(v1::FILE_TYPE_UNSPECIFIED); break;
  }
  f.set_mode(r.mode);
  f.set_size(r.size);
  f.set_mtime_unix_ms(r.mtime_ns / 1000000);
  f.set_uid(r.uid);
  f.set_gid(r.gid);
  f.set_link_target(r.link_target);
  return f;
}

}  // namespace airlock::daemon
