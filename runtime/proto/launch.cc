#include "runtime/proto/launch.h"

#include <sched.h>

#include "runtime/proto/wire.h"

namespace airlock::proto {
namespace {

constexpr size_t kMaxPath = 4096;
constexpr uint32_t kCloneFlagsAllowed = CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC |
                                        CLONE_NEWTIME | CLONE_NEWCGROUP;
constexpr uint64_t kCloneIntoCgroup = 0x200000000ULL;  // CLONE_INTO_CGROUP

}  // namespace

std::string EncodeChildPlan(const LaunchPlan& plan, std::span<const sock_fprog> filters, const ChildOptions& o) {
  wire::Writer w;
  w.U32(static_cast<uint32_t>(plan.sources.size()));
  w.I32(plan.upper_source);
  w.I32(plan.layer_count);
  w.Str(plan.overlay_lowerdir);
  w.U32(static_cast<uint32_t>(plan.mounts.size()));
  for (const auto& m : plan.mounts) {
    w.U32(static_cast<uint32_t>(m.op));
    w.Str(m.target);
    w.Str(m.data);
    w.U64(m.attr);
    w.I32(m.fd_index);
    w.U32((m.is_file ? 1u : 0u) | (m.optional ? 2u : 0u));
  }
  w.U32(static_cast<uint32_t>(plan.dropped_caps.size()));
  for (int c : plan.dropped_caps) w.I32(c);
  w.I32(plan.late_unshare_flags);
  w.Str(plan.spec.hostname);
  w.U64(plan.spec.limits.nofile);
  w.U32(plan.spec.limits.fsize_bytes.has_value());
  w.U64(plan.spec.limits.fsize_bytes.value_or(0));
  w.U32(static_cast<uint32_t>(filters.size()));
  for (const auto& f : filters) {
    w.U32(f.len);
    for (const auto& insn : std::span<const sock_filter>(f.filter, f.len)) {
      w.U32(static_cast<uint32_t>(insn.code) | static_cast<uint32_t>(insn.jt) << 16 |
            static_cast<uint32_t>(insn.jf) << 24);
      w.U32(insn.k);
    }
  }
  w.Str(o.stage_path);
  w.U32((o.send_timings ? 1u : 0u) | (o.oneshot ? 2u : 0u) | (o.transparent ? 4u : 0u));
  w.U32(o.egress_count);
  return w.Take();
}

Result<ChildPlan> DecodeChildPlan(std::string_view payload) {
  wire::Reader r(payload, "launch plan");
  ChildPlan p;
  LaunchPlan& plan = p.plan;
  uint32_t sources = TRY(r.U32("sources"));
  if (sources > kMaxMountSources) return r.Bad("sources", "more than " + std::to_string(kMaxMountSources));
  plan.sources.resize(sources);
  plan.upper_source = TRY(r.I32("upper_source"));
  plan.layer_count = TRY(r.I32("layer_count"));
  if (plan.upper_source < -1 || plan.upper_source >= static_cast<int>(sources))
    return r.Bad("upper_source", "out of range");
  if (plan.layer_count < 0 || plan.layer_count > static_cast<int>(sources))
    return r.Bad("layer_count", "out of range");
  plan.overlay_lowerdir = TRY(r.Str("overlay_lowerdir", kMaxPath));
  uint32_t mounts = TRY(r.U32("mounts"));
  if (mounts > kMaxPlanMounts) return r.Bad("mounts", "more than " + std::to_string(kMaxPlanMounts));
  plan.mounts.reserve(mounts);
  for (uint32_t i = 0; i < mounts; ++i) {
    PlannedMount m;
    uint32_t op = TRY(r.U32("mounts.op"));
    if (op > static_cast<uint32_t>(MountOp::kSymlink)) return r.Bad("mounts.op", "unknown " + std::to_string(op));
    m.op = static_cast<MountOp>(op);
    m.target = TRY(r.Str("mounts.target", kMaxPath));
    m.data = TRY(r.Str("mounts.data", kMaxPath));
    m.attr = TRY(r.U64("mounts.attr"));
    m.fd_index = TRY(r.I32("mounts.fd_index"));
    if (m.op == MountOp::kParentFd && (m.fd_index < 0 || m.fd_index >= static_cast<int>(sources)))
      return r.Bad("mounts.fd_index", "out of range");
    uint32_t bits = TRY(r.U32("mounts.flags"));
    if (bits > 3) return r.Bad("mounts.flags", "unknown bits");
    m.is_file = bits & 1;
    m.optional = bits & 2;
    plan.mounts.push_back(std::move(m));
  }
  uint32_t caps = TRY(r.U32("dropped_caps"));
  if (caps > 64) return r.Bad("dropped_caps", "more than 64");
  for (uint32_t i = 0; i < caps; ++i) {
    int c = TRY(r.I32("dropped_caps"));
    if (c < 0 || c > 63) return r.Bad("dropped_caps", "out of range");
    plan.dropped_caps.push_back(c);
  }
  plan.late_unshare_flags = TRY(r.I32("late_unshare_flags"));
  if (plan.late_unshare_flags & ~CLONE_NEWCGROUP) return r.Bad("late_unshare_flags", "not CLONE_NEWCGROUP");
  plan.spec.hostname = TRY(r.Str("hostname", 64));
  plan.spec.limits.nofile = TRY(r.U64("nofile"));
  uint32_t has_fsize = TRY(r.U32("fsize"));
  uint64_t fsize = TRY(r.U64("fsize"));
  if (has_fsize > 1) return r.Bad("fsize", "bad presence flag");
  if (has_fsize) plan.spec.limits.fsize_bytes = fsize;
  uint32_t filters = TRY(r.U32("filters"));
  if (filters > kMaxPlanFilters) return r.Bad("filters", "more than " + std::to_string(kMaxPlanFilters));
  for (uint32_t i = 0; i < filters; ++i) {
    uint32_t n = TRY(r.U32("filters.length"));
    if (n == 0 || n > kMaxFilterInsns) return r.Bad("filters.length", "must be 1.." + std::to_string(kMaxFilterInsns));
    std::vector<sock_filter> f(n);
    for (auto& insn : f) {
      uint32_t a = TRY(r.U32("filters.insn"));
      insn.code = static_cast<uint16_t>(a & 0xffff);
      insn.jt = static_cast<uint8_t>(a >> 16);
      insn.jf = static_cast<uint8_t>(a >> 24);
      insn.k = TRY(r.U32("filters.insn"));
    }
    p.filters.push_back(std::move(f));
  }
  ChildOptions& o = p.options;
  o.stage_path = TRY(r.Str("stage_path", kMaxPath));
  if (o.stage_path.empty() || o.stage_path[0] != '/') return r.Bad("stage_path", "not an absolute path");
  uint32_t bits = TRY(r.U32("options"));
  if (bits > 7) return r.Bad("options", "unknown bits");
  o.send_timings = bits & 1;
  o.oneshot = bits & 2;
  o.transparent = bits & 4;
  o.egress_count = TRY(r.U32("egress_count"));
  if (o.egress_count != 0 && o.egress_count != 2 && o.egress_count != 4) return r.Bad("egress_count", "not 0, 2 or 4");
  if (o.transparent != (o.egress_count == 4)) return r.Bad("options", "transparent needs 4 egress fds");
  TRY(r.End());
  return p;
}

std::string EncodeCloneRequest(const CloneRequest& req) {
  wire::Writer w;
  w.U64(req.flags);
  w.U32((req.has_netns ? 1u : 0u) | (req.has_cgroup ? 2u : 0u));
  w.U32(req.egress_count);
  return w.Take();
}

Result<CloneRequest> DecodeCloneRequest(std::string_view payload) {
  wire::Reader r(payload, "clone request");
  CloneRequest req;
  req.flags = TRY(r.U64("flags"));
  if (req.flags & ~(uint64_t{kCloneFlagsAllowed} | kCloneIntoCgroup)) return r.Bad("flags", "not a namespace flag");
  if (!(req.flags & CLONE_NEWUSER) || !(req.flags & CLONE_NEWPID)) return r.Bad("flags", "no new user and pid namespaces");
  uint32_t bits = TRY(r.U32("fds"));
  if (bits > 3) return r.Bad("fds", "unknown bits");
  req.has_netns = bits & 1;
  req.has_cgroup = bits & 2;
  if (req.has_cgroup != static_cast<bool>(req.flags & kCloneIntoCgroup)) return r.Bad("fds", "cgroup fd without CLONE_INTO_CGROUP");
  req.egress_count = TRY(r.U32("egress_count"));
  if (req.egress_count > 4) return r.Bad("egress_count", "more than 4");
  TRY(r.End());
  return req;
}

std::string EncodeCloneReply(const CloneReply& reply) {
  wire::Writer w;
  w.I32(reply.pid);
  w.I32(reply.err);
  return w.Take();
}

Result<CloneReply> DecodeCloneReply(std::string_view payload) {
  wire::Reader r(payload, "clone reply");
  CloneReply reply;
  reply.pid = TRY(r.I32("pid"));
  reply.err = TRY(r.I32("err"));
  if ((reply.pid > 0) == (reply.err != 0) || reply.pid < 0 || reply.err < 0) return r.Bad("pid", "neither a pid nor an errno");
  TRY(r.End());
  return reply;
}

}  // namespace airlock::proto
