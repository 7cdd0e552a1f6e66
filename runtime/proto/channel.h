// The channel between the runtime and a sandbox (its launch child, then
// airlock-init). A SOCK_SEQPACKET socketpair: one datagram per message, file
// descriptors attached with SCM_RIGHTS. Everything that arrives from inside a
// sandbox is untrusted: Decode* bound every length and check every field.
//
// Wire format: a fixed header {u16 version, u16 type, u32 length of payload}
// then the payload, built from u32/i32 values and length-prefixed strings,
// little-endian (both ends share one host).
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

inline constexpr uint16_t kVersion = 1;
inline constexpr size_t kMaxMessage = 128 * 1024;
inline constexpr size_t kMaxFds = kMaxMountSources;
// The fd number the channel has in airlock-init.
inline constexpr int kInitChannelFd = 3;
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
};

enum class ExecStage : uint32_t { kFork = 0, kIdentity = 1, kChdir = 2, kStdio = 3, kExec = 4 };

struct ExecFailed {
  uint32_t id = 0;
  int32_t err = 0;
  ExecStage stage = ExecStage::kExec;
};

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

// Serializers. The payload of each message type.
std::string Encode(const SetupFailed&);
std::string Encode(const ExecRequest&);
std::string Encode(const ExecFailed&);
std::string Encode(const Started&);
std::string Encode(const Exited&);
std::string EncodeHello();

// Parsers: strict; trailing bytes, short payloads and out-of-range values are errors.
Result<SetupFailed> DecodeSetupFailed(std::string_view payload);
Result<ExecRequest> DecodeExecRequest(std::string_view payload);
Result<ExecFailed> DecodeExecFailed(std::string_view payload);
Result<Started> DecodeStarted(std::string_view payload);
Result<Exited> DecodeExited(std::string_view payload);
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
