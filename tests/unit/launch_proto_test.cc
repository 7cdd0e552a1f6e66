// The zygote's protocol (runtime/proto/launch.h): a launch child's plan, the
// clone request and its reply, round trips and strict decoding.
#include <linux/filter.h>
#include <linux/mount.h>
#include <sched.h>

#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "runtime/proto/launch.h"

namespace proto = airlock::proto;
using airlock::LaunchPlan;
using airlock::MountOp;
using airlock::PlannedMount;

namespace {

constexpr uint64_t kCloneIntoCgroup = 0x200000000ULL;

LaunchPlan SamplePlan() {
  LaunchPlan plan;
  plan.sources.resize(3);
  plan.layer_count = 2;
  plan.upper_source = 2;
  plan.overlay_lowerdir = "l1:l0";
  PlannedMount bind{MountOp::kParentFd, "workspace/data", "", MOUNT_ATTR_RDONLY, 1, false, false};
  PlannedMount proc{MountOp::kProc, "proc", "hidepid=2", MOUNT_ATTR_NOSUID, -1, false, false};
  PlannedMount mask{MountOp::kMaskFile, "proc/kcore", "", 0, -1, true, true};
  PlannedMount link{MountOp::kSymlink, "dev/fd", "/proc/self/fd", 0, -1, false, false};
  plan.mounts = {bind, proc, mask, link};
  plan.dropped_caps = {2, 21, 27};
  plan.late_unshare_flags = CLONE_NEWCGROUP;
  plan.spec.hostname = "agent-box";
  plan.spec.limits.nofile = 4096;
  plan.spec.limits.fsize_bytes = 1 << 20;
  return plan;
}

std::vector<sock_filter> Filter(size_t n) {
  std::vector<sock_filter> f(n);
  for (size_t i = 0; i < n; ++i)
    f[i] = {static_cast<uint16_t>(0x15 + i), static_cast<uint8_t>(i), static_cast<uint8_t>(255 - i),
            static_cast<uint32_t>(0xdeadbeef + i)};
  return f;
}

proto::ChildOptions SampleOptions() {
  proto::ChildOptions o;
  o.stage_path = "/run/airlock/stage";
  o.send_timings = true;
  o.oneshot = false;
  o.egress_count = 4;
  o.transparent = true;
  return o;
}

std::string Encode(const LaunchPlan& plan, const std::vector<std::vector<sock_filter>>& filters,
                   const proto::ChildOptions& o) {
  std::vector<sock_fprog> progs;
  for (const auto& f : filters)
    progs.push_back({static_cast<unsigned short>(f.size()), const_cast<sock_filter*>(f.data())});
  return proto::EncodeChildPlan(plan, progs, o);
}

}  // namespace

TEST_CASE("launch proto: a child's plan round trips", "[proto][zygote]") {
  LaunchPlan plan = SamplePlan();
  std::vector<std::vector<sock_filter>> filters = {Filter(7), Filter(1)};
  auto got = proto::DecodeChildPlan(Encode(plan, filters, SampleOptions()));
  REQUIRE(got.has_value());
  CHECK(got->plan.sources.size() == 3);
  CHECK(got->plan.layer_count == 2);
  CHECK(got->plan.upper_source == 2);
  CHECK(got->plan.overlay_lowerdir == "l1:l0");
  REQUIRE(got->plan.mounts.size() == 4);
  for (size_t i = 0; i < 4; ++i) {
    const auto &a = plan.mounts[i], &b = got->plan.mounts[i];
    CHECK(a.op == b.op);
    CHECK(a.target == b.target);
    CHECK(a.data == b.data);
    CHECK(a.attr == b.attr);
    CHECK(a.fd_index == b.fd_index);
    CHECK(a.is_file == b.is_file);
    CHECK(a.optional == b.optional);
  }
  CHECK(got->plan.dropped_caps == plan.dropped_caps);
  CHECK(got->plan.late_unshare_flags == CLONE_NEWCGROUP);
  CHECK(got->plan.spec.hostname == "agent-box");
  CHECK(got->plan.spec.limits.nofile == 4096);
  CHECK(got->plan.spec.limits.fsize_bytes == std::optional<uint64_t>(1 << 20));
  REQUIRE(got->filters.size() == 2);
  for (size_t f = 0; f < 2; ++f) {
    REQUIRE(got->filters[f].size() == filters[f].size());
    for (size_t i = 0; i < filters[f].size(); ++i) {
      CHECK(got->filters[f][i].code == filters[f][i].code);
      CHECK(got->filters[f][i].jt == filters[f][i].jt);
      CHECK(got->filters[f][i].jf == filters[f][i].jf);
      CHECK(got->filters[f][i].k == filters[f][i].k);
    }
  }
  CHECK(got->options.stage_path == "/run/airlock/stage");
  CHECK(got->options.send_timings);
  CHECK_FALSE(got->options.oneshot);
  CHECK(got->options.egress_count == 4);
  CHECK(got->options.transparent);

  // No fsize limit, one-shot, no egress.
  plan.spec.limits.fsize_bytes.reset();
  proto::ChildOptions o = SampleOptions();
  o.oneshot = true;
  o.egress_count = 0;
  o.transparent = false;
  auto plain = proto::DecodeChildPlan(Encode(plan, {}, o));
  REQUIRE(plain.has_value());
  CHECK_FALSE(plain->plan.spec.limits.fsize_bytes.has_value());
  CHECK(plain->filters.empty());
  CHECK(plain->options.oneshot);
}

TEST_CASE("launch proto: every truncation and any trailing byte is refused", "[proto][zygote]") {
  std::string full = Encode(SamplePlan(), {Filter(3)}, SampleOptions());
  for (size_t n = 0; n < full.size(); ++n) {
    INFO("length " << n);
    CHECK_FALSE(proto::DecodeChildPlan(full.substr(0, n)).has_value());
  }
  auto extra = proto::DecodeChildPlan(full + "x");
  REQUIRE_FALSE(extra.has_value());
  CHECK(extra.error().Message().find("trailing") != std::string::npos);
}

TEST_CASE("launch proto: out-of-range fields are refused by name", "[proto][zygote]") {
  auto refused = [](const LaunchPlan& plan, const std::vector<std::vector<sock_filter>>& filters,
                    const proto::ChildOptions& o) {
    auto r = proto::DecodeChildPlan(Encode(plan, filters, o));
    REQUIRE_FALSE(r.has_value());
    return r.error().Message();
  };
  const auto options = SampleOptions();
  LaunchPlan p = SamplePlan();
  p.mounts[0].fd_index = 3;  // only 3 sources
  CHECK(refused(p, {}, options).find("mounts.fd_index") != std::string::npos);
  p = SamplePlan();
  p.upper_source = 5;
  CHECK(refused(p, {}, options).find("upper_source") != std::string::npos);
  p = SamplePlan();
  p.layer_count = 4;
  CHECK(refused(p, {}, options).find("layer_count") != std::string::npos);
  p = SamplePlan();
  p.mounts[1].op = static_cast<MountOp>(200);
  CHECK(refused(p, {}, options).find("mounts.op") != std::string::npos);
  p = SamplePlan();
  p.dropped_caps.push_back(64);
  CHECK(refused(p, {}, options).find("dropped_caps") != std::string::npos);
  p = SamplePlan();
  p.late_unshare_flags = CLONE_NEWNET;
  CHECK(refused(p, {}, options).find("late_unshare_flags") != std::string::npos);
  p = SamplePlan();
  p.spec.hostname = std::string(65, 'h');
  CHECK(refused(p, {}, options).find("hostname") != std::string::npos);
  p = SamplePlan();
  p.sources.resize(airlock::kMaxMountSources + 1);
  CHECK(refused(p, {}, options).find("sources") != std::string::npos);

  CHECK(refused(SamplePlan(), std::vector<std::vector<sock_filter>>(proto::kMaxPlanFilters + 1, Filter(1)), options)
            .find("filters") != std::string::npos);
  CHECK(refused(SamplePlan(), {Filter(proto::kMaxFilterInsns + 1)}, options).find("filters.length") != std::string::npos);

  proto::ChildOptions o = options;
  o.stage_path = "relative/stage";
  CHECK(refused(SamplePlan(), {}, o).find("stage_path") != std::string::npos);
  o = options;
  o.egress_count = 3;
  CHECK(refused(SamplePlan(), {}, o).find("egress_count") != std::string::npos);
  o = options;
  o.transparent = false;  // 4 egress fds are the transparent relay's
  CHECK(refused(SamplePlan(), {}, o).find("options") != std::string::npos);
}

TEST_CASE("launch proto: clone requests and replies", "[proto][zygote]") {
  proto::CloneRequest req;
  req.flags = CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | kCloneIntoCgroup;
  req.has_netns = true;
  req.has_cgroup = true;
  req.egress_count = 2;
  auto got = proto::DecodeCloneRequest(proto::EncodeCloneRequest(req));
  REQUIRE(got.has_value());
  CHECK(got->flags == req.flags);
  CHECK(got->has_netns);
  CHECK(got->has_cgroup);
  CHECK(got->egress_count == 2);
  CHECK(got->fd_count() == 5);

  auto refused = [](proto::CloneRequest r) {
    auto d = proto::DecodeCloneRequest(proto::EncodeCloneRequest(r));
    REQUIRE_FALSE(d.has_value());
    return d.error().Message();
  };
  proto::CloneRequest bad = req;
  bad.flags |= CLONE_VM;  // only namespace flags (and CLONE_INTO_CGROUP) pass
  CHECK(refused(bad).find("flags") != std::string::npos);
  bad = req;
  bad.flags &= ~static_cast<uint64_t>(CLONE_NEWUSER);
  CHECK(refused(bad).find("flags") != std::string::npos);
  bad = req;
  bad.has_cgroup = false;  // CLONE_INTO_CGROUP without its fd
  CHECK(refused(bad).find("fds") != std::string::npos);
  bad = req;
  bad.egress_count = 5;
  CHECK(refused(bad).find("egress_count") != std::string::npos);

  auto ok = proto::DecodeCloneReply(proto::EncodeCloneReply({1234, 0}));
  REQUIRE(ok.has_value());
  CHECK(ok->pid == 1234);
  auto err = proto::DecodeCloneReply(proto::EncodeCloneReply({0, ENOSPC}));
  REQUIRE(err.has_value());
  CHECK(err->err == ENOSPC);
  CHECK_FALSE(proto::DecodeCloneReply(proto::EncodeCloneReply({0, 0})).has_value());
  CHECK_FALSE(proto::DecodeCloneReply(proto::EncodeCloneReply({5, EPERM})).has_value());
  CHECK_FALSE(proto::DecodeCloneReply(proto::EncodeCloneReply({-5, 0})).has_value());
}
