#include "harness/daemon/search.h"

#include <cerrno>

#include "harness/daemon/files.h"
#include "harness/tools/text.h"
#include "runtime/proto/fileops.h"

namespace airlock::daemon {
namespace {

constexpr uint32_t kDefaultResults = 1000;
constexpr uint32_t kDefaultLineBytes = 500;
constexpr uint64_t kDefaultTimeoutMs = 30000;
constexpr uint64_t kMaxTimeoutMs = 600000;

ApiResult<proto::SearchSpec> Spec(const v1::SearchRequest& req) {
  proto::SearchSpec spec;
  if (req.pattern().size() > proto::kMaxSearchPattern)
    return BadField("search.pattern", "longer than " + std::to_string(proto::kMaxSearchPattern) + " bytes");
  if (req.pattern().find('\0') != std::string::npos) return BadField("search.pattern", "contains NUL");
  spec.pattern = req.pattern();
  if (static_cast<size_t>(req.globs_size()) > proto::kMaxSearchGlobs)
    return BadField("search.globs", "more than " + std::to_string(proto::kMaxSearchGlobs));
  for (int i = 0; i < req.globs_size(); ++i) {
    const std::string& g = req.globs(i);
    const std::string field = "search.globs[" + std::to_string(i) + "]";
    if (g.empty() || g == "!") return BadField(field, "empty");
    if (g.size() > proto::kMaxSearchGlob) return BadField(field, "longer than 4096 bytes");
    if (g.find('\0') != std::string::npos) return BadField(field, "contains NUL");
    spec.globs.push_back(g);
  }
  if (req.fixed_strings() && req.pattern().empty()) return BadField("search.fixed_strings", "set without a pattern");
  if (req.files_with_matches() && req.pattern().empty())
    return BadField("search.files_with_matches", "set without a pattern (an empty pattern lists files)");
  spec.flags = (req.ignore_case() ? proto::kSearchIgnoreCase : 0) |
               (req.fixed_strings() ? proto::kSearchFixedStrings : 0) |
               (req.files_with_matches() ? proto::kSearchFilesWithMatches : 0) |
               (req.hidden() ? proto::kSearchHidden : 0) | (req.no_ignore() ? proto::kSearchNoIgnore : 0);
  spec.max_results = req.max_results() == 0 ? kDefaultResults : req.max_results();
  if (spec.max_results > proto::kMaxSearchResults)
    return BadField("search.max_results", "at most " + std::to_string(proto::kMaxSearchResults));
  spec.max_line_bytes = req.max_line_bytes() == 0 ? kDefaultLineBytes : req.max_line_bytes();
  if (spec.max_line_bytes > proto::kMaxSearchLine)
    return BadField("search.max_line_bytes", "at most " + std::to_string(proto::kMaxSearchLine));
  uint64_t timeout = req.timeout_ms() == 0 ? kDefaultTimeoutMs : req.timeout_ms();
  if (timeout > kMaxTimeoutMs) return BadField("search.timeout_ms", "at most " + std::to_string(kMaxTimeoutMs));
  spec.timeout_ms = static_cast<uint32_t>(timeout);
  return spec;
}

}  // namespace

ApiResult<v1::SearchResponse> SearchInSandbox(Live& live, const v1::SearchRequest& req) {
  proto::SearchSpec spec = TRY(Spec(req));
  proto::FileOpRequest op;
  op.op = proto::FileOp::kSearch;
  op.path = req.path().empty() ? live.workspace : TRY(SandboxPath(live, "search.path", req.path()));
  Identity who = TRY(ResolveIdentity(live, "search.user", req.user()));
  op.uid = who.uid;
  op.gid = who.gid;
  op.cwd = live.workspace;

  const std::string what = "search " + op.path;
  const std::string encoded = proto::EncodeSearchSpec(spec);
  bool sent = false;
  std::string pending;
  std::vector<proto::SearchRecord> records;
  std::optional<Error> malformed;
  FileOpIo io;
  io.source = [&](std::string* chunk) {
    if (sent) return false;
    sent = true;
    *chunk = encoded;
    return true;
  };
  // Whatever init sends is bounded: the matches it may report and one end record.
  io.sink = [&](std::string_view data) {
    pending.append(data);
    std::string_view rest = pending;
    auto ok = proto::DecodeSearchRecords(&rest, size_t{spec.max_results} + 1, &records);
    if (!ok) {
      malformed = ok.error();
      return false;
    }
    pending.erase(0, pending.size() - rest.size());
    return pending.size() <= proto::kMaxSearchLine + 8192;
  };
  TRY(RunFileOp(live, op, io, what));
  auto bad = [&](const std::string& why) { return ApiFail(Code::kInternal, what + ": airlock-init sent " + why); };
  if (malformed) return bad("a malformed record (" + malformed->Message() + ")");
  if (!pending.empty() || records.empty()) return bad("a truncated result");
  const proto::SearchRecord& last = records.back();
  if (last.kind == proto::SearchRecord::Kind::kError) {
    if (records.size() != 1) return bad("matches before an error");
    // "pattern: ..." or "globs[N]: ...": the request's field, then why.
    const std::string text = tools::ValidUtf8(last.text);
    const size_t colon = text.find(": ");
    if (colon == std::string::npos) return BadField("search", text);
    return BadField("search." + text.substr(0, colon), text.substr(colon + 2));
  }
  if (last.kind != proto::SearchRecord::Kind::kDone) return bad("no end record");
  v1::SearchResponse out;
  for (size_t i = 0; i + 1 < records.size(); ++i) {
    const auto& r = records[i];
    if (r.kind != proto::SearchRecord::Kind::kMatch) return bad("a second end record");
    auto* m = out.add_matches();
    m->set_path(tools::ValidUtf8(r.path));
    m->set_line(r.line);
    m->set_text(tools::ValidUtf8(r.text));
  }
  out.set_truncated(last.truncated);
  out.set_timed_out(last.timed_out);
  out.set_files_searched(last.files_searched);
  return out;
}

}  // namespace airlock::daemon
