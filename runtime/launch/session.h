// InitSession: many requests in flight to one long-lived sandbox's
// airlock-init, from many threads.
//
// Requests (commands, file operations) get ids; a listener per request
// receives what init reports about it. The owner of the session polls the
// channel and calls OnReadable() when it is readable, from one thread.
// Everything init says is untrusted (DESIGN decision 4): each message is
// decoded strictly, a report for an id nobody waits for is dropped, and a
// message that breaks the protocol is an error — the owner's cue to give up
// on this sandbox, and only this one.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
#include <span>
#include <string>
#include <unordered_map>

#include "runtime/core/error.h"
#include "runtime/core/unique_fd.h"
#include "runtime/proto/channel.h"
#include "runtime/spec/spec.h"

namespace airlock {

// What init said about one request.
struct InitReport {
  enum class Kind { kStarted, kExited, kExecFailed, kLost };
  Kind kind = Kind::kLost;
  uint32_t pid = 0;           // kStarted: its pid inside the sandbox
  UniqueFd pty_master;        // kStarted with a tty: checked to be a pty master
  int code = 0, signal = 0;   // kExited
  int err = 0;                // kExecFailed: the errno; kLost: why (EPIPE: init gone)
  proto::ExecStage stage = proto::ExecStage::kExec;
};

class InitSession {
 public:
  // Called on the thread running OnReadable(), or on the caller's in FailAll().
  // Must not call back into the session's Send* (it may Forget()).
  using Listener = std::function<void(InitReport&&)>;

  // `channel`: the runtime's end of init's channel (not owned). Sends time
  // out after `send_timeout_ms` so an init that stops reading stalls only
  // the callers of its own sandbox.
  explicit InitSession(int channel, int send_timeout_ms = 5000);

  // Runs a command with the given stdin, stdout, stderr (none with tty).
  // The listener hears kStarted, then kExited; or kExecFailed; or kLost.
  Result<uint32_t> Exec(const ProcessSpec& process, bool tty, uint16_t rows, uint16_t cols,
                        std::span<const int> stdio, Listener listener);
  // Runs a file operation (its id is assigned here) over `data_fd`.
  Result<uint32_t> FileOp(proto::FileOpRequest request, int data_fd, Listener listener);
  // Sends a signal to a command's process group; proto::kAllCommands: to
  // every command and file operation init runs.
  Result<void> Signal(uint32_t id, int signo);
  // Stops delivering reports for `id`.
  void Forget(uint32_t id);

  // Reads and delivers every message waiting on the channel (non-blocking).
  // An error means init broke the protocol or the channel is gone: the
  // caller should stop this sandbox; call FailAll() to release the waiters.
  Result<void> OnReadable();
  // Delivers kLost with `err` to every pending request and refuses new ones.
  void FailAll(int err);

  size_t pending() const;
  uint64_t dropped_reports() const { return dropped_; }

 private:
  Result<uint32_t> Send(proto::Type type, uint32_t id, const std::string& payload,
                        std::span<const int> fds, Listener listener);
  void Deliver(uint32_t id, InitReport&& report, bool final);

  int channel_;
  mutable std::mutex mu_;
  std::unordered_map<uint32_t, Listener> pending_;
  uint32_t next_id_ = 1;
  bool failed_ = false;
  int failed_err_ = 0;
  std::atomic<uint64_t> dropped_{0};
  static constexpr int kMaxHellos = 16;
  int hellos_ = 0;  // only OnReadable's thread touches it
};

}  // namespace airlock
