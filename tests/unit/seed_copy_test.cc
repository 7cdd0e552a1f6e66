// fs::CopySeedHere on temporary trees, with the test's own ids (no id
// switch, no root): what a seed's copy holds, how missing parents take the
// image's attributes, and what is refused. The reader's ids (fsuid) and
// mounts inside the source need root: tests/root/seed_test.cc.
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "runtime/core/unique_fd.h"
#include "runtime/fs/seed.h"

using airlock::SeedCopy;
using airlock::UniqueFd;
namespace stdfs = std::filesystem;

namespace {

struct TempDir {
  std::string path;
  TempDir() {
    char t[] = "/tmp/airlock-seed-XXXXXX";
    REQUIRE(mkdtemp(t) != nullptr);
    path = t;
  }
  ~TempDir() {
    std::error_code ec;
    for (auto it = stdfs::recursive_directory_iterator(path, ec); !ec && it != stdfs::recursive_directory_iterator();
         it.increment(ec))
      if (it->is_directory(ec) && !it->is_symlink(ec)) chmod(it->path().c_str(), 0755);
    chmod(path.c_str(), 0755);
    stdfs::remove_all(path, ec);
  }
  std::string operator/(const std::string& rel) const { return path + "/" + rel; }
};

void WriteFile(const std::string& path, const std::string& data, mode_t mode = 0644) {
  {
    std::ofstream out(path, std::ios::binary);
    out << data;
    REQUIRE(out.good());
  }
  REQUIRE(chmod(path.c_str(), mode) == 0);
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

struct stat Lstat(const std::string& path) {
  struct stat st {};
  INFO(path);
  REQUIRE(lstat(path.c_str(), &st) == 0);
  return st;
}

bool Exists(const std::string& path) {
  struct stat st;
  return lstat(path.c_str(), &st) == 0;
}

// A source tree, an empty upper and image layers in one temporary directory.
struct Fixture {
  TempDir tmp;
  std::string src = tmp / "src", upper = tmp / "upper";
  std::vector<std::string> layers;
  UniqueFd upper_fd;
  Fixture() {
    REQUIRE(mkdir(src.c_str(), 0755) == 0);
    REQUIRE(mkdir(upper.c_str(), 0755) == 0);
    upper_fd.Reset(open(upper.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    REQUIRE(upper_fd);
  }
  std::string Layer(int i) {
    std::string l = tmp / ("layer" + std::to_string(i));
    if (!Exists(l)) REQUIRE(mkdir(l.c_str(), 0755) == 0);
    if (static_cast<int>(layers.size()) <= i) layers.resize(i + 1);
    layers[i] = l;
    return l;
  }
  airlock::Result<void> Copy(const std::string& source, const std::string& destination) {
    SeedCopy seed;
    seed.source = source;
    seed.destination = destination;
    seed.read_uid = geteuid();
    seed.read_gid = getegid();
    return airlock::fs::CopySeedHere(seed, layers, upper_fd.get(), /*as_reader=*/false);
  }
};

std::string Describe(const airlock::Result<void>& r) { return r ? "ok" : r.error().Message(); }

}  // namespace

TEST_CASE("seed copy: files, directories, symlinks; modes, times, specials", "[seed]") {
  Fixture f;
  WriteFile(f.src + "/file.txt", "hello\n", 0640);
  WriteFile(f.src + "/empty", "", 0600);
  REQUIRE(mkdir((f.src + "/nested").c_str(), 0750) == 0);
  REQUIRE(mkdir((f.src + "/nested/deeper").c_str(), 0755) == 0);
  WriteFile(f.src + "/nested/deeper/leaf", "leaf", 0444);
  // A directory the owner can't write: its entries still go in.
  REQUIRE(mkdir((f.src + "/readonly").c_str(), 0755) == 0);
  WriteFile(f.src + "/readonly/kept", "kept", 0644);
  REQUIRE(chmod((f.src + "/readonly").c_str(), 0555) == 0);
  REQUIRE(symlink("file.txt", (f.src + "/rel-link").c_str()) == 0);
  REQUIRE(symlink("/etc/shadow", (f.src + "/abs-link").c_str()) == 0);
  REQUIRE(symlink("missing", (f.src + "/dangling").c_str()) == 0);
  WriteFile(f.src + "/setuid", "#!/bin/sh\n", 04755);
  WriteFile(f.src + "/setgid", "#!/bin/sh\n", 02755);
  REQUIRE(mkdir((f.src + "/sticky").c_str(), 01777) == 0);
  REQUIRE(chmod((f.src + "/sticky").c_str(), 01777) == 0);
  REQUIRE(mkfifo((f.src + "/fifo").c_str(), 0644) == 0);
  int sock = socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::string sock_path = f.src + "/sock";
  REQUIRE(sock_path.size() < sizeof(sa.sun_path));
  strcpy(sa.sun_path, sock_path.c_str());
  REQUIRE(bind(sock, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) == 0);
  close(sock);
  // Bigger than one read buffer, not a multiple of it.
  std::string big(3 * 128 * 1024 + 17, '\0');
  std::mt19937 rng(7);
  for (auto& c : big) c = static_cast<char>(rng());
  WriteFile(f.src + "/big.bin", big);
  timespec old_times[2] = {{1000000000, 123456789}, {1200000000, 987654321}};
  REQUIRE(utimensat(AT_FDCWD, (f.src + "/file.txt").c_str(), old_times, 0) == 0);
  REQUIRE(utimensat(AT_FDCWD, (f.src + "/rel-link").c_str(), old_times, AT_SYMLINK_NOFOLLOW) == 0);
  REQUIRE(utimensat(AT_FDCWD, (f.src + "/nested").c_str(), old_times, 0) == 0);

  auto r = f.Copy(f.src, "/workspace/proj");
  INFO(Describe(r));
  REQUIRE(r);
  const std::string dst = f.upper + "/workspace/proj";
  // Times first: reading a copy below moves its atime.
  auto st = Lstat(dst + "/file.txt");
  CHECK(st.st_mtim.tv_sec == 1200000000);
  CHECK(st.st_mtim.tv_nsec == 987654321);
  CHECK(st.st_atim.tv_sec == 1000000000);
  CHECK(Lstat(dst + "/rel-link").st_mtim.tv_sec == 1200000000);
  CHECK(Lstat(dst + "/nested").st_mtim.tv_sec == 1200000000);

  CHECK(ReadFile(dst + "/file.txt") == "hello\n");
  CHECK((Lstat(dst + "/file.txt").st_mode & 07777) == 0640);
  CHECK(ReadFile(dst + "/empty").empty());
  CHECK(S_ISDIR(Lstat(dst + "/nested").st_mode));
  CHECK((Lstat(dst + "/nested").st_mode & 07777) == 0750);
  CHECK(ReadFile(dst + "/nested/deeper/leaf") == "leaf");
  CHECK((Lstat(dst + "/nested/deeper/leaf").st_mode & 07777) == 0444);
  CHECK((Lstat(dst + "/readonly").st_mode & 07777) == 0555);
  CHECK(ReadFile(dst + "/readonly/kept") == "kept");
  CHECK(ReadFile(dst + "/big.bin") == big);

  for (const char* link : {"rel-link", "abs-link", "dangling"}) {
    INFO(link);
    CHECK(S_ISLNK(Lstat(dst + "/" + link).st_mode));
  }
  CHECK(stdfs::read_symlink(dst + "/rel-link") == "file.txt");
  CHECK(stdfs::read_symlink(dst + "/abs-link") == "/etc/shadow");
  CHECK(stdfs::read_symlink(dst + "/dangling") == "missing");

  CHECK((Lstat(dst + "/setuid").st_mode & 07777) == 0755);
  CHECK((Lstat(dst + "/setgid").st_mode & 07777) == 0755);
  CHECK((Lstat(dst + "/sticky").st_mode & 07777) == 01777);
  CHECK_FALSE(Exists(dst + "/fifo"));
  CHECK_FALSE(Exists(dst + "/sock"));

  // The copies are new inodes: nothing the sandbox writes reaches the host.
  CHECK(Lstat(dst + "/file.txt").st_ino != Lstat(f.src + "/file.txt").st_ino);
  // Made by this process: owned by it (root makes them 0:0).
  CHECK(Lstat(dst + "/file.txt").st_uid == geteuid());
}

TEST_CASE("seed copy: a single file, and missing parents", "[seed]") {
  Fixture f;
  WriteFile(f.src + "/notes.txt", "notes", 0600);
  SECTION("no image layers: parents are 0755") {
    auto r = f.Copy(f.src + "/notes.txt", "/a/b/notes.txt");
    INFO(Describe(r));
    REQUIRE(r);
    CHECK(ReadFile(f.upper + "/a/b/notes.txt") == "notes");
    CHECK((Lstat(f.upper + "/a/b/notes.txt").st_mode & 07777) == 0600);
    CHECK((Lstat(f.upper + "/a").st_mode & 07777) == 0755);
    CHECK((Lstat(f.upper + "/a/b").st_mode & 07777) == 0755);
  }
  SECTION("at the root of the sandbox") {
    auto r = f.Copy(f.src + "/notes.txt", "/notes.txt");
    INFO(Describe(r));
    REQUIRE(r);
    CHECK(ReadFile(f.upper + "/notes.txt") == "notes");
  }
  SECTION("parents take the uppermost image layer's mode") {
    std::string top = f.Layer(0), below = f.Layer(1);
    REQUIRE(mkdir((below + "/a").c_str(), 0711) == 0);
    REQUIRE(mkdir((below + "/a/b").c_str(), 0700) == 0);
    REQUIRE(mkdir((top + "/a").c_str(), 0751) == 0);  // shadows below/a
    REQUIRE(chmod((top + "/a").c_str(), 0751) == 0);
    REQUIRE(chmod((below + "/a/b").c_str(), 0705) == 0);
    auto r = f.Copy(f.src + "/notes.txt", "/a/b/c/notes.txt");
    INFO(Describe(r));
    REQUIRE(r);
    CHECK((Lstat(f.upper + "/a").st_mode & 07777) == 0751);
    CHECK((Lstat(f.upper + "/a/b").st_mode & 07777) == 0705);  // only below has it: merged view
    CHECK((Lstat(f.upper + "/a/b/c").st_mode & 07777) == 0755);
    CHECK(Lstat(f.upper + "/a").st_uid == Lstat(top + "/a").st_uid);
  }
  SECTION("a second seed reuses parents an earlier one made") {
    WriteFile(f.src + "/other", "other");
    REQUIRE(f.Copy(f.src + "/notes.txt", "/w/one"));
    auto r = f.Copy(f.src + "/other", "/w/two");
    INFO(Describe(r));
    REQUIRE(r);
    CHECK(ReadFile(f.upper + "/w/two") == "other");
  }
}

TEST_CASE("seed copy: whiteouts and opaque directories in the image", "[seed]") {
  Fixture f;
  WriteFile(f.src + "/x", "x");
  std::string top = f.Layer(0), below = f.Layer(1);
  REQUIRE(mkdir((below + "/a").c_str(), 0711) == 0);
  REQUIRE(mkdir((below + "/a/b").c_str(), 0711) == 0);
  SECTION("a whiteout hides the layer beneath") {
    // Linux 5.8+ lets anyone make a 0:0 character device (a whiteout).
    if (mknod((top + "/a").c_str(), S_IFCHR | 0000, makedev(0, 0)) != 0) {
      WARN("SKIPPED: can't make a whiteout here: " << strerror(errno));
      return;
    }
    auto r = f.Copy(f.src + "/x", "/a/b/x");
    INFO(Describe(r));
    REQUIRE(r);
    CHECK((Lstat(f.upper + "/a").st_mode & 07777) == 0755);
    CHECK((Lstat(f.upper + "/a/b").st_mode & 07777) == 0755);
  }
  SECTION("an opaque directory hides the layer beneath") {
    REQUIRE(mkdir((top + "/a").c_str(), 0750) == 0);
    if (setxattr((top + "/a").c_str(), "user.overlay.opaque", "y", 1, 0) != 0) {
      WARN("SKIPPED: no user xattrs here: " << strerror(errno));
      return;
    }
    auto r = f.Copy(f.src + "/x", "/a/b/x");
    INFO(Describe(r));
    REQUIRE(r);
    CHECK((Lstat(f.upper + "/a").st_mode & 07777) == 0750);
    CHECK((Lstat(f.upper + "/a/b").st_mode & 07777) == 0755);  // not below's 0711
  }
  SECTION("without them, the lower layer shows through") {
    REQUIRE(mkdir((top + "/a").c_str(), 0750) == 0);
    auto r = f.Copy(f.src + "/x", "/a/b/x");
    INFO(Describe(r));
    REQUIRE(r);
    CHECK((Lstat(f.upper + "/a/b").st_mode & 07777) == 0711);
  }
}

TEST_CASE("seed copy: refusals name the path", "[seed]") {
  Fixture f;
  WriteFile(f.src + "/file", "data");
  SECTION("a parent that is a symlink in the image") {
    std::string layer = f.Layer(0);
    REQUIRE(symlink("usr/bin", (layer + "/bin").c_str()) == 0);
    auto r = f.Copy(f.src + "/file", "/bin/tool");
    REQUIRE_FALSE(r);
    CHECK(r.error().err == ENOTDIR);
    CHECK(r.error().detail.find("/bin is a symlink in the image") != std::string::npos);
    CHECK_FALSE(Exists(f.upper + "/bin"));
  }
  SECTION("a parent that is a file in the image") {
    std::string layer = f.Layer(0);
    WriteFile(layer + "/etcfile", "");
    auto r = f.Copy(f.src + "/file", "/etcfile/x");
    REQUIRE_FALSE(r);
    CHECK(r.error().err == ENOTDIR);
  }
  SECTION("a symlink as the source, or in its path") {
    REQUIRE(symlink("file", (f.src + "/link").c_str()) == 0);
    auto r = f.Copy(f.src + "/link", "/x");
    REQUIRE_FALSE(r);
    CHECK(r.error().err == ELOOP);
    CHECK(r.error().detail.find(f.src + "/link") != std::string::npos);
    REQUIRE(symlink(f.src.c_str(), (f.tmp / "srclink").c_str()) == 0);
    r = f.Copy(f.tmp / "srclink/file", "/y");
    REQUIRE_FALSE(r);
    CHECK(r.error().err == ELOOP);
    CHECK(r.error().Message().find(f.tmp / "srclink/file") != std::string::npos);
  }
  SECTION("a fifo as the source") {
    REQUIRE(mkfifo((f.src + "/fifo").c_str(), 0644) == 0);
    auto r = f.Copy(f.src + "/fifo", "/x");
    REQUIRE_FALSE(r);
    CHECK(r.error().err == EINVAL);
  }
  SECTION("a missing source") {
    auto r = f.Copy(f.src + "/nope", "/x");
    REQUIRE_FALSE(r);
    CHECK(r.error().Message() == "seed copy: ENOENT (" + f.src + "/nope)");
  }
  SECTION("a destination that exists in the upper") {
    REQUIRE(f.Copy(f.src + "/file", "/x"));
    auto r = f.Copy(f.src + "/file", "/x");
    REQUIRE_FALSE(r);
    CHECK(r.error().Message() == "seed copy: EEXIST (/x in the writable layer)");
  }
  SECTION("an earlier seed's symlink on the destination's path is not followed") {
    REQUIRE(symlink(f.tmp.path.c_str(), (f.upper + "/escape").c_str()) == 0);
    auto r = f.Copy(f.src + "/file", "/escape/x");
    REQUIRE_FALSE(r);
    CHECK(r.error().detail.find("/escape") != std::string::npos);
    CHECK_FALSE(Exists(f.tmp / "x"));
  }
  SECTION("deeper than kMaxSeedDepth") {
    std::string p = f.src + "/deep";
    REQUIRE(mkdir(p.c_str(), 0755) == 0);
    UniqueFd dir(open(p.c_str(), O_RDONLY | O_DIRECTORY));
    for (int i = 0; i < airlock::fs::kMaxSeedDepth; ++i) {
      REQUIRE(mkdirat(dir.get(), "d", 0755) == 0);
      dir.Reset(openat(dir.get(), "d", O_RDONLY | O_DIRECTORY));
      REQUIRE(dir);
    }
    auto r = f.Copy(p, "/deep");
    REQUIRE_FALSE(r);
    CHECK(r.error().err == ELOOP);
    CHECK(r.error().detail.find("deeper than 256") != std::string::npos);
  }
  SECTION("a file the reader can't read") {
    if (geteuid() == 0) {
      WARN("SKIPPED here (root reads everything); tests/root/seed_test.cc checks it as uid 65534");
      return;
    }
    WriteFile(f.src + "/secret", "s", 0000);
    auto r = f.Copy(f.src, "/w");
    REQUIRE_FALSE(r);
    CHECK(r.error().Message() == "seed copy: EACCES (" + f.src + "/secret)");
  }
}
