// The search file operation (search.h).
//
// The walk is shared by a few threads through one stack of directories;
// each thread reads the files it finds. Each file is matched as one buffer
// (PCRE2 multiline, JIT-compiled) rather than line by line, and every line
// a match lands on is confirmed by matching that line alone, so results are
// exactly "the lines that match" whatever the pattern does at line ends.
#define PCRE2_CODE_UNIT_WIDTH 8
#include "runtime/init/search.h"

#include <dirent.h>
#include <fcntl.h>
#include <pcre2.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <ctime>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "runtime/core/glob.h"
#include "runtime/core/unique_fd.h"

namespace airlock::init {
namespace {

using proto::SearchRecord;
using proto::SearchSpec;

constexpr size_t kChunk = 256 * 1024;
constexpr size_t kMaxLine = 64u << 20;  // a longer line ends the file's search
constexpr unsigned kMaxThreads = 4;

// A compiled PCRE2 pattern. Matching needs per-thread match data (Matcher).
class Regex {
 public:
  // Compiles `pattern`; on failure *error says why ("... at offset N").
  static std::shared_ptr<Regex> Compile(std::string_view pattern, uint32_t options, std::string* error) {
    int code = 0;
    PCRE2_SIZE offset = 0;
    pcre2_code* re = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), options, &code,
                                   &offset, nullptr);
    if (re == nullptr) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(code, msg, sizeof(msg));
      *error = std::string(reinterpret_cast<char*>(msg)) + " at offset " + std::to_string(offset);
      return nullptr;
    }
    // Without JIT (a seccomp profile refusing executable memory) PCRE2's
    // interpreter matches the same, slower.
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);
    return std::shared_ptr<Regex>(new Regex(re));
  }
  ~Regex() { pcre2_code_free(code_); }
  pcre2_code* code() const { return code_; }

 private:
  explicit Regex(pcre2_code* c) : code_(c) {}
  pcre2_code* code_;
};

// One thread's means to match: match data and limits that stop a
// catastrophically backtracking pattern (it then counts as no match).
class Matcher {
 public:
  Matcher() : ctx_(pcre2_match_context_create(nullptr)), md_(pcre2_match_data_create(32, nullptr)) {
    pcre2_set_match_limit(ctx_, 10'000'000);
    pcre2_set_depth_limit(ctx_, 100'000);
  }
  ~Matcher() {
    pcre2_match_data_free(md_);
    pcre2_match_context_free(ctx_);
  }
  Matcher(const Matcher&) = delete;
  Matcher& operator=(const Matcher&) = delete;

  // The first match in s[start..]: its [begin, end), or nothing.
  std::optional<std::pair<size_t, size_t>> Find(const Regex& re, std::string_view s, size_t start) {
    int rc = pcre2_match(re.code(), reinterpret_cast<PCRE2_SPTR>(s.data()), s.size(), start, 0, md_, ctx_);
    if (rc < 0) return std::nullopt;
    PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md_);
    return std::make_pair(static_cast<size_t>(ov[0]), static_cast<size_t>(ov[1]));
  }
  // Which capture group (1-based) took part in a whole match of `s`; 0: no match.
  int Group(const Regex& re, std::string_view s) {
    int rc = pcre2_match(re.code(), reinterpret_cast<PCRE2_SPTR>(s.data()), s.size(), 0, 0, md_, ctx_);
    if (rc <= 1) return 0;
    PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md_);
    for (int g = 1; g < rc; ++g)
      if (ov[2 * g] != PCRE2_UNSET) return g;
    return 0;
  }

 private:
  pcre2_match_context* ctx_;
  pcre2_match_data* md_;
};

// A set of rules compiled into one regex, highest precedence first, one
// capture group per rule: the group that matched is the rule that decides.
struct RuleSet {
  std::shared_ptr<Regex> regex;
  std::vector<bool> negated;  // by group - 1

  // Builds from `rules` (in file order: later ones win). Rules that fail to
  // compile together are dropped one by one, as git drops a bad line.
  static std::optional<RuleSet> Build(const std::vector<glob::Rule>& rules, bool dirs) {
    RuleSet set;
    std::string alt;
    for (auto it = rules.rbegin(); it != rules.rend(); ++it) {
      if (it->dir_only && !dirs) continue;
      if (!alt.empty()) alt += "|";
      alt += "(" + it->regex + ")";
      set.negated.push_back(it->negated);
    }
    if (set.negated.empty()) return std::nullopt;
    std::string error;
    set.regex = Regex::Compile(glob::Anchored(alt), PCRE2_UTF | PCRE2_MATCH_INVALID_UTF | PCRE2_DOTALL, &error);
    if (!set.regex) return std::nullopt;
    return set;
  }
};

// One ignore file's rules, for the paths below its directory.
struct IgnoreFile {
  size_t strip = 0;    // chars of a walk-relative path before the part it matches ("a/b/")
  std::string prefix;  // what precedes the walk-relative path (ancestors: "src/")
  std::optional<RuleSet> files, dirs;
  std::shared_ptr<const IgnoreFile> parent;  // the next farther one
};

struct Found {
  std::string path;
  uint64_t line = 0;
  std::string text;
};

struct DirTask {
  std::string rel;  // "" for the root
  std::shared_ptr<const IgnoreFile> ignores;
  bool in_repo = false;
};

// Parses an ignore file's text into rules.
std::vector<glob::Rule> ParseIgnore(std::string_view text) {
  std::vector<glob::Rule> rules;
  while (!text.empty()) {
    size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
    auto rule = glob::FromIgnoreLine(line);
    if (rule && *rule) rules.push_back(std::move(**rule));
  }
  return rules;
}

std::string ReadSmall(int dir, const char* name) {
  UniqueFd fd(openat(dir, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK));
  std::string out;
  if (!fd) return out;
  char buf[16384];
  for (;;) {
    ssize_t n = read(fd.get(), buf, sizeof(buf));
    if (n <= 0 || out.size() > (1u << 20)) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

bool Exists(int dir, const char* name) {
  struct stat st;
  return fstatat(dir, name, &st, AT_SYMLINK_NOFOLLOW) == 0;
}

int64_t NowMs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return int64_t{ts.tv_sec} * 1000 + ts.tv_nsec / 1'000'000;
}

class Searcher {
 public:
  Searcher(const SearchSpec& spec, std::shared_ptr<Regex> pattern, std::optional<RuleSet> include,
           std::optional<RuleSet> exclude_files, std::optional<RuleSet> exclude_dirs)
      : spec_(spec),
        pattern_(std::move(pattern)),
        include_(std::move(include)),
        exclude_files_(std::move(exclude_files)),
        exclude_dirs_(std::move(exclude_dirs)),
        deadline_(NowMs() + spec.timeout_ms) {}

  // Walks from `root` (an open directory) with `task`, on up to kMaxThreads threads.
  void Walk(int root, DirTask task) {
    root_ = root;
    stack_.push_back(std::move(task));
    unsigned n = std::clamp(std::thread::hardware_concurrency(), 1u, kMaxThreads);
    std::vector<std::thread> threads;
    for (unsigned i = 1; i < n; ++i) threads.emplace_back([this] { Work(); });
    Work();
    for (auto& t : threads) t.join();
  }

  // Searches (or lists) the one file `name` in `dir`, reported as `rel`.
  void One(int dir, const char* name, const std::string& rel) {
    Matcher m;
    std::vector<Found> found;
    File(m, dir, name, rel, &found);
    Keep(std::move(found));
  }

  // Writes the results (sorted) and the kDone record.
  int Finish(const std::function<int(std::string_view)>& out) {
    std::sort(results_.begin(), results_.end(),
              [](const Found& a, const Found& b) { return a.path != b.path ? a.path < b.path : a.line < b.line; });
    if (results_.size() > spec_.max_results) {
      results_.resize(spec_.max_results);
      truncated_ = true;
    }
    for (auto& f : results_) {
      SearchRecord r;
      r.path = std::move(f.path);
      r.line = f.line;
      r.text = std::move(f.text);
      if (int err = out(proto::EncodeSearchRecord(r))) return err;
    }
    SearchRecord done;
    done.kind = SearchRecord::Kind::kDone;
    done.files_searched = files_searched_.load();
    done.truncated = truncated_.load();
    done.timed_out = timed_out_.load();
    return out(proto::EncodeSearchRecord(done));
  }

 private:
  bool Stopped() {
    if (stop_.load(std::memory_order_relaxed)) return true;
    if (NowMs() > deadline_) {
      timed_out_ = true;
      stop_ = true;
    }
    return stop_.load(std::memory_order_relaxed);
  }

  void Work() {
    Matcher m;
    std::vector<Found> found;
    std::unique_lock lock(mu_);
    for (;;) {
      cv_.wait(lock, [&] { return !stack_.empty() || active_ == 0 || stop_; });
      if (stack_.empty() || stop_) break;
      DirTask task = std::move(stack_.back());
      stack_.pop_back();
      ++active_;
      lock.unlock();
      Directory(m, task, &found);
      Keep(std::move(found));
      found.clear();
      lock.lock();
      if (--active_ == 0 && stack_.empty()) cv_.notify_all();
    }
    cv_.notify_all();
  }

  // True when an ignore file below or above decides `rel` is ignored.
  bool Ignored(Matcher& m, const IgnoreFile* f, const std::string& rel, bool dir) {
    std::string scratch;
    for (; f != nullptr; f = f->parent.get()) {
      const auto& set = dir ? f->dirs : f->files;
      if (!set) continue;
      std::string_view p = std::string_view(rel).substr(f->strip);
      if (!f->prefix.empty()) {
        scratch = f->prefix;
        scratch += p;
        p = scratch;
      }
      if (int g = m.Group(*set->regex, p)) return !set->negated[static_cast<size_t>(g - 1)];
    }
    return false;
  }

  bool Selected(Matcher& m, const DirTask& task, const std::string& rel, bool dir) {
    if (!(spec_.flags & proto::kSearchNoIgnore) && Ignored(m, task.ignores.get(), rel, dir)) return false;
    const auto& exclude = dir ? exclude_dirs_ : exclude_files_;
    if (exclude && m.Group(*exclude->regex, rel)) return false;
    if (!dir && include_ && !m.Group(*include_->regex, rel)) return false;
    return true;
  }

  void Directory(Matcher& m, const DirTask& task, std::vector<Found>* found) {
    if (Stopped()) return;
    int fd = task.rel.empty() ? dup(root_) : openat(root_, task.rel.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return;  // gone, or not ours to read: ripgrep goes on too
    DIR* d = fdopendir(fd);
    if (d == nullptr) {
      close(fd);
      return;
    }
    std::unique_ptr<DIR, int (*)(DIR*)> closer(d, closedir);
    struct Entry {
      std::string name;
      unsigned char type;
    };
    std::vector<Entry> entries;
    bool has_gitignore = false, has_ignore = false, has_git = false;
    while (dirent* e = readdir(d)) {
      std::string_view name = e->d_name;
      if (name == "." || name == "..") continue;
      if (name == ".gitignore") has_gitignore = true;
      if (name == ".ignore") has_ignore = true;
      if (name == ".git") has_git = true;
      entries.push_back({std::string(name), e->d_type});
    }
    DirTask sub{"", task.ignores, task.in_repo || has_git};
    const bool use_ignores = !(spec_.flags & proto::kSearchNoIgnore);
    if (use_ignores && ((has_gitignore && sub.in_repo) || has_ignore)) {
      std::vector<glob::Rule> rules;
      if (has_gitignore && sub.in_repo) rules = ParseIgnore(ReadSmall(fd, ".gitignore"));
      if (has_ignore) {  // .ignore takes precedence over .gitignore, as in ripgrep
        auto more = ParseIgnore(ReadSmall(fd, ".ignore"));
        rules.insert(rules.end(), more.begin(), more.end());
      }
      auto file = std::make_shared<IgnoreFile>();
      file->strip = task.rel.empty() ? 0 : task.rel.size() + 1;
      file->files = RuleSet::Build(rules, false);
      file->dirs = RuleSet::Build(rules, true);
      file->parent = task.ignores;
      if (file->files || file->dirs) sub.ignores = std::move(file);
    }
    std::vector<DirTask> subdirs;
    for (auto& e : entries) {
      if (Stopped()) return;
      if (e.name[0] == '.' && !(spec_.flags & proto::kSearchHidden)) continue;
      if (e.name == ".git" && use_ignores) continue;
      unsigned char type = e.type;
      if (type == DT_UNKNOWN) {
        struct stat st;
        if (fstatat(fd, e.name.c_str(), &st, AT_SYMLINK_NOFOLLOW) < 0) continue;
        type = S_ISDIR(st.st_mode) ? DT_DIR : S_ISREG(st.st_mode) ? DT_REG : DT_LNK;
      }
      if (type != DT_DIR && type != DT_REG) continue;  // links are not followed; devices not read
      std::string rel = task.rel.empty() ? e.name : task.rel + "/" + e.name;
      const bool dir = type == DT_DIR;
      if (!Selected(m, sub, rel, dir)) continue;
      if (dir) {
        subdirs.push_back({std::move(rel), sub.ignores, sub.in_repo});
      } else {
        File(m, fd, e.name.c_str(), rel, found);
      }
    }
    if (!subdirs.empty()) {
      std::lock_guard lock(mu_);
      for (auto& s : subdirs) stack_.push_back(std::move(s));
      cv_.notify_all();
    }
  }

  void AddFound(std::vector<Found>* found, std::string path, uint64_t line, std::string_view text) {
    size_t n = path.size() + text.size() + 16;
    if (output_.fetch_add(n, std::memory_order_relaxed) + n > proto::kMaxSearchOutput ||
        count_.fetch_add(1, std::memory_order_relaxed) >= spec_.max_results) {
      truncated_ = true;
      stop_ = true;
      return;
    }
    found->push_back({std::move(path), line, std::string(text)});
  }

  void File(Matcher& m, int dir, const char* name, const std::string& rel, std::vector<Found>* found) {
    if (pattern_ != nullptr) return SearchFile(m, dir, name, rel, found);
    files_searched_.fetch_add(1, std::memory_order_relaxed);
    AddFound(found, rel, 0, {});
  }

  // The lines of `name` that match, into *found.
  void SearchFile(Matcher& m, int dir, const char* name, const std::string& rel, std::vector<Found>* found) {
    UniqueFd fd(openat(dir, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK));
    if (!fd) return;
    files_searched_.fetch_add(1, std::memory_order_relaxed);
    thread_local std::string buf;
    if (buf.size() < kChunk) buf.resize(kChunk);
    size_t have = 0;  // bytes in buf; buf[0] starts line `line`
    uint64_t line = 1;
    for (bool eof = false; !eof;) {
      if (have == buf.size()) {
        if (buf.size() >= kMaxLine) return;
        buf.resize(buf.size() * 2);
      }
      ssize_t n = read(fd.get(), buf.data() + have, buf.size() - have);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return;
      eof = n == 0;
      // A NUL byte: a binary file. Nothing past it is searched (as ripgrep).
      bool binary = n > 0 && memchr(buf.data() + have, '\0', static_cast<size_t>(n)) != nullptr;
      have += static_cast<size_t>(std::max<ssize_t>(n, 0));
      if (binary) return;
      // Search up to the last complete line; the rest waits for more.
      size_t end = have;
      if (!eof) {
        const void* nl = memrchr(buf.data(), '\n', have);
        if (nl == nullptr) continue;
        end = static_cast<size_t>(static_cast<const char*>(nl) - buf.data()) + 1;
      }
      if (SearchLines(m, std::string_view(buf.data(), end), rel, &line, found)) return;
      memmove(buf.data(), buf.data() + end, have - end);
      have -= end;
      if (Stopped()) return;
    }
  }

  // Searches whole lines `text`; *line is the number of its first. True when
  // this file is done (files_with_matches had its match, or the search stopped).
  bool SearchLines(Matcher& m, std::string_view text, const std::string& rel, uint64_t* line, std::vector<Found>* found) {
    size_t pos = 0, counted = 0;
    while (pos < text.size()) {
      auto hit = m.Find(*pattern_, text, pos);
      if (!hit) break;
      size_t begin = hit->first;
      const char* before = static_cast<const char*>(memrchr(text.data() + pos, '\n', begin - pos));
      size_t line_start = before ? static_cast<size_t>(before - text.data()) + 1 : pos;
      const char* after = static_cast<const char*>(memchr(text.data() + begin, '\n', text.size() - begin));
      size_t line_end = after ? static_cast<size_t>(after - text.data()) : text.size();
      std::string_view whole = text.substr(line_start, line_end - line_start);
      if (m.Find(*pattern_, whole, 0)) {
        *line += static_cast<uint64_t>(std::count(text.begin() + counted, text.begin() + line_start, '\n'));
        counted = line_start;
        if (spec_.flags & proto::kSearchFilesWithMatches) {
          AddFound(found, rel, 0, {});
          return true;
        }
        AddFound(found, rel, *line, whole.substr(0, spec_.max_line_bytes));
        if (stop_.load(std::memory_order_relaxed)) return true;
      }
      pos = line_end + 1;
    }
    *line += static_cast<uint64_t>(std::count(text.begin() + counted, text.end(), '\n'));
    return false;
  }

  void Keep(std::vector<Found>&& found) {
    if (found.empty()) return;
    std::lock_guard lock(results_mu_);
    for (auto& f : found) results_.push_back(std::move(f));
  }

  const SearchSpec& spec_;
  std::shared_ptr<Regex> pattern_;  // null: list files
  std::optional<RuleSet> include_, exclude_files_, exclude_dirs_;
  const int64_t deadline_;
  int root_ = -1;

  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<DirTask> stack_;
  int active_ = 0;

  std::atomic<bool> stop_{false}, truncated_{false}, timed_out_{false};
  std::atomic<uint64_t> files_searched_{0}, count_{0}, output_{0};
  std::mutex results_mu_;
  std::vector<Found> results_;
};

int ReportError(const std::function<int(std::string_view)>& out, std::string message) {
  SearchRecord r;
  r.kind = SearchRecord::Kind::kError;
  r.text = message.substr(0, 4096);
  return out(proto::EncodeSearchRecord(r));
}

// The ignore files of the directories above the search root, up to the
// git repository's top (none outside a repository), nearest first in the
// chain. `root_abs` is the root's absolute path.
std::shared_ptr<const IgnoreFile> AncestorIgnores(const std::string& root_abs, bool* in_repo) {
  std::vector<std::string> dirs;  // root's ancestors, nearest first
  for (std::string d = root_abs; d != "/";) {
    size_t slash = d.rfind('/');
    d = slash == 0 ? "/" : d.substr(0, slash);
    dirs.push_back(d);
  }
  // The repository: the nearest of root and its ancestors with a .git.
  size_t top = dirs.size();
  UniqueFd self(open(root_abs.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  *in_repo = self && Exists(self.get(), ".git");
  for (size_t i = 0; i < dirs.size() && !*in_repo && top == dirs.size(); ++i) {
    UniqueFd fd(open(dirs[i].c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (fd && Exists(fd.get(), ".git")) top = i;
  }
  if (*in_repo || top == dirs.size()) return nullptr;  // the root is the top, or no repository
  *in_repo = true;
  std::shared_ptr<const IgnoreFile> chain;
  for (size_t i = top + 1; i-- > 0;) {  // farthest first: nearer ones chain in front
    UniqueFd fd(open(dirs[i].c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!fd) continue;
    auto rules = ParseIgnore(ReadSmall(fd.get(), ".gitignore"));
    auto more = ParseIgnore(ReadSmall(fd.get(), ".ignore"));
    rules.insert(rules.end(), more.begin(), more.end());
    if (rules.empty()) continue;
    auto file = std::make_shared<IgnoreFile>();
    file->prefix = root_abs.substr(dirs[i] == "/" ? 1 : dirs[i].size() + 1) + "/";
    file->files = RuleSet::Build(rules, false);
    file->dirs = RuleSet::Build(rules, true);
    file->parent = chain;
    chain = std::move(file);
  }
  return chain;
}

}  // namespace

int Search(const std::string& path, const SearchSpec& spec, const std::function<int(std::string_view)>& out) {
  std::shared_ptr<Regex> pattern;
  std::string error;
  if (!spec.pattern.empty()) {
    uint32_t options = PCRE2_UTF | PCRE2_MATCH_INVALID_UTF | PCRE2_MULTILINE | PCRE2_NEVER_BACKSLASH_C;
    if (spec.flags & proto::kSearchIgnoreCase) options |= PCRE2_CASELESS;
    if (spec.flags & proto::kSearchFixedStrings) options = PCRE2_LITERAL | (options & (PCRE2_CASELESS | PCRE2_UTF | PCRE2_MATCH_INVALID_UTF));
    pattern = Regex::Compile(spec.pattern, options, &error);
    if (!pattern) return ReportError(out, "pattern: " + error);
  }
  std::vector<glob::Rule> include, exclude;
  for (size_t i = 0; i < spec.globs.size(); ++i) {
    auto rule = glob::FromGlob(spec.globs[i]);
    if (!rule) return ReportError(out, "globs[" + std::to_string(i) + "]: " + rule.error().detail);
    // "!x" excludes; the RuleSet marks it negated, which here means "a match drops it".
    (rule->negated ? exclude : include).push_back(std::move(*rule));
  }
  for (auto& r : exclude) r.negated = false;
  auto compile = [&](const std::vector<glob::Rule>& rules, bool dirs, const char* what) -> std::optional<RuleSet> {
    auto set = RuleSet::Build(rules, dirs);
    bool want = std::any_of(rules.begin(), rules.end(), [&](const glob::Rule& r) { return dirs || !r.dir_only; });
    if (want && !set) error = what;
    return set;
  };
  auto inc = compile(include, false, "globs: the include globs don't compile together");
  auto exf = compile(exclude, false, "globs: the exclude globs don't compile together");
  auto exd = compile(exclude, true, "globs: the exclude globs don't compile together");
  if (!error.empty()) return ReportError(out, error);

  UniqueFd root(open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK));
  if (!root) return errno;
  struct stat st;
  if (fstat(root.get(), &st) < 0) return errno;
  Searcher s(spec, pattern, std::move(inc), std::move(exf), std::move(exd));
  if (S_ISDIR(st.st_mode)) {
    DirTask task;
    if (!(spec.flags & proto::kSearchNoIgnore)) {
      char abs[PATH_MAX];
      if (realpath(path.c_str(), abs) != nullptr) task.ignores = AncestorIgnores(abs, &task.in_repo);
    }
    s.Walk(root.get(), std::move(task));
  } else if (S_ISREG(st.st_mode)) {
    std::string name = path.substr(path.rfind('/') + 1);
    if (name.empty() || name == "." || name == "..") return EISDIR;
    s.One(AT_FDCWD, path.c_str(), name);
  } else {
    return EINVAL;  // a device, fifo or socket: not searched
  }
  return s.Finish(out);
}

int RunSearchOp(const std::string& path, int fd) {
  std::string in;
  char buf[65536];
  std::optional<SearchSpec> spec;
  while (!spec) {
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno;
    if (n == 0) return EPROTO;  // the spec never came whole
    in.append(buf, static_cast<size_t>(n));
    size_t used = 0;
    auto decoded = proto::DecodeSearchSpec(in, &used);
    if (decoded) {
      spec = std::move(*decoded);
    } else if (decoded.error().err != ENODATA) {
      return EPROTO;
    }
  }
  auto write_all = [fd](std::string_view data) -> int {
    while (!data.empty()) {
      ssize_t w = write(fd, data.data(), data.size());
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) return errno;
      data.remove_prefix(static_cast<size_t>(w));
    }
    return 0;
  };
  // Records are small: one write per record would be a syscall (and a
  // wake-up of the reader) per file listed.
  std::string pending;
  auto buffered = [&](std::string_view record) -> int {
    pending.append(record);
    if (pending.size() < 64 * 1024) return 0;
    int err = write_all(pending);
    pending.clear();
    return err;
  };
  if (int err = Search(path, *spec, buffered)) return err;
  return write_all(pending);
}

}  // namespace airlock::init
