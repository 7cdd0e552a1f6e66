// The extractor for tar streams that come out of a sandbox, against a table
// of hostile archives built here: each is refused or neutralised, and
// nothing is ever written outside the destination. Also the tar writer
// `cp` uses to send a host directory, round-tripped through the extractor.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "harness/client/safe_extract.h"
#include "harness/client/tree_tar.h"
#include "runtime/core/unique_fd.h"

using namespace airlock;
using namespace airlock::client;
using airlock::images::TarWriter;
namespace fs = std::filesystem;

namespace {

class StringSource : public images::ByteSource {
 public:
  explicit StringSource(std::string data) : data_(std::move(data)) {}
  Result<size_t> Read(void* buf, size_t n) override {
    size_t k = std::min(n, data_.size() - pos_);
    memcpy(buf, data_.data() + pos_, k);
    pos_ += k;
    return k;
  }

 private:
  std::string data_;
  size_t pos_ = 0;
};

// Builds an archive in memory, member by member.
class Archive {
 public:
  Archive() : w_([this](std::string_view d) { bytes_.append(d); return true; }) {}
  Archive& File(const std::string& name, const std::string& data, uint32_t mode = 0644) {
    TarWriter::Header h;
    h.name = name;
    h.mode = mode;
    h.size = data.size();
    h.mtime = 1700000000;
    REQUIRE(w_.Begin(h));
    if (!data.empty()) REQUIRE(w_.Data(data));
    return *this;
  }
  Archive& Dir(const std::string& name, uint32_t mode = 0755) { return Entry(name, '5', "", mode); }
  Archive& Symlink(const std::string& name, const std::string& target) { return Entry(name, '2', target, 0777); }
  Archive& Hardlink(const std::string& name, const std::string& target) { return Entry(name, '1', target, 0644); }
  Archive& Entry(const std::string& name, char type, const std::string& link, uint32_t mode) {
    TarWriter::Header h;
    h.name = name;
    h.typeflag = type;
    h.linkname = link;
    h.mode = mode;
    if (type == '3') {
      h.devmajor = 1;
      h.devminor = 3;
    }
    REQUIRE(w_.Begin(h));
    return *this;
  }
  std::string Bytes() {
    REQUIRE(w_.Finish());
    return bytes_;
  }
  // The archive cut short: no end marker, the last member's data partial.
  std::string Truncated(size_t drop) {
    REQUIRE(w_.Flush());
    return bytes_.substr(0, bytes_.size() - drop);
  }

 private:
  std::string bytes_;
  TarWriter w_;
};

// A scratch tree: BASE/dest receives the archive, BASE/outside holds
// what an escape would hit. Everything outside dest is listed before and
// after each extraction.
class Scratch {
 public:
  Scratch() {
    char tmpl[] = "/tmp/airlock-extract-XXXXXX";
    REQUIRE(mkdtemp(tmpl) != nullptr);
    base_ = tmpl;
    fs::create_directories(base_ + "/dest");
    fs::create_directories(base_ + "/outside");
    std::ofstream(base_ + "/outside/victim") << "original";
    dest_ = UniqueFd(open(Dest().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    REQUIRE(dest_.valid());
    before_ = OutsideListing();
  }
  ~Scratch() {
    std::error_code ec;
    // A read-only directory the archive made must not stop the cleanup.
    for (auto it = fs::recursive_directory_iterator(base_, ec); it != fs::recursive_directory_iterator(); ++it)
      if (it->is_directory(ec) && !it->is_symlink(ec)) fs::permissions(it->path(), fs::perms::owner_all, fs::perm_options::add, ec);
    fs::remove_all(base_, ec);
  }
  std::string Dest() const { return base_ + "/dest"; }
  std::string Outside() const { return base_ + "/outside"; }
  std::string Base() const { return base_; }

  Result<ExtractReport> Extract(const std::string& bytes, const ExtractLimits& limits = {}) {
    StringSource src(bytes);
    images::TarReader tar(src);
    return SafeExtract(tar, dest_.get(), limits);
  }

  // Every path outside dest, with type, mode, size and content.
  std::string OutsideListing() const {
    std::ostringstream out;
    for (auto& e : fs::recursive_directory_iterator(base_)) {
      std::string p = e.path().string();
      if (p == Dest() || p.starts_with(Dest() + "/")) continue;
      struct stat st;
      lstat(p.c_str(), &st);
      out << p << " " << std::oct << st.st_mode << std::dec << " " << st.st_size << " " << st.st_nlink;
      if (S_ISREG(st.st_mode)) {
        std::ifstream in(p);
        out << " " << std::string(std::istreambuf_iterator<char>(in), {});
      }
      out << "\n";
    }
    return out.str();
  }
  void RequireNothingOutside() const { REQUIRE(OutsideListing() == before_); }

 private:
  std::string base_;
  UniqueFd dest_;
  std::string before_;
};

std::string Slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

bool Exists(const std::string& p) {
  struct stat st;
  return lstat(p.c_str(), &st) == 0;
}

uint32_t ModeOf(const std::string& p) {
  struct stat st;
  REQUIRE(lstat(p.c_str(), &st) == 0);
  return st.st_mode & 07777;
}

}  // namespace

TEST_CASE("safe extract: an honest archive comes out whole", "[client][extract]") {
  Scratch s;
  auto r = s.Extract(Archive()
                         .Dir("./", 0750)
                         .Dir("src/")
                         .File("src/main.c", "int main(){}\n", 0644)
                         .File("run.sh", "#!/bin/sh\n", 0755)
                         .Symlink("latest", "src/main.c")
                         .Symlink("abs", "/etc/passwd")
                         .Hardlink("src/copy.c", "src/main.c")
                         .File("deep/er/file", "x")  // parents the archive doesn't name
                         .Dir("ro/", 0555)
                         .File("ro/inside", "y", 0444)
                         .Bytes());
  REQUIRE(r);
  CHECK(r->files == 4);
  CHECK(r->symlinks == 2);
  CHECK(r->hardlinks == 1);
  CHECK(r->skipped.empty());
  CHECK(Slurp(s.Dest() + "/src/main.c") == "int main(){}\n");
  CHECK(ModeOf(s.Dest() + "/run.sh") == 0755);
  CHECK(fs::read_symlink(s.Dest() + "/latest") == "src/main.c");
  CHECK(fs::read_symlink(s.Dest() + "/abs") == "/etc/passwd");  // kept as data
  CHECK(fs::equivalent(s.Dest() + "/src/copy.c", s.Dest() + "/src/main.c"));
  CHECK(Slurp(s.Dest() + "/deep/er/file") == "x");
  CHECK(ModeOf(s.Dest() + "/ro") == 0555);
  CHECK(Slurp(s.Dest() + "/ro/inside") == "y");
  CHECK(ModeOf(s.Dest()) == 0750);
  struct stat st;
  REQUIRE(stat((s.Dest() + "/src/main.c").c_str(), &st) == 0);
  CHECK(st.st_mtime == 1700000000);
  s.RequireNothingOutside();
}

TEST_CASE("safe extract: hostile archives are refused or neutralised", "[client][extract]") {
  struct Case {
    const char* what;
    std::function<std::string(const Scratch&)> archive;
    bool refused;          // the extraction fails (else: succeeds, neutralised)
    const char* message;   // part of the error, or of a skipped note
    std::function<void(const Scratch&)> check;
  };
  const std::string abs_target = "/tmp/airlock-extract-abs-" + std::to_string(getpid());
  const std::vector<Case> cases = {
      {"traversal ../x", [](const Scratch&) { return Archive().File("../x", "pwn").Bytes(); }, true,
       "\"..\" component refused", nullptr},
      {"traversal in the middle", [](const Scratch&) { return Archive().File("a/../../x", "pwn").Bytes(); }, true,
       "\"..\" component refused", nullptr},
      {"absolute /etc/x", [&](const Scratch&) { return Archive().File(abs_target, "pwn").Bytes(); }, true,
       "absolute member name refused", [&](const Scratch&) { CHECK(!Exists(abs_target)); }},
      {"symlink to outside, then a write through it",
       [](const Scratch& s) { return Archive().Symlink("a", s.Outside()).File("a/pwn", "pwn").Bytes(); }, true,
       "symlink or non-directory on the way",
       [](const Scratch& s) { CHECK(!Exists(s.Outside() + "/pwn")); }},
      {"symlink to outside, then a directory entry through it",
       [](const Scratch& s) { return Archive().Symlink("a", s.Outside()).Dir("a/sub/").Bytes(); }, true,
       "symlink or non-directory on the way", nullptr},
      {"symlink, then a file of the same name (replaces the link, never writes through it)",
       [](const Scratch& s) { return Archive().Symlink("v", s.Outside() + "/victim").File("v", "new").Bytes(); }, false,
       nullptr,
       [](const Scratch& s) {
         CHECK(Slurp(s.Dest() + "/v") == "new");
         CHECK(!fs::is_symlink(s.Dest() + "/v"));
       }},
      {"hardlink to /etc/passwd", [](const Scratch&) { return Archive().Hardlink("pw", "/etc/passwd").Bytes(); }, false,
       "outside the archive", [](const Scratch& s) { CHECK(!Exists(s.Dest() + "/pw")); }},
      {"hardlink up the tree", [](const Scratch&) { return Archive().Hardlink("pw", "../outside/victim").Bytes(); },
       false, "outside the archive", [](const Scratch& s) { CHECK(!Exists(s.Dest() + "/pw")); }},
      {"hardlink to a symlink the archive made",
       [](const Scratch& s) { return Archive().Symlink("l", s.Outside() + "/victim").Hardlink("h", "l").Bytes(); },
       false, "not a file of this archive", [](const Scratch& s) { CHECK(!Exists(s.Dest() + "/h")); }},
      {"character device", [](const Scratch&) { return Archive().Entry("null", '3', "", 0666).Bytes(); }, false,
       "a character device (skipped)", [](const Scratch& s) { CHECK(!Exists(s.Dest() + "/null")); }},
      {"block device", [](const Scratch&) { return Archive().Entry("sda", '4', "", 0660).Bytes(); }, false,
       "a block device (skipped)", [](const Scratch& s) { CHECK(!Exists(s.Dest() + "/sda")); }},
      {"fifo", [](const Scratch&) { return Archive().Entry("pipe", '6', "", 0644).Bytes(); }, false, "a fifo (skipped)",
       [](const Scratch& s) { CHECK(!Exists(s.Dest() + "/pipe")); }},
      {"setuid, setgid and sticky bits",
       [](const Scratch&) { return Archive().File("suid", "x", 06755).Dir("sticky/", 01777).Bytes(); }, false, nullptr,
       [](const Scratch& s) {
         CHECK(ModeOf(s.Dest() + "/suid") == 0755);
         CHECK(ModeOf(s.Dest() + "/sticky") == 0777);
       }},
      {"a name longer than PATH_MAX", [](const Scratch&) { return Archive().File(std::string(5000, 'a'), "x").Bytes(); },
       true, "longer than PATH_MAX", nullptr},
      {"a component longer than NAME_MAX", [](const Scratch&) { return Archive().File(std::string(300, 'b'), "x").Bytes(); },
       true, "ENAMETOOLONG", nullptr},
      {"truncated inside a file's data",
       [](const Scratch&) { return Archive().File("big", std::string(5000, 'z')).Truncated(3000); }, true,
       "truncated archive", [](const Scratch& s) { CHECK(!Exists(s.Dest() + "/big")); }},
      {"truncated inside a header",
       [](const Scratch&) { return Archive().File("a", "x").File("b", "y").Truncated(0).substr(0, 1024 + 100); }, true,
       "truncated archive", nullptr},
      {"a file where the root should be", [](const Scratch&) { return Archive().File("./", "x").Bytes(); }, true,
       "root entry is not a directory", nullptr},
      {"a file over a directory", [](const Scratch&) { return Archive().Dir("d/").File("d/f", "1").File("d", "x").Bytes(); },
       true, "a directory is there", [](const Scratch& s) { CHECK(Slurp(s.Dest() + "/d/f") == "1"); }},
  };
  for (const auto& c : cases) {
    SECTION(c.what) {
      Scratch s;
      auto r = s.Extract(c.archive(s));
      if (c.refused) {
        REQUIRE(!r);
        INFO(r.error().Message());
        CHECK(r.error().Message().starts_with("extract: "));
        if (c.message) CHECK(r.error().Message().find(c.message) != std::string::npos);
      } else {
        INFO((r ? std::string("ok") : r.error().Message()));
        REQUIRE(r);
        if (c.message) {
          REQUIRE(r->skipped.size() == 1);
          CHECK(r->skipped[0].find(c.message) != std::string::npos);
        }
      }
      if (c.check) c.check(s);
      s.RequireNothingOutside();
    }
  }
}

TEST_CASE("safe extract: a symlink already in the destination is never followed", "[client][extract]") {
  Scratch s;
  REQUIRE(symlink(s.Outside().c_str(), (s.Dest() + "/planted").c_str()) == 0);
  REQUIRE(symlink((s.Outside() + "/victim").c_str(), (s.Dest() + "/file-link").c_str()) == 0);
  auto through = s.Extract(Archive().File("planted/pwn", "pwn").Bytes());
  REQUIRE(!through);
  CHECK(through.error().Message().find("symlink or non-directory on the way") != std::string::npos);
  // Writing a file at a link's name replaces the link; the victim stays.
  auto over = s.Extract(Archive().File("file-link", "new").Bytes());
  REQUIRE(over);
  CHECK(Slurp(s.Outside() + "/victim") == "original");
  CHECK(Slurp(s.Dest() + "/file-link") == "new");
  s.RequireNothingOutside();
}

TEST_CASE("safe extract: limits on bytes and entries", "[client][extract]") {
  Scratch s;
  auto bytes = s.Extract(Archive().File("a", std::string(3000, 'a')).Bytes(), {.max_bytes = 1000});
  REQUIRE(!bytes);
  CHECK(bytes.error().Message().find("more than 1000 bytes") != std::string::npos);
  auto entries = s.Extract(Archive().File("x", "").File("y", "").File("z", "").Bytes(), {.max_entries = 2});
  REQUIRE(!entries);
  CHECK(entries.error().Message().find("more than 2 members") != std::string::npos);
  s.RequireNothingOutside();
}

TEST_CASE("safe extract: runs of zeros become holes, not host disk", "[client][extract]") {
  Scratch s;
  std::string data(16 << 20, '\0');
  data.replace(5000, 5, "hello");  // a little data in the middle
  auto r = s.Extract(Archive().File("sparse", data).File("tail-hole", std::string(8192, '\0')).Bytes());
  REQUIRE(r);
  struct stat st;
  REQUIRE(stat((s.Dest() + "/sparse").c_str(), &st) == 0);
  CHECK(st.st_size == 16 << 20);
  CHECK(st.st_blocks * 512 < (1 << 20));  // far less than 16 MiB allocated
  CHECK(Slurp(s.Dest() + "/sparse") == data);
  REQUIRE(stat((s.Dest() + "/tail-hole").c_str(), &st) == 0);
  CHECK(st.st_size == 8192);
  CHECK(Slurp(s.Dest() + "/tail-hole") == std::string(8192, '\0'));
}

TEST_CASE("tar writer: a host tree round-trips through the extractor", "[client][extract]") {
  Scratch src, dst;
  const std::string root = src.Dest();
  fs::create_directories(root + "/proj/sub/deeper");
  std::ofstream(root + "/proj/a.txt") << "alpha";
  std::ofstream(root + "/proj/sub/b.bin") << std::string(200000, '\x01');  // several chunks
  std::ofstream(root + "/proj/sub/empty");
  const std::string long_name = root + "/proj/sub/deeper/" + std::string(150, 'n');  // needs pax
  std::ofstream(long_name) << "long";
  REQUIRE(symlink("../a.txt", (root + "/proj/sub/link").c_str()) == 0);
  REQUIRE(mkfifo((root + "/proj/fifo").c_str(), 0644) == 0);
  chmod((root + "/proj/a.txt").c_str(), 0600);
  chmod((root + "/proj/sub").c_str(), 0710);
  chmod((root + "/proj/sub/empty").c_str(), 0751);

  std::string tar;
  TarWriter w([&](std::string_view d) {
    CHECK(d.size() <= TarWriter::kChunk);
    tar.append(d);
    return true;
  });
  auto sent = WriteTreeTar(root + "/proj", "proj", w);
  REQUIRE(sent);
  CHECK(sent->files == 4);
  CHECK(sent->dirs == 3);
  CHECK(sent->symlinks == 1);
  REQUIRE(sent->skipped.size() == 1);
  CHECK(sent->skipped[0].find("fifo") != std::string::npos);

  auto got = dst.Extract(tar);
  REQUIRE(got);
  const std::string out = dst.Dest() + "/proj";
  CHECK(Slurp(out + "/a.txt") == "alpha");
  CHECK(Slurp(out + "/sub/b.bin") == std::string(200000, '\x01'));
  CHECK(Slurp(out + "/sub/deeper/" + std::string(150, 'n')) == "long");
  CHECK(fs::read_symlink(out + "/sub/link") == "../a.txt");
  CHECK(ModeOf(out + "/a.txt") == 0600);
  CHECK(ModeOf(out + "/sub") == 0710);
  CHECK(ModeOf(out + "/sub/empty") == 0751);
  CHECK(!Exists(out + "/fifo"));
  dst.RequireNothingOutside();
}

TEST_CASE("tar writer: the sink stopping is an error", "[client][extract]") {
  Scratch src;
  std::ofstream(src.Dest() + "/f") << std::string(300000, 'x');
  int calls = 0;
  TarWriter w([&](std::string_view) { return ++calls < 2; });
  auto sent = WriteTreeTar(src.Dest(), "", w);
  REQUIRE(!sent);
  CHECK(sent.error().Message() == "write tar: the receiver stopped");
}
