#include "harness/daemon/patch.h"

#include <algorithm>
#include <atomic>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "harness/daemon/files.h"
#include "harness/tools/apply_patch.h"

namespace airlock::daemon {

namespace {

// What one file may hold for apply_patch (read whole into the daemon).
constexpr size_t kMaxPatchedFile = 64u << 20;
// File operations in flight at once: each is a process in the sandbox, and
// a 50-file patch is 100 of them.
constexpr size_t kParallelOps = 4;

// Runs fn(i) for i in [0, n) on up to kParallelOps threads.
template <typename Fn>
void ForEachParallel(size_t n, const Fn& fn) {
  std::atomic<size_t> next{0};
  auto worker = [&] {
    for (size_t i; (i = next++) < n;) fn(i);
  };
  std::vector<std::thread> threads;
  for (size_t t = 1; t < std::min(n, kParallelOps); ++t) threads.emplace_back(worker);
  worker();
  for (auto& t : threads) t.join();
}

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
    for (const auto& o : request.operations()) structured.push_back({o.type(), o.path(), o.diff(), o.move_to()});
    auto parsed = tools::ParseOperations(structured);
    if (!parsed) return BadField("apply_patch.operations", parsed.error().Message());
    ops = std::move(*parsed);
  }
  PatchIo io{live, TRY(ResolveIdentity(live, "apply_patch.user", request.user()))};

  // Everything read is kept: the applier's input, and what a failed write
  // puts back. Every path the ops name is read up front, in parallel.
  std::vector<std::string> names;
  for (const auto& op : ops) {
    names.push_back(op.path);
    if (!op.move_to.empty()) names.push_back(op.move_to);
  }
  std::sort(names.begin(), names.end());
  names.erase(std::unique(names.begin(), names.end()), names.end());
  std::vector<ApiResult<std::optional<std::string>>> fetched(names.size(), std::optional<std::string>());
  ForEachParallel(names.size(), [&](size_t i) { fetched[i] = io.Read(names[i]); });
  std::map<std::string, std::optional<std::string>> before;
  for (size_t i = 0; i < names.size(); ++i) {
    if (!fetched[i]) return std::unexpected(fetched[i].error());
    before[names[i]] = std::move(*fetched[i]);
  }
  auto read = [&](const std::string& path) -> Result<std::optional<std::string>> {
    auto it = before.find(path);
    if (it == before.end()) return Fail("apply_patch", "read of " + path + ", which no operation names");
    return it->second;
  };
  auto changes = tools::ApplyPatch(ops, read);
  if (!changes) return BadField(text ? "apply_patch.patch" : "apply_patch.operations", changes.error().Message());

  // The writes, in parallel: each path appears once among the changes, and
  // a move's source nowhere else. If any fails, every path is put back as
  // it was read (a put-back of one never written is a no-op rewrite).
  std::vector<std::optional<ApiError>> failed(changes->size());
  ForEachParallel(changes->size(), [&](size_t i) {
    const auto& c = (*changes)[i];
    auto done = c.content ? io.Write(c.path, *c.content) : io.Remove(c.path);
    if (done && !c.moved_from.empty()) done = io.Remove(c.moved_from);
    if (!done) failed[i] = done.error();
  });
  for (const auto& f : failed) {
    if (!f) continue;
    for (const auto& c : *changes) {
      io.Restore(c.path, before[c.path]);
      if (!c.moved_from.empty()) io.Restore(c.moved_from, before[c.moved_from]);
    }
    return ApiFail(f->code, "apply_patch: " + f->message + " (nothing of the patch was kept)");
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
