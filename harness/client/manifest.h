// Manifest files for `airlock create --manifest FILE`: YAML (yaml-cpp) or
// JSON (nlohmann), mapped to airlock.v1.Manifest. The schema:
//
//   root: /workspace                  # the workspace inside the sandbox
//   entries:                          # each: path + exactly one source
//     - path: src                     # relative to root, or absolute inside it
//       host_bind: ../project         # | host_copy | output_dir (host paths;
//                                     #   relative ones resolve against the
//                                     #   manifest file's directory)
//     - path: notes.txt
//       content: "hello\n"            # | empty_dir: true
//       mode: "0600"                  # octal; content and empty_dir only
//   environment: {KEY: value}
//   users: [{name: agent, uid: 1000, gid: 1000, home: /home/agent}]  # gid defaults to uid
//
// Unknown keys are errors. Every error names the file and the key path:
// "manifest.yaml: entries[2].mode: not an octal number".
#pragma once

#include <string>

#include "airlock/v1/airlock.pb.h"
#include "runtime/core/error.h"

namespace airlock::client {

enum class ManifestFormat { kAuto, kYaml, kJson };

// Parses manifest `text`. `name` starts every error message; relative host
// paths resolve against `base_dir` (absolute). kAuto picks JSON when the
// text starts with '{' (after blanks), else YAML.
Result<v1::Manifest> ParseManifest(const std::string& text, const std::string& name, ManifestFormat format,
                                   const std::string& base_dir);

// Reads and parses the manifest file `path` (at most 32 MiB). The format
// follows the extension (.yaml/.yml, .json), else the content.
Result<v1::Manifest> LoadManifest(const std::string& path);

}  // namespace airlock::client
