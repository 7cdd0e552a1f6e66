// OpenAI's apply_patch tool (the "V4A" patch format of Codex and the Agents
// SDK) as pure code: parse a patch, then compute every file's new content
// through a read callback. Nothing here touches a filesystem; airlockd runs
// the result against a sandbox's files.
//
//   *** Begin Patch
//   *** Add File: docs/new.md          every following line starts with '+'
//   +hello
//   *** Update File: src/app.py
//   *** Move to: src/main.py           optional rename
//   @@ def greet():                    optional anchor line(s), found first
//    context line                      ' ' context, '-' removed, '+' added
//   -print("Hi")
//   +print("Hello")
//   *** End of File                    optional: the hunk ends the file
//   *** Delete File: obsolete.txt
//   *** End Patch
//
// Paths are relative to the workspace and are only normalized lexically here
// (NormalizePatchPath). Symlinks, and whether a path leaves the sandbox once
// they are followed, are the caller's concern: the daemon resolves every path
// inside the sandbox before it reads or writes.
#pragma once

#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/core/error.h"

namespace airlock::tools {

// Refused before parsing: a patch larger than this.
inline constexpr size_t kMaxPatchBytes = 16u << 20;
// Refused while parsing: a hunk whose old side (context + removed) has more lines.
inline constexpr size_t kMaxHunkOldLines = 100'000;

enum class PatchOpKind { kAdd, kUpdate, kDelete };

// One @@ hunk of an Update File.
struct PatchChunk {
  // The text after each "@@ " header line, in order; each is located (one
  // line, fuzzily) after the previous one before old_lines are searched.
  std::vector<std::string> anchors;
  std::vector<std::string> old_lines;  // context and '-' lines, in order
  std::vector<std::string> new_lines;  // context and '+' lines, in order
  // One of ' ', '-', '+' per body line, in order; lets context lines keep the
  // file's own bytes when they matched fuzzily. Empty: new_lines are used as is.
  std::string kinds;
  bool is_end_of_file = false;         // "*** End of File": old_lines end the file
  int line = 0;                        // 1-based line of the hunk in the patch (or diff)
};

struct PatchOp {
  PatchOpKind kind = PatchOpKind::kAdd;
  std::string path;         // normalized (NormalizePatchPath)
  std::string move_to;      // kUpdate only; empty: no rename
  std::string add_content;  // kAdd only: the file's bytes, each line '\n'-terminated
  std::vector<PatchChunk> chunks;  // kUpdate only
  int line = 0;             // 1-based line of the op's header in the patch
  int operation = -1;       // ParseOperations: the op's index (errors say "operations[i]")
};

// Parses "*** Begin Patch" ... "*** End Patch". Lenient where it is harmless:
// blank lines around the patch and between sections, whitespace around the
// markers and paths, CRLF patch text, "*** Update File:" without the space,
// stacked "@@" anchors, a unified-diff "@@ -1,3 +1,4 @@ ctx" header (the
// numbers are ignored), blank lines without '+' inside Add File content.
// Refuses an empty patch, an Update without hunks (unless it only moves),
// patches over kMaxPatchBytes and hunks over kMaxHunkOldLines. Errors read
// "line N: expected ..., got '...'" with the 1-based patch line.
Result<std::vector<PatchOp>> ParsePatch(std::string_view text);

// The structured form of the Agents SDK's apply_patch tool call.
struct StructuredOp {
  std::string type;  // "create_file" | "update_file" | "delete_file"
  std::string path;
  std::string diff;  // update: V4A @@ hunks; create: '+'-prefixed lines; delete: ignored
  std::string move_to;  // update only: rename to this path ("" keeps it)
};

// Turns structured operations into PatchOps (create_file's lines each become a
// '\n'-terminated line, like Add File). Errors name the operation's index,
// field and diff line.
Result<std::vector<PatchOp>> ParseOperations(const std::vector<StructuredOp>& ops);

// A patch path made canonical: relative to the workspace, "a/./b//c" ->
// "a/b/c". Refuses (naming the path) an empty path, an absolute one, any ".."
// component, a trailing '/', NUL or other control characters, and a path
// longer than PATH_MAX or with a component longer than NAME_MAX.
Result<std::string> NormalizePatchPath(std::string_view path);

// One file's outcome. Applying a list in any order yields the patched tree:
// each path appears once, and a moved_from path appears nowhere else.
struct FileChange {
  std::string path;
  std::optional<std::string> content;  // nullopt: delete path
  std::string moved_from;  // non-empty: path replaces this file (rename, then write)
  bool created = false;    // path did not exist before the patch
};

// read(path): the file's bytes, std::nullopt if it doesn't exist, or an error
// (passed on unchanged). Called at most once per path.
using ReadFileFn = std::function<Result<std::optional<std::string>>(const std::string& path)>;

// Computes every change before anything is written: all hunks apply or the
// call fails. Ops run in order against a virtual tree, so two ops on one path
// compose (Update twice, Delete then Add, Add then Update). Add refuses an
// existing file, Update and Delete a missing one, Move to an existing
// destination. Context is found forward from the previous hunk: exact, then
// ignoring trailing whitespace, then leading and trailing, then also mapping
// typographic dashes, quotes and spaces to ASCII (Codex's seek_sequence), in
// linear time. A CRLF file keeps CRLF; a file's missing final newline stays
// missing (a file that was empty gets one). Errors name the file, the hunk and
// quote the context line that did not match.
Result<std::vector<FileChange>> ApplyPatch(const std::vector<PatchOp>& ops, const ReadFileFn& read);

// The model-facing summary: "Success. Updated the following files:\nA x\nM y\nD z\n"
// (a move lists its destination as M).
std::string SummarizeChanges(const std::vector<FileChange>& changes);

}  // namespace airlock::tools
