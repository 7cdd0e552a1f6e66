// The seal over a full snapshot's CRIU images (harness/daemon/checkpoint_seal.h):
// what it accepts and every way it refuses.
#include "harness/daemon/checkpoint_seal.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "runtime/core/unique_fd.h"

using namespace airlock;
using namespace airlock::daemon;

namespace {

struct ImagesDir {
  std::string path;
  UniqueFd fd;
  ImagesDir() {
    char tmpl[] = "/tmp/airlock-seal-XXXXXX";
    REQUIRE(mkdtemp(tmpl) != nullptr);
    path = tmpl;
    Put("core-1.img", "core");
    Put("pages-1.img", std::string(3 << 20, 'p'));
    Put("dump.log", "CRIU's log");
    fd.Reset(open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    REQUIRE(fd);
  }
  ~ImagesDir() { std::filesystem::remove_all(path); }
  void Put(const std::string& name, const std::string& data) const { std::ofstream(path + "/" + name) << data; }
  std::string Get(const std::string& name) const {
    std::ifstream in(path + "/" + name);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }
};

const std::string kKey(32, 'k');

std::string Message(const Result<CheckpointSeal>& r) { return r ? std::string("verified") : r.error().Message(); }

}  // namespace

TEST_CASE("seal: what was sealed verifies, with what the restore needs", "[seal]") {
  ImagesDir d;
  REQUIRE(WriteCheckpointSeal(d.fd.get(), kKey, {"sb-1", 1 << 20, "socket:[42]", {}}));
  auto v = VerifyCheckpointSeal(d.fd.get(), kKey);
  INFO(Message(v));
  REQUIRE(v);
  CHECK(v->sandbox_id == "sb-1");
  CHECK(v->id_base == (1u << 20));
  CHECK(v->channel_key == "socket:[42]");
  CHECK(v->files.size() == 2);  // the logs aren't sealed
  CHECK(v->files.count("pages-1.img") == 1);
  // What a restore writes there later (its log, its statistics) changes nothing.
  d.Put("restore.log", "later");
  d.Put("stats-restore", "later");
  CHECK(VerifyCheckpointSeal(d.fd.get(), kKey));
}

TEST_CASE("seal: a changed, added or missing image fails, named", "[seal]") {
  ImagesDir d;
  REQUIRE(WriteCheckpointSeal(d.fd.get(), kKey, {"sb-1", 65536, "socket:[1]", {}}));
  SECTION("changed") {
    std::string pages = d.Get("pages-1.img");
    pages[12345] ^= 1;
    d.Put("pages-1.img", pages);
    CHECK_THAT(Message(VerifyCheckpointSeal(d.fd.get(), kKey)), Catch::Contains("pages-1.img was altered"));
  }
  SECTION("added") {
    d.Put("extra.img", "x");
    CHECK_THAT(Message(VerifyCheckpointSeal(d.fd.get(), kKey)), Catch::Contains("extra.img is not in the seal"));
  }
  SECTION("missing") {
    REQUIRE(unlink((d.path + "/core-1.img").c_str()) == 0);
    CHECK_THAT(Message(VerifyCheckpointSeal(d.fd.get(), kKey)), Catch::Contains("core-1.img is missing"));
  }
  SECTION("a symlink in place of an image") {
    REQUIRE(unlink((d.path + "/core-1.img").c_str()) == 0);
    REQUIRE(symlink("/etc/passwd", (d.path + "/core-1.img").c_str()) == 0);
    CHECK_FALSE(VerifyCheckpointSeal(d.fd.get(), kKey));
  }
}

TEST_CASE("seal: another key, an edited seal or none at all fails", "[seal]") {
  ImagesDir d;
  REQUIRE(WriteCheckpointSeal(d.fd.get(), kKey, {"sb-1", 65536, "socket:[1]", {}}));
  SECTION("another daemon's key") {
    CHECK_THAT(Message(VerifyCheckpointSeal(d.fd.get(), std::string(32, 'o'))),
               Catch::Contains("HMAC does not verify"));
  }
  SECTION("the id range edited") {
    std::string seal = d.Get(kCheckpointSeal);
    auto at = seal.find("65536");
    REQUIRE(at != std::string::npos);
    seal.replace(at, 5, "131072");
    d.Put(kCheckpointSeal, seal);
    CHECK_THAT(Message(VerifyCheckpointSeal(d.fd.get(), kKey)), Catch::Contains("HMAC does not verify"));
  }
  SECTION("an image replaced and sealed again without the key") {
    d.Put("core-1.img", "evil");
    REQUIRE(WriteCheckpointSeal(d.fd.get(), std::string(32, 'a'), {"sb-1", 65536, "socket:[1]", {}}));
    CHECK_THAT(Message(VerifyCheckpointSeal(d.fd.get(), kKey)), Catch::Contains("HMAC does not verify"));
  }
  SECTION("not JSON") {
    d.Put(kCheckpointSeal, "{");
    CHECK_THAT(Message(VerifyCheckpointSeal(d.fd.get(), kKey)), Catch::Contains("not an airlock-checkpoint/1"));
  }
  SECTION("no seal") {
    REQUIRE(unlink((d.path + "/" + kCheckpointSeal).c_str()) == 0);
    CHECK_THAT(Message(VerifyCheckpointSeal(d.fd.get(), kKey)), Catch::Contains("carry no seal"));
  }
}

TEST_CASE("seal: the key is made once, 0600, and refused when others may read it", "[seal]") {
  if (geteuid() != 0) {
    WARN("SKIP: the key must be root's; not root here");
    return;
  }
  ImagesDir d;
  const std::string path = d.path + "/checkpoint.key";
  auto k1 = LoadOrCreateSealKey(path);
  REQUIRE(k1);
  CHECK(k1->size() == 32);
  struct stat st;
  REQUIRE(stat(path.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  auto k2 = LoadOrCreateSealKey(path);
  REQUIRE(k2);
  CHECK(*k1 == *k2);
  REQUIRE(chmod(path.c_str(), 0644) == 0);
  auto k3 = LoadOrCreateSealKey(path);
  REQUIRE_FALSE(k3);
  CHECK_THAT(k3.error().Message(), Catch::Contains("mode 0600"));
}
