#include "runtime/proto/fileops.h"

#include "runtime/proto/wire.h"

namespace airlock::proto {
namespace {

// The fixed part of a record after its length: type, mode, uid, gid, size,
// mtime_ns and the two string lengths.
constexpr size_t kFixedBody = 4 * 4 + 8 + 8 + 4 + 4;
constexpr size_t kMaxBody = kFixedBody + kMaxRecordName + kMaxLinkTarget;

Result<StatRecord> DecodeBody(std::string_view body, const std::string& what) {
  wire::Reader r(body, what.c_str());
  StatRecord m;
  uint32_t type = TRY(r.U32("type"));
  if (type > static_cast<uint32_t>(FileType::kSymlink)) return r.Bad("type", "unknown (" + std::to_string(type) + ")");
  m.type = static_cast<FileType>(type);
  m.mode = TRY(r.U32("mode"));
  if (m.mode > 07777) return r.Bad("mode", "more than permission bits");
  m.uid = TRY(r.U32("uid"));
  m.gid = TRY(r.U32("gid"));
  m.size = TRY(r.U64("size"));
  m.mtime_ns = TRY(r.I64("mtime_ns"));
  m.name = TRY(r.Str("name", kMaxRecordName));
  m.link_target = TRY(r.Str("link_target", kMaxLinkTarget));
  TRY(r.End());
  // A name is one path component: a consumer may join it to the listed
  // directory, so nothing that climbs or descends.
  if (m.name.find('/') != std::string::npos) return r.Bad("name", "contains '/'");
  if (m.name == "." || m.name == "..") return r.Bad("name", "is \"" + m.name + "\"");
  if (m.type != FileType::kSymlink && !m.link_target.empty()) return r.Bad("link_target", "set on a non-symlink");
  return m;
}

}  // namespace

std::string EncodeStatRecord(const StatRecord& m) {
  wire::Writer body;
  body.U32(static_cast<uint32_t>(m.type));
  body.U32(m.mode);
  body.U32(m.uid);
  body.U32(m.gid);
  body.U64(m.size);
  body.I64(m.mtime_ns);
  body.Str(m.name);
  body.Str(m.link_target);
  std::string b = body.Take();
  wire::Writer out;
  out.U32(static_cast<uint32_t>(b.size()));
  std::string framed = out.Take();
  framed += b;
  return framed;
}

Result<std::vector<StatRecord>> DecodeStatRecords(std::string_view data, size_t max_records) {
  std::vector<StatRecord> records;
  while (!data.empty()) {
    const std::string what = "stat record " + std::to_string(records.size());
    if (records.size() >= max_records)
      return Fail(what, "more than " + std::to_string(max_records) + " records");
    wire::Reader frame(data, what.c_str());
    uint32_t length = TRY(frame.U32("length"));
    if (length < kFixedBody || length > kMaxBody)
      return frame.Bad("length", "out of range (" + std::to_string(length) + ")");
    if (length > data.size() - 4) return frame.Bad("length", "past the end of the stream (truncated)");
    records.push_back(TRY(DecodeBody(data.substr(4, length), what)));
    data.remove_prefix(4 + length);
  }
  return records;
}

}  // namespace airlock::proto
