// airlock-init serving a persistent sandbox (LaunchOptions::oneshot=false),
// driven directly over its channel: concurrent commands, signals by id,
// commands with a pty, and file operations run inside the sandbox. Every
// assertion is on what init reported or what the sandbox's processes saw.
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <termios.h>

#include <set>

#include "init_ops.h"

using namespace airlock;
using namespace airlock_test::init_ops;

namespace {

// Host pids of init and every process it parents (spawner, commands).
std::vector<pid_t> SandboxProcesses(pid_t init) {
  std::vector<pid_t> pids = {init};
  std::stringstream ss(airlock_test::ReadFile("/proc/" + std::to_string(init) + "/task/" + std::to_string(init) +
                                              "/children"));
  pid_t p;
  while (ss >> p) pids.push_back(p);
  return pids;
}

// Processes among `pids` holding an open file that is `st`'s inode.
std::vector<pid_t> Holders(const std::vector<pid_t>& pids, const struct stat& st) {
  std::vector<pid_t> out;
  for (pid_t pid : pids) {
    std::string dir = "/proc/" + std::to_string(pid) + "/fd";
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
      struct stat s;
      if (stat(e.path().c_str(), &s) == 0 && s.st_dev == st.st_dev && s.st_ino == st.st_ino) out.push_back(pid);
    }
  }
  return out;
}

}  // namespace

TEST_CASE("init-ops: commands run concurrently and a signal reaches one by id", "[root][init-ops]") {
  InitOps ops;
  SECTION("two commands that wait for each other") {
    Pipe a, b;
    uint32_t first = ops.Exec({"/bin/sh", "-c",
                               "echo > /tmp/first; n=0; while [ ! -e /tmp/second ] && [ $n -lt 200 ]; do "
                               "sleep 0.05; n=$((n+1)); done; test -e /tmp/second && echo first-done"},
                              0, {-1, a.w.get(), a.w.get()});
    uint32_t second = ops.Exec({"/bin/sh", "-c",
                                "n=0; while [ ! -e /tmp/first ] && [ $n -lt 200 ]; do sleep 0.05; n=$((n+1)); "
                                "done; echo > /tmp/second; test -e /tmp/first && echo second-done"},
                               0, {-1, b.w.get(), b.w.get()});
    a.w.Reset();
    b.w.Reset();
    CHECK(ReadToEnd(a.r.get()) == "first-done\n");
    CHECK(ReadToEnd(b.r.get()) == "second-done\n");
    auto& r1 = ops.Wait(first);
    auto& r2 = ops.Wait(second);
    CHECK(r1.exited);
    CHECK(r1.code == 0);
    CHECK(r1.started_fds == 0);
    CHECK(r2.code == 0);
    CHECK(r1.pid != r2.pid);
  }
  SECTION("a signal goes to one command's process group only") {
    Pipe out;
    // The background sleep shares the shell's group and its stdout: the
    // pipe closes only if the signal reached the whole group.
    uint32_t group = ops.Exec({"/bin/sh", "-c", "sleep 60 & echo ready; wait"}, 0, {-1, out.w.get(), -1});
    uint32_t other = ops.Exec({"/bin/sleep", "60"});
    out.w.Reset();
    ops.WaitStarted(group);
    ops.WaitStarted(other);
    char buf[6] = {};
    pollfd p{out.r.get(), POLLIN, 0};
    REQUIRE(poll(&p, 1, 10000) == 1);
    REQUIRE(read(out.r.get(), buf, sizeof(buf)) == 6);
    CHECK(std::string(buf, 6) == "ready\n");
    ops.Signal(group, SIGTERM);
    auto& g = ops.Wait(group, 10);
    CHECK(g.exited);
    CHECK(g.signal == SIGTERM);
    auto start = std::chrono::steady_clock::now();
    CHECK(ReadToEnd(out.r.get(), 10).empty());
    CHECK(airlock_test::SecondsSince(start) < 5);  // the sleep died too
    // The other command is untouched until signalled itself.
    ops.PumpUntil([] { return false; }, 0.3);
    CHECK_FALSE(ops.report(other).done());
    ops.Signal(other, SIGKILL);
    auto& o = ops.Wait(other, 10);
    CHECK(o.signal == SIGKILL);
  }
  SECTION("commands start with default signal dispositions and an empty mask") {
    // This test process ignores SIGPIPE; nothing of that may reach a command.
    auto r = Sh(ops, "grep -E '^Sig(Ign|Blk)' /proc/self/status");
    CHECK(r.out == "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n");
    auto pipe = Sh(ops, "yes | head -n 1; echo done");
    CHECK(pipe.out == "y\ndone\n");  // yes died of SIGPIPE quietly
  }
  SECTION("a signal for an unknown or finished id is ignored") {
    auto done = Run(ops, {"/bin/true"});
    CHECK(done.code == 0);
    ops.Signal(100, SIGKILL);  // finished
    ops.Signal(4242, SIGKILL);  // never sent
    auto after = Sh(ops, "echo alive");
    CHECK(after.code == 0);
    CHECK(after.out == "alive\n");
  }
  SECTION("a signal sent right behind the exec still arrives") {
    uint32_t id = ops.Exec({"/bin/sleep", "60"});
    ops.Signal(id, SIGKILL);
    auto& r = ops.Wait(id, 10);
    CHECK(r.signal == SIGKILL);
  }
}

TEST_CASE("init-ops: a command with a pty", "[root][init-ops]") {
  InitOps ops;
  uint32_t id = ops.Exec({"/bin/sh", "-c",
                          "tty; stty size; test -t 0 && echo stdin-is-tty; echo via-dev-tty > /dev/tty; "
                          "stat -c 'owner %u' $(tty); read line; echo got:$line"},
                         1000, {}, /*tty=*/true, 33, 101);
  auto& started = ops.WaitStarted(id);
  REQUIRE(started.started_fds == 1);
  int master = started.master.get();
  int ptn = -1;
  CHECK(ioctl(master, TIOCGPTN, &ptn) == 0);  // a pty master indeed
  winsize ws{};
  REQUIRE(ioctl(master, TIOCGWINSZ, &ws) == 0);
  CHECK(ws.ws_row == 33);
  CHECK(ws.ws_col == 101);
  // Neither init nor the spawner (nor the command) keeps a master of the
  // sandbox's devpts: ours is the only one. (They close theirs right after
  // sending it, so possibly just after we got it.)
  struct stat master_st;
  REQUIRE(fstat(master, &master_st) == 0);
  std::vector<pid_t> holders;
  airlock_test::Eventually(
      [&] {
        holders = Holders(SandboxProcesses(ops.sandbox().init_pid()), master_st);
        return holders.empty();
      },
      2);
  CHECK(holders.empty());
  CHECK(SandboxProcesses(ops.sandbox().init_pid()).size() >= 3);  // init, spawner, the command

  REQUIRE(write(master, "hello\n", 6) == 6);
  std::string out = ReadToEnd(master);
  INFO(out);
  auto& r = ops.Wait(id);
  CHECK(r.exited);
  CHECK(r.code == 0);
  CHECK(out.find("/dev/pts/" + std::to_string(ptn) + "\r\n") != std::string::npos);
  CHECK(out.find("33 101\r\n") != std::string::npos);
  CHECK(out.find("stdin-is-tty\r\n") != std::string::npos);
  CHECK(out.find("via-dev-tty\r\n") != std::string::npos);  // its controlling terminal
  CHECK(out.find("owner 1000\r\n") != std::string::npos);
  CHECK(out.find("got:hello\r\n") != std::string::npos);

  SECTION("no size given: the kernel's default, and no fds forwarded") {
    Pipe unused;
    uint32_t plain = ops.Exec({"/usr/bin/stty", "size"}, 0, {unused.w.get(), unused.w.get(), unused.w.get()}, true);
    auto& s = ops.WaitStarted(plain);
    REQUIRE(s.started_fds == 1);
    std::string size = ReadToEnd(s.master.get());
    CHECK(size == "0 0\r\n");
    CHECK(ops.Wait(plain).code == 0);
  }
}

TEST_CASE("init-ops: file operations", "[root][init-ops]") {
  InitOps ops;
  using proto::kParents;
  SECTION("mkdir, write, read, stat, list, rename, remove") {
    CHECK(RunOp(ops, Op(FileOp::kMkdir, "/tmp/ops/a/b", kParents)).code == 0);
    CHECK(RunOp(ops, Op(FileOp::kMkdir, "/tmp/ops/a/b", kParents)).code == 0);  // existing is fine
    CHECK(RunOp(ops, Op(FileOp::kMkdir, "/tmp/ops/a/b")).code == EEXIST);
    CHECK(RunOp(ops, Op(FileOp::kMkdir, "/tmp/ops/x/y")).code == ENOENT);
    auto mk = Op(FileOp::kMkdir, "/tmp/ops/m", proto::kModeSet);
    mk.mode = 0710;
    CHECK(RunOp(ops, mk).code == 0);

    const std::string f = "/tmp/ops/a/f.txt";
    CHECK(RunOp(ops, Op(FileOp::kWrite, f, proto::kWriteCreate), "hello world").code == 0);
    CHECK(ReadInside(ops, f) == "hello world");
    auto part = Op(FileOp::kRead, f);
    part.offset = 6;
    part.length = 3;
    CHECK(RunOp(ops, part).data == "wor");
    part.length = 0;  // to EOF
    CHECK(RunOp(ops, part).data == "world");
    part.offset = 100;  // past EOF: nothing
    auto past = RunOp(ops, part);
    CHECK(past.code == 0);
    CHECK(past.data.empty());
    CHECK(RunOp(ops, Op(FileOp::kWrite, f, proto::kWriteAppend), "!!").code == 0);
    CHECK(ReadInside(ops, f) == "hello world!!");
    CHECK(RunOp(ops, Op(FileOp::kWrite, f, proto::kWriteCreate | proto::kWriteExclusive), "x").code == EEXIST);
    CHECK(RunOp(ops, Op(FileOp::kWrite, "/tmp/ops/a/none")).code == ENOENT);  // no create flag
    CHECK(RunOp(ops, Op(FileOp::kWrite, "/tmp/ops/deep/er/n.txt", proto::kWriteCreate | kParents), "n").code == 0);
    CHECK(ReadInside(ops, "/tmp/ops/deep/er/n.txt") == "n");
    CHECK(RunOp(ops, Op(FileOp::kRead, "/tmp/ops/a")).code == EISDIR);
    CHECK(RunOp(ops, Op(FileOp::kRead, "/tmp/ops/nothing")).code == ENOENT);
    // Written with the sandbox's own view of who writes.
    CHECK(Sh(ops, "stat -c '%u %a %s' " + f).out == "0 644 13\n");

    // Atomic: the content is replaced whole, the old mode stays, no
    // temporary file is left.
    auto secret = Op(FileOp::kWrite, f, proto::kWriteTruncate | proto::kModeSet);
    secret.mode = 0600;
    CHECK(RunOp(ops, secret, "v1").code == 0);
    CHECK(RunOp(ops, Op(FileOp::kWrite, f, proto::kWriteAtomic), std::string(200000, 'z')).code == 0);
    CHECK(ReadInside(ops, f) == std::string(200000, 'z'));
    CHECK(Sh(ops, "stat -c '%a %s' " + f).out == "600 200000\n");
    auto atomic_mode = Op(FileOp::kWrite, f, proto::kWriteAtomic | proto::kModeSet);
    atomic_mode.mode = 0640;
    CHECK(RunOp(ops, atomic_mode, "v3").code == 0);
    CHECK(Sh(ops, "stat -c '%a' " + f + "; cat " + f).out == "640\nv3");
    // Atomic writes create a missing file: the rename makes the name anyway.
    CHECK(RunOp(ops, Op(FileOp::kWrite, "/tmp/ops/a/plain", proto::kWriteAtomic), "p").code == 0);
    CHECK(ReadInside(ops, "/tmp/ops/a/plain") == "p");
    CHECK(RunOp(ops, Op(FileOp::kRemove, "/tmp/ops/a/plain")).code == 0);
    CHECK(RunOp(ops, Op(FileOp::kWrite, "/tmp/ops/a/new", proto::kWriteAtomic | proto::kWriteExclusive), "new").code ==
          0);
    CHECK(RunOp(ops, Op(FileOp::kWrite, "/tmp/ops/a/new", proto::kWriteAtomic | proto::kWriteCreate |
                                                               proto::kWriteExclusive),
                "again")
              .code == EEXIST);
    CHECK(ReadInside(ops, "/tmp/ops/a/new") == "new");
    CHECK(Sh(ops, "ln -s f.txt /tmp/ops/a/link").code == 0);

    // stat: lstat unless kFollow.
    auto st = Records(RunOp(ops, Op(FileOp::kStat, "/tmp/ops/a/link")));
    REQUIRE(st.size() == 1);
    CHECK(st[0].type == proto::FileType::kSymlink);
    CHECK(st[0].name == "link");
    CHECK(st[0].link_target == "f.txt");
    st = Records(RunOp(ops, Op(FileOp::kStat, "/tmp/ops/a/link", proto::kFollow)));
    REQUIRE(st.size() == 1);
    CHECK(st[0].type == proto::FileType::kRegular);
    CHECK(st[0].mode == 0640);
    CHECK(st[0].size == 2);
    CHECK(st[0].link_target.empty());
    CHECK(st[0].mtime_ns > 1600000000ll * 1000000000ll);
    st = Records(RunOp(ops, Op(FileOp::kStat, "/tmp/ops/m/")));
    REQUIRE(st.size() == 1);
    CHECK(st[0].type == proto::FileType::kDirectory);
    CHECK(st[0].name == "m");
    CHECK(st[0].mode == 0710);
    st = Records(RunOp(ops, Op(FileOp::kStat, "/")));
    REQUIRE(st.size() == 1);
    CHECK(st[0].name.empty());
    CHECK(RunOp(ops, Op(FileOp::kStat, "/tmp/ops/nothing")).code == ENOENT);

    // list: every entry, lstat'ed, without "." and "..".
    auto list = Records(RunOp(ops, Op(FileOp::kList, "/tmp/ops/a")));
    std::map<std::string, proto::StatRecord> byname;
    for (auto& e : list) byname[e.name] = e;
    CHECK(byname.size() == list.size());
    std::set<std::string> names;
    for (auto& [n, e] : byname) names.insert(n);
    CHECK(names == std::set<std::string>{"b", "f.txt", "link", "new"});  // no temporary files left
    CHECK(byname["b"].type == proto::FileType::kDirectory);
    CHECK(byname["f.txt"].type == proto::FileType::kRegular);
    CHECK(byname["link"].type == proto::FileType::kSymlink);
    CHECK(byname["link"].link_target == "f.txt");
    CHECK(RunOp(ops, Op(FileOp::kList, f)).code == ENOTDIR);

    // rename, with and without replacing.
    auto rn = Op(FileOp::kRename, "/tmp/ops/a/new", proto::kNoReplace);
    rn.path2 = "/tmp/ops/a/f.txt";
    CHECK(RunOp(ops, rn).code == EEXIST);
    rn.path2 = "/tmp/ops/a/renamed";
    CHECK(RunOp(ops, rn).code == 0);
    CHECK(ReadInside(ops, "/tmp/ops/a/renamed") == "new");
    CHECK(RunOp(ops, Op(FileOp::kStat, "/tmp/ops/a/new")).code == ENOENT);
    auto over = Op(FileOp::kRename, "/tmp/ops/a/renamed");
    over.path2 = "/tmp/ops/a/f.txt";
    CHECK(RunOp(ops, over).code == 0);
    CHECK(ReadInside(ops, f) == "new");

    // remove: files and empty dirs; recursive for the rest.
    CHECK(RunOp(ops, Op(FileOp::kRemove, "/tmp/ops/a")).code == ENOTEMPTY);
    CHECK(RunOp(ops, Op(FileOp::kRemove, "/tmp/ops/a/b")).code == 0);
    CHECK(RunOp(ops, Op(FileOp::kRemove, "/tmp/ops/a/link")).code == 0);
    CHECK(ReadInside(ops, f) == "new");  // the link went, not its target
    CHECK(RunOp(ops, Op(FileOp::kRemove, "/tmp/ops", proto::kRecursive)).code == 0);
    CHECK(Sh(ops, "test -e /tmp/ops || echo gone").out == "gone\n");
    CHECK(RunOp(ops, Op(FileOp::kRemove, "/tmp/ops", proto::kRecursive)).code == ENOENT);
  }

  SECTION("recursive removal follows no symlink and enters no mount") {
    CHECK(Sh(ops, "mkdir -p /tmp/keep /tmp/rm/d && echo k > /tmp/keep/file && ln -s /tmp/keep /tmp/rm/d/to-keep "
                  "&& ln -s / /tmp/rm/to-root && echo x > /tmp/rm/d/x")
              .code == 0);
    CHECK(RunOp(ops, Op(FileOp::kRemove, "/tmp/rm", proto::kRecursive)).code == 0);
    CHECK(Sh(ops, "cat /tmp/keep/file; test -e /tmp/rm || echo gone; ls / | grep -c usr").out == "k\ngone\n1\n");
    // A mount point itself is refused, and nothing in it is touched.
    CHECK(RunOp(ops, Op(FileOp::kRemove, "/dev/shm", proto::kRecursive)).code == EBUSY);
    CHECK(RunOp(ops, Op(FileOp::kRemove, "/tmp", proto::kRecursive)).code == EBUSY);
    CHECK(Sh(ops, "test -e /tmp/keep/file && echo kept").out == "kept\n");
  }

  SECTION("a stream reader that goes away: EPIPE, not a killed process") {
    Pipe p;
    uint32_t id = ops.FileOp(Op(FileOp::kRead, "/dev/zero"), p.w.get());
    p.w.Reset();
    char buf[4096];
    REQUIRE(read(p.r.get(), buf, sizeof(buf)) > 0);
    p.r.Reset();
    auto& r = ops.Wait(id);
    CHECK(r.exited);
    CHECK(r.signal == 0);
    CHECK(r.code == EPIPE);
  }

  SECTION("a file operation can be cancelled by its id") {
    Pipe p;  // never read: the copy blocks once the pipe is full
    uint32_t id = ops.FileOp(Op(FileOp::kRead, "/dev/zero"), p.w.get());
    p.w.Reset();
    ops.WaitStarted(id);
    ops.Signal(id, SIGKILL);
    auto& r = ops.Wait(id, 10);
    CHECK(r.signal == SIGKILL);
  }
}

TEST_CASE("init-ops: paths resolve inside the sandbox, with the caller's permissions", "[root][init-ops]") {
  InitOps ops;
  const std::string host_hostname = airlock_test::ReadFile("/etc/hostname");
  const std::string sandbox_hostname = "sandbox\n";  // the host image's synthesized /etc/hostname
  if (host_hostname == sandbox_hostname) WARN("the host's /etc/hostname is the sandbox's: weaker test");
  REQUIRE(Sh(ops, "ln -s /etc/hostname /tmp/h && ln -s / /tmp/root && mkdir /tmp/d && ln -s /etc /tmp/d/etc").code == 0);

  CHECK(ReadInside(ops, "/tmp/h") == sandbox_hostname);
  CHECK(ReadInside(ops, "/tmp/root/etc/hostname") == sandbox_hostname);
  CHECK(ReadInside(ops, "/tmp/d/../d/etc/hostname") == sandbox_hostname);
  CHECK(ReadInside(ops, "/proc/self/root/etc/hostname") == sandbox_hostname);
  // init is not dumpable, so its root may be closed to us; if it opens, it
  // is the sandbox's.
  auto init_root = RunOp(ops, Op(FileOp::kRead, "/proc/1/root/etc/hostname"));
  CHECK((init_root.code == EACCES || (init_root.code == 0 && init_root.data == sandbox_hostname)));
  // The synthesized /etc/passwd, not the host's.
  CHECK(ReadInside(ops, "/tmp/root/etc/passwd").find("sandbox:x:1000:1000:") != std::string::npos);
  // Relative paths resolve against cwd, inside too.
  auto rel = Op(FileOp::kRead, "../etc/hostname");
  rel.cwd = "/tmp/root/usr";
  CHECK(RunOp(ops, rel).data == sandbox_hostname);

  // A write through a symlink to / lands in the sandbox's /tmp.
  const std::string name = "airlock-init-ops-" + std::to_string(getpid());
  CHECK(RunOp(ops, Op(FileOp::kWrite, "/tmp/root/tmp/" + name, proto::kWriteCreate), "inside").code == 0);
  CHECK(Sh(ops, "cat /tmp/" + name).out == "inside");
  CHECK_FALSE(airlock_test::Exists("/tmp/" + name));
  auto atomic = RunOp(ops, Op(FileOp::kWrite, "/tmp/root/tmp/" + name, proto::kWriteAtomic), "atomic");
  CHECK(atomic.code == 0);
  CHECK(Sh(ops, "cat /tmp/" + name).out == "atomic");
  CHECK_FALSE(airlock_test::Exists("/tmp/" + name));

  // Permissions are the requester's: a root-only file is closed to 1000.
  auto secret = Op(FileOp::kWrite, "/tmp/secret", proto::kWriteCreate | proto::kModeSet);
  secret.mode = 0600;
  REQUIRE(RunOp(ops, secret, "s3cret").code == 0);
  CHECK(ReadInside(ops, "/tmp/secret") == "s3cret");
  CHECK(RunOp(ops, Op(FileOp::kRead, "/tmp/secret", 0, 1000)).code == EACCES);
  CHECK(RunOp(ops, Op(FileOp::kWrite, "/tmp/secret", proto::kWriteTruncate, 1000), "x").code == EACCES);
  CHECK(RunOp(ops, Op(FileOp::kWrite, "/etc/passwd", proto::kWriteAppend, 1000), "x").code == EACCES);
  CHECK(RunOp(ops, Op(FileOp::kMkdir, "/root/x", 0, 1000)).code == EACCES);
  CHECK(RunOp(ops, Op(FileOp::kRemove, "/tmp/secret", 0, 1000)).code == EPERM);  // sticky /tmp
  // What 1000 writes is 1000's.
  CHECK(RunOp(ops, Op(FileOp::kWrite, "/tmp/mine", proto::kWriteCreate, 1000), "m").code == 0);
  auto mine = Records(RunOp(ops, Op(FileOp::kStat, "/tmp/mine")));
  REQUIRE(mine.size() == 1);
  CHECK(mine[0].uid == 1000);
  CHECK(mine[0].gid == 1000);
  CHECK(mine[0].mode == 0644);
  // A refused chmod fails the write before anything is truncated.
  auto shared = Op(FileOp::kWrite, "/tmp/shared", proto::kWriteCreate | proto::kModeSet);
  shared.mode = 0666;
  REQUIRE(RunOp(ops, shared, "keep").code == 0);
  auto chmod = Op(FileOp::kWrite, "/tmp/shared", proto::kWriteTruncate | proto::kModeSet, 1000);
  chmod.mode = 0600;
  CHECK(RunOp(ops, chmod, "lost").code == EPERM);
  CHECK(ReadInside(ops, "/tmp/shared") == "keep");
  // An atomic write needs write and search permission on the directory, not read.
  REQUIRE(Sh(ops, "mkdir -m 0333 /tmp/blind && chown 1000:1000 /tmp/blind && chmod 0333 /tmp/blind").code == 0);
  CHECK(RunOp(ops, Op(FileOp::kWrite, "/tmp/blind/f", proto::kWriteAtomic | proto::kWriteCreate, 1000), "b").code ==
        0);
  CHECK(RunOp(ops, Op(FileOp::kList, "/tmp/blind", 0, 1000)).code == EACCES);
  CHECK(ReadInside(ops, "/tmp/blind/f", 1000) == "b");
  // A bad cwd is the operation's failure.
  auto nowhere = Op(FileOp::kStat, "x");
  nowhere.cwd = "/no/such/dir";
  CHECK(RunOp(ops, nowhere).code == ENOENT);
}

TEST_CASE("init-ops: a recursive removal stops at a mount inside the tree", "[root][init-ops]") {
  airlock_test::TempDir host_dir("airlock-init-ops");
  {
    std::ofstream(host_dir / "keep.txt") << "keep";
  }
  HostMount m;
  m.source = host_dir.path();
  m.destination = "/rmtest/mnt";
  m.read_only = false;
  m.allow_root_owner = true;
  InitOps ops({m});
  REQUIRE(Sh(ops, "cat /rmtest/mnt/keep.txt && echo x > /rmtest/other").out == "keep");
  CHECK(RunOp(ops, Op(FileOp::kRemove, "/rmtest", proto::kRecursive)).code == EXDEV);
  CHECK(airlock_test::ReadFile(host_dir / "keep.txt") == "keep");
  CHECK(Sh(ops, "test -e /rmtest/other || echo other-gone; cat /rmtest/mnt/keep.txt").out == "other-gone\nkeep");
}

TEST_CASE("init-ops: bad requests are answered or ignored, never fatal", "[root][init-ops]") {
  InitOps ops;
  // An id, then garbage: refused with EINVAL under that id.
  std::string garbage = std::string("\x39\x05\x00\x00", 4) + "garbage";
  ops.Send(proto::Type::kFileOp, garbage);
  ops.Send(proto::Type::kExec, std::string("\x3a\x05\x00\x00", 4));
  auto& f = ops.Wait(0x539);
  CHECK(f.failed);
  CHECK(f.err == EINVAL);
  auto& e = ops.Wait(0x53a);
  CHECK(e.failed);
  CHECK(e.err == EINVAL);
  // Too short to name an id, a bad signal, a file op with two fds, types
  // init doesn't take: ignored.
  ops.Send(proto::Type::kExec, "x");
  ops.Send(proto::Type::kSignal, proto::Encode(proto::Signal{1, 0}));
  ops.Send(proto::Type::kSignal, "");
  ops.Send(proto::Type::kGo, "");
  ops.Send(proto::Type::kStarted, proto::Encode(proto::Started{1, 2}));
  Pipe p;
  auto two = Op(FileOp::kRead, "/etc/hostname");
  two.id = 0x53b;
  ops.Send(proto::Type::kFileOp, proto::Encode(two), {p.w.get(), p.w.get()});
  auto& t = ops.Wait(0x53b);
  CHECK(t.failed);
  CHECK(t.err == EINVAL);
  auto alive = Sh(ops, "echo alive");
  CHECK(alive.code == 0);
  CHECK(alive.out == "alive\n");
}

TEST_CASE("init-ops: a one-shot sandbox runs its command with a pty, and no file operation", "[root][init-ops]") {
  InitOps ops({}, /*oneshot=*/true);
  Pipe p;
  uint32_t op = ops.FileOp(Op(FileOp::kRead, "/etc/hostname"), p.w.get());
  auto& refused = ops.Wait(op);
  CHECK(refused.failed);
  CHECK(refused.err == EOPNOTSUPP);
  uint32_t id = ops.Exec({"/bin/sh", "-c", "tty; stty size; echo via-dev-tty > /dev/tty"}, 1000, {}, true, 40, 120);
  auto& started = ops.WaitStarted(id);
  REQUIRE(started.started_fds == 1);
  std::string out = ReadToEnd(started.master.get());
  INFO(out);
  CHECK(out.find("/dev/pts/0\r\n") != std::string::npos);
  CHECK(out.find("40 120\r\n") != std::string::npos);
  CHECK(out.find("via-dev-tty\r\n") != std::string::npos);
  auto& r = ops.Wait(id);
  CHECK(r.exited);
  CHECK(r.code == 0);
}
