#include "harness/client/manifest.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <climits>
#include <nlohmann/json.hpp>
#include <set>
#include <vector>

#include "harness/client/args.h"
#include "runtime/core/unique_fd.h"

namespace airlock::client {
namespace {

using nlohmann::json;

constexpr size_t kMaxManifestBytes = 32 << 20;
// YAML aliases are expanded when the tree is converted: a handful of
// nested aliases would otherwise grow exponentially ("billion laughs").
constexpr size_t kMaxNodes = 200000;
constexpr int kMaxDepth = 64;

std::string Quote(const std::string& s) { return "\"" + s.substr(0, 200) + "\""; }

// YAML to the JSON tree the mapper reads. Scalars stay text: YAML's own
// typing (0644 as an octal or decimal integer, yes as a boolean) differs
// between YAML versions, so each field interprets its text itself.
class YamlConverter {
 public:
  explicit YamlConverter(std::string name) : name_(std::move(name)) {}

  Result<json> Convert(const YAML::Node& node, int depth) {
    if (++nodes_ > kMaxNodes) return Fail(name_, "more than " + std::to_string(kMaxNodes) + " nodes (aliases expanded)");
    if (depth > kMaxDepth) return Fail(name_, Where(node) + "nested more than " + std::to_string(kMaxDepth) + " levels");
    switch (node.Type()) {
      case YAML::NodeType::Undefined:
      case YAML::NodeType::Null:
        return json(nullptr);
      case YAML::NodeType::Scalar:
        return json(node.Scalar());
      case YAML::NodeType::Sequence: {
        json out = json::array();
        for (const auto& item : node) out.push_back(TRY(Convert(item, depth + 1)));
        return out;
      }
      case YAML::NodeType::Map: {
        json out = json::object();
        for (const auto& kv : node) {
          if (!kv.first.IsScalar()) return Fail(name_, Where(kv.first) + "a key that is not a plain string");
          const std::string& key = kv.first.Scalar();
          if (out.contains(key)) return Fail(name_, Where(kv.first) + "duplicate key " + Quote(key));
          out[key] = TRY(Convert(kv.second, depth + 1));
        }
        return out;
      }
    }
    return json(nullptr);
  }

 private:
  static std::string Where(const YAML::Node& node) {
    const YAML::Mark m = node.Mark();
    if (m.is_null()) return "";
    return "line " + std::to_string(m.line + 1) + ": ";
  }
  std::string name_;
  size_t nodes_ = 0;
};

Result<json> ParseYaml(const std::string& text, const std::string& name) {
  std::vector<YAML::Node> docs;
  try {
    docs = YAML::LoadAll(text);
  } catch (const YAML::Exception& e) {
    std::string where = e.mark.is_null() ? "" : "line " + std::to_string(e.mark.line + 1) + ", column " +
                                                    std::to_string(e.mark.column + 1) + ": ";
    return Fail(name, where + e.msg);
  }
  if (docs.empty()) return json(nullptr);
  if (docs.size() > 1) return Fail(name, "more than one YAML document");
  try {
    return YamlConverter(name).Convert(docs[0], 0);
  } catch (const YAML::Exception& e) {
    return Fail(name, e.msg);
  }
}

// Builds the tree through nlohmann's SAX interface, which reports errors to
// the handler instead of throwing: the runtime's code instantiates the same
// nlohmann templates without exceptions, and the linker keeps one copy of
// each, so a throw here could end in abort(). It also names duplicate keys,
// which nlohmann's DOM parser would keep silently (the last one wins).
class JsonHandler : public nlohmann::json_sax<json> {
 public:
  explicit JsonHandler(json* out) : dom_(*out, /*allow_exceptions=*/false) {}
  bool null() override { return dom_.null(); }
  bool boolean(bool v) override { return dom_.boolean(v); }
  bool number_integer(number_integer_t v) override { return dom_.number_integer(v); }
  bool number_unsigned(number_unsigned_t v) override { return dom_.number_unsigned(v); }
  bool number_float(number_float_t v, const string_t& s) override { return dom_.number_float(v, s); }
  bool string(string_t& v) override { return dom_.string(v); }
  bool binary(binary_t& v) override { return dom_.binary(v); }
  bool start_object(std::size_t n) override {
    keys_.emplace_back();
    return dom_.start_object(n);
  }
  bool key(string_t& k) override {
    if (!keys_.empty() && !keys_.back().insert(k).second) {
      error_ = "duplicate key " + Quote(k);
      return false;
    }
    return dom_.key(k);
  }
  bool end_object() override {
    if (!keys_.empty()) keys_.pop_back();
    return dom_.end_object();
  }
  bool start_array(std::size_t n) override { return dom_.start_array(n); }
  bool end_array() override { return dom_.end_array(); }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& e) override {
    // "[json.exception.parse_error.101] parse error at line 2, column 3: ..."
    std::string what = e.what();
    if (size_t close = what.find("] "); what.starts_with("[json.exception") && close != std::string::npos)
      what = what.substr(close + 2);
    error_ = what;
    return false;
  }
  const std::string& error() const { return error_; }

 private:
  nlohmann::detail::json_sax_dom_parser<json> dom_;
  std::vector<std::set<std::string>> keys_;
  std::string error_;
};

Result<json> ParseJson(const std::string& text, const std::string& name) {
  json j;
  JsonHandler handler(&j);
  if (!json::sax_parse(text, &handler) || !handler.error().empty())
    return Fail(name, handler.error().empty() ? "parse error" : handler.error());
  return j;
}

// Reads typed values from the tree, naming the key path in errors.
class Mapper {
 public:
  Mapper(std::string name, bool yaml, std::string base_dir)
      : name_(std::move(name)), yaml_(yaml), base_dir_(std::move(base_dir)) {}

  Result<v1::Manifest> Map(const json& top) {
    v1::Manifest m;
    if (top.is_null()) return m;  // an empty file: every default
    if (!top.is_object()) return Bad("", "the manifest must be a map (root, entries, environment, users)");
    for (const auto& [key, value] : top.items()) {
      if (key == "root") {
        m.set_root(TRY(String(value, "root")));
        if (!m.root().starts_with('/')) return Bad("root", "must be an absolute path inside the sandbox (got " + Quote(m.root()) + ")");
      } else if (key == "entries") {
        if (value.is_null()) continue;
        if (!value.is_array()) return Bad("entries", "must be a list");
        for (size_t i = 0; i < value.size(); ++i) *m.add_entries() = TRY(Entry(value[i], "entries[" + std::to_string(i) + "]"));
      } else if (key == "environment") {
        if (value.is_null()) continue;
        if (!value.is_object()) return Bad("environment", "must be a map of NAME: value");
        for (const auto& [k, v] : value.items()) {
          const std::string path = "environment." + k;
          if (k.empty() || k.find('=') != std::string::npos) return Bad(path, "a name must be non-empty and without '='");
          (*m.mutable_environment())[k] = TRY(String(v, path));
        }
      } else if (key == "users") {
        if (value.is_null()) continue;
        if (!value.is_array()) return Bad("users", "must be a list");
        for (size_t i = 0; i < value.size(); ++i) *m.add_users() = TRY(User(value[i], "users[" + std::to_string(i) + "]"));
      } else {
        return Bad(key, "unknown key (root, entries, environment, users)");
      }
    }
    return m;
  }

 private:
  std::unexpected<Error> Bad(const std::string& path, const std::string& what) const {
    return Fail(name_, path.empty() ? what : path + ": " + what);
  }

  Result<std::string> String(const json& v, const std::string& path) const {
    if (!v.is_string()) return Bad(path, "must be a string");
    return v.get<std::string>();
  }

  Result<uint32_t> Uint(const json& v, const std::string& path) const {
    if (!yaml_) {
      if (!v.is_number_unsigned() || v.get<uint64_t>() > UINT32_MAX) return Bad(path, "must be a whole number 0-4294967295");
      return static_cast<uint32_t>(v.get<uint64_t>());
    }
    if (!v.is_string()) return Bad(path, "must be a whole number");
    const std::string s = v.get<std::string>();
    uint64_t n = 0;
    if (s.empty() || s.size() > 10) return Bad(path, "not a whole number: " + Quote(s));
    for (char c : s) {
      if (c < '0' || c > '9') return Bad(path, "not a whole number: " + Quote(s));
      n = n * 10 + static_cast<uint64_t>(c - '0');
    }
    if (n > UINT32_MAX) return Bad(path, "too large: " + Quote(s));
    return static_cast<uint32_t>(n);
  }

  Result<bool> Bool(const json& v, const std::string& path) const {
    if (v.is_boolean()) return v.get<bool>();
    if (yaml_ && v.is_string()) {
      std::string s = v.get<std::string>();
      for (auto& c : s) c = static_cast<char>(tolower(static_cast<unsigned char>(c)));
      if (s == "true" || s == "yes") return true;
      if (s == "false" || s == "no") return false;
    }
    return Bad(path, "must be true or false");
  }

  // Permission bits as octal text: "0644", "644", "0o644".
  Result<uint32_t> Mode(const json& v, const std::string& path) const {
    if (!v.is_string())
      return Bad(path, "write the mode as an octal string such as \"0644\"");
    std::string s = v.get<std::string>();
    if (s.starts_with("0o") || s.starts_with("0O")) s = s.substr(2);
    if (s.empty() || s.size() > 5) return Bad(path, "not an octal number: " + Quote(v.get<std::string>()));
    uint32_t n = 0;
    for (char c : s) {
      if (c < '0' || c > '7') return Bad(path, "not an octal number: " + Quote(v.get<std::string>()));
      n = n * 8 + static_cast<uint32_t>(c - '0');
    }
    if (n > 07777) return Bad(path, "more than permission bits (at most 07777): " + Quote(v.get<std::string>()));
    return n;
  }

  Result<std::string> HostPath(const json& v, const std::string& path) const {
    std::string p = TRY(String(v, path));
    if (p.empty()) return Bad(path, "empty host path");
    if (p.find('\0') != std::string::npos) return Bad(path, "contains NUL");
    return AbsoluteLexical(base_dir_, p);
  }

  Result<v1::ManifestEntry> Entry(const json& v, const std::string& at) const {
    if (!v.is_object()) return Bad(at, "must be a map with path and one of host_bind, host_copy, output_dir, content, empty_dir");
    v1::ManifestEntry e;
    std::string source;  // the key that set it
    bool has_path = false, has_mode = false;
    auto set_source = [&](const std::string& key) -> Result<void> {
      if (!source.empty()) return Bad(at + "." + key, "more than one source (" + source + " and " + key + ")");
      source = key;
      return {};
    };
    for (const auto& [key, value] : v.items()) {
      const std::string path = at + "." + key;
      if (key == "path") {
        e.set_path(TRY(String(value, path)));
        if (e.path().empty()) return Bad(path, "empty");
        has_path = true;
      } else if (key == "host_bind") {
        TRY(set_source(key));
        e.set_host_bind(TRY(HostPath(value, path)));
      } else if (key == "host_copy") {
        TRY(set_source(key));
        e.set_host_copy(TRY(HostPath(value, path)));
      } else if (key == "output_dir") {
        TRY(set_source(key));
        e.set_output_dir(TRY(HostPath(value, path)));
      } else if (key == "content") {
        TRY(set_source(key));
        e.set_content(TRY(String(value, path)));
      } else if (key == "empty_dir") {
        TRY(set_source(key));
        if (!TRY(Bool(value, path))) return Bad(path, "must be true (leave the entry out instead)");
        e.set_empty_dir(true);
      } else if (key == "mode") {
        e.set_mode(TRY(Mode(value, path)));
        has_mode = true;
      } else {
        return Bad(path, "unknown key (path, host_bind, host_copy, output_dir, content, empty_dir, mode)");
      }
    }
    if (!has_path) return Bad(at + ".path", "missing");
    if (source.empty()) return Bad(at, "no source: give one of host_bind, host_copy, output_dir, content, empty_dir");
    if (has_mode && source != "content" && source != "empty_dir")
      return Bad(at + ".mode", "only content and empty_dir entries take a mode (" + source + " keeps the host's)");
    return e;
  }

  Result<v1::User> User(const json& v, const std::string& at) const {
    if (!v.is_object()) return Bad(at, "must be a map with name, uid, gid, home");
    v1::User u;
    bool has_name = false, has_uid = false, has_gid = false;
    for (const auto& [key, value] : v.items()) {
      const std::string path = at + "." + key;
      if (key == "name") {
        u.set_name(TRY(String(value, path)));
        has_name = true;
      } else if (key == "uid") {
        u.set_uid(TRY(Uint(value, path)));
        has_uid = true;
      } else if (key == "gid") {
        u.set_gid(TRY(Uint(value, path)));
        has_gid = true;
      } else if (key == "home") {
        u.set_home(TRY(String(value, path)));
      } else {
        return Bad(path, "unknown key (name, uid, gid, home)");
      }
    }
    if (!has_name) return Bad(at + ".name", "missing");
    if (!has_uid) return Bad(at + ".uid", "missing");
    if (!has_gid) u.set_gid(u.uid());
    return u;
  }

  std::string name_;
  bool yaml_;
  std::string base_dir_;
};

bool EndsWith(const std::string& s, const std::string& suffix) {
  if (s.size() < suffix.size()) return false;
  for (size_t i = 0; i < suffix.size(); ++i)
    if (tolower(static_cast<unsigned char>(s[s.size() - suffix.size() + i])) != suffix[i]) return false;
  return true;
}

}  // namespace

Result<v1::Manifest> ParseManifest(const std::string& text, const std::string& name, ManifestFormat format,
                                   const std::string& base_dir) {
  if (format == ManifestFormat::kAuto) {
    size_t first = text.find_first_not_of(" \t\r\n");
    format = first != std::string::npos && text[first] == '{' ? ManifestFormat::kJson : ManifestFormat::kYaml;
  }
  const bool yaml = format == ManifestFormat::kYaml;
  json tree = yaml ? TRY(ParseYaml(text, name)) : TRY(ParseJson(text, name));
  return Mapper(name, yaml, base_dir).Map(tree);
}

Result<v1::Manifest> LoadManifest(const std::string& path) {
  UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return Errno("read manifest", path);
  struct stat st;
  if (fstat(fd.get(), &st) != 0) return Errno("read manifest", path);
  if (!S_ISREG(st.st_mode)) return Fail(path, "not a regular file");
  if (static_cast<uint64_t>(st.st_size) > kMaxManifestBytes) return Fail(path, "larger than 32 MiB");
  std::string text;
  char buf[65536];
  for (;;) {
    ssize_t n = read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Errno("read manifest", path);
    if (n == 0) break;
    text.append(buf, static_cast<size_t>(n));
    if (text.size() > kMaxManifestBytes) return Fail(path, "larger than 32 MiB");
  }
  ManifestFormat format = ManifestFormat::kAuto;
  if (EndsWith(path, ".yaml") || EndsWith(path, ".yml")) format = ManifestFormat::kYaml;
  else if (EndsWith(path, ".json")) format = ManifestFormat::kJson;
  // Relative host paths in the file mean "next to the manifest".
  char cwd[PATH_MAX];
  if (getcwd(cwd, sizeof cwd) == nullptr) return Errno("getcwd", path);
  size_t slash = path.rfind('/');
  std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
  return ParseManifest(text, path, format, AbsoluteLexical(cwd, dir));
}

}  // namespace airlock::client
