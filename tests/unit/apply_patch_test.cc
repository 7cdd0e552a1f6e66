// The apply_patch tool (V4A patches): real-world patches against exact
// expected trees, hostile patches refused with errors that say where.
#include <catch2/catch.hpp>

#include <chrono>
#include <map>
#include <string>
#include <vector>

#include "harness/tools/apply_patch.h"

using airlock::Result;
using airlock::tools::ApplyPatch;
using airlock::tools::FileChange;
using airlock::tools::NormalizePatchPath;
using airlock::tools::ParseOperations;
using airlock::tools::ParsePatch;
using airlock::tools::PatchOp;
using airlock::tools::PatchOpKind;
using airlock::tools::ReadFileFn;
using airlock::tools::StructuredOp;
using airlock::tools::SummarizeChanges;

namespace {

using Files = std::map<std::string, std::string>;

struct Outcome {
  bool ok = false;
  Files files;                    // the tree after applying (unchanged on error)
  std::string error;              // Error::Message() on failure
  std::vector<FileChange> changes;
  std::vector<std::string> reads;  // paths read, in order
};

ReadFileFn Reader(const Files& files, std::vector<std::string>* reads) {
  return [&files, reads](const std::string& path) -> Result<std::optional<std::string>> {
    reads->push_back(path);
    auto it = files.find(path);
    if (it == files.end()) return std::optional<std::string>();
    return std::optional<std::string>(it->second);
  };
}

Outcome ApplyOps(const Result<std::vector<PatchOp>>& ops, const Files& before) {
  Outcome o;
  o.files = before;
  if (!ops) {
    o.error = ops.error().Message();
    return o;
  }
  auto changes = ApplyPatch(*ops, Reader(before, &o.reads));
  if (!changes) {
    o.error = changes.error().Message();
    return o;
  }
  // What the daemon does: a rename, then the write; or a delete.
  for (const FileChange& c : *changes) {
    if (!c.moved_from.empty()) o.files.erase(c.moved_from);
    if (c.content) o.files[c.path] = *c.content;
    else o.files.erase(c.path);
  }
  o.ok = true;
  o.changes = *changes;
  return o;
}

Outcome Run(const std::string& patch, const Files& before) { return ApplyOps(ParsePatch(patch), before); }

std::string Wrap(const std::string& body) { return "*** Begin Patch\n" + body + "*** End Patch\n"; }

struct Case {
  const char* name;
  Files before;
  std::string patch;  // the body between Begin and End Patch
  Files after;
};

const std::string kPy =
    "import os\n"
    "\n"
    "def a():\n"
    "    return 1\n"
    "\n"
    "def b():\n"
    "    return 1\n"
    "\n"
    "def c():\n"
    "    return 1\n";

}  // namespace

TEST_CASE("apply_patch: real-world patches give exact trees", "[apply_patch]") {
  const std::vector<Case> cases = {
      {"add a file", {}, "*** Add File: docs/hello.md\n+# Hello\n+\n+world\n", {{"docs/hello.md", "# Hello\n\nworld\n"}}},
      {"add an empty file", {}, "*** Add File: empty.txt\n", {{"empty.txt", ""}}},
      {"add with blank lines missing their '+'", {}, "*** Add File: a.txt\n+one\n\n+three\n\n", {{"a.txt", "one\n\nthree\n"}}},
      {"delete a file", {{"old.txt", "x\n"}, {"keep.txt", "k\n"}}, "*** Delete File: old.txt\n", {{"keep.txt", "k\n"}}},
      {"move with an edit",
       {{"src/old.py", "a\nb\nc\n"}},
       "*** Update File: src/old.py\n*** Move to: lib/new.py\n@@\n a\n-b\n+B\n c\n",
       {{"lib/new.py", "a\nB\nc\n"}}},
      {"pure rename", {{"a.txt", "x\n"}}, "*** Update File: a.txt\n*** Move to: b.txt\n", {{"b.txt", "x\n"}}},
      {"anchors pick the right occurrence",
       {{"m.py", kPy}},
       "*** Update File: m.py\n@@ def b():\n-    return 1\n+    return 2\n",
       {{"m.py", "import os\n\ndef a():\n    return 1\n\ndef b():\n    return 2\n\ndef c():\n    return 1\n"}}},
      {"two hunks in one file, in order",
       {{"m.py", kPy}},
       "*** Update File: m.py\n@@ def a():\n-    return 1\n+    return 10\n@@ def c():\n-    return 1\n+    return 30\n",
       {{"m.py", "import os\n\ndef a():\n    return 10\n\ndef b():\n    return 1\n\ndef c():\n    return 30\n"}}},
      {"hunks without anchors move forward",
       {{"m.py", kPy}},
       "*** Update File: m.py\n@@\n-    return 1\n+    return 'a'\n@@\n-    return 1\n+    return 'b'\n",
       {{"m.py", "import os\n\ndef a():\n    return 'a'\n\ndef b():\n    return 'b'\n\ndef c():\n    return 1\n"}}},
      {"stacked anchors",
       {{"k.py", "class A:\n    def f(self):\n        x = 1\nclass B:\n    def f(self):\n        x = 1\n"}},
       "*** Update File: k.py\n@@ class B:\n@@     def f(self):\n-        x = 1\n+        x = 2\n",
       {{"k.py", "class A:\n    def f(self):\n        x = 1\nclass B:\n    def f(self):\n        x = 2\n"}}},
      {"unified-diff header numbers are ignored",
       {{"u.txt", "one\ntwo\nthree\n"}},
       "*** Update File: u.txt\n@@ -1,3 +1,3 @@\n one\n-two\n+2\n three\n",
       {{"u.txt", "one\n2\nthree\n"}}},
      {"first hunk without @@",
       {{"f.txt", "import foo\nrest\n"}},
       "*** Update File: f.txt\n import foo\n+import bar\n",
       {{"f.txt", "import foo\nimport bar\nrest\n"}}},
      {"context at the start of the file",
       {{"s.txt", "first\nsecond\nthird\n"}},
       "*** Update File: s.txt\n@@\n-first\n+zeroth\n+first\n second\n",
       {{"s.txt", "zeroth\nfirst\nsecond\nthird\n"}}},
      {"context at the end of the file",
       {{"e.txt", "a\nb\nc\n"}},
       "*** Update File: e.txt\n@@\n b\n c\n+d\n",
       {{"e.txt", "a\nb\nc\nd\n"}}},
      {"*** End of File picks the last occurrence",
       {{"t.txt", "end\nmiddle\nend\n"}},
       "*** Update File: t.txt\n@@\n-end\n+END\n*** End of File\n",
       {{"t.txt", "end\nmiddle\nEND\n"}}},
      {"pure insertion after an anchor",
       {{"p.py", "def f():\n    pass\ndef g():\n    pass\n"}},
       "*** Update File: p.py\n@@ def g():\n+    \"\"\"doc\"\"\"\n",
       {{"p.py", "def f():\n    pass\ndef g():\n    \"\"\"doc\"\"\"\n    pass\n"}}},
      {"pure insertion without an anchor appends",
       {{"p.txt", "a\nb\n"}},
       "*** Update File: p.txt\n@@\n+c\n",
       {{"p.txt", "a\nb\nc\n"}}},
      {"several files in one patch",
       {{"a.txt", "1\n"}, {"b.txt", "2\n"}, {"c.txt", "3\n"}},
       "*** Update File: a.txt\n@@\n-1\n+one\n*** Delete File: b.txt\n*** Add File: d/e.txt\n+new\n"
       "*** Update File: c.txt\n*** Move to: d/c.txt\n@@\n-3\n+three\n",
       {{"a.txt", "one\n"}, {"d/c.txt", "three\n"}, {"d/e.txt", "new\n"}}},
      {"CRLF file keeps CRLF",
       {{"w.txt", "one\r\ntwo\r\nthree\r\n"}},
       "*** Update File: w.txt\n@@\n one\n-two\n+TWO\n+2.5\n three\n",
       {{"w.txt", "one\r\nTWO\r\n2.5\r\nthree\r\n"}}},
      {"CRLF patch text against an LF file",
       {{"l.txt", "a\nb\n"}},
       "*** Update File: l.txt\r\n@@\r\n-a\r\n+A\r\n b\r\n",
       {{"l.txt", "A\nb\n"}}},
      {"a missing final newline stays missing",
       {{"n.txt", "a\nb\nc"}},
       "*** Update File: n.txt\n@@\n a\n-b\n+B\n c\n",
       {{"n.txt", "a\nB\nc"}}},
      {"appending to a file without final newline",
       {{"n.txt", "a\nb"}},
       "*** Update File: n.txt\n@@\n b\n+c\n*** End of File\n",
       {{"n.txt", "a\nb\nc"}}},
      {"an empty file gets a final newline",
       {{"z.txt", ""}},
       "*** Update File: z.txt\n@@\n+hello\n",
       {{"z.txt", "hello\n"}}},
      {"deleting every line leaves an empty file",
       {{"d.txt", "x\ny\n"}},
       "*** Update File: d.txt\n@@\n-x\n-y\n",
       {{"d.txt", ""}}},
      {"unicode passes through as bytes",
       {{"u.md", "# Über\nПривет, мир\n日本語\n"}},
       "*** Update File: u.md\n@@ # Über\n-Привет, мир\n+Здравствуй, мир 🌍\n 日本語\n",
       {{"u.md", "# Über\nЗдравствуй, мир 🌍\n日本語\n"}}},
      {"trailing whitespace in the file is ignored",
       {{"ws.txt", "alpha   \nbeta\t\ngamma\n"}},
       "*** Update File: ws.txt\n@@\n alpha\n-beta\n+BETA\n",
       {{"ws.txt", "alpha   \nBETA\ngamma\n"}}},
      {"indentation differences are ignored last",
       {{"in.py", "if x:\n        y = 1\n        z = 2\n"}},
       "*** Update File: in.py\n@@\n     y = 1\n-    z = 2\n+        z = 3\n",
       {{"in.py", "if x:\n        y = 1\n        z = 3\n"}}},
      {"typographic punctuation matches ASCII",
       {{"q.txt", "say \xE2\x80\x9Chi\xE2\x80\x9D \xE2\x80\x94 it\xE2\x80\x99s\nnext\n"}},
       "*** Update File: q.txt\n@@\n-say \"hi\" - it's\n+say hello\n next\n",
       {{"q.txt", "say hello\nnext\n"}}},
      {"fuzzily matched context keeps the file's bytes",
       {{"k.txt", "  \xE2\x80\x9Cquoted\xE2\x80\x9D  \nold\n"}},
       "*** Update File: k.txt\n@@\n \"quoted\"\n-old\n+new\n",
       {{"k.txt", "  \xE2\x80\x9Cquoted\xE2\x80\x9D  \nnew\n"}}},
      {"an empty context line without its space",
       {{"b.txt", "a\n\nb\n"}},
       "*** Update File: b.txt\n@@\n a\n\n-b\n+B\n",
       {{"b.txt", "a\n\nB\n"}}},
      {"a trailing blank context line for the final newline",
       {{"t.txt", "x\ny\n"}},
       "*** Update File: t.txt\n@@\n x\n-y\n+Y\n\n",
       {{"t.txt", "x\nY\n"}}},
      {"two updates of one file compose",
       {{"c.txt", "1\n2\n3\n"}},
       "*** Update File: c.txt\n@@\n-1\n+one\n*** Update File: c.txt\n@@\n-3\n+three\n",
       {{"c.txt", "one\n2\nthree\n"}}},
      {"delete then add replaces", {{"r.txt", "old\n"}}, "*** Delete File: r.txt\n*** Add File: r.txt\n+new\n", {{"r.txt", "new\n"}}},
      {"add then update", {}, "*** Add File: n.txt\n+a\n*** Update File: n.txt\n@@\n-a\n+b\n", {{"n.txt", "b\n"}}},
      {"paths are normalized",
       {{"a/b.txt", "x\n"}},
       "*** Update File: ./a//./b.txt\n@@\n-x\n+y\n",
       {{"a/b.txt", "y\n"}}},
      {"binary-ish bytes pass through",
       {{"bin", std::string("a\0b\nc\n", 6)}},
       "*** Update File: bin\n@@\n-c\n+d\n",
       {{"bin", std::string("a\0b\nd\n", 6)}}},
  };
  for (const Case& c : cases) {
    SECTION(c.name) {
      Outcome o = Run(Wrap(c.patch), c.before);
      INFO(o.error);
      REQUIRE(o.ok);
      CHECK(o.files == c.after);
    }
  }
}

TEST_CASE("apply_patch: lenient envelope", "[apply_patch]") {
  Files before = {{"f.txt", "a\n"}};
  Files after = {{"f.txt", "b\n"}};
  CHECK(Run("\n\n  *** Begin Patch  \n*** Update File:  f.txt \n@@\n-a\n+b\n\n  *** End Patch\n\n", before).files == after);
  CHECK(Run("*** Begin Patch\n*** Update File:f.txt\n@@\n-a\n+b\n*** End Patch", before).files == after);
  CHECK(Run("*** Begin Patch\n*** Update File: f.txt\n@@\n-a\n+b\n\\ No newline at end of file\n*** End Patch", before)
            .files == after);
}

TEST_CASE("apply_patch: changes describe renames, creations and deletions", "[apply_patch]") {
  Outcome o = Run(Wrap("*** Add File: n.txt\n+n\n*** Update File: a.txt\n*** Move to: b.txt\n@@\n-a\n+A\n"
                       "*** Delete File: d.txt\n"),
                  {{"a.txt", "a\n"}, {"d.txt", "d\n"}});
  REQUIRE(o.ok);
  REQUIRE(o.changes.size() == 3);
  CHECK(o.changes[0].path == "n.txt");
  CHECK(o.changes[0].created);
  CHECK(o.changes[1].path == "b.txt");
  CHECK(o.changes[1].moved_from == "a.txt");
  CHECK(*o.changes[1].content == "A\n");
  CHECK(o.changes[2].path == "d.txt");
  CHECK_FALSE(o.changes[2].content);
  CHECK(SummarizeChanges(o.changes) == "Success. Updated the following files:\nA n.txt\nM b.txt\nD d.txt\n");

  // A file added and then moved in one patch is just created at its destination.
  Outcome o2 = Run(Wrap("*** Add File: x.txt\n+x\n*** Update File: x.txt\n*** Move to: y.txt\n"), {});
  REQUIRE(o2.ok);
  REQUIRE(o2.changes.size() == 1);
  CHECK(o2.changes[0].path == "y.txt");
  CHECK(o2.changes[0].moved_from.empty());
  CHECK(o2.files == Files{{"y.txt", "x\n"}});
}

TEST_CASE("apply_patch: paths that leave the workspace are refused", "[apply_patch]") {
  CHECK(*NormalizePatchPath("a/./b//c.txt") == "a/b/c.txt");
  CHECK(*NormalizePatchPath("./x") == "x");
  struct Bad {
    std::string path;
    std::string says;
  };
  const std::vector<Bad> bad = {
      {"../etc/passwd", "'../etc/passwd' contains '..'"},
      {"a/../../b", "contains '..'"},
      {"a/..", "contains '..'"},
      {"/etc/passwd", "'/etc/passwd' is absolute"},
      {std::string("a\0b", 3), "'a\\x00b' contains a NUL byte"},
      {"a\nb", "contains a control character"},
      {"a\x7f", "contains a control character"},
      {"", "path is empty"},
      {".", "names no file"},
      {"dir/", "ends in '/'"},
      {std::string(300, 'x'), "component longer than 255"},
  };
  for (const Bad& b : bad) {
    auto r = NormalizePatchPath(b.path);
    INFO(b.path);
    REQUIRE_FALSE(r);
    CHECK_THAT(r.error().detail, Catch::Contains(b.says));
    // The same path inside a patch names the patch line too.
    if (b.path.find('\n') == std::string::npos && !b.path.empty()) {
      auto p = ParsePatch("*** Begin Patch\n*** Delete File: " + b.path + "\n*** End Patch");
      REQUIRE_FALSE(p);
      CHECK_THAT(p.error().detail, Catch::StartsWith("line 2: ") && Catch::Contains(b.says));
    }
  }
  auto move = ParsePatch("*** Begin Patch\n*** Update File: a\n*** Move to: ../b\n*** End Patch");
  REQUIRE_FALSE(move);
  CHECK_THAT(move.error().detail, Catch::StartsWith("line 3: ") && Catch::Contains("'..'"));
}

TEST_CASE("apply_patch: malformed patches name the line and what was expected", "[apply_patch]") {
  struct Bad {
    const char* name;
    std::string patch;
    std::string says;
  };
  const std::vector<Bad> bad = {
      {"empty", "", "line 1: expected '*** Begin Patch', got an empty patch"},
      {"no begin", "*** Update File: a\n@@\n-a\n+b\n*** End Patch", "line 1: expected '*** Begin Patch', got '*** Update File: a'"},
      {"no end", "*** Begin Patch\n*** Add File: a\n+x\n", "line 3: expected '*** End Patch' as the last line, got '+x'"},
      {"only begin", "*** Begin Patch\n", "expected '*** End Patch' as the last line, got nothing"},
      {"no operations", "*** Begin Patch\n*** End Patch", "line 2: the patch has no file operations"},
      {"hunk before any file header", "*** Begin Patch\n@@\n-a\n+b\n*** End Patch", "line 2: expected a file header"},
      {"unknown header", "*** Begin Patch\n*** Rename File: a\n*** End Patch", "line 2: expected a file header"},
      {"end in the middle", "*** Begin Patch\n*** Delete File: a\n*** End Patch\n*** Delete File: b\n*** End Patch",
       "line 3: '*** End Patch' before the end"},
      {"update without hunks", "*** Begin Patch\n*** Update File: a\n*** End Patch", "line 2: Update File 'a' has no hunks"},
      {"context without its space", "*** Begin Patch\n*** Update File: a\n@@\n-x\nfoo\n*** End Patch",
       "line 5: expected a hunk line starting with ' ' (context), '-' or '+'"},
      {"empty hunk", "*** Begin Patch\n*** Update File: a\n@@\n@@\n*** End Patch", "line 3: hunk has no lines"},
      {"bad @@", "*** Begin Patch\n*** Update File: a\n@@x\n-a\n*** End Patch", "line 3: expected '@@' or '@@ <anchor line>'"},
      {"second hunk without @@", "*** Begin Patch\n*** Update File: a\n@@\n-a\n*** End of File\n b\n*** End Patch",
       "line 6: expected '@@' to start the next hunk"},
      {"end of file alone", "*** Begin Patch\n*** Update File: a\n@@\n*** End of File\n*** End Patch",
       "line 4: '*** End of File' ends a hunk with no lines"},
      {"move without update", "*** Begin Patch\n*** Move to: b\n*** End Patch", "line 2: '*** Move to:' must directly follow"},
      {"add line without +", "*** Begin Patch\n*** Add File: a\n+x\ny\n*** End Patch", "line 4: expected a file header"},
  };
  for (const Bad& b : bad) {
    SECTION(b.name) {
      auto r = ParsePatch(b.patch);
      REQUIRE_FALSE(r);
      CHECK(r.error().op == "apply_patch");
      CHECK_THAT(r.error().detail, Catch::Contains(b.says));
    }
  }
}

TEST_CASE("apply_patch: limits", "[apply_patch]") {
  std::string huge = "*** Begin Patch\n*** Add File: a\n";
  huge += std::string(17u << 20, '+');
  huge += "\n*** End Patch\n";
  auto r = ParsePatch(huge);
  REQUIRE_FALSE(r);
  CHECK_THAT(r.error().detail, Catch::Contains("the limit is 16 MiB"));

  std::string hunk = "*** Begin Patch\n*** Update File: a\n@@\n";
  for (size_t i = 0; i <= airlock::tools::kMaxHunkOldLines; ++i) hunk += "-x\n";
  hunk += "*** End Patch";
  auto h = ParsePatch(hunk);
  REQUIRE_FALSE(h);
  CHECK_THAT(h.error().detail, Catch::StartsWith("line 3: hunk has more than 100000"));
}

TEST_CASE("apply_patch: refusals at apply time change nothing", "[apply_patch]") {
  Files before = {{"m.py", kPy}, {"other.txt", "o\n"}};
  SECTION("second hunk does not match: the error quotes the line") {
    Outcome o = Run(Wrap("*** Add File: new.txt\n+n\n*** Update File: m.py\n@@ def a():\n-    return 1\n+    return 2\n"
                         "@@ def b():\n-    return 1\n+    return 3\n     pass\n"),
                    before);
    REQUIRE_FALSE(o.ok);
    CHECK(o.files == before);
    CHECK_THAT(o.error, Catch::StartsWith("apply_patch: Update File 'm.py' (line 4), hunk 2 of 2 (line 8)"));
    CHECK_THAT(o.error, Catch::Contains("context line 2 '    pass' differs from file line 8 ''"));
  }
  SECTION("first context line nowhere") {
    Outcome o = Run(Wrap("*** Update File: m.py\n@@\n-def zzz():\n+def y():\n"), before);
    REQUIRE_FALSE(o.ok);
    CHECK_THAT(o.error, Catch::Contains("hunk 1 of 1 (line 3): does not match the file: its first context line "
                                        "'def zzz():' is not in the file"));
  }
  SECTION("hunks out of order") {
    Outcome o = Run(Wrap("*** Update File: m.py\n@@ def c():\n-    return 1\n+    return 3\n@@\n-import os\n+import sys\n"),
                    before);
    REQUIRE_FALSE(o.ok);
    CHECK_THAT(o.error, Catch::Contains("'import os' is not in the file after line 10 (it is above the previous hunk"));
  }
  SECTION("context running past the end of the file") {
    Outcome o = Run(Wrap("*** Update File: other.txt\n@@\n o\n-p\n"), before);
    CHECK_THAT(o.error, Catch::Contains("context lines 1-1 of 2 match file lines 1-1, but context line 2 'p' is past "
                                        "the end of the file (1 lines)"));
  }
  SECTION("anchor not found") {
    Outcome o = Run(Wrap("*** Update File: m.py\n@@ def nope():\n-    return 1\n+    return 3\n"), before);
    REQUIRE_FALSE(o.ok);
    CHECK_THAT(o.error, Catch::Contains("its @@ anchor 'def nope():' is not in the file"));
  }
  SECTION("add over an existing file") {
    Outcome o = Run(Wrap("*** Add File: other.txt\n+x\n"), before);
    CHECK(o.error == "apply_patch: Add File 'other.txt' (line 2): the file already exists; use Update File to change it");
  }
  SECTION("update or delete a missing file") {
    CHECK_THAT(Run(Wrap("*** Update File: gone.txt\n@@\n-a\n+b\n"), before).error,
               Catch::Contains("Update File 'gone.txt' (line 2): no such file"));
    CHECK_THAT(Run(Wrap("*** Delete File: gone.txt\n"), before).error, Catch::Contains("Delete File 'gone.txt' (line 2): no such file"));
    CHECK_THAT(Run(Wrap("*** Delete File: other.txt\n*** Delete File: other.txt\n"), before).error,
               Catch::Contains("(line 3): no such file"));
  }
  SECTION("move onto an existing file") {
    Outcome o = Run(Wrap("*** Update File: m.py\n*** Move to: other.txt\n"), before);
    CHECK_THAT(o.error, Catch::Contains("cannot move to 'other.txt': it already exists"));
  }
  SECTION("a read error is passed on") {
    auto ops = ParsePatch(Wrap("*** Delete File: x\n"));
    REQUIRE(ops);
    auto r = ApplyPatch(*ops, [](const std::string& p) -> Result<std::optional<std::string>> {
      return airlock::ErrnoValue(EACCES, "open", p);
    });
    REQUIRE_FALSE(r);
    CHECK(r.error().Message() == "open: EACCES (x)");
  }
}

TEST_CASE("apply_patch: structured operations (Agents SDK)", "[apply_patch]") {
  Files before = {{"src/app.py", "def greet():\n    print(\"Hi\")\n"}, {"old.txt", "o\n"}};
  std::vector<StructuredOp> ops = {
      {"create_file", "docs/new.md", "+# New\n+\n+text\n"},
      {"update_file", "src/app.py", "@@ def greet():\n-    print(\"Hi\")\n+    print(\"Hello\")\n"},
      {"delete_file", "old.txt", ""},
  };
  Outcome o = ApplyOps(ParseOperations(ops), before);
  INFO(o.error);
  REQUIRE(o.ok);
  CHECK(o.files == Files{{"docs/new.md", "# New\n\ntext\n"}, {"src/app.py", "def greet():\n    print(\"Hello\")\n"}});

  auto bad_type = ParseOperations({{"rename_file", "a", ""}});
  REQUIRE_FALSE(bad_type);
  CHECK(bad_type.error().detail == "operations[0].type: expected 'create_file', 'update_file' or 'delete_file', got 'rename_file'");
  auto bad_path = ParseOperations({{"delete_file", "ok", ""}, {"delete_file", "../x", ""}});
  REQUIRE_FALSE(bad_path);
  CHECK_THAT(bad_path.error().detail, Catch::StartsWith("operations[1].path: path '../x' contains '..'"));
  auto bad_create = ParseOperations({{"create_file", "a", "+x\ny\n"}});
  REQUIRE_FALSE(bad_create);
  CHECK(bad_create.error().detail == "operations[0].diff line 2: expected a line starting with '+', got 'y'");
  auto bad_update = ParseOperations({{"update_file", "a", "@@\n-x\nzzz\n"}});
  REQUIRE_FALSE(bad_update);
  CHECK_THAT(bad_update.error().detail, Catch::StartsWith("operations[0].diff line 3: expected a hunk line"));
  CHECK_FALSE(ParseOperations({{"update_file", "a", ""}}));
  CHECK_FALSE(ParseOperations({}));

  // move_to: an update that renames, with or without hunks.
  Outcome moved = ApplyOps(ParseOperations({{"update_file", "src/app.py", "", "lib/app.py"},
                                            {"update_file", "old.txt", "@@\n-o\n+n\n", "new.txt"}}),
                           before);
  INFO(moved.error);
  REQUIRE(moved.ok);
  CHECK(moved.files == Files{{"lib/app.py", "def greet():\n    print(\"Hi\")\n"}, {"new.txt", "n\n"}});
  auto bad_move = ParseOperations({{"update_file", "a", "", "../b"}});
  REQUIRE_FALSE(bad_move);
  CHECK_THAT(bad_move.error().detail, Catch::StartsWith("operations[0].move_to: path '../b' contains '..'"));
  auto move_create = ParseOperations({{"create_file", "a", "+x\n", "b"}});
  REQUIRE_FALSE(move_create);
  CHECK(move_create.error().detail == "operations[0].move_to: only for update_file");

  Outcome miss = ApplyOps(ParseOperations({{"update_file", "src/app.py", "@@\n-nothing here\n+x\n"}}), before);
  CHECK_THAT(miss.error, Catch::StartsWith("apply_patch: operations[0] (update_file 'src/app.py'), hunk 1 of 1 (diff line 1)"));
}

TEST_CASE("apply_patch: matching stays linear on adversarial and big inputs", "[apply_patch]") {
  auto start = std::chrono::steady_clock::now();
  // A naive search would compare ~200k x 50k lines here.
  std::string big;
  for (int i = 0; i < 200'000; ++i) big += "a\n";
  std::string hunk = "*** Begin Patch\n*** Update File: big.txt\n@@\n";
  for (int i = 0; i < 50'000; ++i) hunk += " a\n";
  hunk += "-b\n+c\n*** End Patch\n";
  Outcome miss = Run(hunk, {{"big.txt", big}});
  REQUIRE_FALSE(miss.ok);
  CHECK_THAT(miss.error, Catch::Contains("context lines 1-50000 of 50001 match"));
  CHECK_THAT(miss.error, Catch::Contains("context line 50001 'b' differs from file line 50001 'a'"));

  // 50 files of 20k lines, each patched near its end.
  Files files;
  std::string patch = "*** Begin Patch\n";
  for (int f = 0; f < 50; ++f) {
    std::string body;
    for (int i = 0; i < 20'000; ++i) body += "line " + std::to_string(i) + " of file " + std::to_string(f) + "\n";
    std::string name = "dir/f" + std::to_string(f) + ".txt";
    files[name] = body;
    patch += "*** Update File: " + name + "\n@@\n line 19998 of file " + std::to_string(f) + "\n-line 19999 of file " +
             std::to_string(f) + "\n+last\n";
  }
  patch += "*** End Patch\n";
  Outcome o = Run(patch, files);
  REQUIRE(o.ok);
  CHECK(o.files["dir/f49.txt"].ends_with("line 19998 of file 49\nlast\n"));
  auto secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  CHECK(secs < 20);  // generous for Debug builds on a busy machine; quadratic would take hours
}
