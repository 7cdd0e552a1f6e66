#include "harness/daemon/instructions.h"

#include <string>
#include <vector>

#include "harness/daemon/files.h"
#include "harness/tools/apply_patch.h"

namespace airlock::daemon {

namespace {

constexpr size_t kMaxInstructionFile = 1u << 20;
constexpr char kFileName[] = "AGENTS.md";

}  // namespace

ApiResult<v1::InstructionsResponse> GatherInstructions(Live& live, const v1::InstructionsRequest& request) {
  // The directory, relative to the workspace and normalized (no "..").
  std::string cwd = request.cwd();
  const std::string root = live.workspace;
  if (cwd == root) cwd.clear();
  else if (cwd.starts_with(root + "/")) cwd = cwd.substr(root.size() + 1);
  else if (cwd.starts_with("/")) return BadField("instructions.cwd", "\"" + cwd + "\" is not in the workspace " + root);
  std::string relative;
  if (!cwd.empty() && cwd != ".") {
    auto normalized = tools::NormalizePatchPath(cwd);
    if (!normalized) return BadField("instructions.cwd", normalized.error().detail);
    relative = *normalized;
  }
  Identity who = TRY(ResolveIdentity(live, "instructions.user", request.user()));
  // root, a, a/b, ... down to cwd.
  std::vector<std::string> dirs{""};
  for (size_t at = relative.find('/'); !relative.empty(); at = relative.find('/', at + 1)) {
    dirs.push_back(relative.substr(0, at));
    if (at == std::string::npos) break;
  }
  v1::InstructionsResponse out;
  for (const auto& d : dirs) {
    const std::string name = d.empty() ? kFileName : d + "/" + kFileName;
    proto::FileOpRequest op;
    op.op = proto::FileOp::kRead;
    op.path = root + "/" + name;
    op.uid = who.uid;
    op.gid = who.gid;
    op.cwd = root;
    op.flags = proto::kNoSymlinks;
    auto content = FileOpToString(live, op, kMaxInstructionFile, "read " + name);
    if (!content && content.error().code == Code::kNotFound) continue;
    if (!content && (content.error().code == Code::kFailedPrecondition)) continue;  // a symlink (ELOOP): not followed
    if (!content) return std::unexpected(content.error());
    auto* f = out.add_files();
    f->set_path(name);
    f->set_content(std::move(*content));
  }
  return out;
}

}  // namespace airlock::daemon
