// libFuzzer target for harness/tools/apply_patch: parses the input as a V4A
// patch (or, after a leading 0x01 byte, as NUL-separated structured
// operations) and applies it to a small in-memory tree, then checks the
// promises the daemon relies on. Built by tools/fuzz/build.sh.
#include <cstddef>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "harness/tools/apply_patch.h"

namespace {

using airlock::Result;
using namespace airlock::tools;

const std::map<std::string, std::string>& Tree() {
  static const std::map<std::string, std::string> tree = {
      {"a.txt", "alpha\nbeta\ngamma\n\ndelta\n"},
      {"src/m.py", "def a():\n    return 1\n\ndef b():\n    return 1\n"},
      {"crlf.txt", "one\r\ntwo\r\nthree\r\n"},
      {"nonl.txt", "x\ny\nz"},
      {"uni.md", "\xE2\x80\x9Cquoted\xE2\x80\x9D \xE2\x80\x94 dash\n\xC2\xA0nbsp\n日本語\n"},
      {"empty", ""},
      {"mixed.txt", "a\r\nb\nc\r\n"},
  };
  return tree;
}

bool IsCrlfOnly(const std::string& s) {
  bool any = false;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '\n') continue;
    if (i == 0 || s[i - 1] != '\r') return false;
    any = true;
  }
  return any;
}

void Check(bool ok) {
  if (!ok) __builtin_trap();
}

std::vector<StructuredOp> SplitStructured(std::string_view in) {
  std::vector<std::string> fields;
  size_t start = 0;
  while (start <= in.size()) {
    size_t z = in.find('\0', start);
    if (z == std::string_view::npos) z = in.size();
    fields.emplace_back(in.substr(start, z - start));
    start = z + 1;
  }
  static const char* kTypes[] = {"create_file", "update_file", "delete_file", "bogus"};
  std::vector<StructuredOp> ops;
  for (size_t i = 0; i < fields.size(); i += 3) {
    StructuredOp op;
    op.type = fields[i].empty() ? "" : kTypes[static_cast<unsigned char>(fields[i][0]) % 4];
    op.path = i + 1 < fields.size() ? fields[i + 1] : "";
    op.diff = i + 2 < fields.size() ? fields[i + 2] : "";
    ops.push_back(std::move(op));
  }
  return ops;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  Result<std::vector<PatchOp>> ops = !in.empty() && in[0] == '\x01' ? ParseOperations(SplitStructured(in.substr(1)))
                                                                     : ParsePatch(in);
  if (!ops) {
    Check(!ops.error().detail.empty());
    return 0;
  }
  for (const PatchOp& op : *ops) {
    auto norm = NormalizePatchPath(op.path);
    Check(norm && *norm == op.path);
    for (const PatchChunk& c : op.chunks) Check(c.old_lines.size() <= kMaxHunkOldLines);
  }
  const auto& tree = Tree();
  std::set<std::string> replaced;  // paths whose content may come from elsewhere
  for (const PatchOp& op : *ops) {
    if (op.kind == PatchOpKind::kAdd) replaced.insert(op.path);
    if (!op.move_to.empty()) replaced.insert(op.move_to);
  }
  auto changes = ApplyPatch(*ops, [&](const std::string& path) -> Result<std::optional<std::string>> {
    auto it = tree.find(path);
    if (it == tree.end()) return std::optional<std::string>();
    return std::optional<std::string>(it->second);
  });
  if (!changes) {
    Check(!changes.error().detail.empty());
    return 0;
  }
  // Each path once; a rename's source nowhere else and existing before.
  std::set<std::string> seen;
  for (const FileChange& c : *changes) {
    Check(seen.insert(c.path).second);
    if (!c.moved_from.empty()) {
      Check(seen.insert(c.moved_from).second);
      Check(tree.count(c.moved_from) == 1);
      Check(c.content.has_value());
    }
    if (!c.content) Check(tree.count(c.path) == 1);
    if (c.created) Check(tree.count(c.path) == 0);
    // A CRLF file that stays in place stays CRLF.
    auto it = tree.find(c.path);
    if (c.content && it != tree.end() && !c.created && !replaced.count(c.path) &&
        IsCrlfOnly(it->second) && c.content->find('\n') != std::string::npos)
      Check(IsCrlfOnly(*c.content));
  }
  Check(!SummarizeChanges(*changes).empty());
  return 0;
}
