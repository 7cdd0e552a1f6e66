#include "images/build/recipe.h"

#include <fcntl.h>

#include <nlohmann/json.hpp>
#include <set>

#include "images/store/fs_util.h"
#include "images/store/image_store.h"

namespace airlock::images::build {

namespace {

using nlohmann::json;

constexpr size_t kMaxRecipeBytes = 1 << 20;
constexpr size_t kMaxSteps = 200;

// Errors read "recipe NAME: FIELD: reason".
class Fields {
 public:
  explicit Fields(std::string recipe) : recipe_(std::move(recipe)) {}

  Error Bad(const std::string& field, const std::string& why) const {
    return Fail("recipe " + recipe_, field + ": " + why).error();
  }

  // Refuses keys outside `allowed` (a typo must not drop a step silently).
  Result<void> Only(const json& o, const std::string& field, std::initializer_list<const char*> allowed) const {
    for (const auto& [k, v] : o.items()) {
      bool ok = false;
      for (const char* a : allowed) ok |= k == a;
      if (!ok) {
        std::string list;
        for (const char* a : allowed) list += std::string(list.empty() ? "" : ", ") + a;
        return std::unexpected(Bad(field.empty() ? k : field + "." + k, "unknown field (expected one of: " + list + ")"));
      }
    }
    return {};
  }

  Result<std::optional<std::string>> Str(const json& o, const char* key, const std::string& field) const {
    auto it = o.find(key);
    if (it == o.end()) return std::optional<std::string>();
    if (!it->is_string()) return std::unexpected(Bad(field, "must be a string"));
    std::string s = it->get<std::string>();
    if (s.find('\0') != std::string::npos) return std::unexpected(Bad(field, "holds a NUL byte"));
    return std::optional<std::string>(s);
  }

  Result<std::optional<std::vector<std::string>>> StrList(const json& o, const char* key,
                                                          const std::string& field) const {
    auto it = o.find(key);
    if (it == o.end()) return std::optional<std::vector<std::string>>();
    if (!it->is_array()) return std::unexpected(Bad(field, "must be an array of strings"));
    std::vector<std::string> out;
    for (size_t i = 0; i < it->size(); ++i) {
      const json& v = (*it)[i];
      if (!v.is_string()) return std::unexpected(Bad(field + "[" + std::to_string(i) + "]", "must be a string"));
      out.push_back(v.get<std::string>());
    }
    return std::optional<std::vector<std::string>>(out);
  }

 private:
  std::string recipe_;
};

bool IsSuiteOrComponent(const std::string& s) {
  if (s.empty() || s.size() > 64) return false;
  for (char c : s)
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' || c == '/'))
      return false;
  return s[0] != '-' && s[0] != '/' && s.find("..") == std::string::npos;
}

bool IsEnvEntry(const std::string& kv) {
  size_t eq = kv.find('=');
  if (eq == 0 || eq == std::string::npos) return false;
  for (size_t i = 0; i < eq; ++i) {
    char c = kv[i];
    if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_' || (i > 0 && c >= '0' && c <= '9')))
      return false;
  }
  return kv.find('\0') == std::string::npos;
}

Result<void> CheckEnv(const Fields& f, const std::vector<std::string>& env, const std::string& field) {
  for (size_t i = 0; i < env.size(); ++i)
    if (!IsEnvEntry(env[i]))
      return std::unexpected(f.Bad(field + "[" + std::to_string(i) + "]", "\"" + env[i] + "\" is not KEY=value"));
  return {};
}

Result<BaseSpec> ParseBase(const Fields& f, const json& b) {
  if (!b.is_object()) return std::unexpected(f.Bad("base", "must be an object"));
  TRY(f.Only(b, "base", {"suite", "variant", "components", "include"}));
  BaseSpec base;
  if (auto s = TRY(f.Str(b, "suite", "base.suite"))) base.suite = *s;
  if (!IsSuiteOrComponent(base.suite)) return std::unexpected(f.Bad("base.suite", "\"" + base.suite + "\" is not a suite name"));
  if (auto v = TRY(f.Str(b, "variant", "base.variant"))) base.variant = *v;
  static const std::set<std::string> kVariants = {"extract", "custom", "essential", "apt",       "required",
                                                  "minbase", "buildd", "important", "debootstrap", "standard"};
  if (!kVariants.count(base.variant))
    return std::unexpected(f.Bad("base.variant", "\"" + base.variant + "\" is not an mmdebstrap variant (minbase, "
                                                 "essential, apt, required, important, standard, buildd, custom)"));
  if (auto c = TRY(f.StrList(b, "components", "base.components"))) base.components = *c;
  if (base.components.empty()) return std::unexpected(f.Bad("base.components", "must name at least one component"));
  for (size_t i = 0; i < base.components.size(); ++i)
    if (!IsSuiteOrComponent(base.components[i]))
      return std::unexpected(f.Bad("base.components[" + std::to_string(i) + "]",
                                   "\"" + base.components[i] + "\" is not a component name"));
  if (auto inc = TRY(f.StrList(b, "include", "base.include"))) base.include = *inc;
  for (size_t i = 0; i < base.include.size(); ++i)
    if (!IsValidPackageSpec(base.include[i]))
      return std::unexpected(f.Bad("base.include[" + std::to_string(i) + "]",
                                   "\"" + base.include[i] + "\" is not a Debian package name"));
  return base;
}

Result<Step> ParseStep(const Fields& f, const json& s, size_t index) {
  const std::string field = "steps[" + std::to_string(index) + "]";
  if (!s.is_object()) return std::unexpected(f.Bad(field, "must be an object"));
  TRY(f.Only(s, field, {"packages", "run", "env", "timeout"}));
  Step step;
  const bool has_pkgs = s.contains("packages"), has_run = s.contains("run");
  if (has_pkgs == has_run)
    return std::unexpected(f.Bad(field, "needs exactly one of \"packages\" (Debian packages) or \"run\" (a shell script)"));
  if (has_pkgs) {
    step.kind = Step::Kind::kPackages;
    auto packages = TRY(f.StrList(s, "packages", field + ".packages"));  // present: checked above
    step.packages = packages.value_or(std::vector<std::string>{});
    if (step.packages.empty()) return std::unexpected(f.Bad(field + ".packages", "is empty"));
    for (size_t i = 0; i < step.packages.size(); ++i)
      if (!IsValidPackageSpec(step.packages[i]))
        return std::unexpected(f.Bad(field + ".packages[" + std::to_string(i) + "]",
                                     "\"" + step.packages[i] + "\" is not a Debian package name"));
  } else {
    step.kind = Step::Kind::kRun;
    auto run = TRY(f.Str(s, "run", field + ".run"));  // present: checked above
    step.run = run.value_or("");
    if (step.run.find_first_not_of(" \t\n") == std::string::npos)
      return std::unexpected(f.Bad(field + ".run", "is empty"));
  }
  if (auto env = TRY(f.StrList(s, "env", field + ".env"))) step.env = *env;
  TRY(CheckEnv(f, step.env, field + ".env"));
  if (auto t = s.find("timeout"); t != s.end()) {
    if (!t->is_number_unsigned() || t->get<uint64_t>() == 0 || t->get<uint64_t>() > 7 * 24 * 3600)
      return std::unexpected(f.Bad(field + ".timeout", "must be a number of seconds (1 to 604800)"));
    step.timeout_seconds = t->get<uint64_t>();
  }
  // nlohmann's object is a std::map: dump() sorts keys, so this is canonical.
  step.canonical = s.dump(-1, ' ', true);
  return step;
}

Result<ConfigPatch> ParseConfig(const Fields& f, const json& c) {
  if (!c.is_object()) return std::unexpected(f.Bad("config", "must be an object"));
  TRY(f.Only(c, "config", {"env", "workdir", "user", "entrypoint", "cmd", "labels"}));
  ConfigPatch p;
  if (auto env = TRY(f.StrList(c, "env", "config.env"))) p.env = *env;
  TRY(CheckEnv(f, p.env, "config.env"));
  p.workdir = TRY(f.Str(c, "workdir", "config.workdir"));
  if (p.workdir && !p.workdir->empty() && (*p.workdir)[0] != '/')
    return std::unexpected(f.Bad("config.workdir", "must be an absolute path"));
  p.user = TRY(f.Str(c, "user", "config.user"));
  p.entrypoint = TRY(f.StrList(c, "entrypoint", "config.entrypoint"));
  p.cmd = TRY(f.StrList(c, "cmd", "config.cmd"));
  if (auto l = c.find("labels"); l != c.end()) {
    if (!l->is_object()) return std::unexpected(f.Bad("config.labels", "must be an object of strings"));
    for (const auto& [k, v] : l->items()) {
      if (!v.is_string()) return std::unexpected(f.Bad("config.labels." + k, "must be a string"));
      p.labels[k] = v.get<std::string>();
    }
  }
  return p;
}

}  // namespace

bool IsValidPackageSpec(const std::string& s) {
  size_t sep = s.find_first_of("=/");
  std::string name = s.substr(0, sep);
  if (name.size() < 2 || name.size() > 128) return false;
  auto lower_alnum = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
  if (!lower_alnum(name[0])) return false;
  for (char c : name)
    if (!lower_alnum(c) && c != '+' && c != '.' && c != '-') return false;
  if (sep == std::string::npos) return true;
  std::string rest = s.substr(sep + 1);
  if (rest.empty() || rest.size() > 128) return false;
  for (char c : rest)
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '+' ||
          c == '~' || c == ':' || c == '-'))
      return false;
  return true;
}

Result<Recipe> ParseRecipe(const std::string& name, const std::string& text) {
  Fields f(name);
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Fail("recipe " + name, "not valid JSON");
  if (!j.is_object()) return Fail("recipe " + name, "must be a JSON object");
  TRY(f.Only(j, "", {"description", "base", "from", "steps", "config"}));
  Recipe r;
  r.name = name;
  if (auto d = TRY(f.Str(j, "description", "description"))) r.description = *d;
  const bool has_base = j.contains("base"), has_from = j.contains("from");
  if (has_base == has_from)
    return std::unexpected(f.Bad("base", "give exactly one of \"base\" (a Debian base made with mmdebstrap) or "
                                         "\"from\" (another recipe)"));
  if (has_base) r.base = TRY(ParseBase(f, j["base"]));
  if (has_from) {
    auto from = TRY(f.Str(j, "from", "from"));
    r.from = from.value_or("");
    if (!IsValidImageName(r.from)) return std::unexpected(f.Bad("from", "\"" + r.from + "\" is not a recipe name"));
    if (r.from == name) return std::unexpected(f.Bad("from", "a recipe can't build from itself"));
  }
  if (auto s = j.find("steps"); s != j.end()) {
    if (!s->is_array()) return std::unexpected(f.Bad("steps", "must be an array"));
    if (s->size() > kMaxSteps) return std::unexpected(f.Bad("steps", "more than " + std::to_string(kMaxSteps) + " steps"));
    for (size_t i = 0; i < s->size(); ++i) r.steps.push_back(TRY(ParseStep(f, (*s)[i], i)));
  }
  if (auto c = j.find("config"); c != j.end()) r.config = TRY(ParseConfig(f, *c));
  return r;
}

Result<Recipe> LoadRecipe(const std::string& recipes_dir, const std::string& name) {
  if (!IsValidImageName(name))
    return Fail("image build", "\"" + name + "\" is not a valid recipe name ([a-z0-9][a-z0-9._-]{0,63})");
  UniqueFd dir(open(recipes_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir) return Errno("open recipes directory", recipes_dir);
  const std::string path = recipes_dir + "/" + name + "/recipe.json";
  auto text = fsutil::ReadFileAt(dir.get(), name + "/recipe.json", kMaxRecipeBytes, path);
  if (!text) {
    if (text.error().err == ENOENT) return ErrnoValue(ENOENT, "image build", "no recipe " + path);
    return std::unexpected(text.error());
  }
  return ParseRecipe(name, *text);
}

ImageConfig ApplyConfig(const ImageConfig& parent, const ConfigPatch& p) {
  ImageConfig c = parent;
  for (const auto& kv : p.env) {
    std::string key = kv.substr(0, kv.find('=') + 1);
    std::erase_if(c.env, [&](const std::string& e) { return e.starts_with(key); });
    c.env.push_back(kv);
  }
  if (p.workdir) c.workdir = *p.workdir;
  if (p.user) c.user = *p.user;
  if (p.entrypoint) c.entrypoint = *p.entrypoint;
  if (p.cmd) c.cmd = *p.cmd;
  for (const auto& [k, v] : p.labels) c.labels[k] = v;
  return c;
}

}  // namespace airlock::images::build
