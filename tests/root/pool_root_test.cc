// The btrfs pool on a real kernel: a 1 GiB sparse image in a temp dir, loop
// device, mount, subvolumes with qgroup limits, teardown. Needs root.
#include <dirent.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "runtime/storage/pool.h"

using airlock::storage::Pool;
using airlock::storage::PoolConfig;

namespace {

constexpr uint64_t kMiB = uint64_t{1} << 20;
constexpr uint64_t kGiB = uint64_t{1} << 30;

// How many mounts sit exactly at `path` (field 5 of mountinfo).
int MountsAt(const std::string& path) {
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    size_t p = 0;
    for (int field = 0; field < 4 && p != std::string::npos; ++field)
      p = line.find(' ', p + 1);
    if (p == std::string::npos) continue;
    size_t end = line.find(' ', p + 1);
    if (line.substr(p + 1, end - p - 1) == path) ++n;
  }
  return n;
}

// Loop devices whose backing file is `image` (or was, before it was unlinked).
std::vector<std::string> LoopsBackedBy(const std::string& image) {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator("/sys/block")) {
    std::string name = e.path().filename();
    if (name.rfind("loop", 0) != 0) continue;
    std::ifstream in(e.path() / "loop" / "backing_file");
    std::string backing;
    if (!std::getline(in, backing)) continue;
    if (backing == image || backing == image + " (deleted)")
      out.push_back(name);
  }
  return out;
}

// Waits for the loop device to go: autoclear runs when the last opener of
// the block device is gone, which after umount may be a moment later.
bool WaitLoopsDetached(const std::string& image) {
  for (int i = 0; i < 100; ++i) {
    if (LoopsBackedBy(image).empty()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

// A temp dir holding image and mountpoint; on the way out (also after a
// failed REQUIRE) unmounts whatever is still mounted there, then removes it.
struct PoolDir {
  std::string path;
  PoolConfig config;
  PoolDir() {
    char tmpl[] = "/tmp/airlock-pool-XXXXXX";
    REQUIRE(::mkdtemp(tmpl) != nullptr);
    path = tmpl;
    config.image = path + "/pool.img";
    config.mountpoint = path + "/mnt";
    config.size_bytes = kGiB;
  }
  ~PoolDir() {
    while (MountsAt(config.mountpoint) > 0)
      if (::umount2(config.mountpoint.c_str(), MNT_DETACH) != 0) break;
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
};

bool IsBtrfsMount(const std::string& path) {
  struct statfs sfs;
  return ::statfs(path.c_str(), &sfs) == 0 && sfs.f_type == BTRFS_SUPER_MAGIC &&
         MountsAt(path) == 1;
}

struct FillResult {
  int err = 0;
  uint64_t written = 0;
};

// Fills a file in the subvolume from a forked child until a write fails;
// returns the errno and the bytes written. syncfs between chunks keeps the
// qgroup accounting close to the truth.
FillResult FillUntilFailure(int dir_fd) {
  int p[2];
  REQUIRE(::pipe(p) == 0);
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::close(p[0]);
    FillResult r;
    int fd = ::openat(dir_fd, "fill", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
                      0644);
    if (fd < 0) {
      r.err = -errno;
    } else {
      static char chunk[1 << 20];
      std::memset(chunk, 0x5a, sizeof chunk);
      for (;;) {
        ssize_t n = ::write(fd, chunk, sizeof chunk);
        if (n < 0) {
          r.err = errno;
          break;
        }
        r.written += static_cast<uint64_t>(n);
        if (r.written % (4 * kMiB) == 0 && ::syncfs(fd) != 0) {
          r.err = errno;
          break;
        }
        if (r.written > 512 * kMiB) break;  // no limit in force: stop anyway
      }
      ::close(fd);
    }
    (void)!::write(p[1], &r, sizeof r);
    ::_exit(0);
  }
  ::close(p[1]);
  FillResult r;
  REQUIRE(::read(p[0], &r, sizeof r) == static_cast<ssize_t>(sizeof r));
  ::close(p[0]);
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  return r;
}

}  // namespace

TEST_CASE("pool: create, reopen, limited subvolume, delete, unmount, remount",
          "[pool][root]") {
  if (::geteuid() != 0) {
    WARN("not root: pool test skipped");
    return;
  }
  PoolDir d;
  const PoolConfig& cfg = d.config;
  {
    auto pool = Pool::Open(cfg);
    INFO((pool ? std::string() : pool.error().Message()));
    REQUIRE(pool.has_value());
    CHECK(pool->mountpoint() == cfg.mountpoint);
    CHECK(IsBtrfsMount(cfg.mountpoint));
    CHECK(LoopsBackedBy(cfg.image).size() == 1);

    struct stat img;
    REQUIRE(::stat(cfg.image.c_str(), &img) == 0);
    CHECK(static_cast<uint64_t>(img.st_size) == kGiB);
    CHECK(static_cast<uint64_t>(img.st_blocks) * 512 < kGiB / 2);  // sparse
    CHECK((img.st_mode & 07777) == 0600);

    // Idempotent: the mounted pool is used as it is.
    auto again = Pool::Open(cfg);
    INFO((again ? std::string() : again.error().Message()));
    REQUIRE(again.has_value());
    CHECK(MountsAt(cfg.mountpoint) == 1);
    CHECK(LoopsBackedBy(cfg.image).size() == 1);

    auto sv = pool->CreateSubvolume("sb-1", 64 * kMiB);
    INFO((sv ? std::string() : sv.error().Message()));
    REQUIRE(sv.has_value());
    CHECK(sv->path == cfg.mountpoint + "/sandboxes/sb-1");
    CHECK(sv->id >= 256);
    struct stat st;
    REQUIRE(::fstat(sv->dir.get(), &st) == 0);
    CHECK(st.st_uid == 0);
    CHECK(st.st_gid == 0);
    CHECK((st.st_mode & 07777) == 0755);
    CHECK(st.st_ino == 256);  // a subvolume root
    CHECK(pool->ListSubvolumes() == std::vector<std::string>{"sb-1"});
    CHECK(again->ListSubvolumes() == std::vector<std::string>{"sb-1"});

    auto dup = pool->CreateSubvolume("sb-1", std::nullopt);
    REQUIRE_FALSE(dup.has_value());
    CHECK(dup.error().err == EEXIST);
    for (const char* bad : {"..", "a/b", "", "x y"}) {
      auto r = pool->CreateSubvolume(bad, std::nullopt);
      REQUIRE_FALSE(r.has_value());
      CHECK(r.error().detail.find("name") != std::string::npos);
    }

    // Files owned by arbitrary ids, as a sandbox would leave them.
    REQUIRE(::mkdirat(sv->dir.get(), "home", 0700) == 0);
    REQUIRE(::fchownat(sv->dir.get(), "home", 1000, 1000, 0) == 0);

    FillResult fill = FillUntilFailure(sv->dir.get());
    INFO("errno " << fill.err << " after " << fill.written / kMiB << " MiB");
    CHECK((fill.err == EDQUOT || fill.err == ENOSPC));
    CHECK(fill.written >= 32 * kMiB);
    CHECK(fill.written <= 96 * kMiB);

    // No limit: the same fill goes well past 64 MiB.
    auto free_sv = pool->CreateSubvolume("sb-free", std::nullopt);
    REQUIRE(free_sv.has_value());
    FillResult unlimited = FillUntilFailure(free_sv->dir.get());
    CHECK(unlimited.written > 128 * kMiB);
    free_sv->dir.Reset();
    REQUIRE(pool->DeleteSubvolume("sb-free").has_value());

    sv->dir.Reset();
    auto del = pool->DeleteSubvolume("sb-1");
    INFO((del ? std::string() : del.error().Message()));
    REQUIRE(del.has_value());
    CHECK(::access((cfg.mountpoint + "/sandboxes/sb-1").c_str(), F_OK) != 0);
    CHECK(pool->ListSubvolumes().empty());
    CHECK(pool->DeleteSubvolume("sb-1").has_value());  // already gone
    CHECK(pool->DeleteSubvolume("never").has_value());

    // A plain directory under sandboxes/ is not taken for a subvolume.
    REQUIRE(::mkdirat(pool->sandboxes_fd(), "plain", 0700) == 0);
    CHECK(pool->ListSubvolumes().empty());
    CHECK_FALSE(pool->DeleteSubvolume("plain").has_value());
    REQUIRE(::unlinkat(pool->sandboxes_fd(), "plain", AT_REMOVEDIR) == 0);

    // Survives an unmount (as after a reboot): keep one subvolume.
    auto keep = pool->CreateSubvolume("keep", 8 * kMiB);
    REQUIRE(keep.has_value());
    REQUIRE(::mkdirat(keep->dir.get(), "marker", 0755) == 0);
  }  // every fd into the pool closed: nothing keeps the mount busy

  REQUIRE(::umount2(cfg.mountpoint.c_str(), 0) == 0);
  CHECK(MountsAt(cfg.mountpoint) == 0);
  CHECK(WaitLoopsDetached(cfg.image));

  {
    auto pool = Pool::Open(cfg);
    INFO((pool ? std::string() : pool.error().Message()));
    REQUIRE(pool.has_value());
    CHECK(IsBtrfsMount(cfg.mountpoint));
    CHECK(pool->ListSubvolumes() == std::vector<std::string>{"keep"});
    CHECK(::access((cfg.mountpoint + "/sandboxes/keep/marker").c_str(), F_OK) ==
          0);
    REQUIRE(pool->DeleteSubvolume("keep").has_value());
  }

  REQUIRE(::umount2(cfg.mountpoint.c_str(), 0) == 0);
  REQUIRE(::unlink(cfg.image.c_str()) == 0);
  CHECK(WaitLoopsDetached(cfg.image));
}

TEST_CASE("pool: concurrent Open of a new pool mounts it once",
          "[pool][root]") {
  if (::geteuid() != 0) {
    WARN("not root: pool test skipped");
    return;
  }
  PoolDir d;
  std::vector<pid_t> kids;
  for (int i = 0; i < 3; ++i) {
    pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) ::_exit(Pool::Open(d.config).has_value() ? 0 : 1);
    kids.push_back(pid);
  }
  for (pid_t pid : kids) {
    int status = 0;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
  }
  CHECK(MountsAt(d.config.mountpoint) == 1);
  CHECK(LoopsBackedBy(d.config.image).size() == 1);
  REQUIRE(::umount2(d.config.mountpoint.c_str(), 0) == 0);
  CHECK(WaitLoopsDetached(d.config.image));
}

TEST_CASE("pool: another filesystem at the mountpoint is an error naming it",
          "[pool][root]") {
  if (::geteuid() != 0) {
    WARN("not root: pool test skipped");
    return;
  }
  PoolDir d;
  REQUIRE(::mkdir(d.config.mountpoint.c_str(), 0700) == 0);
  REQUIRE(::mount("tmpfs", d.config.mountpoint.c_str(), "tmpfs", 0,
                  "size=1m") == 0);
  auto pool = Pool::Open(d.config);
  REQUIRE_FALSE(pool.has_value());
  INFO(pool.error().Message());
  CHECK(pool.error().detail.find(d.config.mountpoint) != std::string::npos);
  CHECK(::access(d.config.image.c_str(), F_OK) != 0);  // nothing created
  REQUIRE(::umount2(d.config.mountpoint.c_str(), 0) == 0);
}

TEST_CASE("pool: bad config is refused", "[pool][root]") {
  PoolConfig rel;
  rel.image = "pool.img";
  auto r = Pool::Open(rel);
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().detail.find("image") != std::string::npos);
  if (::geteuid() != 0) return;
  PoolDir d;
  d.config.size_bytes = 100 * kMiB;
  auto small = Pool::Open(d.config);
  REQUIRE_FALSE(small.has_value());
  CHECK(small.error().detail.find("size_bytes") != std::string::npos);
  CHECK(::access(d.config.image.c_str(), F_OK) != 0);
  CHECK(MountsAt(d.config.mountpoint) == 0);
}
