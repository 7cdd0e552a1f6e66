// A podman of a test's own (Debian's package): its store, configuration and
// state under one directory, run in a private mount namespace with fresh
// tmpfs over /run and /var/lib, because as root podman keeps state there
// whatever its flags say (/run/containers/networks for netavark,
// /var/lib/containers/cache for the blob-info cache) and the host's podman
// must not see any of it. On this machine podman also needs `--runtime runc`
// (crun fails on hybrid cgroups) and explicit nofile and nproc ulimits; see
// reference/kernel-facts.md.
#pragma once

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "tests/root/helpers.h"

namespace airlock_test {

inline std::string FindInPath(const std::string& prog) {
  const char* path = getenv("PATH");
  std::string dirs = path != nullptr ? path : "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
  std::stringstream ss(dirs);
  std::string d;
  while (std::getline(ss, d, ':'))
    if (!d.empty() && access((d + "/" + prog).c_str(), X_OK) == 0) return d + "/" + prog;
  return "";
}

// A podman with its own store and configuration, all under `dir`.
class PrivatePodman {
 public:
  PrivatePodman(const std::string& podman, const std::string& dir) : podman_(podman), dir_(dir) {
    for (const char* sub : {"root", "run", "tmp", "networks"}) fs::create_directories(dir_ + "/" + sub);
    std::ofstream(dir_ + "/containers.conf") << "[engine]\n"
                                             << "cgroup_manager = \"cgroupfs\"\n"
                                             << "events_logger = \"file\"\n"
                                             << "events_logfile_path = \"" << dir_ << "/events.log\"\n"
                                             << "tmp_dir = \"" << dir_ << "/tmp\"\n"
                                             << "static_dir = \"" << dir_ << "/root/libpod\"\n"
                                             << "volume_path = \"" << dir_ << "/root/volumes\"\n"
                                             << "[network]\n"
                                             << "network_config_dir = \"" << dir_ << "/networks\"\n";
    std::ofstream(dir_ + "/storage.conf") << "[storage]\n"
                                          << "driver = \"vfs\"\n"
                                          << "graphroot = \"" << dir_ << "/root\"\n"
                                          << "runroot = \"" << dir_ << "/run\"\n";
  }

  // `podman ARGS...` in a private mount namespace (see the file comment).
  RunResult Run(const std::vector<std::string>& args, double seconds = 120) const {
    std::vector<std::string> argv = {
        "/usr/bin/unshare", "--mount", "--propagation", "private", "/bin/sh", "-c",
        "mount -t tmpfs -o mode=0755 airlock-podman-test /run && "
        "mount -t tmpfs -o mode=0755 airlock-podman-test /var/lib && exec \"$@\"",
        "sh", "/usr/bin/env", "CONTAINERS_CONF=" + dir_ + "/containers.conf",
        "CONTAINERS_STORAGE_CONF=" + dir_ + "/storage.conf", podman_,
        "--root", dir_ + "/root", "--runroot", dir_ + "/run", "--storage-driver", "vfs",
        "--cgroup-manager", "cgroupfs", "--events-backend", "file", "--tmpdir", dir_ + "/tmp",
        "--network-config-dir", dir_ + "/networks"};
    argv.insert(argv.end(), args.begin(), args.end());
    return Exec(argv, "", seconds);
  }

 private:
  std::string podman_, dir_;
};

// The arguments `podman run` needs here, before the image.
inline std::vector<std::string> PodmanRunArgs() {
  return {"run", "--rm", "--runtime", "runc", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024",
          "--network", "none"};
}

}  // namespace airlock_test
