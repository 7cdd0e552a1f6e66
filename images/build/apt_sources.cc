#include "images/build/apt_sources.h"

#include <dirent.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <sstream>

namespace airlock::images::build {

namespace {

std::vector<std::string> Words(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream in(s);
  std::string w;
  while (in >> w) out.push_back(w);
  return out;
}

std::string Trim(const std::string& s) {
  size_t a = s.find_first_not_of(" \t\r");
  if (a == std::string::npos) return "";
  size_t b = s.find_last_not_of(" \t\r");
  return s.substr(a, b - a + 1);
}

std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(tolower(static_cast<unsigned char>(c)));
  return s;
}

// A pocket that holds only updates on top of a base suite can't make a
// base by itself.
bool IsBaseSuite(const std::string& suite) {
  return !suite.ends_with("-security") && !suite.ends_with("-updates") && !suite.ends_with("/updates") &&
         !suite.ends_with("-backports") && !suite.ends_with("-proposed-updates");
}

bool Has(const std::vector<std::string>& v, const std::string& x) { return std::find(v.begin(), v.end(), x) != v.end(); }

std::vector<std::string> ListFiles(const std::string& dir, const std::string& suffix) {
  std::vector<std::string> out;
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return out;
  while (struct dirent* e = readdir(d)) {
    std::string n = e->d_name;
    if (n.ends_with(suffix) && !n.starts_with(".")) out.push_back(dir + "/" + n);
  }
  closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

bool ReadText(const std::string& path, std::string* out) {
  std::ifstream f(path);
  if (!f) return false;
  std::stringstream ss;
  ss << f.rdbuf();
  *out = ss.str();
  return true;
}

}  // namespace

std::vector<Mirror> ParseOneLineSources(const std::string& text, const std::string& source) {
  std::vector<Mirror> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    line = Trim(line.substr(0, line.find('#')));
    if (!line.starts_with("deb ") && !line.starts_with("deb\t")) continue;
    std::string rest = Trim(line.substr(3));
    std::string signed_by;
    if (rest.starts_with("[")) {
      size_t close = rest.find(']');
      if (close == std::string::npos) continue;
      for (const auto& opt : Words(rest.substr(1, close - 1)))
        if (opt.starts_with("signed-by=")) signed_by = opt.substr(10);
      rest = Trim(rest.substr(close + 1));
    }
    auto w = Words(rest);
    if (w.size() < 3) continue;
    std::vector<std::string> comps(w.begin() + 2, w.end());
    if (IsBaseSuite(w[1]) && Has(comps, "main")) out.push_back({w[0], signed_by, source});
  }
  return out;
}

std::vector<Mirror> ParseDeb822Sources(const std::string& text, const std::string& source) {
  std::vector<Mirror> out;
  std::istringstream in(text + "\n\n");
  std::string line, key;
  std::map<std::string, std::string> fields;
  auto stanza = [&] {
    if (fields.empty()) return;
    const bool enabled = Lower(Trim(fields["enabled"])) != "no";
    auto types = Words(fields["types"]);
    auto uris = Words(fields["uris"]);
    auto suites = Words(fields["suites"]);
    auto comps = Words(fields["components"]);
    std::string signed_by = Trim(fields["signed-by"]);
    // An inline key block (several lines) is no file apt could be given.
    if (signed_by.find('\n') != std::string::npos || !signed_by.starts_with("/")) signed_by.clear();
    bool base = std::any_of(suites.begin(), suites.end(), IsBaseSuite);
    if (enabled && Has(types, "deb") && base && Has(comps, "main"))
      for (const auto& u : uris) out.push_back({u, signed_by, source});
    fields.clear();
    key.clear();
  };
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.starts_with("#")) continue;
    if (Trim(line).empty()) {
      stanza();
      continue;
    }
    if ((line[0] == ' ' || line[0] == '\t') && !key.empty()) {  // a continuation line
      fields[key] += "\n" + Trim(line);
      continue;
    }
    size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    key = Lower(Trim(line.substr(0, colon)));
    fields[key] = Trim(line.substr(colon + 1));
  }
  return out;
}

Result<Mirror> HostMirror(const std::string& root) {
  const std::string etc = (root == "/" ? "" : root) + "/etc/apt";
  std::vector<std::string> read;
  std::string text;
  if (ReadText(etc + "/sources.list", &text)) {
    read.push_back(etc + "/sources.list");
    auto m = ParseOneLineSources(text, etc + "/sources.list");
    if (!m.empty()) return m[0];
  }
  // apt reads sources.list.d in name order, .list and .sources alike.
  auto lists = ListFiles(etc + "/sources.list.d", ".list");
  auto deb822 = ListFiles(etc + "/sources.list.d", ".sources");
  std::vector<std::string> all = lists;
  all.insert(all.end(), deb822.begin(), deb822.end());
  std::sort(all.begin(), all.end());
  for (const auto& f : all) {
    if (!ReadText(f, &text)) continue;
    read.push_back(f);
    auto m = f.ends_with(".list") ? ParseOneLineSources(text, f) : ParseDeb822Sources(text, f);
    if (!m.empty()) return m[0];
  }
  std::string files;
  for (const auto& f : read) files += (files.empty() ? "" : ", ") + f;
  return Fail("image build", "no Debian mirror with component \"main\" in the host's apt configuration (read: " +
                                 (files.empty() ? std::string("none") : files) + "); give one with --mirror URL");
}

Result<Mirror> MirrorFromOption(const std::string& url) {
  bool scheme = url.starts_with("http://") || url.starts_with("https://") || url.starts_with("file:/");
  bool clean = url.find_first_of(" \t\n\"'[]") == std::string::npos && url.size() < 1024;
  if (!scheme || !clean) return Fail("invalid option", "--mirror: \"" + url + "\" is not an http://, https:// or file:/ URL");
  return Mirror{url, "", "--mirror"};
}

}  // namespace airlock::images::build
