// The zygote: airlock-init started once, which clones every sandbox's launch
// child from its own small address space. Forking from the runtime instead
// copies the runtime's page tables (airlockd's are large) and then tears
// them down again in the child's exec; and every exec of a glibc program
// pays its start-up once more (its CPU feature probes trap to the
// hypervisor on a VM: ~0.5 ms here). A zygote's child is already airlock-init
// and runs the same steps as a forked child, ending in InitMain instead of
// execveat.
//
// What the child inherits is this process: no runtime memory, no secret
// (the zygote reads nothing but kClone requests; each child reads its own
// plan after the clone), no descriptor but those its steps place (InitFds
// closes every other one).
#include "runtime/init/zygote.h"

#include <fcntl.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "runtime/launch/child.h"
#include "runtime/proto/channel.h"
#include "runtime/proto/launch.h"
#include "runtime/sys/syscalls.h"

namespace airlock::init {
namespace {

uint64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

[[noreturn]] void BecomeInit(char* const argv[]) {
  int argc = 0;
  while (argv[argc] != nullptr) ++argc;
  _exit(InitMain(argc, const_cast<char**>(argv)));
}

// The clone's child: reads its plan from the sandbox channel, then runs the
// launch steps (runtime/launch/child.cc).
[[noreturn]] void Child(int channel, const std::vector<int>& egress) {
  close(proto::kZygoteFd);
  prctl(PR_SET_NAME, "airlock-init", 0, 0, 0);
  // As a forked child: killed with the runtime (its parent: CLONE_PARENT)
  // until init clears this.
  LinuxSyscalls().SetParentDeathSignal(SIGKILL);
  const uint64_t start = NowNs();
  auto fail = [&](int err) {
    proto::SendSetupFailed(channel, static_cast<uint32_t>(ChildStep::kReceivePlan), err, -1);
    _exit(125);
  };
  auto msg = proto::ReceiveMessage(channel);
  if (!msg) fail(msg.error().err ? msg.error().err : EPIPE);
  if (msg->type != proto::Type::kPlan || !msg->fds.empty()) fail(EPROTO);
  auto decoded = proto::DecodeChildPlan(msg->payload);
  if (!decoded || decoded->options.egress_count != egress.size()) fail(EPROTO);
  static proto::ChildPlan plan;  // lives as long as this process
  plan = std::move(*decoded);

  std::vector<sock_fprog> filters;
  for (auto& f : plan.filters) filters.push_back({static_cast<unsigned short>(f.size()), f.data()});
  static char arg0[] = "airlock-init", oneshot[] = "--oneshot", transparent[] = "--transparent";
  static char cgroup_arg[32] = "--cgroup-fds=0", egress_arg[32] = "--egress-fd=0";
  static char* argv[6] = {};
  int argc = 0;
  argv[argc++] = arg0;
  argv[argc++] = cgroup_arg;
  ChildContext ctx;
  ctx.plan = &plan.plan;
  ctx.sock = channel;
  ctx.init_exec_fd = -1;
  ctx.become_init = BecomeInit;
  ctx.stage_path = plan.options.stage_path.c_str();
  ctx.filters = filters.data();
  ctx.filter_count = static_cast<int>(filters.size());
  ctx.send_timings = plan.options.send_timings;
  ctx.init_cgroup_arg = cgroup_arg;
  ctx.init_cgroup_arg_size = sizeof(cgroup_arg);
  if (!egress.empty()) {
    argv[argc++] = egress_arg;
    if (plan.options.transparent) argv[argc++] = transparent;
    ctx.init_egress_arg = egress_arg;
    ctx.init_egress_arg_size = sizeof(egress_arg);
    for (int fd : egress) ctx.egress_fds[ctx.egress_count++] = fd;
  }
  if (plan.options.oneshot) argv[argc++] = oneshot;
  ctx.init_argv = argv;
  ctx.step_ns[static_cast<int>(ChildStep::kReceivePlan)] = NowNs() - start;
  RunChild(LinuxSyscalls(), ctx);
}

void Reply(const proto::CloneReply& reply, int pidfd) {
  std::string payload = proto::EncodeCloneReply(reply);
  int fds[1] = {pidfd};
  std::span<const int> attached = pidfd >= 0 ? std::span<const int>(fds) : std::span<const int>();
  if (proto::SendMessage(proto::kZygoteFd, proto::Type::kCloned, payload, attached) < 0) _exit(0);
}

}  // namespace

int ZygoteMain(int argc, char** argv) {
  // Its runtime's end closes: so does the zygote. Its children are the
  // runtime's (CLONE_PARENT): nothing to reap here.
  prctl(PR_SET_NAME, "airlock-zygote", 0, 0, 0);
  if (fcntl(proto::kZygoteFd, F_GETFD) < 0) return 125;
  int own_netns = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
  if (own_netns < 0) return 125;
  if (proto::SendMessage(proto::kZygoteFd, proto::Type::kZygoteReady, proto::EncodeHello()) < 0) return 0;
  for (;;) {
    auto msg = proto::ReceiveMessage(proto::kZygoteFd);
    if (!msg) {
      if (msg.error().err == 0 && msg.error().op == "channel closed") return 0;  // the runtime is done
      fprintf(stderr, "airlock-init --zygote: %s\n", msg.error().Message().c_str());
      return 125;
    }
    auto req = msg->type == proto::Type::kClone ? proto::DecodeCloneRequest(msg->payload)
                                                 : Result<proto::CloneRequest>(Fail("zygote", "not a clone request"));
    if (!req || msg->fds.size() != req->fd_count()) {
      Reply({0, EPROTO}, -1);
      continue;
    }
    size_t next = 0;
    const int channel = msg->fds[next++].get();
    const int netns = req->has_netns ? msg->fds[next++].get() : -1;
    const int cgroup = req->has_cgroup ? msg->fds[next++].get() : -1;
    std::vector<int> egress;
    while (next < msg->fds.size()) egress.push_back(msg->fds[next++].get());

    // Born in the runtime's network namespace for it: entered for the clone.
    if (netns >= 0 && setns(netns, CLONE_NEWNET) < 0) {
      Reply({0, errno}, -1);
      continue;
    }
    int pidfd = -1;
    clone_args args{};
    args.flags = req->flags | CLONE_PARENT | CLONE_PIDFD;
    args.pidfd = reinterpret_cast<uint64_t>(&pidfd);
    // With CLONE_PARENT the exit signal is this process's own (SIGCHLD).
    args.exit_signal = 0;
    if (cgroup >= 0) args.cgroup = static_cast<uint64_t>(cgroup);
    long pid = syscall(SYS_clone3, &args, sizeof(args));
    if (pid == 0) {
      // Its /proc/1/cmdline says "airlock-init", like an exec'd init's.
      for (int i = 1; i < argc; ++i) memset(argv[i], 0, strlen(argv[i]));
      Child(channel, egress);
    }
    const int err = pid < 0 ? errno : 0;
    if (netns >= 0 && setns(own_netns, CLONE_NEWNET) < 0) _exit(125);  // can't be trusted to clone right again
    Reply({pid > 0 ? static_cast<int32_t>(pid) : 0, err}, pidfd);
    if (pidfd >= 0) close(pidfd);
  }
}

}  // namespace airlock::init
