// images::TarWriter, read back through images::TarReader: pax for what
// ustar can't hold, chunked output, and the member-size bookkeeping that
// keeps an archive from lying about its data.
#include "images/oci/tar_writer.h"

#include <sys/mman.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "images/oci/byte_source.h"
#include "images/oci/tar_reader.h"
#include "runtime/core/unique_fd.h"

using namespace airlock;
using images::TarEntry;
using images::TarMeta;
using images::TarWriter;

namespace {

// The archive in a memfd, so the reader sees it through a real ByteSource.
class ArchiveFile {
 public:
  explicit ArchiveFile(const std::string& tar) : fd_(memfd_create("tar-writer-test", MFD_CLOEXEC)), size_(tar.size()) {
    REQUIRE(fd_.valid());
    REQUIRE(write(fd_.get(), tar.data(), tar.size()) == static_cast<ssize_t>(tar.size()));
  }
  images::FdSource Source() const { return images::FdSource(fd_.get(), 0, size_, "archive"); }

 private:
  UniqueFd fd_;
  size_t size_;
};

struct Member {
  TarEntry entry;
  std::string data;
};

// Every member of `tar` with its data; fails the test on a reader error.
std::vector<Member> ReadBack(const std::string& tar) {
  ArchiveFile file(tar);
  auto src = file.Source();
  images::TarReader reader(src);
  std::vector<Member> out;
  for (;;) {
    auto next = reader.Next();
    if (!next) FAIL(next.error().Message());
    if (!*next) return out;
    Member m{**next, ""};
    char buf[4096];
    for (;;) {
      auto n = reader.ReadData(buf, sizeof buf);
      if (!n) FAIL(n.error().Message());
      if (*n == 0) break;
      m.data.append(buf, *n);
    }
    out.push_back(std::move(m));
  }
}

// A writer into a string, recording the size of every sink call.
struct Captured {
  std::string bytes;
  std::vector<size_t> calls;
  TarWriter writer{[this](std::string_view d) {
    bytes.append(d);
    calls.push_back(d.size());
    return true;
  }};
};

}  // namespace

TEST_CASE("tar writer: directories, symlinks and files round-trip", "[images][tar]") {
  Captured c;
  const TarMeta dir{.mode = 0750, .uid = 1000, .gid = 100, .mtime = 1700000000};
  REQUIRE(c.writer.Directory("top", dir));
  REQUIRE(c.writer.Symlink("top/link", "../elsewhere", TarMeta{.mode = 0777}));
  REQUIRE(c.writer.BeginFile("top/file", 11, TarMeta{.mode = 04755, .mtime = 42}));
  REQUIRE(c.writer.Data("hello"));
  REQUIRE(c.writer.Data(""));
  REQUIRE(c.writer.Data(" world"));
  REQUIRE(c.writer.BeginFile("top/empty", 0, TarMeta{}));
  REQUIRE(c.writer.Begin(TarWriter::Header{.name = "top/null", .typeflag = '3', .mode = 0666, .devmajor = 1, .devminor = 3}));
  REQUIRE(c.writer.Finish());

  // Whole blocks, ending in the two-zero-block marker.
  CHECK(c.bytes.size() % 512 == 0);
  CHECK(c.bytes.substr(c.bytes.size() - 1024) == std::string(1024, '\0'));

  auto got = ReadBack(c.bytes);
  REQUIRE(got.size() == 5);
  CHECK(got[0].entry.name == "top/");
  CHECK(got[0].entry.type == TarEntry::Type::kDir);
  CHECK(got[0].entry.mode == 0750);
  CHECK(got[0].entry.uid == 1000);
  CHECK(got[0].entry.gid == 100);
  CHECK(got[0].entry.mtime == 1700000000);
  CHECK(got[1].entry.name == "top/link");
  CHECK(got[1].entry.type == TarEntry::Type::kSymlink);
  CHECK(got[1].entry.linkname == "../elsewhere");
  CHECK(got[2].entry.name == "top/file");
  CHECK(got[2].entry.type == TarEntry::Type::kFile);
  CHECK(got[2].entry.mode == 04755);
  CHECK(got[2].entry.mtime == 42);
  CHECK(got[2].data == "hello world");
  CHECK(got[3].entry.name == "top/empty");
  CHECK(got[3].entry.size == 0);
  CHECK(got[4].entry.type == TarEntry::Type::kChar);
  // No member here needed a pax header.
  for (size_t off = 0; off + 512 <= c.bytes.size(); off += 512) CHECK(c.bytes[off + 156] != 'x');
}

TEST_CASE("tar writer: long names and link targets go in pax records", "[images][tar]") {
  // Lengths around the ustar limit, and around where a "path" record's
  // length gains a digit (a 989-byte name makes a 999-byte record, a
  // 990-byte one a 1001-byte record).
  Captured c;
  std::vector<std::string> names;
  for (size_t len : {99, 100, 101, 102, 988, 989, 990, 991, 3000}) {
    std::string name = "d/" + std::string(len - 2, 'a' + static_cast<char>(names.size()));
    names.push_back(name);
    REQUIRE(c.writer.BeginFile(name, 1, TarMeta{}));
    REQUIRE(c.writer.Data("x"));
  }
  const std::string target = "/" + std::string(250, 't');
  REQUIRE(c.writer.Symlink("short", target, TarMeta{.mode = 0777}));
  REQUIRE(c.writer.Directory(std::string(120, 'D'), TarMeta{.mode = 0755}));
  REQUIRE(c.writer.Finish());

  auto got = ReadBack(c.bytes);
  REQUIRE(got.size() == names.size() + 2);
  for (size_t i = 0; i < names.size(); ++i) {
    CHECK(got[i].entry.name == names[i]);
    CHECK(got[i].data == "x");
  }
  CHECK(got[names.size()].entry.name == "short");
  CHECK(got[names.size()].entry.linkname == target);
  CHECK(got[names.size() + 1].entry.name == std::string(120, 'D') + "/");
  CHECK(got[names.size() + 1].entry.type == TarEntry::Type::kDir);
  // A 100-byte name fits ustar exactly: the first two members have no pax
  // header, the third (101 bytes) does.
  CHECK(c.bytes[156] == '0');
  CHECK(c.bytes[1024 + 156] == '0');
  CHECK(c.bytes[2048 + 156] == 'x');
}

TEST_CASE("tar writer: big ids and a negative mtime go in pax records", "[images][tar]") {
  Captured c;
  REQUIRE(c.writer.BeginFile("f", 2, TarMeta{.mode = 0600, .uid = 100000000, .gid = 4000000000u, .mtime = -86400}));
  REQUIRE(c.writer.Data("ok"));
  REQUIRE(c.writer.Finish());
  CHECK(c.bytes[156] == 'x');
  auto got = ReadBack(c.bytes);
  REQUIRE(got.size() == 1);
  CHECK(got[0].entry.uid == 100000000);
  CHECK(got[0].entry.gid == 4000000000u);
  CHECK(got[0].entry.mtime == -86400);
  CHECK(got[0].data == "ok");
}

TEST_CASE("tar writer: a size over 8 GiB goes in a pax record", "[images][tar]") {
  const uint64_t size = 9ull << 30;  // the ustar field holds 11 octal digits: < 8 GiB
  Captured c;
  REQUIRE(c.writer.BeginFile("huge.img", size, TarMeta{}));
  REQUIRE(c.writer.Flush());
  CHECK(c.bytes.find("size=" + std::to_string(size) + "\n") != std::string::npos);
  // The ustar header after the pax one stores 0, not a wrapped number.
  const size_t ustar = c.bytes.size() - 512;
  CHECK(std::string(c.bytes.data() + ustar + 124, 11) == "00000000000");

  ArchiveFile file(c.bytes);
  auto src = file.Source();
  images::TarReader reader(src);
  auto first = reader.Next();
  REQUIRE(first);
  REQUIRE(*first);
  CHECK((*first)->name == "huge.img");
  CHECK((*first)->size == size);
  CHECK(c.writer.remaining() == size);
}

TEST_CASE("tar writer: data past the declared size is refused", "[images][tar]") {
  Captured c;
  REQUIRE(c.writer.BeginFile("three", 3, TarMeta{}));
  auto over = c.writer.Data("abcd");
  REQUIRE(!over);
  CHECK(over.error().Message().find("\"three\"") != std::string::npos);
  REQUIRE(c.writer.Data("ab"));
  CHECK(!c.writer.Data("cd"));
  REQUIRE(c.writer.Data("c"));
  CHECK(!c.writer.Data("d"));
  REQUIRE(c.writer.BeginFile("zero", 0, TarMeta{}));
  CHECK(!c.writer.Data("z"));
  REQUIRE(c.writer.Finish());
  auto got = ReadBack(c.bytes);
  REQUIRE(got.size() == 2);
  CHECK(got[0].data == "abc");
  CHECK(got[1].data.empty());
}

TEST_CASE("tar writer: a member that ends short is refused, or padded on request", "[images][tar]") {
  Captured c;
  REQUIRE(c.writer.BeginFile("shrank", 10, TarMeta{}));
  REQUIRE(c.writer.Data("abcd"));
  CHECK(c.writer.remaining() == 6);

  auto next = c.writer.BeginFile("next", 0, TarMeta{});
  REQUIRE(!next);
  CHECK(next.error().Message() ==
        "write tar: member \"shrank\" ended 6 bytes short of its declared size 10 (before the next member)");
  auto end = c.writer.Finish();
  REQUIRE(!end);
  CHECK(end.error().Message().find("6 bytes short") != std::string::npos);

  auto padded = c.writer.PadMember();
  REQUIRE(padded);
  CHECK(*padded == 6);
  auto again = c.writer.PadMember();
  REQUIRE(again);
  CHECK(*again == 0);
  REQUIRE(c.writer.BeginFile("next", 1, TarMeta{}));
  REQUIRE(c.writer.Data("n"));
  REQUIRE(c.writer.Finish());

  auto got = ReadBack(c.bytes);
  REQUIRE(got.size() == 2);
  CHECK(got[0].data == std::string("abcd") + std::string(6, '\0'));
  CHECK(got[1].data == "n");
}

TEST_CASE("tar writer: output goes out in chunks of at most 64 KiB", "[images][tar]") {
  Captured c;
  const std::string a(200000, 'a'), b(70000, 'b');
  REQUIRE(c.writer.BeginFile("a", a.size(), TarMeta{}));
  REQUIRE(c.writer.Data(a));  // one large write
  REQUIRE(c.writer.BeginFile("b", b.size(), TarMeta{}));
  for (size_t off = 0; off < b.size(); off += 7000) REQUIRE(c.writer.Data(b.substr(off, 7000)));  // small ones
  REQUIRE(c.writer.Finish());
  REQUIRE(c.calls.size() >= 2);
  for (size_t i = 0; i + 1 < c.calls.size(); ++i) CHECK(c.calls[i] == TarWriter::kChunk);
  CHECK(c.calls.back() > 0);
  CHECK(c.calls.back() <= TarWriter::kChunk);
  auto got = ReadBack(c.bytes);
  REQUIRE(got.size() == 2);
  CHECK(got[0].data == a);
  CHECK(got[1].data == b);
}

TEST_CASE("tar writer: a sink that stops stops the writer for good", "[images][tar]") {
  int calls = 0;
  TarWriter w([&](std::string_view) { return ++calls < 2; });
  REQUIRE(w.BeginFile("f", 3 * TarWriter::kChunk, TarMeta{}));
  auto first = w.Data(std::string(3 * TarWriter::kChunk, 'x'));
  REQUIRE(!first);
  CHECK(first.error().Message() == "write tar: the receiver stopped");
  CHECK(calls == 2);
  CHECK(!w.Flush());
  CHECK(!w.PadMember());
  CHECK(calls == 2);  // nothing more was offered to the sink
}

TEST_CASE("tar writer: what a header can't carry is refused", "[images][tar]") {
  Captured c;
  CHECK(!c.writer.BeginFile(std::string("a\0b", 3), 0, TarMeta{}));
  CHECK(!c.writer.Symlink("l", std::string("x\0y", 3), TarMeta{}));
  CHECK(!c.writer.Begin(TarWriter::Header{.name = "dev", .typeflag = '3', .devmajor = 1u << 30}));
  REQUIRE(c.writer.Flush());
  CHECK(c.bytes.empty());
  CHECK(c.calls.empty());
}
