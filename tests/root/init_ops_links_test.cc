// airlock-init's file operations on links and owners: kSymlink, kChown, and
// kNoSymlinks, which must follow no symlink anywhere in a path — checked
// both with openat2 and with the component walk init falls back to where
// the set-id seccomp filter refuses openat2 (sandboxes with a writable host
// mount). Every assertion is on what init reported or what the sandbox's
// own commands (readlink, stat, test) saw.
#include <string>

#include "init_ops.h"

using namespace airlock;
using namespace airlock_test::init_ops;

namespace {

const std::string kSandboxHostname = "sandbox\n";  // the host image's synthesized /etc/hostname

proto::FileOpRequest Symlink(const std::string& path, const std::string& target, uint32_t flags = 0,
                             uint32_t uid = 0) {
  auto req = Op(FileOp::kSymlink, path, flags, uid);
  req.path2 = target;
  return req;
}

proto::FileOpRequest Chown(const std::string& path, uint32_t owner_uid, uint32_t owner_gid, uint32_t flags = 0,
                           uint32_t uid = 0) {
  auto req = Op(FileOp::kChown, path, flags, uid);
  req.owner_uid = owner_uid;
  req.owner_gid = owner_gid;
  return req;
}

// The kNoSymlinks checks, run in a sandbox where `seccomp_filters` filters
// are stacked (1: the profile, openat2 allowed; 2: plus the set-id filter,
// openat2 refused with ENOSYS and init walks the path itself).
void CheckNoSymlinks(InitOps& ops, const std::string& seccomp_filters) {
  using proto::kNoSymlinks;
  using proto::kParents;
  REQUIRE(Sh(ops, "grep Seccomp_filters /proc/self/status").out == "Seccomp_filters:\t" + seccomp_filters + "\n");
  REQUIRE(Sh(ops, "mkdir -p /workspace/real && ln -s /etc /workspace/link && ln -s real /workspace/rel && "
                  "ln -s /etc/hostname /workspace/host && echo v > /etc/victim && echo f > /workspace/real/f")
              .code == 0);
  auto etc_has = [&](const std::string& name) { return Sh(ops, "test -e /etc/" + name).code == 0; };

  SECTION("writes") {
    const uint32_t create = proto::kWriteCreate | proto::kWriteTruncate;
    CHECK(RunOp(ops, Op(FileOp::kWrite, "/workspace/link/x", create | kNoSymlinks), "x").code == ELOOP);
    CHECK(RunOp(ops, Op(FileOp::kWrite, "/workspace/link/x", create | kParents | kNoSymlinks), "x").code == ELOOP);
    CHECK(RunOp(ops, Op(FileOp::kWrite, "/workspace/link/x", proto::kWriteAtomic | kNoSymlinks), "x").code == ELOOP);
    CHECK(RunOp(ops, Op(FileOp::kWrite, "/workspace/link/d/x", create | kParents | kNoSymlinks), "x").code ==
          ELOOP);
    CHECK_FALSE(etc_has("x"));
    CHECK_FALSE(etc_has("d"));
    CHECK(Sh(ops, "ls -a /etc | grep -c airlock").out == "0\n");  // no temporary file either
    // A final symlink is not written through, created or not.
    CHECK(RunOp(ops, Op(FileOp::kWrite, "/workspace/host", create | kNoSymlinks), "evil").code == ELOOP);
    CHECK(RunOp(ops, Op(FileOp::kWrite, "/workspace/host", proto::kWriteAppend | kNoSymlinks), "evil").code == ELOOP);
    CHECK(ReadInside(ops, "/etc/hostname") == kSandboxHostname);
    REQUIRE(Sh(ops, "ln -s /etc/dangling /workspace/dangling").code == 0);
    CHECK(RunOp(ops, Op(FileOp::kWrite, "/workspace/dangling", create | kNoSymlinks), "x").code == ELOOP);
    CHECK_FALSE(etc_has("dangling"));
    // The cwd of a relative path counts too.
    auto rel = Op(FileOp::kWrite, "x", create | kNoSymlinks);
    rel.cwd = "/workspace/link";
    CHECK(RunOp(ops, rel, "x").code == ELOOP);
    CHECK_FALSE(etc_has("x"));
    rel.cwd = "/workspace/real";
    CHECK(RunOp(ops, rel, "rel").code == 0);
    // No symlink on the way: as ever, "." and ".." included.
    CHECK(RunOp(ops, Op(FileOp::kWrite, "/workspace/real/../real/new/n", create | kParents | kNoSymlinks), "n")
              .code == 0);
    CHECK(RunOp(ops, Op(FileOp::kWrite, "/workspace/real/f2", proto::kWriteAtomic | kNoSymlinks), "a").code == 0);
    CHECK(Sh(ops, "cat /workspace/real/x /workspace/real/new/n /workspace/real/f2").out == "relna");
    // Without the flag, the old behaviour: the link is followed.
    CHECK(RunOp(ops, Op(FileOp::kWrite, "/workspace/link/x", create), "followed").code == 0);
    CHECK(Sh(ops, "cat /etc/x").out == "followed");
  }

  SECTION("mkdir -p through a symlinked parent") {
    CHECK(RunOp(ops, Op(FileOp::kMkdir, "/workspace/link/a/b", kParents | kNoSymlinks)).code == ELOOP);
    CHECK(RunOp(ops, Op(FileOp::kMkdir, "/workspace/rel/a", kParents | kNoSymlinks)).code == ELOOP);
    CHECK(RunOp(ops, Op(FileOp::kMkdir, "/workspace/link", kParents | kNoSymlinks)).code == ELOOP);
    CHECK(RunOp(ops, Op(FileOp::kMkdir, "/workspace/link/a", kNoSymlinks)).code == ELOOP);
    CHECK_FALSE(etc_has("a"));
    CHECK(Sh(ops, "test -e /workspace/real/a || echo absent").out == "absent\n");
    CHECK(RunOp(ops, Op(FileOp::kMkdir, "/workspace/real/a/b", kParents | kNoSymlinks)).code == 0);
    CHECK(RunOp(ops, Op(FileOp::kMkdir, "/workspace/real/a/b", kParents | kNoSymlinks)).code == 0);  // existing
    CHECK(RunOp(ops, Op(FileOp::kMkdir, "/workspace/real/f/b", kParents | kNoSymlinks)).code == ENOTDIR);
    CHECK(RunOp(ops, Op(FileOp::kMkdir, "/workspace/real/f", kParents | kNoSymlinks)).code == EEXIST);
    // Without the flag a symlink to a directory is fine.
    CHECK(RunOp(ops, Op(FileOp::kMkdir, "/workspace/link/a/b", kParents)).code == 0);
    CHECK(Sh(ops, "test -d /etc/a/b && echo made").out == "made\n");
  }

  SECTION("reads, stat and list") {
    CHECK(RunOp(ops, Op(FileOp::kRead, "/workspace/host", kNoSymlinks)).code == ELOOP);
    CHECK(RunOp(ops, Op(FileOp::kRead, "/workspace/link/hostname", kNoSymlinks)).code == ELOOP);
    CHECK(RunOp(ops, Op(FileOp::kRead, "/proc/self/root/etc/hostname", kNoSymlinks)).code == ELOOP);  // magic link
    CHECK(RunOp(ops, Op(FileOp::kRead, "/workspace/real/f", kNoSymlinks)).data == "f\n");
    CHECK(ReadInside(ops, "/workspace/host") == kSandboxHostname);  // without the flag
    // lstat does not follow a final symlink: allowed; kFollow would.
    auto st = Records(RunOp(ops, Op(FileOp::kStat, "/workspace/host", kNoSymlinks)));
    REQUIRE(st.size() == 1);
    CHECK(st[0].type == proto::FileType::kSymlink);
    CHECK(st[0].link_target == "/etc/hostname");
    CHECK(RunOp(ops, Op(FileOp::kStat, "/workspace/host", proto::kFollow | kNoSymlinks)).code == ELOOP);
    CHECK(RunOp(ops, Op(FileOp::kStat, "/workspace/link/hostname", kNoSymlinks)).code == ELOOP);
    st = Records(RunOp(ops, Op(FileOp::kStat, "/", kNoSymlinks)));
    REQUIRE(st.size() == 1);
    CHECK(st[0].type == proto::FileType::kDirectory);
    CHECK(RunOp(ops, Op(FileOp::kList, "/workspace/link", kNoSymlinks)).code == ELOOP);
    CHECK(RunOp(ops, Op(FileOp::kList, "/workspace/link/", kNoSymlinks)).code == ELOOP);
    CHECK(Records(RunOp(ops, Op(FileOp::kList, "/workspace", kNoSymlinks))).size() == 4);
  }

  SECTION("symlink, chown, remove, rename") {
    CHECK(RunOp(ops, Symlink("/workspace/link/l", "/x", kNoSymlinks)).code == ELOOP);
    CHECK(RunOp(ops, Symlink("/workspace/link/d/l", "/x", kParents | kNoSymlinks)).code == ELOOP);
    CHECK_FALSE(etc_has("l"));
    CHECK_FALSE(etc_has("d"));
    CHECK(RunOp(ops, Symlink("/workspace/real/l", "/x", kNoSymlinks)).code == 0);
    CHECK(RunOp(ops, Chown("/workspace/link/victim", 1000, 1000, kNoSymlinks)).code == ELOOP);
    CHECK(RunOp(ops, Chown("/workspace/host", 1000, 1000, kNoSymlinks)).code == 0);  // the link itself
    CHECK(Sh(ops, "stat -c %u:%g /workspace/host /etc/hostname").out == "1000:1000\n0:0\n");
    CHECK(RunOp(ops, Op(FileOp::kRemove, "/workspace/link/victim", kNoSymlinks)).code == ELOOP);
    CHECK(RunOp(ops, Op(FileOp::kRemove, "/workspace/link", proto::kRecursive | kNoSymlinks)).code == 0);
    CHECK(Sh(ops, "test -L /workspace/link || cat /etc/victim").out == "v\n");  // the link went, not /etc
    REQUIRE(Sh(ops, "ln -s /etc /workspace/link").code == 0);
    auto into = Op(FileOp::kRename, "/workspace/real/f", kNoSymlinks);
    into.path2 = "/workspace/link/moved";
    CHECK(RunOp(ops, into).code == ELOOP);
    auto out = Op(FileOp::kRename, "/workspace/link/victim", kNoSymlinks);
    out.path2 = "/workspace/real/victim";
    CHECK(RunOp(ops, out).code == ELOOP);
    CHECK_FALSE(etc_has("moved"));
    CHECK(Sh(ops, "cat /etc/victim /workspace/real/f").out == "v\nf\n");
    into.path2 = "/workspace/real/moved";
    CHECK(RunOp(ops, into).code == 0);
  }
}

}  // namespace

TEST_CASE("init-ops: symlinks", "[root][init-ops]") {
  InitOps ops;
  using proto::kParents;
  CHECK(RunOp(ops, Symlink("/tmp/l1", "/etc/hostname")).code == 0);
  CHECK(Sh(ops, "readlink /tmp/l1").out == "/etc/hostname\n");
  CHECK(ReadInside(ops, "/tmp/l1") == kSandboxHostname);  // resolves inside, when followed
  // The target is stored as given: relative, dangling, with spaces.
  CHECK(RunOp(ops, Symlink("/tmp/l2", "../no such/t")).code == 0);
  CHECK(Sh(ops, "readlink /tmp/l2").out == "../no such/t\n");
  auto st = Records(RunOp(ops, Op(FileOp::kStat, "/tmp/l2")));
  REQUIRE(st.size() == 1);
  CHECK(st[0].type == proto::FileType::kSymlink);
  CHECK(st[0].link_target == "../no such/t");
  // An existing path, whatever it is, is EEXIST; nothing is replaced.
  CHECK(RunOp(ops, Symlink("/tmp/l1", "/elsewhere")).code == EEXIST);
  CHECK(RunOp(ops, Symlink("/tmp/l2", "/elsewhere")).code == EEXIST);  // a dangling link too
  CHECK(RunOp(ops, Symlink("/etc/hostname", "/elsewhere")).code == EEXIST);
  CHECK(RunOp(ops, Symlink("/tmp", "/elsewhere")).code == EEXIST);
  CHECK(Sh(ops, "readlink /tmp/l1; cat /etc/hostname").out == "/etc/hostname\n" + kSandboxHostname);
  // Missing parents: ENOENT, or made (0755) with kParents.
  CHECK(RunOp(ops, Symlink("/tmp/p/q/l", "../../l1")).code == ENOENT);
  CHECK(RunOp(ops, Symlink("/tmp/p/q/l", "../../l1", kParents)).code == 0);
  CHECK(Sh(ops, "stat -c '%a %F' /tmp/p /tmp/p/q; readlink /tmp/p/q/l; cat /tmp/p/q/l").out ==
        "755 directory\n755 directory\n../../l1\n" + kSandboxHostname);
  CHECK(RunOp(ops, Symlink("/tmp/p/q/l", "x", kParents)).code == EEXIST);
  // With the requester's identity and permissions.
  CHECK(RunOp(ops, Symlink("/tmp/mine", "t", 0, 1000)).code == 0);
  CHECK(Sh(ops, "stat -c '%u:%g %F' /tmp/mine").out == "1000:1000 symbolic link\n");
  CHECK(RunOp(ops, Symlink("/root/l", "t", 0, 1000)).code == EACCES);
  CHECK(RunOp(ops, Symlink("/etc/l", "t", 0, 1000)).code == EACCES);
}

TEST_CASE("init-ops: chown", "[root][init-ops]") {
  InitOps ops;
  REQUIRE(RunOp(ops, Op(FileOp::kWrite, "/tmp/c", proto::kWriteCreate), "c").code == 0);
  CHECK(RunOp(ops, Chown("/tmp/c", 1000, 1001)).code == 0);
  CHECK(Sh(ops, "stat -c %u:%g /tmp/c").out == "1000:1001\n");
  CHECK(RunOp(ops, Chown("/tmp/c", 65535, 65535)).code == 0);  // the top of the sandbox's range
  CHECK(Sh(ops, "stat -c %u:%g /tmp/c").out == "65535:65535\n");
  // A final symlink is changed itself, never its target.
  REQUIRE(RunOp(ops, Symlink("/tmp/cl", "/tmp/c")).code == 0);
  CHECK(RunOp(ops, Chown("/tmp/cl", 1002, 1003)).code == 0);
  CHECK(Sh(ops, "stat -c %u:%g /tmp/cl /tmp/c").out == "1002:1003\n65535:65535\n");
  // A directory, and a symlinked parent (followed without kNoSymlinks).
  REQUIRE(Sh(ops, "mkdir /tmp/cd && ln -s /tmp/cd /tmp/cdl && touch /tmp/cd/in").code == 0);
  CHECK(RunOp(ops, Chown("/tmp/cd", 1000, 1000)).code == 0);
  CHECK(RunOp(ops, Chown("/tmp/cdl/in", 1000, 1000)).code == 0);
  CHECK(RunOp(ops, Chown("/tmp/cdl/in", 0, 0, proto::kNoSymlinks)).code == ELOOP);
  CHECK(Sh(ops, "stat -c %u:%g /tmp/cd /tmp/cd/in").out == "1000:1000\n1000:1000\n");
  CHECK(RunOp(ops, Chown("/tmp/none", 1, 1)).code == ENOENT);
  // As uid 1000 the kernel's rules: not a root file, nor giving one away.
  REQUIRE(RunOp(ops, Chown("/tmp/c", 0, 0)).code == 0);
  CHECK(RunOp(ops, Chown("/tmp/c", 1000, 1000, 0, 1000)).code == EPERM);
  CHECK(RunOp(ops, Chown("/etc/hostname", 1000, 1000, 0, 1000)).code == EPERM);
  CHECK(RunOp(ops, Chown("/tmp/cd/in", 0, 0, 0, 1000)).code == EPERM);
  CHECK(RunOp(ops, Chown("/tmp/cd/in", 1000, 1000, 0, 1000)).code == 0);  // its own: a no-op, allowed
  CHECK(Sh(ops, "stat -c %u:%g /tmp/c /etc/hostname /tmp/cd/in").out == "0:0\n0:0\n1000:1000\n");
}

TEST_CASE("init-ops: kNoSymlinks follows no symlink (openat2)", "[root][init-ops]") {
  InitOps ops;
  CheckNoSymlinks(ops, "1");
}

TEST_CASE("init-ops: kNoSymlinks follows no symlink (openat2 refused: the walk)", "[root][init-ops]") {
  // A writable host mount stacks the set-id filter, which refuses openat2.
  airlock_test::TempDir host_dir("airlock-init-links");
  HostMount m;
  m.source = host_dir.path();
  m.destination = "/mnt/rw";
  m.read_only = false;
  m.allow_root_owner = true;
  InitOps ops({m});
  CheckNoSymlinks(ops, "2");
}
