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

namespace {

std::string Framed(std::string body) {
  wire::Writer out;
  out.U32(static_cast<uint32_t>(body.size()));
  return out.Take() + body;
}

// The body of the frame at the front of `data`, or ENODATA when it isn't
// all there yet.
Result<std::string_view> Frame(std::string_view data, size_t max_body, const char* what) {
  if (data.size() < 4) return std::unexpected(Error{ENODATA, what, "incomplete"});
  wire::Reader r(data, what);
  uint32_t length = TRY(r.U32("length"));
  if (length > max_body) return r.Bad("length", "out of range (" + std::to_string(length) + ")");
  if (length > data.size() - 4) return std::unexpected(Error{ENODATA, what, "incomplete"});
  return data.substr(4, length);
}

bool SafeRelative(std::string_view p) {
  if (p.empty() || p.front() == '/' || p.back() == '/') return false;
  for (size_t start = 0; start <= p.size();) {
    size_t end = p.find('/', start);
    if (end == std::string_view::npos) end = p.size();
    std::string_view part = p.substr(start, end - start);
    if (part.empty() || part == "." || part == "..") return false;
    start = end + 1;
  }
  return true;
}

}  // namespace

std::string EncodeSearchSpec(const SearchSpec& m) {
  wire::Writer w;
  w.U32(m.flags);
  w.U32(m.max_results);
  w.U32(m.max_line_bytes);
  w.U32(m.timeout_ms);
  w.Str(m.pattern);
  w.Strs(m.globs);
  return Framed(w.Take());
}

Result<SearchSpec> DecodeSearchSpec(std::string_view data, size_t* used) {
  const size_t max_body = 16 + 4 + kMaxSearchPattern + 4 + kMaxSearchGlobs * (4 + kMaxSearchGlob);
  std::string_view body = TRY(Frame(data, max_body, "search spec"));
  wire::Reader r(body, "search spec");
  SearchSpec m;
  m.flags = TRY(r.U32("flags"));
  m.max_results = TRY(r.U32("max_results"));
  m.max_line_bytes = TRY(r.U32("max_line_bytes"));
  m.timeout_ms = TRY(r.U32("timeout_ms"));
  m.pattern = TRY(r.Str("pattern", kMaxSearchPattern));
  m.globs = TRY(r.Strs("globs", kMaxSearchGlobs));
  TRY(r.End());
  if (m.flags & ~kSearchFlagsMask) return r.Bad("flags", "unknown bits");
  if (m.max_results == 0 || m.max_results > kMaxSearchResults) return r.Bad("max_results", "out of range");
  if (m.max_line_bytes == 0 || m.max_line_bytes > kMaxSearchLine) return r.Bad("max_line_bytes", "out of range");
  if (m.timeout_ms == 0 || m.timeout_ms > 600000) return r.Bad("timeout_ms", "out of range");
  for (const auto& g : m.globs)
    if (g.empty() || g.size() > kMaxSearchGlob) return r.Bad("globs", "an empty or over-long glob");
  *used = 4 + body.size();
  return m;
}

std::string EncodeSearchRecord(const SearchRecord& m) {
  wire::Writer w;
  w.U32(static_cast<uint32_t>(m.kind));
  switch (m.kind) {
    case SearchRecord::Kind::kMatch:
      w.Str(m.path);
      w.U64(m.line);
      w.Str(m.text);
      break;
    case SearchRecord::Kind::kError:
      w.Str(m.text);
      break;
    case SearchRecord::Kind::kDone:
      w.U64(m.files_searched);
      w.U32((m.truncated ? 1u : 0u) | (m.timed_out ? 2u : 0u));
      break;
  }
  return Framed(w.Take());
}

Result<void> DecodeSearchRecords(std::string_view* data, size_t max_records, std::vector<SearchRecord>* out) {
  constexpr size_t kMaxBody = 4 + 4 + 4096 + 8 + 4 + kMaxSearchLine;
  std::string what;
  while (!data->empty()) {
    what = "search record " + std::to_string(out->size());
    auto frame = Frame(*data, kMaxBody, what.c_str());
    if (!frame && frame.error().err == ENODATA) return {};
    if (!frame) return std::unexpected(frame.error());
    if (out->size() >= max_records) return Fail(what, "more than " + std::to_string(max_records) + " records");
    wire::Reader r(*frame, what.c_str());
    SearchRecord m;
    uint32_t kind = TRY(r.U32("kind"));
    switch (kind) {
      case 1:
        m.path = TRY(r.Str("path", 4095));
        m.line = TRY(r.U64("line"));
        m.text = TRY(r.Str("text", kMaxSearchLine));
        if (!SafeRelative(m.path)) return r.Bad("path", "not a plain relative path");
        break;
      case 2:
        m.text = TRY(r.Str("text", 4096));
        break;
      case 3: {
        m.files_searched = TRY(r.U64("files_searched"));
        uint32_t bits = TRY(r.U32("flags"));
        if (bits > 3) return r.Bad("flags", "unknown bits");
        m.truncated = bits & 1;
        m.timed_out = bits & 2;
        break;
      }
      default:
        return r.Bad("kind", "unknown (" + std::to_string(kind) + ")");
    }
    TRY(r.End());
    m.kind = static_cast<SearchRecord::Kind>(kind);
    out->push_back(std::move(m));
    data->remove_prefix(4 + frame->size());
  }
  return {};
}

}  // namespace airlock::proto
