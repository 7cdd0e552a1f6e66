// Globs (runtime/core/glob) matched with PCRE2 as the search matches them,
// and airlock-init's search (runtime/init/search) on real directory trees.
#define PCRE2_CODE_UNIT_WIDTH 8
#include <fcntl.h>
#include <pcre2.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "runtime/core/glob.h"
#include "runtime/init/search.h"
#include "runtime/proto/fileops.h"

namespace fs = std::filesystem;
using namespace airlock;

namespace {

bool Matches(const std::string& regex, const std::string& path) {
  int code;
  PCRE2_SIZE off;
  std::string anchored = glob::Anchored(regex);
  pcre2_code* re = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(anchored.data()), anchored.size(),
                                 PCRE2_UTF | PCRE2_DOTALL, &code, &off, nullptr);
  REQUIRE(re != nullptr);
  pcre2_match_data* md = pcre2_match_data_create_from_pattern(re, nullptr);
  int rc = pcre2_match(re, reinterpret_cast<PCRE2_SPTR>(path.data()), path.size(), 0, 0, md, nullptr);
  pcre2_match_data_free(md);
  pcre2_code_free(re);
  return rc >= 0;
}

bool GlobMatches(const std::string& g, const std::string& path) {
  auto rule = glob::FromGlob(g);
  REQUIRE(rule);
  return Matches(rule->regex, path);
}

struct Tree {
  fs::path root;
  Tree() {
    char tmpl[] = "/tmp/airlock-search-XXXXXX";
    REQUIRE(mkdtemp(tmpl) != nullptr);
    root = tmpl;
  }
  ~Tree() { fs::remove_all(root); }
  void Put(const std::string& rel, const std::string& content) {
    fs::create_directories((root / rel).parent_path());
    std::ofstream(root / rel, std::ios::binary) << content;
  }
};

struct Outcome {
  std::vector<proto::SearchRecord> matches;
  proto::SearchRecord end;
  int err = 0;
};

Outcome Run(const std::string& path, proto::SearchSpec spec) {
  std::string out;
  Outcome o;
  o.err = init::Search(path, spec, [&](std::string_view rec) {
    out.append(rec);
    return 0;
  });
  std::string_view rest = out;
  std::vector<proto::SearchRecord> records;
  REQUIRE(proto::DecodeSearchRecords(&rest, 200000, &records));
  REQUIRE(rest.empty());
  if (o.err != 0) return o;
  REQUIRE(!records.empty());
  o.end = records.back();
  records.pop_back();
  o.matches = std::move(records);
  return o;
}

std::vector<std::string> Lines(const Outcome& o) {
  std::vector<std::string> v;
  for (const auto& m : o.matches) v.push_back(m.path + ":" + std::to_string(m.line) + ":" + m.text);
  return v;
}

proto::SearchSpec Pattern(const std::string& p) {
  proto::SearchSpec s;
  s.pattern = p;
  return s;
}

}  // namespace

TEST_CASE("glob: -g semantics") {
  CHECK(GlobMatches("*.py", "a.py"));
  CHECK(GlobMatches("*.py", "src/deep/a.py"));  // no slash: any depth
  CHECK_FALSE(GlobMatches("*.py", "a.pyc"));
  CHECK(GlobMatches("src/*.ts", "src/a.ts"));
  CHECK_FALSE(GlobMatches("src/*.ts", "src/x/a.ts"));  // '*' stays in a component
  CHECK_FALSE(GlobMatches("src/*.ts", "lib/src/a.ts"));  // a slash anchors
  CHECK(GlobMatches("src/**/*.ts", "src/a.ts"));
  CHECK(GlobMatches("src/**/*.ts", "src/x/y/a.ts"));
  CHECK(GlobMatches("**/test_*.py", "t/test_a.py"));
  CHECK(GlobMatches("**/test_*.py", "test_a.py"));
  CHECK(GlobMatches("vendor/**", "vendor/a/b"));
  CHECK_FALSE(GlobMatches("vendor/**", "vendor"));
  CHECK(GlobMatches("*.{c,h}", "x/y.h"));
  CHECK_FALSE(GlobMatches("*.{c,h}", "y.cc"));
  CHECK(GlobMatches("file?.txt", "file1.txt"));
  CHECK_FALSE(GlobMatches("a?b", "a/b"));
  CHECK(GlobMatches("[a-c]x", "bx"));
  CHECK_FALSE(GlobMatches("[!a-c]x", "bx"));
  CHECK_FALSE(GlobMatches("a[/]b", "a/b"));  // a class never matches '/'
  CHECK(GlobMatches("a\\*b", "a*b"));
  CHECK_FALSE(GlobMatches("a\\*b", "axb"));
  CHECK(GlobMatches("(x).+$", "(x).+$"));  // regex metacharacters are literals
  CHECK_FALSE(GlobMatches("(x).+$", "x.y"));
  CHECK(GlobMatches("ünï*", "d/ünïcode"));

  auto neg = glob::FromGlob("!node_modules/");
  REQUIRE(neg);
  CHECK(neg->negated);
  CHECK(neg->dir_only);
  CHECK_FALSE(glob::FromGlob(""));
  CHECK_FALSE(glob::FromGlob("a{b,c"));
  CHECK_FALSE(glob::FromGlob("a[bc"));
  CHECK_FALSE(glob::FromGlob("a\\"));
}

TEST_CASE("glob: .gitignore lines") {
  auto rule = [](const char* line) {
    auto r = glob::FromIgnoreLine(line);
    REQUIRE(r);
    return *r;
  };
  CHECK_FALSE(rule("").has_value());
  CHECK_FALSE(rule("# comment").has_value());
  CHECK_FALSE(rule("   ").has_value());
  REQUIRE(rule("\\#hash"));
  CHECK(Matches(rule("\\#hash")->regex, "#hash"));
  CHECK(rule("!keep.log")->negated);
  CHECK_FALSE(rule("\\!bang")->negated);
  CHECK(Matches(rule("\\!bang")->regex, "!bang"));
  CHECK(Matches(rule("trail   ")->regex, "trail"));
  CHECK(Matches(rule("trail\\ ")->regex, "trail "));
  CHECK(Matches(rule("crlf\r")->regex, "crlf"));
  CHECK(Matches(rule("/root.txt")->regex, "root.txt"));
  CHECK_FALSE(Matches(rule("/root.txt")->regex, "sub/root.txt"));
  CHECK(Matches(rule("build/")->regex, "x/build"));
  CHECK(rule("build/")->dir_only);
  CHECK(Matches(rule("a/**/b")->regex, "a/b"));
  CHECK(Matches(rule("a/**/b")->regex, "a/x/y/b"));
  CHECK(Matches(rule("{a,b}")->regex, "{a,b}"));  // no braces in gitignore
}

TEST_CASE("search: lines, numbers, and lines matched alone") {
  Tree t;
  t.Put("a.txt", "alpha\nbeta\ngamma beta\n");
  t.Put("sub/b.txt", "no\nbeta at line 2");  // no trailing newline
  t.Put("crlf.txt", "one\r\nbeta\r\n");
  auto o = Run(t.root, Pattern("beta"));
  CHECK(o.err == 0);
  CHECK(Lines(o) == std::vector<std::string>{"a.txt:2:beta", "a.txt:3:gamma beta", "crlf.txt:2:beta\r",
                                             "sub/b.txt:2:beta at line 2"});
  CHECK(o.end.files_searched == 3);
  CHECK_FALSE(o.end.truncated);

  // A match across a newline is no line's match; anchors work per line.
  CHECK(Run(t.root, Pattern("alpha\\nbeta")).matches.empty());
  CHECK(Lines(Run(t.root, Pattern("^gam"))) == std::vector<std::string>{"a.txt:3:gamma beta"});
  CHECK(Lines(Run(t.root / "a.txt", Pattern("a$"))) == std::vector<std::string>{"a.txt:1:alpha", "a.txt:2:beta",
                                                                                 "a.txt:3:gamma beta"});
}

TEST_CASE("search: options") {
  Tree t;
  t.Put("a.py", "Hello World\nx = a.b(c)\n");
  t.Put("b.ts", "hello\n");
  t.Put(".hidden/c.py", "hello\n");
  t.Put("bin.dat", std::string("hello\0binary", 12));

  auto spec = Pattern("hello");
  CHECK(Lines(Run(t.root, spec)) == std::vector<std::string>{"b.ts:1:hello"});  // hidden and binary skipped
  spec.flags = proto::kSearchIgnoreCase;
  CHECK(Run(t.root, spec).matches.size() == 2);
  spec.flags |= proto::kSearchHidden;
  CHECK(Run(t.root, spec).matches.size() == 3);
  spec.globs = {"*.py"};
  CHECK(Lines(Run(t.root, spec)) == std::vector<std::string>{".hidden/c.py:1:hello", "a.py:1:Hello World"});
  spec.globs = {"!.hidden/"};
  CHECK(Run(t.root, spec).matches.size() == 2);

  auto literal = Pattern("a.b(c)");
  literal.flags = proto::kSearchFixedStrings;
  CHECK(Lines(Run(t.root, literal)) == std::vector<std::string>{"a.py:2:x = a.b(c)"});

  auto files = Pattern("l+o");
  files.flags = proto::kSearchFilesWithMatches | proto::kSearchIgnoreCase;
  CHECK(Lines(Run(t.root, files)) == std::vector<std::string>{"a.py:0:", "b.ts:0:"});

  proto::SearchSpec list;  // no pattern: the files the globs select
  list.globs = {"*.py", "*.dat"};
  CHECK(Lines(Run(t.root, list)) == std::vector<std::string>{"a.py:0:", "bin.dat:0:"});

  auto cut = Pattern("World");
  cut.max_line_bytes = 5;
  CHECK(Lines(Run(t.root, cut)) == std::vector<std::string>{"a.py:1:Hello"});
}

TEST_CASE("search: errors and limits") {
  Tree t;
  for (int i = 0; i < 50; ++i) t.Put("f" + std::to_string(i), "x\nx\n");
  auto bad = Run(t.root, Pattern("a(b"));
  REQUIRE(bad.end.kind == proto::SearchRecord::Kind::kError);
  CHECK(bad.end.text.rfind("pattern: ", 0) == 0);
  auto spec = Pattern("x");
  spec.globs = {"ok", "a[b"};
  auto glob_error = Run(t.root, spec);
  REQUIRE(glob_error.end.kind == proto::SearchRecord::Kind::kError);
  CHECK(glob_error.end.text.rfind("globs[1]: ", 0) == 0);

  auto limited = Pattern("x");
  limited.max_results = 7;
  auto o = Run(t.root, limited);
  CHECK(o.matches.size() == 7);
  CHECK(o.end.truncated);

  CHECK(Run((t.root / "missing").string(), Pattern("x")).err == ENOENT);

  // Catastrophic backtracking stops at PCRE2's limits: no match, no hang.
  t.Put("redos", std::string(40, 'a') + "!\n");
  auto redos = Pattern("^(a+)+$");
  redos.globs = {"redos"};
  CHECK(Run(t.root, redos).matches.empty());
}

TEST_CASE("search: ignore files as ripgrep reads them") {
  Tree t;
  t.Put(".git/HEAD", "ref: hello\n");
  t.Put(".gitignore", "*.log\nbuild/\n!keep.log\n/top.txt\n");
  t.Put("a.log", "hello\n");
  t.Put("keep.log", "hello\n");
  t.Put("top.txt", "hello\n");
  t.Put("src/top.txt", "hello\n");
  t.Put("build/out.c", "hello\n");
  t.Put("src/build/x.c", "hello\n");
  t.Put("src/.gitignore", "gen/\n");
  t.Put("src/gen/g.c", "hello\n");
  t.Put("src/main.c", "hello\n");
  t.Put(".ignore", "src/main.c\n");
  t.Put("node_modules/m.js", "hello\n");
  t.Put("node_modules/.ignore", "*\n");

  auto o = Run(t.root, Pattern("hello"));
  CHECK(Lines(o) == std::vector<std::string>{"keep.log:1:hello", "src/top.txt:1:hello"});

  // Searching below the top still honours the ignore files above.
  CHECK(Lines(Run(t.root / "src", Pattern("hello"))) == std::vector<std::string>{"top.txt:1:hello"});

  auto all = Pattern("hello");
  all.flags = proto::kSearchNoIgnore;
  CHECK(Run(t.root, all).matches.size() == 9);  // still no hidden files

  // Outside a git repository .gitignore means nothing (as ripgrep); .ignore does.
  Tree plain;
  plain.Put(".gitignore", "*.log\n");
  plain.Put(".ignore", "*.tmp\n");
  plain.Put("a.log", "hello\n");
  plain.Put("b.tmp", "hello\n");
  CHECK(Lines(Run(plain.root, Pattern("hello"))) == std::vector<std::string>{"a.log:1:hello"});
}

TEST_CASE("search: symlinks are not followed") {
  Tree t;
  t.Put("real/a.txt", "hello\n");
  fs::create_directory_symlink(t.root / "real", t.root / "link");
  fs::create_symlink("/etc/passwd", t.root / "passwd");
  CHECK(Lines(Run(t.root, Pattern("hello|root"))) == std::vector<std::string>{"real/a.txt:1:hello"});
}

TEST_CASE("search records: hostile input is refused") {
  proto::SearchRecord r;
  r.path = "../etc/passwd";
  std::string enc = proto::EncodeSearchRecord(r);
  std::string_view v = enc;
  std::vector<proto::SearchRecord> out;
  CHECK_FALSE(proto::DecodeSearchRecords(&v, 10, &out));
  r.path = "/abs";
  enc = proto::EncodeSearchRecord(r);
  v = enc;
  CHECK_FALSE(proto::DecodeSearchRecords(&v, 10, &out));
  r.path = "ok";
  enc = proto::EncodeSearchRecord(r) + proto::EncodeSearchRecord(r);
  v = enc;
  CHECK_FALSE(proto::DecodeSearchRecords(&v, 1, &out));  // more than allowed
  out.clear();
  v = std::string_view(enc).substr(0, enc.size() - 3);  // a partial record waits
  REQUIRE(proto::DecodeSearchRecords(&v, 10, &out));
  CHECK(out.size() == 1);
  CHECK(!v.empty());

  proto::SearchSpec spec;
  spec.max_results = 0;
  std::string s = proto::EncodeSearchSpec(spec);
  size_t used;
  CHECK_FALSE(proto::DecodeSearchSpec(s, &used));
  spec.max_results = 10;
  s = proto::EncodeSearchSpec(spec);
  CHECK(proto::DecodeSearchSpec(std::string_view(s).substr(0, 5), &used).error().err == ENODATA);
  REQUIRE(proto::DecodeSearchSpec(s, &used));
  CHECK(used == s.size());
}
