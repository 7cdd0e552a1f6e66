// The Debian side of image builds: running mmdebstrap for a base, and
// downloading a package step's .debs with the host's apt-get.
//
// Why packages are downloaded on the host and installed inside a sandbox:
// a build step's sandbox has no network (loopback only, airlock's default)
// and must not get one; the host's apt-get, run the way mmdebstrap runs it
// (its own Dir, the image's dpkg status file, the host's keyrings), resolves
// the step's packages against what the image already has and fetches exactly
// the missing .debs from the mirror, signatures checked. The sandbox then
// runs `apt-get install` on those local files as root inside, so dpkg and
// maintainer scripts run confined and every package step is its own layer
// (a base shared by python and node is built once). Putting packages into
// mmdebstrap's --include instead would give one layer per recipe and no
// sharing.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "images/build/apt_sources.h"
#include "images/build/progress.h"
#include "images/build/recipe.h"
#include "runtime/core/error.h"

namespace airlock::images::build {

// Runs argv[0] (an absolute path) with `env`, stdout to `out_fd`, each
// stderr line to `on_line`. Returns the exit status (128 + signal).
Result<int> RunProgram(const std::vector<std::string>& argv, const std::vector<std::string>& env, int out_fd,
                       const std::function<void(const std::string&)>& on_line);

// The Debian architecture of this host ("amd64", "arm64", …).
std::string DebianArch();

// Makes a base tree with mmdebstrap (mode root, format directory) in
// `target` (must not exist). /etc/hostname and /etc/resolv.conf, which
// mmdebstrap copies from the host, are removed. Progress shows its phases;
// an error carries its last lines.
Result<void> RunMmdebstrap(const BaseSpec& base, const Mirror& mirror, const std::string& target, Progress& progress,
                           const std::string& label);

// Downloads into `debs_dir` the .debs that installing `packages` on top of
// an image whose dpkg status file is `status_file` needs (no Recommends),
// using the host's apt-get with a private configuration under `work_dir`.
// Returns how many were fetched (0: everything is installed already).
Result<size_t> DownloadDebs(const Mirror& mirror, const std::string& suite, const std::vector<std::string>& components,
                            const std::string& status_file, const std::vector<std::string>& packages,
                            const std::string& work_dir, const std::string& debs_dir, Progress& progress,
                            const std::string& label);

// Removes sockets and device nodes beneath `dir` (overlay whiteouts, 0:0
// character devices, too unless `keep_whiteouts`): mmdebstrap leaves
// /dev/null and its like in its output, a step may leave a socket, and a
// layer holds neither. Returns how many were removed.
Result<size_t> RemoveSpecialFiles(const std::string& dir, bool keep_whiteouts);

}  // namespace airlock::images::build
