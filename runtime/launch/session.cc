#include "runtime/launch/session.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/random.h>
#include <sys/time.h>

#include <cerrno>

namespace airlock {
namespace {

// A pty master is the multiplexer /dev/ptmx (devpts' ptmx node): char 5:2.
bool IsPtyMaster(int fd) {
  struct stat st;
  return fstat(fd, &st) == 0 && S_ISCHR(st.st_mode) && major(st.st_rdev) == 5 && minor(st.st_rdev) == 2;
}

}  // namespace

InitSession::InitSession(int channel, int send_timeout_ms) : channel_(channel) {
  // Ids start at a random point: reports still queued from a previous
  // owner's requests (a daemon that restarted) then match nothing here.
  uint32_t start = 1;
  if (getrandom(&start, sizeof(start), 0) == sizeof(start)) next_id_ = (start >> 1) | 1;
  timeval tv{send_timeout_ms / 1000, (send_timeout_ms % 1000) * 1000};
  setsockopt(channel_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

Result<uint32_t> InitSession::Send(proto::Type type, uint32_t id, const std::string& payload,
                                   std::span<const int> fds, Listener listener) {
  {
    std::lock_guard lock(mu_);
    if (failed_) return ErrnoValue(failed_err_, "send", "airlock-init is gone");
    pending_[id] = std::move(listener);
  }
  // Registered before sending: init may answer before we return.
  if (int r = proto::SendMessage(channel_, type, payload, fds); r < 0) {
    Forget(id);
    if (r == -EAGAIN) return ErrnoValue(ETIMEDOUT, "send", "airlock-init is not reading its channel");
    return ErrnoValue(-r, "send", "request to airlock-init");
  }
  return id;
}

Result<uint32_t> InitSession::Exec(const ProcessSpec& process, bool tty, uint16_t rows, uint16_t cols,
                                   std::span<const int> stdio, Listener listener) {
  uint32_t id;
  {
    std::lock_guard lock(mu_);
    id = next_id_++;
    if (next_id_ == 0) next_id_ = 1;
  }
  proto::ExecRequest req = proto::MakeExecRequest(id, process);
  req.tty = tty;
  req.rows = rows;
  req.cols = cols;
  std::string payload = proto::Encode(req);
  if (payload.size() + 8 > proto::kMaxMessage)
    return Fail("exec", "command line and environment exceed " + std::to_string(proto::kMaxMessage / 1024) + " KiB");
  return Send(proto::Type::kExec, req.id, payload, tty ? std::span<const int>{} : stdio, std::move(listener));
}

Result<uint32_t> InitSession::FileOp(proto::FileOpRequest request, int data_fd, Listener listener) {
  {
    std::lock_guard lock(mu_);
    request.id = next_id_++;
    if (next_id_ == 0) next_id_ = 1;
  }
  std::string payload = proto::Encode(request);
  if (payload.size() + 8 > proto::kMaxMessage) return Fail("file operation", "paths too long");
  int fds[1] = {data_fd};
  return Send(proto::Type::kFileOp, request.id, payload, fds, std::move(listener));
}

Result<void> InitSession::Signal(uint32_t id, int signo) {
  proto::Signal s{id, signo};
  if (int r = proto::SendMessage(channel_, proto::Type::kSignal, proto::Encode(s)); r < 0)
    return ErrnoValue(-r, "send", "signal to airlock-init");
  return {};
}

void InitSession::Forget(uint32_t id) {
  std::lock_guard lock(mu_);
  pending_.erase(id);
}

size_t InitSession::pending() const {
  std::lock_guard lock(mu_);
  return pending_.size();
}

void InitSession::Deliver(uint32_t id, InitReport&& report, bool final) {
  Listener listener;
  {
    std::lock_guard lock(mu_);
    auto it = pending_.find(id);
    if (it == pending_.end()) {
      ++dropped_;  // a lie, or a request its caller gave up on
      return;
    }
    if (final) {
      listener = std::move(it->second);
      pending_.erase(it);
    } else {
      listener = it->second;
    }
  }
  listener(std::move(report));
}

Result<void> InitSession::OnReadable() {
  // Bounded per call: an init that floods its channel gets its share of the
  // caller's loop, not all of it (the fd stays readable; the loop returns).
  for (int budget = 64; budget > 0; --budget) {
    auto msg = proto::ReceiveMessage(channel_, /*dont_wait=*/true);
    if (!msg) {
      if (msg.error().err == EAGAIN) return {};
      return std::unexpected(msg.error());
    }
    if (msg->type != proto::Type::kStarted && !msg->fds.empty())
      return Fail("sandbox channel", "init sent fds with message type " + std::to_string(static_cast<int>(msg->type)));
    InitReport report;
    switch (msg->type) {
      case proto::Type::kStarted: {
        auto s = TRY(proto::DecodeStarted(msg->payload));
        if (msg->fds.size() > 1) return Fail("sandbox channel", "started message with " + std::to_string(msg->fds.size()) + " fds");
        if (msg->fds.size() == 1) {
          if (!IsPtyMaster(msg->fds[0].get())) return Fail("sandbox channel", "started message with an fd that is no pty master");
          report.pty_master = std::move(msg->fds[0]);
        }
        report.kind = InitReport::Kind::kStarted;
        report.pid = s.pid;
        Deliver(s.id, std::move(report), false);
        break;
      }
      case proto::Type::kExited: {
        auto e = TRY(proto::DecodeExited(msg->payload));
        report.kind = InitReport::Kind::kExited;
        report.code = e.code;
        report.signal = e.signal;
        Deliver(e.id, std::move(report), true);
        break;
      }
      case proto::Type::kExecFailed: {
        auto f = TRY(proto::DecodeExecFailed(msg->payload));
        report.kind = InitReport::Kind::kExecFailed;
        report.err = f.err;
        report.stage = f.stage;
        Deliver(f.id, std::move(report), true);
        break;
      }
      case proto::Type::kHello:
        TRY(proto::DecodeHello(msg->payload));
        // Answers to the owner's own hellos are few; a stream of them is not.
        if (++hellos_ > kMaxHellos) return Fail("sandbox channel", "init floods its channel with hello messages");
        break;
      default:
        return Fail("sandbox channel", "init sent message type " + std::to_string(static_cast<int>(msg->type)));
    }
  }
  return {};
}

void InitSession::FailAll(int err) {
  std::unordered_map<uint32_t, Listener> pending;
  {
    std::lock_guard lock(mu_);
    failed_ = true;
    failed_err_ = err;
    pending.swap(pending_);
  }
  for (auto& [id, listener] : pending) {
    InitReport r;
    r.kind = InitReport::Kind::kLost;
    r.err = err;
    listener(std::move(r));
  }
}

}  // namespace airlock
