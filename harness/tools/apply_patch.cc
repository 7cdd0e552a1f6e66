#include "harness/tools/apply_patch.h"

#include <algorithm>
#include <climits>
#include <cstdint>
#include <deque>
#include <map>
#include <span>
#include <unordered_map>
#include <utility>

namespace airlock::tools {
namespace {

std::unexpected<Error> Bad(std::string detail) { return Fail("apply_patch", std::move(detail)); }

// A line (or path) for an error message: quoted, control bytes escaped, long
// lines cut at a UTF-8 boundary so the message stays one readable line.
std::string Quote(std::string_view s) {
  constexpr size_t kMax = 160;
  size_t n = s.size();
  if (n > kMax) {
    n = kMax;
    while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
  }
  std::string out = "'";
  for (size_t i = 0; i < n; ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 0x20 || c == 0x7f) {
      static constexpr char kHex[] = "0123456789abcdef";
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 15];
    } else {
      out += static_cast<char>(c);
    }
  }
  if (n < s.size()) out += "...";
  out += "'";
  return out;
}

bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v'; }

std::string_view RTrim(std::string_view s) {
  while (!s.empty() && IsSpace(s.back())) s.remove_suffix(1);
  return s;
}

std::string_view Trim(std::string_view s) {
  s = RTrim(s);
  while (!s.empty() && IsSpace(s.front())) s.remove_prefix(1);
  return s;
}

// Patch text split on '\n' with one trailing '\r' dropped per line (a patch
// written with CRLF); a final newline does not start another line.
std::vector<std::string_view> SplitPatchLines(std::string_view text) {
  std::vector<std::string_view> lines;
  size_t start = 0;
  while (start < text.size()) {
    size_t nl = text.find('\n', start);
    size_t end = nl == std::string_view::npos ? text.size() : nl;
    std::string_view line = text.substr(start, end - start);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    lines.push_back(line);
    if (nl == std::string_view::npos) break;
    start = nl + 1;
  }
  return lines;
}

// The rest of a trimmed marker line after `marker` ("*** Add File:"), trimmed;
// nullopt if the line is another marker.
std::optional<std::string_view> AfterMarker(std::string_view trimmed, std::string_view marker) {
  if (!trimmed.starts_with(marker)) return std::nullopt;
  return Trim(trimmed.substr(marker.size()));
}

std::string At(std::string_view label, size_t index) { return std::string(label) + " " + std::to_string(index + 1); }

// "-12,7 +12,8 @@ def f():" (a unified-diff header after "@@ "): the text
// after the second "@@", or nullopt if `anchor` is not such a header.
std::optional<std::string_view> UnifiedHeaderContext(std::string_view anchor) {
  size_t i = 0;
  auto digits = [&] {
    size_t s = i;
    while (i < anchor.size() && anchor[i] >= '0' && anchor[i] <= '9') ++i;
    return i > s;
  };
  auto range = [&](char sign) {
    if (i >= anchor.size() || anchor[i] != sign) return false;
    ++i;
    if (!digits()) return false;
    if (i < anchor.size() && anchor[i] == ',') {
      ++i;
      if (!digits()) return false;
    }
    return true;
  };
  if (!range('-') || i >= anchor.size() || anchor[i++] != ' ' || !range('+')) return std::nullopt;
  std::string_view rest = anchor.substr(i);
  if (!rest.starts_with(" @@")) return std::nullopt;
  return Trim(rest.substr(3));
}

// Parses @@ hunks from lines[i] on, stopping before a line starting with '*'
// (a file header) or at `end`. The first hunk may omit its "@@" header, as
// in the reference. `label` prefixes line numbers in errors.
Result<std::vector<PatchChunk>> ParseChunks(std::span<const std::string_view> lines, size_t& i, size_t end,
                                            std::string_view label) {
  std::vector<PatchChunk> chunks;
  while (i < end) {
    std::string_view first = lines[i];
    if (Trim(first).empty()) {  // blank lines between the header and the first hunk
      ++i;
      continue;
    }
    if (first.starts_with('*')) break;
    PatchChunk chunk;
    chunk.line = static_cast<int>(i + 1);
    bool header = false;
    while (i < end && lines[i].starts_with("@@")) {
      std::string_view rest = lines[i].substr(2);
      if (!rest.empty() && rest[0] != ' ' && rest[0] != '\t')
        return Bad(At(label, i) + ": expected '@@' or '@@ <anchor line>', got " + Quote(lines[i]));
      std::string_view anchor = rest.empty() ? rest : rest.substr(1);
      if (auto ctx = UnifiedHeaderContext(Trim(anchor))) anchor = *ctx;
      if (!Trim(anchor).empty()) chunk.anchors.emplace_back(anchor);
      header = true;
      ++i;
    }
    if (!header && !chunks.empty())
      return Bad(At(label, i) + ": expected '@@' to start the next hunk, got " + Quote(lines[i]));
    size_t body = 0;
    while (i < end) {
      std::string_view line = lines[i];
      if (line.starts_with("@@")) break;
      if (Trim(line) == "*** End of File") {
        if (body == 0) return Bad(At(label, i) + ": '*** End of File' ends a hunk with no lines");
        chunk.is_end_of_file = true;
        ++i;
        break;
      }
      if (line.starts_with('*')) break;
      if (line.empty()) {  // an empty context line whose leading space was lost
        chunk.old_lines.emplace_back();
        chunk.new_lines.emplace_back();
        chunk.kinds += ' ';
      } else if (line[0] == ' ') {
        chunk.old_lines.emplace_back(line.substr(1));
        chunk.new_lines.emplace_back(line.substr(1));
        chunk.kinds += ' ';
      } else if (line[0] == '-') {
        chunk.old_lines.emplace_back(line.substr(1));
        chunk.kinds += '-';
      } else if (line[0] == '+') {
        chunk.new_lines.emplace_back(line.substr(1));
        chunk.kinds += '+';
      } else if (!line.starts_with("\\ ")) {  // "\ No newline at end of file" is ignored
        return Bad(At(label, i) + ": expected a hunk line starting with ' ' (context), '-' or '+', " +
                   "an '@@' header or a '*** ' file header, got " + Quote(line));
      }
      if (chunk.old_lines.size() > kMaxHunkOldLines)
        return Bad(At(label, chunk.line - 1) + ": hunk has more than " + std::to_string(kMaxHunkOldLines) +
                   " context and removed lines; split it into smaller hunks");
      ++body;
      ++i;
    }
    if (body == 0) {
      std::string got = i < end ? Quote(lines[i]) : std::string("the end of the patch");
      return Bad(At(label, chunk.line - 1) + ": hunk has no lines; expected ' ', '-' or '+' lines, got " + got);
    }
    chunks.push_back(std::move(chunk));
  }
  return chunks;
}

// Lines of Add File content from lines[i] on: '+' lines, and blank lines the
// model left without '+' when more '+' lines follow.
std::string ParseAddContent(std::span<const std::string_view> lines, size_t& i, size_t end) {
  std::string content;
  while (i < end) {
    if (lines[i].starts_with('+')) {
      content.append(lines[i].substr(1));
      content += '\n';
      ++i;
      continue;
    }
    size_t j = i;
    while (j < end && Trim(lines[j]).empty()) ++j;
    if (j == i || j == end || !lines[j].starts_with('+')) break;
    content.append(j - i, '\n');
    i = j;
  }
  return content;
}

Result<std::string> PathOnLine(std::string_view path, std::string_view where) {
  auto r = NormalizePatchPath(path);
  if (!r) return Bad(std::string(where) + ": " + r.error().detail);
  return std::move(*r);
}

}  // namespace

Result<std::string> NormalizePatchPath(std::string_view path) {
  if (path.empty()) return Bad("path is empty");
  if (path.size() > PATH_MAX) return Bad("path " + Quote(path) + " is longer than " + std::to_string(PATH_MAX) + " bytes");
  for (char c : path) {
    unsigned char u = static_cast<unsigned char>(c);
    if (u == 0) return Bad("path " + Quote(path) + " contains a NUL byte");
    if (u < 0x20 || u == 0x7f) return Bad("path " + Quote(path) + " contains a control character");
  }
  if (path.front() == '/') return Bad("path " + Quote(path) + " is absolute; patch paths are relative to the workspace");
  if (path.back() == '/') return Bad("path " + Quote(path) + " ends in '/'; expected a file");
  std::string out;
  size_t start = 0;
  while (start <= path.size()) {
    size_t slash = path.find('/', start);
    if (slash == std::string_view::npos) slash = path.size();
    std::string_view part = path.substr(start, slash - start);
    start = slash + 1;
    if (part.empty() || part == ".") continue;
    if (part == "..") return Bad("path " + Quote(path) + " contains '..'; patch paths must stay inside the workspace");
    if (part.size() > NAME_MAX)
      return Bad("path " + Quote(path) + " has a component longer than " + std::to_string(NAME_MAX) + " bytes");
    if (!out.empty()) out += '/';
    out.append(part);
  }
  if (out.empty()) return Bad("path " + Quote(path) + " names no file");
  return out;
}

Result<std::vector<PatchOp>> ParsePatch(std::string_view text) {
  if (text.size() > kMaxPatchBytes)
    return Bad("patch is " + std::to_string(text.size()) + " bytes; the limit is " +
               std::to_string(kMaxPatchBytes >> 20) + " MiB: split it into several patches");
  std::vector<std::string_view> lines = SplitPatchLines(text);
  size_t first = 0, last = lines.size();
  while (first < lines.size() && Trim(lines[first]).empty()) ++first;
  while (last > first && Trim(lines[last - 1]).empty()) --last;
  if (first == last) return Bad("line 1: expected '*** Begin Patch', got an empty patch");
  if (Trim(lines[first]) != "*** Begin Patch")
    return Bad(At("line", first) + ": expected '*** Begin Patch', got " + Quote(lines[first]));
  --last;  // index of the last non-blank line
  if (last == first || Trim(lines[last]) != "*** End Patch")
    return Bad(At("line", last) + ": expected '*** End Patch' as the last line, got " +
               (last == first ? std::string("nothing") : Quote(lines[last])));

  std::vector<PatchOp> ops;
  size_t i = first + 1;
  while (i < last) {
    std::string_view t = Trim(lines[i]);
    if (t.empty()) {
      ++i;
      continue;
    }
    std::string where = At("line", i);
    PatchOp op;
    op.line = static_cast<int>(i + 1);
    if (auto p = AfterMarker(t, "*** Add File:")) {
      op.kind = PatchOpKind::kAdd;
      op.path = TRY(PathOnLine(*p, where));
      ++i;
      op.add_content = ParseAddContent(lines, i, last);
    } else if (auto p = AfterMarker(t, "*** Delete File:")) {
      op.kind = PatchOpKind::kDelete;
      op.path = TRY(PathOnLine(*p, where));
      ++i;
    } else if (auto p = AfterMarker(t, "*** Update File:")) {
      op.kind = PatchOpKind::kUpdate;
      op.path = TRY(PathOnLine(*p, where));
      ++i;
      if (i < last) {
        if (auto m = AfterMarker(Trim(lines[i]), "*** Move to:")) {
          op.move_to = TRY(PathOnLine(*m, At("line", i)));
          ++i;
        }
      }
      op.chunks = TRY(ParseChunks(lines, i, last, "line"));
      if (op.chunks.empty() && op.move_to.empty())
        return Bad(where + ": Update File " + Quote(op.path) + " has no hunks; expected '@@' and diff lines");
    } else if (t == "*** End Patch") {
      return Bad(where + ": '*** End Patch' before the end of the patch");
    } else if (t.starts_with("*** Move to:")) {
      return Bad(where + ": '*** Move to:' must directly follow an '*** Update File:' line");
    } else {
      return Bad(where + ": expected a file header ('*** Add File: <path>', '*** Update File: <path>' or " +
                 "'*** Delete File: <path>'), got " + Quote(lines[i]));
    }
    ops.push_back(std::move(op));
  }
  if (ops.empty())
    return Bad(At("line", last) + ": the patch has no file operations; expected '*** Add File: ', "
               "'*** Update File: ' or '*** Delete File: ' sections");
  return ops;
}

Result<std::vector<PatchOp>> ParseOperations(const std::vector<StructuredOp>& ops) {
  size_t total = 0;
  for (const StructuredOp& s : ops) total += s.diff.size() + s.path.size();
  if (total > kMaxPatchBytes)
    return Bad("operations total " + std::to_string(total) + " bytes; the limit is " +
               std::to_string(kMaxPatchBytes >> 20) + " MiB: split them into several calls");
  if (ops.empty()) return Bad("operations: empty; expected at least one operation");
  std::vector<PatchOp> out;
  for (size_t k = 0; k < ops.size(); ++k) {
    const StructuredOp& s = ops[k];
    std::string name = "operations[" + std::to_string(k) + "]";
    PatchOp op;
    op.operation = static_cast<int>(k);
    auto path = NormalizePatchPath(s.path);
    if (!path) return Bad(name + ".path: " + path.error().detail);
    op.path = std::move(*path);
    if (!s.move_to.empty()) {
      if (s.type != "update_file") return Bad(name + ".move_to: only for update_file");
      auto to = NormalizePatchPath(s.move_to);
      if (!to) return Bad(name + ".move_to: " + to.error().detail);
      op.move_to = std::move(*to);
    }
    std::vector<std::string_view> lines = SplitPatchLines(s.diff);
    size_t end = lines.size();
    while (end > 0 && Trim(lines[end - 1]).empty()) --end;
    std::string label = name + ".diff line";
    if (s.type == "create_file") {
      op.kind = PatchOpKind::kAdd;
      size_t i = 0;
      op.add_content = ParseAddContent(lines, i, end);
      if (i < end) return Bad(At(label, i) + ": expected a line starting with '+', got " + Quote(lines[i]));
    } else if (s.type == "update_file") {
      op.kind = PatchOpKind::kUpdate;
      size_t i = 0;
      op.chunks = TRY(ParseChunks(lines, i, end, label));
      if (i < end) return Bad(At(label, i) + ": expected an '@@' hunk, got " + Quote(lines[i]));
      if (op.chunks.empty() && op.move_to.empty())
        return Bad(name + ".diff: no hunks (and no move_to); expected '@@' and diff lines");
    } else if (s.type == "delete_file") {
      op.kind = PatchOpKind::kDelete;
    } else {
      return Bad(name + ".type: expected 'create_file', 'update_file' or 'delete_file', got " + Quote(s.type));
    }
    out.push_back(std::move(op));
  }
  return out;
}

namespace {

// How leniently a context line is compared, in the order they are tried;
// each level accepts everything the previous one does.
enum Level { kExact, kRTrim, kTrim, kPunct, kLevels };

// Typographic punctuation mapped to ASCII, as Codex's last matching pass
// does: dashes to '-', quotes to ' and ", odd spaces to ' '. Returns false
// (and leaves out alone) when the line has nothing to map.
bool MapPunctuation(std::string_view s, std::string& out) {
  if (std::none_of(s.begin(), s.end(), [](char c) { return static_cast<unsigned char>(c) >= 0x80; })) return false;
  out.clear();
  bool changed = false;
  for (size_t i = 0; i < s.size(); ++i) {
    auto b = [&](size_t k) { return i + k < s.size() ? static_cast<unsigned char>(s[i + k]) : 0; };
    char mapped = 0;
    size_t len = 0;
    if (b(0) == 0xC2 && b(1) == 0xA0) {
      mapped = ' ', len = 2;  // U+00A0
    } else if (b(0) == 0xE2 && b(1) == 0x80) {
      unsigned char c = b(2);
      if (c >= 0x90 && c <= 0x95) mapped = '-', len = 3;        // U+2010..2015
      else if (c >= 0x98 && c <= 0x9B) mapped = '\'', len = 3;  // U+2018..201B
      else if (c >= 0x9C && c <= 0x9F) mapped = '"', len = 3;   // U+201C..201F
      else if ((c >= 0x82 && c <= 0x8A) || c == 0xAF) mapped = ' ', len = 3;  // U+2002..200A, U+202F
    } else if (b(0) == 0xE2 && b(1) == 0x81 && b(2) == 0x9F) {
      mapped = ' ', len = 3;  // U+205F
    } else if (b(0) == 0xE2 && b(1) == 0x88 && b(2) == 0x92) {
      mapped = '-', len = 3;  // U+2212
    } else if (b(0) == 0xE3 && b(1) == 0x80 && b(2) == 0x80) {
      mapped = ' ', len = 3;  // U+3000
    }
    if (len != 0) {
      out += mapped;
      i += len - 1;
      changed = true;
    } else {
      out += s[i];
    }
  }
  return changed;
}

constexpr uint32_t kNoId = UINT32_MAX;

// A file's lines as small integers per level (equal ids: equal lines at that
// level), so a hunk is found with KMP in time linear in the file and the hunk
// whatever the content; built lazily, once per file.
class LineIndex {
 public:
  explicit LineIndex(std::span<const std::string_view> lines) : lines_(lines) {}

  size_t size() const { return lines_.size(); }

  const std::vector<uint32_t>& Ids(Level level) {
    PerLevel& l = levels_[level];
    if (!l.built) {
      l.built = true;
      l.ids.reserve(lines_.size());
      std::string scratch;
      for (std::string_view line : lines_) {
        auto [key, mapped] = Key(line, level, scratch);
        if (mapped) key = l.storage.emplace_back(key);
        auto [it, inserted] = l.map.try_emplace(key, static_cast<uint32_t>(l.map.size()));
        l.ids.push_back(it->second);
      }
    }
    return l.ids;
  }

  // The id of a pattern line at `level`, kNoId if no file line equals it.
  uint32_t Lookup(std::string_view line, Level level) {
    Ids(level);
    std::string scratch;
    auto it = levels_[level].map.find(Key(line, level, scratch).first);
    return it == levels_[level].map.end() ? kNoId : it->second;
  }

 private:
  struct PerLevel {
    bool built = false;
    std::vector<uint32_t> ids;
    std::unordered_map<std::string_view, uint32_t> map;
    std::deque<std::string> storage;  // mapped lines the map's keys point into
  };

  // The line as compared at `level`; .second: the view points into scratch.
  static std::pair<std::string_view, bool> Key(std::string_view line, Level level, std::string& scratch) {
    switch (level) {
      case kExact: return {line, false};
      case kRTrim: return {RTrim(line), false};
      case kTrim: return {Trim(line), false};
      default:
        if (!MapPunctuation(line, scratch)) return {Trim(line), false};
        return {Trim(scratch), true};
    }
  }

  std::span<const std::string_view> lines_;
  PerLevel levels_[kLevels];
};

// KMP: the first i >= from where text[i, i + pat.size()) == pat, or npos.
// best_len/best_pos: the longest prefix of pat seen and where it starts.
size_t Find(const std::vector<uint32_t>& text, const std::vector<uint32_t>& pat, size_t from, size_t& best_len,
            size_t& best_pos) {
  best_len = 0;
  best_pos = from;
  size_t m = pat.size();
  if (m == 0) return from;
  std::vector<size_t> fail(m, 0);
  for (size_t q = 1, k = 0; q < m; ++q) {
    while (k > 0 && pat[q] != pat[k]) k = fail[k - 1];
    if (pat[q] == pat[k]) ++k;
    fail[q] = k;
  }
  size_t k = 0;
  for (size_t i = from; i < text.size(); ++i) {
    while (k > 0 && text[i] != pat[k]) k = fail[k - 1];
    if (text[i] == pat[k]) ++k;
    if (k > best_len) best_len = k, best_pos = i + 1 - k;
    if (k == m) return i + 1 - m;
  }
  return std::string_view::npos;
}

std::vector<uint32_t> PatternIds(LineIndex& index, std::span<const std::string> pattern, Level level) {
  std::vector<uint32_t> ids;
  ids.reserve(pattern.size());
  for (const std::string& line : pattern) ids.push_back(index.Lookup(line, level));
  return ids;
}

// Codex's seek_sequence: the first position >= from where pattern matches,
// trying each level over the whole range before the next; an end-of-file
// hunk tries the file's end first (every level), then anywhere after from.
std::optional<size_t> Seek(LineIndex& index, std::span<const std::string> pattern, size_t from, bool eof) {
  size_t n = index.size(), m = pattern.size();
  if (m == 0) return from;
  if (m > n || from > n - m) return std::nullopt;
  std::vector<uint32_t> pats[kLevels];
  for (int level = kExact; level < kLevels; ++level) {
    pats[level] = PatternIds(index, pattern, static_cast<Level>(level));
    if (eof) {
      const std::vector<uint32_t>& ids = index.Ids(static_cast<Level>(level));
      if (std::equal(pats[level].begin(), pats[level].end(), ids.begin() + static_cast<ptrdiff_t>(n - m)))
        return n - m;
    }
  }
  for (int level = kExact; level < kLevels; ++level) {
    size_t best_len, best_pos;
    size_t pos = Find(index.Ids(static_cast<Level>(level)), pats[level], from, best_len, best_pos);
    if (pos != std::string_view::npos) return pos;
  }
  return std::nullopt;
}

// Why pattern is not in the file after `from`: which of its lines fails
// where, quoted, at the most lenient level.
std::string Mismatch(LineIndex& index, std::span<const std::string_view> file, std::span<const std::string> pattern,
                     size_t from) {
  std::vector<uint32_t> pat = PatternIds(index, pattern, kPunct);
  const std::vector<uint32_t>& ids = index.Ids(kPunct);
  size_t best_len = 0, best_pos = from;
  if (from < ids.size()) Find(ids, pat, from, best_len, best_pos);
  std::string total = std::to_string(pattern.size());
  if (best_len == 0) {
    std::string msg = "its first context line " + Quote(pattern[0]) + " is not in the file";
    if (from > 0) msg += " after line " + std::to_string(from);
    if (pat[0] != kNoId && from > 0 && std::find(ids.begin(), ids.begin() + static_cast<ptrdiff_t>(std::min(from, ids.size())), pat[0]) !=
                                           ids.begin() + static_cast<ptrdiff_t>(std::min(from, ids.size())))
      msg += " (it is above the previous hunk's match: hunks must follow the file's order)";
    return msg;
  }
  size_t at = best_pos + best_len;  // the file line that should have matched pattern[best_len]
  std::string msg = "context lines 1-" + std::to_string(best_len) + " of " + total + " match file lines " +
                    std::to_string(best_pos + 1) + "-" + std::to_string(at) + ", but context line " +
                    std::to_string(best_len + 1) + " " + Quote(pattern[best_len]);
  if (at < file.size()) msg += " differs from file line " + std::to_string(at + 1) + " " + Quote(file[at]);
  else msg += " is past the end of the file (" + std::to_string(file.size()) + " lines)";
  return msg;
}

struct Replacement {
  size_t start, old_len;
  std::vector<std::string_view> lines;
};

// The lines replacing file[start, start + old_len): '+' lines from the hunk,
// context lines from the file itself, so a context line that matched only
// fuzzily keeps its own whitespace and punctuation. `dropped`: the hunk's last
// old line was not matched (a blank line standing for the final newline).
std::vector<std::string_view> NewLines(const PatchChunk& chunk, std::span<const std::string_view> file, size_t start,
                                       bool dropped) {
  std::vector<std::string_view> out;
  size_t old_count = chunk.old_lines.size() - (dropped ? 1 : 0);
  bool usable = chunk.kinds.size() == chunk.old_lines.size() + chunk.new_lines.size() -
                                          static_cast<size_t>(std::count(chunk.kinds.begin(), chunk.kinds.end(), ' '));
  if (!usable) {  // built by hand without kinds: the hunk's new side as written
    size_t n = chunk.new_lines.size();
    if (dropped && n > 0 && chunk.new_lines.back().empty()) --n;
    out.assign(chunk.new_lines.begin(), chunk.new_lines.begin() + static_cast<ptrdiff_t>(n));
    return out;
  }
  size_t oi = 0, ni = 0;
  for (char kind : chunk.kinds) {
    if (kind == '+') {
      out.push_back(chunk.new_lines[ni++]);
    } else if (kind == '-') {
      ++oi;
    } else {
      if (oi < old_count) out.push_back(file[start + oi]);
      ++oi, ++ni;
    }
  }
  return out;
}

// op's hunks applied to `content`: CRLF kept when every line ends in CRLF,
// the final newline kept or left missing as it was (an empty file gets one).
Result<std::string> ApplyChunks(const std::string& content, const PatchOp& op) {
  size_t newlines = 0, crlf = 0;
  for (size_t i = 0; i < content.size(); ++i) {
    if (content[i] != '\n') continue;
    ++newlines;
    if (i > 0 && content[i - 1] == '\r') ++crlf;
  }
  std::string_view eol = newlines > 0 && crlf == newlines ? "\r\n" : "\n";
  std::vector<std::string_view> file;
  std::string_view rest = content;
  bool final_newline = content.empty() || rest.ends_with(eol);
  if (rest.ends_with(eol)) rest.remove_suffix(eol.size());
  if (!content.empty()) {
    size_t start = 0;
    while (true) {
      size_t pos = rest.find(eol, start);
      if (pos == std::string_view::npos) {
        file.push_back(rest.substr(start));
        break;
      }
      file.push_back(rest.substr(start, pos - start));
      start = pos + eol.size();
    }
  }

  LineIndex index(file);
  std::vector<Replacement> repl;
  size_t cursor = 0;
  bool structured = op.operation >= 0;
  std::string what = structured ? "operations[" + std::to_string(op.operation) + "] (update_file " + Quote(op.path) + ")"
                                : "Update File " + Quote(op.path) + " (line " + std::to_string(op.line) + ")";
  for (size_t k = 0; k < op.chunks.size(); ++k) {
    const PatchChunk& chunk = op.chunks[k];
    std::string hunk = what + ", hunk " + std::to_string(k + 1) + " of " + std::to_string(op.chunks.size()) +
                       (structured ? " (diff line " : " (line ") + std::to_string(chunk.line) + ")";
    for (const std::string& anchor : chunk.anchors) {
      auto pos = Seek(index, std::span(&anchor, 1), cursor, false);
      if (!pos)
        return Bad(hunk + ": its @@ anchor " + Quote(anchor) + " is not in the file" +
                   (cursor > 0 ? " after line " + std::to_string(cursor) : std::string()));
      cursor = *pos + 1;
    }
    if (chunk.old_lines.empty()) {
      // A pure insertion: after its anchor, else at the end (as Codex does).
      size_t at = chunk.anchors.empty() || chunk.is_end_of_file ? file.size() : cursor;
      repl.push_back({at, 0, std::vector<std::string_view>(chunk.new_lines.begin(), chunk.new_lines.end())});
      continue;
    }
    std::span<const std::string> pattern = chunk.old_lines;
    auto pos = Seek(index, pattern, cursor, chunk.is_end_of_file);
    bool dropped = false;
    if (!pos && pattern.back().empty()) {
      // A trailing blank context line standing for the file's final newline.
      pattern = pattern.first(pattern.size() - 1);
      dropped = true;
      pos = Seek(index, pattern, cursor, chunk.is_end_of_file);
    }
    if (!pos) {
      if (file.empty()) return Bad(hunk + ": the file is empty; its context lines cannot match");
      return Bad(hunk + ": does not match the file: " + Mismatch(index, file, chunk.old_lines, cursor));
    }
    repl.push_back({*pos, pattern.size(), NewLines(chunk, file, *pos, dropped)});
    cursor = *pos + pattern.size();
  }
  std::stable_sort(repl.begin(), repl.end(), [](const Replacement& a, const Replacement& b) { return a.start < b.start; });

  std::string out;
  out.reserve(content.size() + 64);
  size_t emitted = 0, next = 0;
  auto put = [&](std::string_view line) {
    if (emitted++ > 0) out += eol;
    out += line;
  };
  for (const Replacement& r : repl) {
    if (r.start < next) return Bad(what + ": two hunks overlap at file line " + std::to_string(r.start + 1));
    for (; next < r.start; ++next) put(file[next]);
    for (std::string_view line : r.lines) put(line);
    next = r.start + r.old_len;
  }
  for (; next < file.size(); ++next) put(file[next]);
  if (final_newline && emitted > 0) out += eol;
  return out;
}

struct Entry {
  std::optional<std::string> original;
  std::optional<std::string> current;
  std::string moved_from;  // where current came from by a Move to
};

}  // namespace

Result<std::vector<FileChange>> ApplyPatch(const std::vector<PatchOp>& ops, const ReadFileFn& read) {
  std::map<std::string, Entry> tree;  // node addresses stay valid across inserts
  std::vector<std::string> order;
  auto get = [&](const std::string& path) -> Result<Entry*> {
    auto it = tree.find(path);
    if (it != tree.end()) return &it->second;
    std::optional<std::string> bytes = TRY(read(path));
    Entry& e = tree[path];
    e.original = bytes;
    e.current = std::move(bytes);
    order.push_back(path);
    return &e;
  };

  for (const PatchOp& op : ops) {
    std::string where = " " + Quote(op.path) +
                        (op.operation >= 0 ? " (operations[" + std::to_string(op.operation) + "])"
                                           : " (line " + std::to_string(op.line) + ")");
    Entry* e = TRY(get(op.path));
    switch (op.kind) {
      case PatchOpKind::kAdd:
        if (e->current) return Bad("Add File" + where + ": the file already exists; use Update File to change it");
        e->current = op.add_content;
        e->moved_from.clear();
        break;
      case PatchOpKind::kDelete:
        if (!e->current) return Bad("Delete File" + where + ": no such file");
        e->current.reset();
        e->moved_from.clear();
        break;
      case PatchOpKind::kUpdate: {
        if (!e->current) return Bad("Update File" + where + ": no such file; use Add File to create it");
        std::string updated = TRY(ApplyChunks(*e->current, op));
        if (op.move_to.empty() || op.move_to == op.path) {
          e->current = std::move(updated);
          break;
        }
        Entry* dest = TRY(get(op.move_to));
        if (dest->current)
          return Bad("Update File" + where + ": cannot move to " + Quote(op.move_to) + ": it already exists");
        dest->current = std::move(updated);
        dest->moved_from = e->moved_from.empty() ? op.path : e->moved_from;
        e->current.reset();
        e->moved_from.clear();
        break;
      }
    }
  }

  // A move is reported as one rename only when its source existed before and
  // is gone after; otherwise the destination is a plain write.
  std::map<std::string, bool> claimed;
  for (auto& [path, e] : tree) {
    if (e.moved_from.empty()) continue;
    Entry& src = tree.at(e.moved_from);
    if (!e.current || !src.original || src.current || claimed[e.moved_from]) {
      e.moved_from.clear();
      continue;
    }
    claimed[e.moved_from] = true;
  }
  std::vector<FileChange> changes;
  for (const std::string& path : order) {
    Entry& e = tree.at(path);
    if (!e.current) {
      if (e.original && !claimed[path]) changes.push_back({path, std::nullopt, {}, false});
      continue;
    }
    changes.push_back({path, std::move(e.current), e.moved_from, !e.original});
  }
  return changes;
}

std::string SummarizeChanges(const std::vector<FileChange>& changes) {
  std::string out = "Success. Updated the following files:\n";
  for (const FileChange& c : changes) {
    out += !c.content ? "D " : c.created && c.moved_from.empty() ? "A " : "M ";
    out += c.path;
    out += '\n';
  }
  return out;
}

}  // namespace airlock::tools
