// Seeds (SandboxSpec::seeds, runtime/fs/seed.h) in real sandboxes: what a
// shell inside sees of the copies (contents, symlinks, modes, owners, what
// was left out), that the sandbox's writes stay off the host, and that a
// seed the caller can't read fails the launch, naming the file, and leaves
// nothing behind. Plus fs::CopySeeds on its own: supplementary groups, the
// source's mounts, reflinks on the pool.
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/fsuid.h>
#include <sys/mount.h>

#include <memory>
#include <thread>

#include "helpers.h"
#include "images/host/host_image.h"
#include "runtime/fs/seed.h"
#include "runtime/launch/sandbox.h"
#include "runtime/storage/pool.h"

using namespace airlock_test;
using airlock::LaunchOptions;
using airlock::RuntimePaths;
using airlock::Sandbox;
using airlock::SandboxSpec;
using airlock::SeedCopy;
using airlock::UniqueFd;

namespace {

RuntimePaths Paths() {
  RuntimePaths p;
  p.init_binary = BuildDir() + "/airlock-init";
  p.profiles_dir = BuildDir() + "/seccomp-profiles";
  RequireBuilt(p.init_binary);
  REQUIRE(airlock::PrepareRuntimeDirs(p));
  return p;
}

// A host-image spec running `script` with sh, as `uid` inside.
SandboxSpec HostSpec(const std::string& script, uid_t uid = 0) {
  static int counter = 0;
  auto image = airlock::images::EnsureHostImage(Paths().state_root + "/images");
  INFO((image ? std::string() : image.error().Message()));
  REQUIRE(image);
  SandboxSpec spec;
  spec.id = "seed-" + std::to_string(getpid()) + "-" + std::to_string(counter++);
  spec.layers = image->lower_dirs;
  for (const auto& b : image->binds) spec.image_binds.push_back({b.host_path, b.target});
  spec.process.argv = {"/bin/sh", "-c", script};
  spec.process.env = {"PATH=/usr/bin:/bin", "LANG=C"};
  spec.process.uid = uid;
  spec.process.gid = uid;
  return spec;
}

SeedCopy Seed(const std::string& source, const std::string& destination, uid_t uid = 0, gid_t gid = 0,
              std::vector<gid_t> groups = {}) {
  SeedCopy s;
  s.source = source;
  s.destination = destination;
  s.read_uid = uid;
  s.read_gid = gid;
  s.read_groups = std::move(groups);
  return s;
}

struct Ran {
  std::string error;  // Sandbox::Start's error, if it failed
  int status = -1;
  std::string out;
};

// Starts a one-shot sandbox, collects the command's stdout and stderr, and
// tears it down.
Ran RunSandbox(const SandboxSpec& spec) {
  Ran ran;
  int p[2];
  REQUIRE(pipe2(p, O_CLOEXEC) == 0);
  UniqueFd rd(p[0]), wr(p[1]);
  UniqueFd devnull(open("/dev/null", O_RDWR | O_CLOEXEC));
  int stdio[3] = {devnull.get(), wr.get(), wr.get()};
  LaunchOptions options;
  options.first_process = &spec.process;
  options.first_stdio = stdio;
  auto sb = Sandbox::Start(spec, Paths(), options);
  wr.Reset();
  std::thread reader([&] {
    char buf[4096];
    ssize_t n;
    while ((n = read(rd.get(), buf, sizeof(buf))) > 0 || (n < 0 && errno == EINTR))
      if (n > 0) ran.out.append(buf, static_cast<size_t>(n));
  });
  if (!sb) {
    ran.error = sb.error().Message();
  } else {
    auto outcome = (*sb)->WaitOneShot(-1);
    if (outcome) ran.status = outcome->ExitStatus();
    else ran.error = outcome.error().Message();
    (void)(*sb)->Destroy();
  }
  reader.join();
  return ran;
}

void WriteHostFile(const std::string& path, const std::string& data, mode_t mode, uid_t uid = 0, gid_t gid = 0) {
  {
    std::ofstream out(path, std::ios::binary);
    out << data;
    REQUIRE(out.good());
  }
  REQUIRE(chown(path.c_str(), uid, gid) == 0);
  REQUIRE(chmod(path.c_str(), mode) == 0);  // after chown, which clears setuid
}

// A mount that is undone when the test ends, however it ends.
struct ScopedMount {
  std::string target;
  ScopedMount(const std::string& t, const char* type, const char* data) : target(t) {
    REQUIRE(mount(type, t.c_str(), type, MS_NOSUID | MS_NODEV, data) == 0);
  }
  ~ScopedMount() { umount2(target.c_str(), MNT_DETACH); }
};

}  // namespace

TEST_CASE("seed: a directory tree and a single file, seen from inside", "[root][seed]") {
  TempDir src("airlock-seed");
  REQUIRE(chmod(src.path().c_str(), 0755) == 0);
  WriteHostFile(src / "file.txt", "hello from the host\n", 0644);
  REQUIRE(mkdir((src / "nested").c_str(), 0750) == 0);
  REQUIRE(mkdir((src / "nested/dir").c_str(), 0755) == 0);
  WriteHostFile(src / "nested/dir/inner.txt", "inner\n", 0640, 1234, 1234);
  REQUIRE(symlink("file.txt", (src / "link").c_str()) == 0);
  REQUIRE(symlink("/etc/shadow", (src / "hostlink").c_str()) == 0);
  WriteHostFile(src / "setuid", "#!/bin/sh\necho setuid\n", 04755);
  REQUIRE(mkfifo((src / "fifo").c_str(), 0644) == 0);
  TempDir other("airlock-seed");
  REQUIRE(chmod(other.path().c_str(), 0755) == 0);
  WriteHostFile(other / "notes.txt", "notes\n", 0600, 4321, 4321);

  SandboxSpec spec = HostSpec(
      "cd /workspace/proj || exit 9\n"
      "cat file.txt\n"
      "test -L link && echo \"link -> $(readlink link)\"\n"
      "test -L hostlink && echo \"hostlink -> $(readlink hostlink)\"\n"
      "cat link\n"
      "stat -c 'stat %n %a %u:%g' file.txt setuid nested nested/dir nested/dir/inner.txt\n"
      "cat nested/dir/inner.txt\n"
      "if test -e fifo || test -L fifo; then echo fifo present; else echo fifo absent; fi\n"
      "stat -c 'stat %n %a %u:%g' /workspace /opt/tool /opt/tool/notes.txt\n"
      "cat /opt/tool/notes.txt\n"
      "echo changed > file.txt && echo wrote file.txt\n"
      "echo more >> /opt/tool/notes.txt && echo wrote notes.txt\n"
      "rm link && echo removed link\n");
  spec.seeds = {Seed(src.path(), "/workspace/proj"), Seed(other / "notes.txt", "/opt/tool/notes.txt")};
  Ran r = RunSandbox(spec);
  INFO("error: " << r.error << "\nout:\n" << r.out);
  REQUIRE(r.error.empty());
  CHECK(r.status == 0);
  CHECK(HasLine(r.out, "hello from the host"));
  CHECK(HasLine(r.out, "link -> file.txt"));
  CHECK(HasLine(r.out, "hostlink -> /etc/shadow"));  // a symlink, never followed on the host
  CHECK(HasLine(r.out, "inner"));
  // Modes kept but setuid; every owner the sandbox's root.
  CHECK(HasLine(r.out, "stat file.txt 644 0:0"));
  CHECK(HasLine(r.out, "stat setuid 755 0:0"));
  CHECK(HasLine(r.out, "stat nested 750 0:0"));
  CHECK(HasLine(r.out, "stat nested/dir 755 0:0"));
  CHECK(HasLine(r.out, "stat nested/dir/inner.txt 640 0:0"));
  CHECK(HasLine(r.out, "fifo absent"));  // devices, fifos and sockets are left out
  // The missing parent of a seed keeps the image's attributes: /workspace
  // stays the sandbox user's; /opt/tool is new.
  CHECK(HasLine(r.out, "stat /workspace 755 1000:1000"));
  CHECK(HasLine(r.out, "stat /opt/tool 755 0:0"));
  CHECK(HasLine(r.out, "stat /opt/tool/notes.txt 600 0:0"));
  CHECK(HasLine(r.out, "notes"));
  CHECK(HasLine(r.out, "wrote file.txt"));
  CHECK(HasLine(r.out, "wrote notes.txt"));
  CHECK(HasLine(r.out, "removed link"));
  // Nothing the sandbox wrote reached the host.
  CHECK(ReadFile(src / "file.txt") == "hello from the host\n");
  CHECK(ReadFile(other / "notes.txt") == "notes\n");
  CHECK(Exists(src / "link"));
  struct stat st;
  REQUIRE(lstat((src / "setuid").c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 04755);
  RequireNoLeftovers(spec.id);
}

TEST_CASE("seed: the sandbox user still owns /workspace and can write there", "[root][seed]") {
  TempDir src("airlock-seed");
  REQUIRE(chmod(src.path().c_str(), 0755) == 0);
  WriteHostFile(src / "a.txt", "a\n", 0644);
  SandboxSpec spec = HostSpec(
      "id -u; touch /workspace/mine && echo touched; cat /workspace/proj/a.txt;"
      "echo x >> /workspace/proj/a.txt 2>/dev/null || echo a.txt read-only",
      1000);
  spec.seeds = {Seed(src.path(), "/workspace/proj", 1000, 1000)};
  REQUIRE(chown(src.path().c_str(), 1000, 1000) == 0);  // the caller's own directory
  Ran r = RunSandbox(spec);
  INFO("error: " << r.error << "\nout:\n" << r.out);
  REQUIRE(r.error.empty());
  CHECK(r.status == 0);
  CHECK(HasLine(r.out, "1000"));
  CHECK(HasLine(r.out, "touched"));
  CHECK(HasLine(r.out, "a"));
  // Copies belong to the sandbox's root (decision 1), 0644 here.
  CHECK(HasLine(r.out, "a.txt read-only"));
}

TEST_CASE("seed: a file the caller can't read fails the launch and leaves nothing", "[root][seed]") {
  TempDir src("airlock-seed");
  REQUIRE(chmod(src.path().c_str(), 0755) == 0);
  WriteHostFile(src / "readable.txt", "ok\n", 0644);
  REQUIRE(mkdir((src / "sub").c_str(), 0755) == 0);
  WriteHostFile(src / "sub/secret", "secret\n", 0600);  // root's
  SandboxSpec spec = HostSpec("echo started");
  spec.seeds = {Seed(src.path(), "/workspace/proj", 65534, 65534)};
  auto before = StateIds();
  Ran r = RunSandbox(spec);
  INFO("out: " << r.out);
  CHECK(r.error == "seed copy: EACCES (" + src.path() + "/sub/secret)");
  CHECK(r.out.empty());
  RequireNoLeftovers(spec.id);
  CHECK_FALSE(Exists(kStateRoot + "/sandboxes/" + spec.id));
  CHECK_FALSE(Exists(kStateRoot + "/pool/sandboxes/" + spec.id));
  RequireNoNewUnheldState(before);

  SECTION("the same tree as root is copied") {
    SandboxSpec ok = HostSpec("cat /workspace/proj/sub/secret");
    ok.seeds = {Seed(src.path(), "/workspace/proj", 0, 0)};
    Ran r2 = RunSandbox(ok);
    INFO("error: " << r2.error << "\nout:\n" << r2.out);
    REQUIRE(r2.error.empty());
    CHECK(r2.out == "secret\n");
  }
  SECTION("a source path the caller can't search") {
    REQUIRE(chmod(src.path().c_str(), 0700) == 0);
    SandboxSpec spec2 = HostSpec("true");
    spec2.seeds = {Seed(src / "readable.txt", "/workspace/r.txt", 65534, 65534)};
    Ran r2 = RunSandbox(spec2);
    CHECK(r2.error == "seed copy: EACCES (" + src.path() + "/readable.txt)");
    RequireNoLeftovers(spec2.id);
  }
}

TEST_CASE("seed: CopySeeds reads with the reader's ids and groups", "[root][seed]") {
  TempDir src("airlock-seed"), upper("airlock-seed");
  REQUIRE(chmod(src.path().c_str(), 0755) == 0);
  WriteHostFile(src / "group-only", "g\n", 0640, 0, 4242);
  UniqueFd upper_fd(open(upper.path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  REQUIRE(upper_fd);
  std::vector<std::string> no_layers;
  SECTION("without the group: EACCES") {
    auto r = airlock::fs::CopySeeds({Seed(src / "group-only", "/g", 65534, 65534)}, no_layers, upper_fd.get(),
                                    upper.path());
    REQUIRE_FALSE(r);
    CHECK(r.error().Message() == "seed copy: EACCES (" + src.path() + "/group-only)");
    CHECK_FALSE(Exists(upper / "g"));
  }
  SECTION("with it as a supplementary group: copied, owned 0:0") {
    auto r = airlock::fs::CopySeeds({Seed(src / "group-only", "/g", 65534, 65534, {4242})}, no_layers,
                                    upper_fd.get(), upper.path());
    INFO((r ? std::string() : r.error().Message()));
    REQUIRE(r);
    CHECK(ReadFile(upper / "g") == "g\n");
    struct stat st;
    REQUIRE(lstat((upper / "g").c_str(), &st) == 0);
    CHECK(st.st_uid == 0);
    CHECK(st.st_gid == 0);
  }
  SECTION("with it as the primary group") {
    auto r = airlock::fs::CopySeeds({Seed(src / "group-only", "/g", 65534, 4242)}, no_layers, upper_fd.get(),
                                    upper.path());
    INFO((r ? std::string() : r.error().Message()));
    CHECK(r);
  }
  SECTION("the caller's own threads keep their ids") {
    std::vector<gid_t> before(static_cast<size_t>(getgroups(0, nullptr)));
    REQUIRE(getgroups(static_cast<int>(before.size()), before.data()) == static_cast<int>(before.size()));
    (void)airlock::fs::CopySeeds({Seed(src / "group-only", "/g", 65534, 65534, {4242, 4243})}, no_layers,
                                 upper_fd.get(), upper.path());
    std::vector<gid_t> after(static_cast<size_t>(getgroups(0, nullptr)));
    REQUIRE(getgroups(static_cast<int>(after.size()), after.data()) == static_cast<int>(after.size()));
    CHECK(before == after);
    CHECK(setfsuid(static_cast<uid_t>(-1)) == 0);
    CHECK(setfsgid(static_cast<gid_t>(-1)) == 0);
  }
}

TEST_CASE("seed: the copy stays on the source's mount", "[root][seed]") {
  TempDir src("airlock-seed");
  REQUIRE(chmod(src.path().c_str(), 0755) == 0);
  WriteHostFile(src / "top.txt", "top\n", 0644);
  REQUIRE(mkdir((src / "mnt").c_str(), 0755) == 0);
  ScopedMount tmpfs(src / "mnt", "tmpfs", "mode=0750,size=1m");
  WriteHostFile(src / "mnt/under-mount", "x\n", 0644);
  SandboxSpec spec = HostSpec(
      "cat /workspace/proj/top.txt; stat -c 'stat %n %a' /workspace/proj/mnt; ls -A /workspace/proj/mnt; echo end");
  spec.seeds = {Seed(src.path(), "/workspace/proj")};
  Ran r = RunSandbox(spec);
  INFO("error: " << r.error << "\nout:\n" << r.out);
  REQUIRE(r.error.empty());
  CHECK(r.out == "top\nstat /workspace/proj/mnt 750\nend\n");  // an empty directory, like cp -x
}

TEST_CASE("seed: a source on the pool's filesystem is reflinked", "[root][seed]") {
  RuntimePaths paths = Paths();
  auto pool = airlock::storage::Pool::Open({paths.PoolImage(), paths.PoolMountpoint(), 0});
  INFO((pool ? std::string() : pool.error().Message()));
  REQUIRE(pool);
  const std::string name = "seedtest-" + std::to_string(getpid());
  auto sub = pool->CreateSubvolume(name, std::nullopt);
  INFO((sub ? std::string() : sub.error().Message()));
  REQUIRE(sub);
  struct Cleanup {
    airlock::storage::Pool& pool;
    std::string name;
    ~Cleanup() { (void)pool.DeleteSubvolume(name); }
  } cleanup{*pool, name};
  // The source: a file in the subvolume itself, beside the upper.
  REQUIRE(mkdirat(sub->dir.get(), "src", 0755) == 0);
  REQUIRE(mkdirat(sub->dir.get(), "upper", 0755) == 0);
  std::string data(1 << 20, 'r');
  WriteHostFile(sub->path + "/src/big", data, 0644);
  UniqueFd upper(openat(sub->dir.get(), "upper", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  REQUIRE(upper);
  std::vector<std::string> no_layers;
  auto r = airlock::fs::CopySeeds({Seed(sub->path + "/src", "/data")}, no_layers, upper.get(), sub->path + "/upper");
  INFO((r ? std::string() : r.error().Message()));
  REQUIRE(r);
  CHECK(ReadFile(sub->path + "/upper/data/big") == data);
  // FIEMAP: the copy's extents are shared with the source's.
  UniqueFd copy(open((sub->path + "/upper/data/big").c_str(), O_RDONLY | O_CLOEXEC));
  REQUIRE(copy);
  alignas(fiemap) char buf[sizeof(fiemap) + 8 * sizeof(fiemap_extent)] = {};
  auto* fm = reinterpret_cast<fiemap*>(buf);
  fm->fm_length = FIEMAP_MAX_OFFSET;
  fm->fm_flags = FIEMAP_FLAG_SYNC;
  fm->fm_extent_count = 8;
  REQUIRE(ioctl(copy.get(), FS_IOC_FIEMAP, fm) == 0);
  REQUIRE(fm->fm_mapped_extents > 0);
  for (unsigned i = 0; i < fm->fm_mapped_extents; ++i) CHECK((fm->fm_extents[i].fe_flags & FIEMAP_EXTENT_SHARED));
}
