// The channel between the runtime and a sandbox (its launch child, then
// airlock-init). A SOCK_SEQPACKET socketpair: one datagram per message, file
// descriptors attached with SCM_RIGHTS. Everything that arrives from inside a
// sandbox is untrusted: Decode* bound every length and check every field.
//
// Wire format: a fixed header {u16 version, u16 type, u32 length of payload}
// then the payload, built from u32/i32/u64 values and length-prefixed strings,
// little-endian (both ends share one host). Version 2 added ExecRequest's
// tty, rows, cols (three u32 after groups), Signal and FileOpRequest.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/core/error.h"
#include "runtime/core/unique_fd.h"
#include "runtime/spec/spec.h"

namespace airlock::proto {

inline constexpr uint16_t kVersion = 2;
inline constexpr size_t kMaxMessage = 128 * 1024;
inline constexpr size_t kMaxFds = kMaxMountSources;
// The fd number the channel has in airlock-init.
inline constexpr int kInitChannelFd = 3;
// The fd number of a zygote's socket to its runtime (airlock-init --zygote).
inline constexpr int kZygoteFd = 3;
// init receives the workload group's cgroup v1 `tasks` files as fds
// kInitCgroupFdBase.. (their count in --cgroup-fds=N), for the spawner.
inline constexpr int kInitCgroupFdBase = 4;

enum class Type : uint16_t {
  kSetupFailed = 1,  // launch child -> runtime: {step, errno, item}; then the child exits
  kHello = 2,        // init -> runtime: {version}; the spawner has been forked
  kExec = 3,         // runtime -> init: an ExecRequest, fds: stdin, stdout, stderr
  kStarted = 4,      // init -> runtime: {id, pid inside}
  kExecFailed = 5,   // init -> runtime: {id, errno, stage}
  kExited = 6,       // init -> runtime: {id, exit code, signal}
  kGo = 7,           // runtime -> launch child: id maps written; fds: the plan's sources
  kTimings = 8,      // launch child -> runtime: u64 nanoseconds per child step
  kChannel = 9,      // launch child -> runtime: the runtime's end of a new channel
                     // made in the sandbox's own network namespace (checkpointable)
  kSignal = 10,      // runtime -> init: a Signal for one command's process group
  kFileOp = 11,      // runtime -> init: a FileOpRequest; fds: its data stream
  kPlan = 12,        // runtime -> a zygote's launch child: its ChildPlan (launch.h)
  // The egress channel (egress.h): between the sandbox's relay (forked by
  // init) and the egress proxy; never on init's own channel.
  kEgressOpen = 20,     // relay -> proxy: EgressOpen, a connection was accepted
  kEgressSocket = 21,   // proxy -> relay: {id}; fds: the relay's end of a fresh socketpair
  kEgressRefused = 22,  // proxy -> relay: {id}; the relay resets the connection
  kPortOpen = 23,       // proxy -> relay: PortOpen; fds: the relay's end of a fresh socketpair
  kPortFailed = 24,     // relay -> proxy: {id, errno} the sandbox's port refused it
  kProxyControl = 30,   // airlockd <-> egress proxy: one JSON object (harness/proxy/control.h)
  // The zygote's own socket (launch.h, runtime/launch/zygote.h).
  kClone = 40,   // runtime -> zygote: CloneRequest; fds as it lists them
  kCloned = 41,  // zygote -> runtime: CloneReply; fds: the child's pidfd
  kZygoteReady = 42,  // zygote -> runtime, once at start: {version} as kHello
};

struct SetupFailed {
  uint32_t step = 0;
  int32_t err = 0;
  int32_t item = -1;  // index into the plan's list for that step, or -1
};

struct ExecRequest {
  uint32_t id = 0;
  std::vector<std::string> argv;
  std::vector<std::string> env;
  std::string cwd = "/";
  uint32_t uid = 0, gid = 0;
  std::vector<uint32_t> groups;
  // With a terminal: the spawner opens a pty in the sandbox's own devpts,
  // makes its slave the command's controlling terminal and stdin, stdout and
  // stderr (the request then carries no fds), and kStarted hands the runtime
  // the master. rows/cols: its initial size (both 0: leave the kernel's;
  // both or neither are 0, and only with tty).
  bool tty = false;
  uint16_t rows = 0, cols = 0;
};

// Sends `signo` (1-64) to the process group of the command `id` (commands
// lead their own session and group). Unknown or finished ids are ignored; a
// command whose start init hasn't heard of yet gets it once it has started.
// File operations are signalled the same way (SIGKILL cancels one). The id
// kAllCommands signals every command and file operation init knows of.
inline constexpr uint32_t kAllCommands = 0;
struct Signal {
  uint32_t id = 0;
  int32_t signo = 0;
};

// A file operation run inside the sandbox by a process the spawner forks
// (no exec) with the given identity: in the sandbox's mount namespace, under
// its seccomp filter and capabilities, so no path or symlink resolves outside
// it. It is reported like a command — kStarted, then kExited whose code is 0
// or the errno the operation failed with (kFileOpMaxErrno at most), or
// kExecFailed if it could not be forked. Its data travel over the one fd the
// request carries (kMkdir, kRemove, kRename, kSymlink and kChown need none);
// see fileops.h for what each op reads or writes there. Decoding is strict:
// flags an op doesn't use, offset/length outside kRead, path2 outside kRename
// and kSymlink, owner ids outside kChown and a mode without kModeSet are
// refused. With kNoSymlinks, ops that never follow a final symlink (lstat,
// remove, rename, lchown, an atomic write) act on the link itself; the others
// fail with ELOOP. A one-shot sandbox refuses file operations.
enum class FileOp : uint32_t {
  kRead = 1,    // file bytes [offset, offset+length) (length 0: to EOF) -> fd
  kWrite = 2,   // fd -> file, per kWrite* flags, mode for a created file
  kStat = 3,    // one StatRecord -> fd (kFollow: stat, else lstat)
  kList = 4,    // one StatRecord per directory entry -> fd, then EOF
  kMkdir = 5,   // mode (kModeSet, else 0755); kParents: like mkdir -p (existing dirs are fine)
  kRemove = 6,  // a file, symlink or empty dir; kRecursive: like rm -r, never
                // following a symlink nor entering another mount (EXDEV);
                // a mount point itself is refused (EBUSY)
  kRename = 7,  // path -> path2 (renameat2; kNoReplace refuses an existing path2)
  kSymlink = 8,  // a symlink at path pointing to path2 (kParents: missing parents 0755)
  kChown = 9,    // lchown(path, owner_uid, owner_gid): never follows a final symlink
  kSearch = 10,  // fd (a socket) -> one SearchSpec; SearchRecords -> fd (fileops.h)
};
inline constexpr uint32_t kFileOpMaxErrno = 254;
// FileOpRequest.flags
inline constexpr uint32_t kWriteCreate = 1u << 0;     // O_CREAT
inline constexpr uint32_t kWriteExclusive = 1u << 1;  // O_EXCL
inline constexpr uint32_t kWriteTruncate = 1u << 2;   // O_TRUNC
inline constexpr uint32_t kWriteAppend = 1u << 3;     // O_APPEND
// Write a temporary file beside path, fsync it, rename it over path: readers
// see the old content or the new, never a mix. Keeps an existing file's mode
// (and owner, where the caller may chown) unless mode is given (kModeSet).
// Creates a missing file (the rename makes the name either way), so
// kWriteCreate is implied. A symlink at path is replaced, not followed. Not
// with kWriteAppend; otherwise kWriteExclusive needs kWriteCreate.
inline constexpr uint32_t kWriteAtomic = 1u << 4;
inline constexpr uint32_t kParents = 1u << 5;    // kWrite, kMkdir: create missing parents (0755)
inline constexpr uint32_t kRecursive = 1u << 6;  // kRemove
inline constexpr uint32_t kFollow = 1u << 7;     // kStat: follow a final symlink
inline constexpr uint32_t kNoReplace = 1u << 8;  // kRename
inline constexpr uint32_t kModeSet = 1u << 9;    // kWrite, kMkdir: apply `mode` (else 0644 for new files)
// Every op: resolve path (and path2 of kRename) without following any
// symlink, in any component (openat2 RESOLVE_NO_SYMLINKS): ELOOP instead.
// Uploads use it so an archive can't write through a link it created.
inline constexpr uint32_t kNoSymlinks = 1u << 10;
inline constexpr uint32_t kFileOpFlagsMask = (1u << 11) - 1;

struct FileOpRequest {
  uint32_t id = 0;
  FileOp op = FileOp::kStat;
  uint32_t uid = 0, gid = 0;
  std::vector<uint32_t> groups;
  std::string path;   // absolute, inside the sandbox; relative ones resolve against cwd
  std::string path2;  // kRename's destination, kSymlink's target
  std::string cwd = "/";  // absolute; paths are at most 4095 bytes
  uint64_t offset = 0, length = 0;
  uint32_t flags = 0;
  uint32_t mode = 0;  // permission bits only (07777)
  uint32_t owner_uid = 0, owner_gid = 0;  // kChown only (0-65535)
};

enum class ExecStage : uint32_t { kFork = 0, kIdentity = 1, kChdir = 2, kStdio = 3, kExec = 4 };

struct ExecFailed {
  uint32_t id = 0;
  int32_t err = 0;
  ExecStage stage = ExecStage::kExec;
};

// A command (or file operation) runs; a tty command's pty master comes with it.
struct Started {
  uint32_t id = 0;
  uint32_t pid = 0;
};

struct Exited {
  uint32_t id = 0;
  int32_t code = 0;    // exit code 0-255 when signal == 0
  int32_t signal = 0;  // terminating signal 1-64, else 0
};

// A received message: its type, its payload and any fds that came with it.
struct Message {
  Type type{};
  std::string payload;
  std::vector<UniqueFd> fds;
};

// The ExecRequest that runs `process` (argv, env, cwd, ids) as command `id`.
ExecRequest MakeExecRequest(uint32_t id, const ProcessSpec& process);

// Serializers. The payload of each message type.
std::string Encode(const SetupFailed&);
std::string Encode(const ExecRequest&);
std::string Encode(const ExecFailed&);
std::string Encode(const Started&);
std::string Encode(const Exited&);
std::string Encode(const Signal&);
std::string Encode(const FileOpRequest&);
std::string EncodeHello();

// Parsers: strict; trailing bytes, short payloads and out-of-range values are errors.
Result<SetupFailed> DecodeSetupFailed(std::string_view payload);
Result<ExecRequest> DecodeExecRequest(std::string_view payload);
Result<ExecFailed> DecodeExecFailed(std::string_view payload);
Result<Started> DecodeStarted(std::string_view payload);
Result<Exited> DecodeExited(std::string_view payload);
Result<Signal> DecodeSignal(std::string_view payload);
Result<FileOpRequest> DecodeFileOpRequest(std::string_view payload);
Result<void> DecodeHello(std::string_view payload);

// Sends one message with optional fds. Returns 0 or -errno; allocation-free
// apart from what the caller built, so the launch child can use it.
int SendMessage(int sock, Type type, std::string_view payload, std::span<const int> fds = {}) noexcept;
// Sends a SetupFailed record without allocating (launch child only).
int SendSetupFailed(int sock, uint32_t step, int32_t err, int32_t item) noexcept;

// Receives one message's descriptors into fds[0..max) (more are closed),
// ignoring its payload; allocation-free, for the launch child. Returns the
// count, or -errno (-EPIPE at EOF, -EMSGSIZE if truncated).
int ReceiveFds(int sock, int* fds, int max) noexcept;

// Receives one message (blocking). EOF is an error with errno 0 and op
// "channel closed". Oversized or truncated datagrams, and ones carrying more
// than kMaxFds descriptors, are refused.
// With `dont_wait`, an empty socket is an error with errno EAGAIN.
Result<Message> ReceiveMessage(int sock, bool dont_wait = false);

}  // namespace airlock::proto
