// The zygote's protocol (runtime/launch/zygote.h). The runtime asks a
// zygote to clone a sandbox child (kClone) and gets its pid and pidfd back
// (kCloned); the child, which starts with none of the runtime's memory,
// reads its plan from the sandbox channel first (kPlan), queued there by
// the runtime before the clone. Both ends are the runtime's own programs,
// yet decoding is as strict as for anything else on a channel.
#pragma once

#include <linux/filter.h>

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/core/error.h"
#include "runtime/spec/plan.h"

namespace airlock::proto {

// What a launch child reads from its copy of the runtime's memory when it is
// forked, and from the kPlan message when a zygote cloned it.
struct ChildOptions {
  std::string stage_path;
  bool send_timings = false;
  // How init starts: --oneshot, --egress-fd (the egress fds given to the
  // zygote, in order), --transparent.
  bool oneshot = false;
  uint32_t egress_count = 0;
  bool transparent = false;
};
struct ChildPlan {
  // Only what the child's steps read: the sources' count (their fds come
  // with kGo), the layer and upper indexes, the overlay's lowerdir, the
  // mounts, the dropped capabilities, the late unshare flags, and the spec's
  // hostname and rlimits.
  LaunchPlan plan;
  std::vector<std::vector<sock_filter>> filters;  // installed in order
  ChildOptions options;
};

inline constexpr size_t kMaxPlanMounts = 4096;
inline constexpr size_t kMaxPlanFilters = 8;
inline constexpr size_t kMaxFilterInsns = 4096;  // BPF_MAXINSNS

std::string EncodeChildPlan(const LaunchPlan& plan, std::span<const sock_fprog> filters, const ChildOptions& o);
Result<ChildPlan> DecodeChildPlan(std::string_view payload);

// kClone: the clone3 flags (namespaces, CLONE_INTO_CGROUP) and which
// descriptors follow, in this order: the sandbox channel's child end, the
// network namespace to be born in (has_netns), the cgroup to be born in
// (has_cgroup, with CLONE_INTO_CGROUP), then egress_count egress fds.
struct CloneRequest {
  uint64_t flags = 0;
  bool has_netns = false;
  bool has_cgroup = false;
  uint32_t egress_count = 0;
  size_t fd_count() const { return 1 + has_netns + has_cgroup + egress_count; }
};
std::string EncodeCloneRequest(const CloneRequest& r);
Result<CloneRequest> DecodeCloneRequest(std::string_view payload);

// kCloned: the child's pid (with its pidfd attached) or the errno clone3
// failed with (no fd).
struct CloneReply {
  int32_t pid = 0;
  int32_t err = 0;
};
std::string EncodeCloneReply(const CloneReply& r);
Result<CloneReply> DecodeCloneReply(std::string_view payload);

}  // namespace airlock::proto
