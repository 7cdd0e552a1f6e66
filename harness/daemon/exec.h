// Commands in a sandbox: airlock-init forks them (no setns per command); the
// daemon holds the other ends of their stdin, stdout and stderr pipes (or of
// a pty), one pipe per stream — so a stream nobody reads stalls only itself,
// and output is never buffered without bound here.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "harness/daemon/api_error.h"
#include "harness/daemon/manager.h"

namespace airlock::daemon {

// One started command, from the daemon's side.
class CommandHandle {
 public:
  // Starts `command` (validated; errors name fields under `field`) and
  // returns once init reports it running — or that it could not be run (no
  // such program): then the handle has ended already and Exit() says why.
  static ApiResult<std::shared_ptr<CommandHandle>> Start(const std::shared_ptr<Live>& live, const v1::Command& command,
                                                         bool keep_stdin, const std::string& field);
  ~CommandHandle();

  uint32_t pid() const { return pid_; }
  bool tty() const { return tty_; }
  int stdin_fd() const { return tty_ ? pty_.get() : stdin_.get(); }
  int stdout_fd() const { return tty_ ? pty_.get() : stdout_.get(); }
  int stderr_fd() const { return stderr_.get(); }
  // Readable once init has reported the command's end.
  int done_fd() const { return done_.get(); }
  // When the command must be killed (CLOCK_MONOTONIC ms), 0 for never.
  int64_t deadline_ms() const { return deadline_ms_; }

  ApiResult<void> Signal(int signo);
  ApiResult<void> Resize(uint32_t rows, uint32_t cols);
  // Closes our end of stdin (the command reads EOF). Not for a tty.
  void CloseStdin();
  // SIGKILL for the timeout; the exit status says timed_out.
  void Timeout();
  // SIGKILL because nobody waits for it any more.
  void Kill();
  // Writes all of `data` to stdin (blocking). False if the command is gone.
  bool WriteStdin(std::string_view data);

  // Once done_fd() is readable: how it ended.
  v1::ExitStatus Exit();

 private:
  CommandHandle() = default;
  void OnReport(InitReport&& report);

  std::shared_ptr<Live> live_;
  uint32_t id_ = 0;
  uint32_t pid_ = 0;
  bool tty_ = false;
  UniqueFd stdin_, stdout_, stderr_, pty_, done_;
  int64_t deadline_ms_ = 0;
  uint64_t ooms_at_start_ = 0;

  std::mutex mu_;
  std::condition_variable cv_;
  bool started_ = false, ended_ = false, timed_out_ = false;
  InitReport end_;
};

// Where Pump() sends output; a false return stops pumping (the caller is
// gone) and kills the command.
struct OutputSink {
  std::function<bool(std::string_view)> out;
  std::function<bool(std::string_view)> err;
};

// Moves output from the command to `sink` until the command has ended and
// its pipes are drained, writing `stdin_data` first (then closing stdin if
// `close_stdin`), enforcing the deadline. `cancelled`, if given, is asked
// every 200 ms while the command is quiet: true kills it. Returns the exit
// status. A command that never ran (handle already ended) returns at once.
v1::ExitStatus Pump(CommandHandle& command, const OutputSink& sink, std::string_view stdin_data, bool close_stdin,
                    const std::function<bool()>& cancelled = {});

// A background command (StartProcess): output is buffered up to a bound per
// stream; when a buffer is full the pump waits, and so does the command.
class Process {
 public:
  static constexpr size_t kBufferLimit = 1 << 20;

  static ApiResult<std::shared_ptr<Process>> Start(const std::shared_ptr<Live>& live, const std::string& process_id,
                                                   const v1::StartProcessRequest& request);
  ~Process();

  v1::Process Describe();
  // Takes up to max_bytes of each stream, waiting up to wait_ms for output
  // or the end. eof: ended and nothing left.
  v1::ReadProcessOutputResponse Read(uint64_t max_bytes, uint64_t wait_ms);
  ApiResult<void> WriteStdin(std::string_view data, bool close);
  ApiResult<void> Signal(int signo);
  bool Finished();

 private:
  Process() = default;
  void Run();

  std::shared_ptr<CommandHandle> command_;
  std::string sandbox_id_, process_id_;
  std::vector<std::string> argv_;
  int64_t started_unix_ms_ = 0;
  std::mutex stdin_mu_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::string out_, err_;
  bool finished_ = false;
  v1::ExitStatus exit_;
  std::thread pump_;
};

}  // namespace airlock::daemon
