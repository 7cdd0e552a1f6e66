// The Debian mirror a build uses (issue 8): never an address written into
// the project. Either `--mirror URL` or the host's own apt configuration,
// read the way apt reads it: /etc/apt/sources.list, then
// /etc/apt/sources.list.d/*.list (one-line format) and *.sources (deb822),
// each directory's files in name order. The first "deb" entry with the
// component "main" whose suite is not a -security or -updates pocket wins
// (air-gapped sites point these files at their internal mirror).
#pragma once

#include <string>
#include <vector>

#include "runtime/core/error.h"

namespace airlock::images::build {

struct Mirror {
  std::string uri;        // "http://mirror.example/debian"
  std::string signed_by;  // the entry's Signed-By keyring file, if any
  std::string source;     // where it came from ("/etc/apt/sources.list.d/debian.sources", "--mirror")
};

// Entries of one file, in order: one-line format ("deb [opts] URI SUITE
// COMPONENT...") or deb822 ("Types:", "URIs:", "Suites:", "Components:",
// "Signed-By:", "Enabled:" stanzas). Returns the matching mirrors.
std::vector<Mirror> ParseOneLineSources(const std::string& text, const std::string& source);
std::vector<Mirror> ParseDeb822Sources(const std::string& text, const std::string& source);

// The host's first Debian main mirror, under `root` (tests use a fake
// tree). An error lists the files read when none names one.
Result<Mirror> HostMirror(const std::string& root = "/");

// A mirror given on the command line: an http(s) or file URL without
// whitespace or quotes.
Result<Mirror> MirrorFromOption(const std::string& url);

}  // namespace airlock::images::build
