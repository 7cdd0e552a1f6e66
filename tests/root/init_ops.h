// A driver for airlock-init in a persistent sandbox (LaunchOptions::
// oneshot=false), over its channel: exec and file-operation requests,
// signals, and what init reports about each. Shared by the init-ops root
// tests (init_ops_test.cc, init_ops_links_test.cc).
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "helpers.h"
#include "images/host/host_image.h"
#include "runtime/launch/sandbox.h"
#include "runtime/proto/channel.h"
#include "runtime/proto/fileops.h"

namespace airlock_test::init_ops {

using namespace airlock;
namespace proto = airlock::proto;
using proto::FileOp;

// What init said about one request.
struct Report {
  bool started = false, exited = false, failed = false;
  uint32_t pid = 0;
  size_t started_fds = 0;
  UniqueFd master;
  int code = -1, signal = 0, err = 0;
  proto::ExecStage stage = proto::ExecStage::kExec;
  bool done() const { return exited || failed; }
};

// A persistent sandbox from the host image and a driver for its init.
class InitOps {
 public:
  explicit InitOps(std::vector<HostMount> mounts = {}, bool oneshot = false) {
    signal(SIGPIPE, SIG_IGN);  // a file operation may refuse our data
    paths_.init_binary = airlock_test::BuildDir() + "/airlock-init";
    paths_.profiles_dir = airlock_test::BuildDir() + "/seccomp-profiles";
    airlock_test::RequireBuilt(paths_.init_binary);
    REQUIRE(PrepareRuntimeDirs(paths_));
    auto image = images::EnsureHostImage(paths_.state_root + "/images");
    REQUIRE(image);
    static int counter = 0;
    spec_.id = "initops-" + std::to_string(getpid()) + "-" + std::to_string(counter++);
    spec_.layers = image->lower_dirs;
    for (const auto& b : image->binds) spec_.image_binds.push_back({b.host_path, b.target});
    spec_.mounts = std::move(mounts);
    spec_.process.argv = {"/bin/true"};
    LaunchOptions options;
    options.oneshot = oneshot;
    auto sb = Sandbox::Start(spec_, paths_, options);
    INFO((sb ? std::string() : sb.error().Message()));
    REQUIRE(sb);
    sandbox_ = std::move(*sb);
  }
  ~InitOps() {
    if (sandbox_) (void)sandbox_->Destroy();
  }

  Sandbox& sandbox() { return *sandbox_; }

  uint32_t Exec(const std::vector<std::string>& argv, uint32_t uid = 0, std::vector<int> stdio = {},
                bool tty = false, uint16_t rows = 0, uint16_t cols = 0) {
    proto::ExecRequest req;
    req.id = next_id_++;
    req.argv = argv;
    req.env = {"PATH=/usr/bin:/bin", "HOME=/", "TERM=xterm"};
    req.cwd = "/";
    req.uid = uid;
    req.gid = uid;
    req.tty = tty;
    req.rows = rows;
    req.cols = cols;
    // Stdio is positional: a -1 before a real fd becomes /dev/null.
    for (int& fd : stdio)
      if (fd < 0) fd = devnull_.get();
    Send(proto::Type::kExec, proto::Encode(req), stdio);
    return req.id;
  }

  uint32_t FileOp(proto::FileOpRequest req, int data_fd) {
    req.id = next_id_++;
    std::vector<int> fds;
    if (data_fd >= 0) fds.push_back(data_fd);
    Send(proto::Type::kFileOp, proto::Encode(req), fds);
    return req.id;
  }

  void Signal(uint32_t id, int signo) { Send(proto::Type::kSignal, proto::Encode(proto::Signal{id, signo})); }

  void Send(proto::Type type, const std::string& payload, const std::vector<int>& fds = {}) {
    REQUIRE(proto::SendMessage(sandbox_->channel_fd(), type, payload, fds) == 0);
  }

  // Reads init's reports until `pred` holds or `seconds` pass. Stops
  // reading as soon as it holds: a one-shot init exits right after its
  // command's kExited, and the EOF behind it is no failure.
  bool PumpUntil(const std::function<bool()>& pred, double seconds = 20) {
    auto start = std::chrono::steady_clock::now();
    while (!pred()) {
      double left = seconds - airlock_test::SecondsSince(start);
      if (left <= 0) return false;
      pollfd p{sandbox_->channel_fd(), POLLIN, 0};
      if (poll(&p, 1, static_cast<int>(left * 1000) + 1) <= 0) continue;
      for (;;) {
        auto msg = proto::ReceiveMessage(sandbox_->channel_fd(), /*dont_wait=*/true);
        if (!msg) {
          INFO(msg.error().Message());
          REQUIRE(msg.error().err == EAGAIN);  // init is alive and spoke the protocol
          break;
        }
        Dispatch(*msg);
        if (pred()) return true;
      }
    }
    return true;
  }

  Report& Wait(uint32_t id, double seconds = 20) {
    INFO("request " << id);
    REQUIRE(PumpUntil([&] { return reports_[id].done(); }, seconds));
    return reports_[id];
  }
  Report& WaitStarted(uint32_t id, double seconds = 20) {
    INFO("request " << id);
    REQUIRE(PumpUntil([&] { return reports_[id].started || reports_[id].failed; }, seconds));
    REQUIRE(reports_[id].started);
    return reports_[id];
  }
  Report& report(uint32_t id) { return reports_[id]; }

 private:
  void Dispatch(proto::Message& msg) {
    switch (msg.type) {
      case proto::Type::kStarted: {
        auto s = proto::DecodeStarted(msg.payload);
        REQUIRE(s);
        auto& r = reports_[s->id];
        r.started = true;
        r.pid = s->pid;
        r.started_fds = msg.fds.size();
        if (!msg.fds.empty()) r.master = std::move(msg.fds[0]);
        break;
      }
      case proto::Type::kExited: {
        auto e = proto::DecodeExited(msg.payload);
        REQUIRE(e);
        auto& r = reports_[e->id];
        r.exited = true;
        r.code = e->code;
        r.signal = e->signal;
        break;
      }
      case proto::Type::kExecFailed: {
        auto f = proto::DecodeExecFailed(msg.payload);
        REQUIRE(f);
        auto& r = reports_[f->id];
        r.failed = true;
        r.err = f->err;
        r.stage = f->stage;
        break;
      }
      default:
        FAIL("init sent message type " << static_cast<int>(msg.type));
    }
  }

  RuntimePaths paths_;
  SandboxSpec spec_;
  std::unique_ptr<Sandbox> sandbox_;
  UniqueFd devnull_{open("/dev/null", O_RDWR | O_CLOEXEC)};
  uint32_t next_id_ = 100;
  std::map<uint32_t, Report> reports_;
};

struct Pipe {
  UniqueFd r, w;
  Pipe() {
    int p[2];
    REQUIRE(pipe2(p, O_CLOEXEC) == 0);
    r.Reset(p[0]);
    w.Reset(p[1]);
  }
};

// Reads `fd` until EOF (or EIO: a pty master whose slave is gone).
inline std::string ReadToEnd(int fd, double seconds = 20) {
  std::string out;
  auto start = std::chrono::steady_clock::now();
  char buf[65536];
  while (airlock_test::SecondsSince(start) < seconds) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 100) <= 0) continue;
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n > 0) {
      out.append(buf, static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    return out;
  }
  FAIL("no EOF on fd " << fd << " after " << seconds << " s; read so far: " << out);
  return out;
}

struct CmdResult {
  int code = -1, signal = 0;
  std::string out;
};

// Runs a command to completion with its stdout (and stderr) captured.
inline CmdResult Run(InitOps& ops, const std::vector<std::string>& argv, uint32_t uid = 0) {
  Pipe out;
  uint32_t id = ops.Exec(argv, uid, {-1, out.w.get(), out.w.get()});
  out.w.Reset();
  CmdResult c;
  c.out = ReadToEnd(out.r.get());
  auto& r = ops.Wait(id);
  REQUIRE(r.exited);
  c.code = r.code;
  c.signal = r.signal;
  return c;
}

inline CmdResult Sh(InitOps& ops, const std::string& script, uint32_t uid = 0) {
  return Run(ops, {"/bin/sh", "-c", script}, uid);
}

inline proto::FileOpRequest Op(FileOp op, const std::string& path, uint32_t flags = 0, uint32_t uid = 0) {
  proto::FileOpRequest req;
  req.op = op;
  req.path = path;
  req.flags = flags;
  req.uid = uid;
  req.gid = uid;
  return req;
}

struct OpResult {
  int code = -1;  // 0 or the errno; -1 if it never exited
  int signal = 0;
  std::string data;  // what the op wrote to its stream
};

// Runs a file operation: `input` goes to a write, a read's or stat's or
// list's output is collected. Operations with no stream get no fd.
inline OpResult RunOp(InitOps& ops, const proto::FileOpRequest& req, const std::string& input = "") {
  const bool writes = req.op == FileOp::kWrite;
  const bool streams = writes || req.op == FileOp::kRead || req.op == FileOp::kStat || req.op == FileOp::kList;
  OpResult res;
  uint32_t id;
  if (!streams) {
    id = ops.FileOp(req, -1);
  } else {
    Pipe p;
    id = ops.FileOp(req, writes ? p.r.get() : p.w.get());
    if (writes) {
      p.r.Reset();
      size_t off = 0;
      while (off < input.size()) {
        ssize_t n = write(p.w.get(), input.data() + off, input.size() - off);
        if (n <= 0) break;  // EPIPE: the operation failed before reading
        off += static_cast<size_t>(n);
      }
      p.w.Reset();
    } else {
      p.w.Reset();
      res.data = ReadToEnd(p.r.get());
    }
  }
  auto& r = ops.Wait(id);
  INFO("file op " << static_cast<int>(req.op) << " " << req.path << ": exec failed " << r.err);
  REQUIRE(r.exited);
  res.code = r.code;
  res.signal = r.signal;
  return res;
}

inline std::vector<proto::StatRecord> Records(const OpResult& r) {
  auto records = proto::DecodeStatRecords(r.data, proto::kMaxListEntries);
  INFO((records ? std::string() : records.error().Message()));
  REQUIRE(records);
  return *records;
}

inline std::string ReadInside(InitOps& ops, const std::string& path, uint32_t uid = 0) {
  auto r = RunOp(ops, Op(FileOp::kRead, path, 0, uid));
  INFO("read " << path);
  REQUIRE(r.code == 0);
  return r.data;
}

}  // namespace airlock_test::init_ops
