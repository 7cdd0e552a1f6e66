// The file-operation messages: FileOpRequest (runtime/proto/channel.h)
// round trips and strict decoding, and the data stream's StatRecord framing
// (runtime/proto/fileops.h) with strict decoding of what a sandbox may send.
#include <catch2/catch.hpp>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "runtime/proto/channel.h"
#include "runtime/proto/fileops.h"

namespace proto = airlock::proto;

namespace {

std::string U32(uint32_t v) { return std::string(reinterpret_cast<const char*>(&v), 4); }
std::string U64(uint64_t v) { return std::string(reinterpret_cast<const char*>(&v), 8); }
std::string Str(const std::string& s) { return U32(static_cast<uint32_t>(s.size())) + s; }

// The decoder refuses every proper prefix of a valid payload and the
// payload with one trailing byte.
template <typename Decode>
void ExpectStrictLength(const std::string& payload, Decode decode) {
  for (size_t n = 0; n < payload.size(); ++n) {
    INFO("prefix of " << n << " of " << payload.size() << " bytes");
    auto r = decode(std::string_view(payload.data(), n));
    CHECK_FALSE(r.has_value());
    if (!r) CHECK(r.error().detail.find("too short") != std::string::npos);
  }
  auto r = decode(payload + 'x');
  CHECK_FALSE(r.has_value());
  if (!r) CHECK(r.error().detail.find("trailing") != std::string::npos);
  CHECK(decode(payload).has_value());
}

}  // namespace

namespace {

// A record body by hand: type, mode, uid, gid, size, mtime_ns, name, link_target.
std::string Body(uint32_t type, uint32_t mode, const std::string& name, const std::string& link = "",
                 uint64_t size = 7, int64_t mtime = 1700000000123456789) {
  return U32(type) + U32(mode) + U32(1000) + U32(1000) + U64(size) + U64(static_cast<uint64_t>(mtime)) + Str(name) +
         Str(link);
}
std::string Framed(const std::string& body) { return U32(static_cast<uint32_t>(body.size())) + body; }

}  // namespace

TEST_CASE("proto: StatRecord streams round trip", "[proto][fileops]") {
  std::vector<proto::StatRecord> in(5);
  in[0] = {proto::FileType::kRegular, 0644, 1000, 1000, 12345678901ull, 1700000000123456789, "file.txt", ""};
  in[1] = {proto::FileType::kDirectory, 02775, 0, 100, 4096, -5, "dir", ""};
  in[2] = {proto::FileType::kSymlink, 0777, 1, 2, 11, 0, "link", std::string(proto::kMaxLinkTarget, 't')};
  in[3] = {proto::FileType::kOther, 07777, 65535, 65535, 0, INT64_MAX, std::string(proto::kMaxRecordName, 'n'), ""};
  in[4] = {proto::FileType::kRegular, 0, 0, 0, UINT64_MAX, INT64_MIN, "", ""};  // kStat of "/"
  std::string stream;
  for (const auto& rec : in) stream += proto::EncodeStatRecord(rec);
  auto out = proto::DecodeStatRecords(stream, 10);
  INFO((out ? std::string() : out.error().Message()));
  REQUIRE(out.has_value());
  REQUIRE(out->size() == in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    INFO(i);
    CHECK((*out)[i].type == in[i].type);
    CHECK((*out)[i].mode == in[i].mode);
    CHECK((*out)[i].uid == in[i].uid);
    CHECK((*out)[i].gid == in[i].gid);
    CHECK((*out)[i].size == in[i].size);
    CHECK((*out)[i].mtime_ns == in[i].mtime_ns);
    CHECK((*out)[i].name == in[i].name);
    CHECK((*out)[i].link_target == in[i].link_target);
  }
  // The framing fileops.h documents.
  CHECK(proto::EncodeStatRecord(in[0]) == Framed(Body(1, 0644, "file.txt", "", 12345678901ull)));
  auto empty = proto::DecodeStatRecords("", 10);
  REQUIRE(empty.has_value());
  CHECK(empty->empty());
  // Exactly max_records passes; one more is refused.
  CHECK(proto::DecodeStatRecords(stream, in.size()).has_value());
  auto over = proto::DecodeStatRecords(stream, in.size() - 1);
  REQUIRE_FALSE(over);
  CHECK(over.error().op == "stat record 4");
}

TEST_CASE("proto: StatRecord streams are decoded strictly", "[proto][fileops]") {
  const std::string good = Framed(Body(1, 0644, "a")) + Framed(Body(3, 0777, "l", "/etc/hostname"));
  REQUIRE(proto::DecodeStatRecords(good, 10).has_value());
  SECTION("every truncation but at a record boundary is refused") {
    const size_t first = Framed(Body(1, 0644, "a")).size();
    for (size_t n = 1; n < good.size(); ++n) {
      INFO("prefix of " << n << " bytes");
      auto r = proto::DecodeStatRecords(std::string_view(good.data(), n), 10);
      if (n == first) {
        REQUIRE(r.has_value());
        CHECK(r->size() == 1);
      } else {
        CHECK_FALSE(r.has_value());
      }
    }
  }
  auto refused = [](const std::string& stream, const std::string& what) {
    auto r = proto::DecodeStatRecords(stream, 10);
    REQUIRE_FALSE(r);
    INFO(r.error().Message());
    CHECK(r.error().Message().find(what) != std::string::npos);
    return r.error();
  };
  SECTION("lengths") {
    refused(U32(39) + std::string(39, '\0'), "length");  // shorter than the fixed part
    refused(U32(40 + 255 + 4095 + 1) + std::string(40 + 255 + 4095 + 1, '\0'), "length");
    refused(U32(0xffffffff), "length");
    refused(U32(100) + Body(1, 0644, "a"), "truncated");
    // A length that leaves bytes inside the record.
    std::string body = Body(1, 0644, "a") + "x";
    refused(Framed(body), "trailing");
    // Inner string lengths past the record.
    std::string bad = U32(1) + U32(0644) + U32(0) + U32(0) + U64(0) + U64(0) + U32(0xffffffff) + U32(0);
    refused(Framed(bad), "name");
    refused(U32(5) + "abcde", "length");
    refused(std::string("\x01\x02", 2), "length");
  }
  SECTION("fields") {
    refused(Framed(Body(4, 0644, "a")), "type");
    refused(Framed(Body(0xffffffff, 0644, "a")), "type");
    refused(Framed(Body(1, 010000, "a")), "mode");
    refused(Framed(Body(1, 0644, "a/b")), "'/'");
    refused(Framed(Body(1, 0644, "/")), "'/'");
    refused(Framed(Body(2, 0755, ".")), "name");
    refused(Framed(Body(2, 0755, "..")), "name");
    refused(Framed(Body(1, 0644, std::string("a\0b", 3))), "NUL");
    refused(Framed(Body(1, 0644, std::string(proto::kMaxRecordName + 1, 'n'))), "name");
    refused(Framed(Body(3, 0777, "l", std::string(proto::kMaxLinkTarget + 1, 't'))), "link_target");
    refused(Framed(Body(1, 0644, "a", "target")), "link_target");
    refused(Framed(Body(3, 0777, "l", std::string("/a\0", 3))), "NUL");
  }
  SECTION("the error names the record's index") {
    auto e = refused(good + Framed(Body(9, 0, "x")), "type");
    CHECK(e.op == "stat record 2");
  }
}

namespace {

proto::FileOpRequest SampleFileOp(proto::FileOp op, uint32_t flags) {
  proto::FileOpRequest m;
  m.id = 99;
  m.op = op;
  m.uid = 1000;
  m.gid = 1001;
  m.groups = {27, 100};
  m.path = "/workspace/dir with space/é.txt";
  m.cwd = "/workspace";
  m.flags = flags;
  if (op == proto::FileOp::kRename) m.path2 = "relative/dest";
  if (op == proto::FileOp::kSymlink) m.path2 = "../target dir/t";
  if (op == proto::FileOp::kChown) {
    m.owner_uid = 1000;
    m.owner_gid = 65535;
  }
  if (op == proto::FileOp::kRead) {
    m.offset = 1ull << 40;
    m.length = 12345;
  }
  if (flags & proto::kModeSet) m.mode = 04755;
  return m;
}

}  // namespace

TEST_CASE("proto: FileOpRequest round trips for every op", "[proto]") {
  using proto::FileOp;
  const std::vector<std::pair<FileOp, uint32_t>> cases = {
      {FileOp::kRead, 0},
      {FileOp::kWrite, proto::kWriteCreate | proto::kWriteExclusive | proto::kParents | proto::kModeSet},
      {FileOp::kWrite, proto::kWriteCreate | proto::kWriteTruncate},
      {FileOp::kWrite, proto::kWriteAppend},
      {FileOp::kWrite, proto::kWriteAtomic | proto::kWriteCreate | proto::kWriteTruncate},
      {FileOp::kStat, 0},
      {FileOp::kStat, proto::kFollow},
      {FileOp::kList, 0},
      {FileOp::kMkdir, proto::kParents | proto::kModeSet},
      {FileOp::kMkdir, 0},
      {FileOp::kRemove, proto::kRecursive},
      {FileOp::kRename, proto::kNoReplace},
      {FileOp::kRename, 0},
      {FileOp::kSymlink, 0},
      {FileOp::kSymlink, proto::kParents},
      {FileOp::kSymlink, proto::kParents | proto::kNoSymlinks},
      {FileOp::kChown, 0},
      {FileOp::kChown, proto::kNoSymlinks},
      // kNoSymlinks goes with every op.
      {FileOp::kRead, proto::kNoSymlinks},
      {FileOp::kWrite, proto::kWriteCreate | proto::kWriteTruncate | proto::kParents | proto::kModeSet |
                           proto::kNoSymlinks},
      {FileOp::kWrite, proto::kWriteAtomic | proto::kNoSymlinks},
      {FileOp::kStat, proto::kFollow | proto::kNoSymlinks},
      {FileOp::kList, proto::kNoSymlinks},
      {FileOp::kMkdir, proto::kParents | proto::kNoSymlinks},
      {FileOp::kRemove, proto::kRecursive | proto::kNoSymlinks},
      {FileOp::kRename, proto::kNoReplace | proto::kNoSymlinks},
  };
  for (const auto& [op, flags] : cases) {
    INFO("op " << static_cast<int>(op) << " flags 0x" << std::hex << flags);
    proto::FileOpRequest m = SampleFileOp(op, flags);
    std::string payload = proto::Encode(m);
    auto r = proto::DecodeFileOpRequest(payload);
    INFO((r ? std::string() : r.error().Message()));
    REQUIRE(r.has_value());
    CHECK(r->id == m.id);
    CHECK(r->op == op);
    CHECK(r->uid == 1000);
    CHECK(r->gid == 1001);
    CHECK(r->groups == m.groups);
    CHECK(r->path == m.path);
    CHECK(r->path2 == m.path2);
    CHECK(r->cwd == m.cwd);
    CHECK(r->offset == m.offset);
    CHECK(r->length == m.length);
    CHECK(r->flags == flags);
    CHECK(r->mode == m.mode);
    CHECK(r->owner_uid == m.owner_uid);
    CHECK(r->owner_gid == m.owner_gid);
    ExpectStrictLength(payload, proto::DecodeFileOpRequest);
  }
}

TEST_CASE("proto: FileOpRequest fields are checked", "[proto]") {
  using proto::FileOp;
  auto refused = [](proto::FileOpRequest m, const char* field) {
    auto r = proto::DecodeFileOpRequest(proto::Encode(m));
    REQUIRE_FALSE(r);
    INFO(r.error().Message());
    CHECK(r.error().detail.find(field) != std::string::npos);
    CHECK(r.error().err == 0);
  };
  auto read = SampleFileOp(FileOp::kRead, 0);
  auto write = SampleFileOp(FileOp::kWrite, proto::kWriteCreate);
  SECTION("op out of range") {
    for (uint32_t op : {0u, 11u, 0xffffffffu}) {
      std::string payload = proto::Encode(read);
      memcpy(payload.data() + 4, &op, 4);
      auto r = proto::DecodeFileOpRequest(payload);
      REQUIRE_FALSE(r);
      CHECK(r.error().detail.find("op") != std::string::npos);
    }
  }
  SECTION("flags") {
    auto m = write;
    m.flags |= 1u << 11;
    refused(m, "unknown bits");
    m.flags = 0x80000000u;
    refused(m, "unknown bits");
    m = read;
    m.flags = proto::kFollow;
    refused(m, "not allowed");
    m = SampleFileOp(FileOp::kStat, proto::kRecursive);
    refused(m, "not allowed");
    m = SampleFileOp(FileOp::kList, proto::kParents);
    refused(m, "not allowed");
    m = SampleFileOp(FileOp::kRemove, proto::kNoReplace);
    refused(m, "not allowed");
    m = SampleFileOp(FileOp::kRename, proto::kWriteCreate);
    refused(m, "not allowed");
    m = SampleFileOp(FileOp::kMkdir, proto::kWriteAtomic);
    refused(m, "not allowed");
    for (uint32_t bad : {proto::kRecursive, proto::kModeSet, proto::kFollow, proto::kWriteCreate, proto::kNoReplace}) {
      m = SampleFileOp(FileOp::kSymlink, bad);
      refused(m, "not allowed");
    }
    for (uint32_t bad : {proto::kParents, proto::kRecursive, proto::kModeSet, proto::kFollow}) {
      m = SampleFileOp(FileOp::kChown, bad);
      refused(m, "not allowed");
    }
    m = SampleFileOp(FileOp::kWrite, proto::kWriteExclusive);
    refused(m, "exclusive without create");
    m = SampleFileOp(FileOp::kWrite, proto::kWriteExclusive | proto::kWriteAtomic);  // atomic creates
    CHECK(proto::DecodeFileOpRequest(proto::Encode(m)).has_value());
    m = SampleFileOp(FileOp::kWrite, proto::kWriteAtomic | proto::kWriteAppend | proto::kWriteCreate);
    refused(m, "atomic with append");
  }
  SECTION("mode") {
    auto m = SampleFileOp(FileOp::kWrite, proto::kWriteCreate | proto::kModeSet);
    m.mode = 07777;
    CHECK(proto::DecodeFileOpRequest(proto::Encode(m)).has_value());
    m.mode = 010000;
    refused(m, "mode");
    m.mode = 0xffffffff;
    refused(m, "mode");
    m = write;
    m.mode = 0600;  // without kModeSet
    refused(m, "mode");
  }
  SECTION("paths") {
    auto m = read;
    m.path = "";
    refused(m, "path: empty");
    m = SampleFileOp(FileOp::kRename, 0);
    m.path2 = "";
    refused(m, "path2: empty");
    m = write;
    m.path2 = "/x";
    refused(m, "path2");
    m = read;
    m.cwd = "relative";
    refused(m, "cwd");
    m.cwd = "";
    refused(m, "cwd");
    m = read;
    m.path = "/" + std::string(4094, 'a');  // 4095 bytes: the most
    CHECK(proto::DecodeFileOpRequest(proto::Encode(m)).has_value());
    m.path += "a";
    refused(m, "path");
    m = read;
    m.path = std::string("/etc/passwd\0x", 13);
    refused(m, "NUL");
    m = read;
    m.cwd = std::string(5000, '/');
    refused(m, "cwd");
  }
  SECTION("symlink targets") {
    auto m = SampleFileOp(FileOp::kSymlink, 0);
    m.path2 = "";
    refused(m, "path2: empty");
    m.path2 = std::string(4095, 't');  // PATH_MAX less the NUL: the most
    CHECK(proto::DecodeFileOpRequest(proto::Encode(m)).has_value());
    m.path2 += "t";
    refused(m, "path2");
    m.path2 = std::string("a\0b", 3);
    refused(m, "NUL");
    // Stored as given: absolute, relative and climbing targets all decode.
    for (const char* target : {"/etc/passwd", "..", "../../x", "a//b/"}) {
      m.path2 = target;
      auto r = proto::DecodeFileOpRequest(proto::Encode(m));
      REQUIRE(r.has_value());
      CHECK(r->path2 == target);
    }
  }
  SECTION("chown owners") {
    auto m = SampleFileOp(FileOp::kChown, 0);
    m.owner_uid = 65536;
    refused(m, "owner_uid: out of range");
    m.owner_uid = 0;
    m.owner_gid = 65536;
    refused(m, "owner_gid: out of range");
    m.owner_gid = 0xffffffff;  // chown's "leave unchanged" -1 is not a request
    refused(m, "owner_gid");
    m.owner_uid = m.owner_gid = 0;
    CHECK(proto::DecodeFileOpRequest(proto::Encode(m)).has_value());
    m.owner_uid = m.owner_gid = 65535;
    CHECK(proto::DecodeFileOpRequest(proto::Encode(m)).has_value());
    m.path2 = "/x";
    refused(m, "path2");
    m = SampleFileOp(FileOp::kChown, 0);
    m.mode = 0644;
    refused(m, "mode");
    // Owners on any other op are refused.
    for (FileOp op : {FileOp::kRead, FileOp::kWrite, FileOp::kStat, FileOp::kList, FileOp::kMkdir, FileOp::kRemove,
                      FileOp::kRename, FileOp::kSymlink}) {
      INFO("op " << static_cast<int>(op));
      m = SampleFileOp(op, op == FileOp::kWrite ? proto::kWriteCreate : 0);
      m.owner_uid = 1;
      refused(m, "only for chown");
      m.owner_uid = 0;
      m.owner_gid = 1;
      refused(m, "only for chown");
    }
  }
  SECTION("the layout: owner ids are the last two u32") {
    auto m = SampleFileOp(FileOp::kChown, proto::kNoSymlinks);
    m.owner_uid = 0x1234;
    m.owner_gid = 0xfedc;
    const std::string payload = proto::Encode(m);
    CHECK(payload.substr(payload.size() - 16) == U32(proto::kNoSymlinks) + U32(0) + U32(0x1234) + U32(0xfedc));
    CHECK(payload.substr(0, 8) == U32(99) + U32(9));
  }
  SECTION("offset and length") {
    auto m = write;
    m.offset = 1;
    refused(m, "only for read");
    m = write;
    m.length = 1;
    refused(m, "only for read");
    m = read;
    m.offset = static_cast<uint64_t>(INT64_MAX) + 1;
    refused(m, "offset");
    m = read;
    m.length = UINT64_MAX;
    refused(m, "length");
    m = read;
    m.offset = static_cast<uint64_t>(INT64_MAX);
    m.length = static_cast<uint64_t>(INT64_MAX);
    CHECK(proto::DecodeFileOpRequest(proto::Encode(m)).has_value());
  }
  SECTION("groups and string lengths") {
    auto m = read;
    m.groups.assign(65, 1);
    refused(m, "groups");
    // A path length past the end, and a huge one: no allocation of that size.
    std::string head = U32(1) + U32(1) + U32(0) + U32(0) + U32(0);
    CHECK_FALSE(proto::DecodeFileOpRequest(head + U32(0xffffffff) + "/a"));
    CHECK_FALSE(proto::DecodeFileOpRequest(head + U32(3) + "/a"));
    CHECK_FALSE(proto::DecodeFileOpRequest(U32(1) + U32(1) + U32(0) + U32(0) + U32(0xffffffff)));
  }
}

