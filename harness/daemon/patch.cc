#include "harness/daemon/patch.h"

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "harness/daemon/files.h"
#include "harness/tools/apply_patch.h"

namespace airlock::daemon {

namespace {

// What one file may hold for apply_patch (read whole into the daemon).
constexpr size_t kMaxPatchedFile = 64u << 20;

struct PatchIo {
  Live& live;
  Identity who;

  std::string Path(const std::string& relative) const { return live.workspace + "/" + relative; }

  proto::FileOpRequest Op(proto::FileOp kind, const std::string& relative, uint32_t flags) const {
    proto::FileOpRequest op;
    op.op = kind;
    op.path = Path(relative);
    op.uid = who.uid;
    op.gid = who.gid;
    op.cwd = live.workspace;
    op.flags = flags | proto::kNoSymlinks;
    return op;
  }

  ApiResult<std::optional<std::string>> Read(const std::string& relative) const {
    auto data = FileOpToString(live, Op(proto::FileOp::kRead, relative, 0), kMaxPatchedFile, "read " + relative);
    if (!data && data.error().code == Code::kNotFound) return std::nullopt;
    if (!data) return std::unexpected(data.error());
    return std::move(*data);
  }

  ApiResult<void> Write(const std::string& relative, const std::string& content) const {
    return FileOpFromString(live, Op(proto::FileOp::kWrite, relative, proto::kWriteAtomic | proto::kParents), content,
                            "write " + relative);
  }

  ApiResult<void> Remove(const std::string& relative) const {
    return RunFileOp(live, Op(proto::FileOp::kRemove, relative, 0), {}, "remove " + relative);
  }

  // Puts `relative` back as it was: its old content, or gone.
  void Restore(const std::string& relative, const std::optional<std::string>& before) const {
    auto put = before ? Write(relative, *before) : Remove(relative);
    if (!put) fprintf(stderr, "airlockd: apply_patch in %s: putting %s back: %s\n", live.id.c_str(), relative.c_str(),
                      put.error().message.c_str());
  }
};

}  // namespace

ApiResult<v1::ApplyPatchResponse> ApplyPatchInSandbox(Live& live, const v1::ApplyPatchRequest& request) {
  const bool text = !request.patch().empty();
  if (text == (request.operations_size() > 0))
    return BadField("apply_patch", "give exactly one of patch (V4A text) and operations");
  std::vector<tools::PatchOp> ops;
  if (text) {
    auto parsed = tools::ParsePatch(request.patch());
    if (!parsed) return BadField("apply_patch.patch", parsed.error().Message());
    ops = std::move(*parsed);
  } else {
    std::vector<tools::StructuredOp> structured;
    for (const auto& o : request.operations()) structured.push_back({o.type(), o.path(), o.diff()});
    auto parsed = tools::ParseOperations(structured);
    if (!parsed) return BadField("apply_patch.operations", parsed.error().Message());
    ops = std::move(*parsed);
  }
  PatchIo io{live, TRY(ResolveIdentity(live, "apply_patch.user", request.user()))};

  // Everything read is kept: the applier's input, and what a failed write
  // puts back.
  std::map<std::string, std::optional<std::string>> before;
  std::optional<ApiError> read_failed;
  auto read = [&](const std::string& path) -> Result<std::optional<std::string>> {
    auto data = io.Read(path);
    if (!data) {
      read_failed = data.error();
      return Fail("read", data.error().message);
    }
    before[path] = *data;
    return std::move(*data);
  };
  auto changes = tools::ApplyPatch(ops, read);
  if (!changes) {
    if (read_failed) return std::unexpected(*read_failed);
    return BadField(text ? "apply_patch.patch" : "apply_patch.operations", changes.error().Message());
  }

  // The writes. Undo entries in the order they were made, put back in
  // reverse.
  std::vector<std::string> touched;
  auto undo = [&](const ApiError& e) -> ApiResult<v1::ApplyPatchResponse> {
    for (auto it = touched.rbegin(); it != touched.rend(); ++it) io.Restore(*it, before[*it]);
    return ApiFail(e.code, "apply_patch: " + e.message + " (nothing of the patch was kept)");
  };
  for (const auto& c : *changes) {
    if (c.content) {
      if (!before.count(c.path)) before[c.path] = std::nullopt;  // created without a read
      touched.push_back(c.path);
      if (auto w = io.Write(c.path, *c.content); !w) return undo(w.error());
    } else {
      touched.push_back(c.path);
      if (auto r = io.Remove(c.path); !r) return undo(r.error());
    }
    if (!c.moved_from.empty()) {
      touched.push_back(c.moved_from);
      if (auto r = io.Remove(c.moved_from); !r) return undo(r.error());
    }
  }
  v1::ApplyPatchResponse out;
  for (const auto& c : *changes) {
    auto* f = out.add_files();
    f->set_path(c.path);
    // A moved file was updated (at its new path), not added.
    f->set_change(!c.content ? "deleted" : c.created && c.moved_from.empty() ? "added" : "updated");
    f->set_moved_from(c.moved_from);
  }
  out.set_summary(tools::SummarizeChanges(*changes));
  return out;
}

}  // namespace airlock::daemon
