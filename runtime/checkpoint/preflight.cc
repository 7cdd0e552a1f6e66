#include "runtime/checkpoint/preflight.h"

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "runtime/core/unique_fd.h"

namespace airlock::checkpoint {
namespace {

std::string Read(const std::string& path) {
  UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return {};
  std::string out;
  char buf[8192];
  ssize_t n;
  while ((n = read(fd.get(), buf, sizeof(buf))) > 0) out.append(buf, static_cast<size_t>(n));
  return out;
}

std::vector<std::string> List(const std::string& dir) {
  std::vector<std::string> out;
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return out;
  while (dirent* e = readdir(d))
    if (e->d_name[0] != '.') out.emplace_back(e->d_name);
  closedir(d);
  return out;
}

// Every process of the tree: init and, through /proc/PID/task/TID/children,
// all its descendants.
std::vector<pid_t> Tree(pid_t root) {
  std::vector<pid_t> out{root};
  for (size_t i = 0; i < out.size(); ++i) {
    std::string base = "/proc/" + std::to_string(out[i]) + "/task/";
    for (const auto& tid : List(base)) {
      std::istringstream kids(Read(base + tid + "/children"));
      pid_t child;
      while (kids >> child) out.push_back(child);
    }
  }
  return out;
}

// Inodes of established TCP connections in the process's network namespace.
std::set<std::string> EstablishedTcp(pid_t pid) {
  std::set<std::string> out;
  for (const char* table : {"/net/tcp", "/net/tcp6"}) {
    std::istringstream in(Read("/proc/" + std::to_string(pid) + table));
    std::string line;
    std::getline(in, line);  // header
    while (std::getline(in, line)) {
      std::istringstream f(line);
      std::string sl, local, remote, state, queues, timer, retr, uid, timeout, inode;
      f >> sl >> local >> remote >> state >> queues >> timer >> retr >> uid >> timeout >> inode;
      if (state == "01") out.insert(inode);  // TCP_ESTABLISHED
    }
  }
  return out;
}

}  // namespace

Result<void> CheckCheckpointable(pid_t init_pid) {
  for (pid_t pid : Tree(init_pid)) {
    const std::string proc = "/proc/" + std::to_string(pid);
    const std::string mountinfo = Read(proc + "/mountinfo");
    std::set<std::string> mounts;
    std::istringstream mi(mountinfo);
    std::string line;
    while (std::getline(mi, line)) mounts.insert(line.substr(0, line.find(' ')));
    std::set<std::string> tcp;
    bool tcp_read = false;
    const std::string comm = Read(proc + "/comm");
    auto refuse = [&](const std::string& fd, const std::string& what) {
      return Fail("checkpoint", "process " + std::to_string(pid) + " (" + comm.substr(0, comm.find('\n')) +
                                    ") holds " + what + " on fd " + fd + ", which CRIU 3.17 can't checkpoint");
    };
    for (const auto& fd : List(proc + "/fd")) {
      char buf[4096];
      ssize_t n = readlink((proc + "/fd/" + fd).c_str(), buf, sizeof(buf) - 1);
      if (n <= 0) continue;  // closed meanwhile
      std::string target(buf, static_cast<size_t>(n));
      if (target == "anon_inode:[pidfd]") return refuse(fd, "a pidfd");
      if (target == "anon_inode:inotify") return refuse(fd, "an inotify watch");
      if (target.starts_with("socket:[")) {
        if (!tcp_read) {
          tcp = EstablishedTcp(pid);
          tcp_read = true;
        }
        if (tcp.count(target.substr(8, target.size() - 9))) return refuse(fd, "an established TCP connection");
        continue;
      }
      if (target.starts_with("anon_inode:") || target.starts_with("pipe:")) continue;
      // A file: its mount must be one of the process's own.
      std::istringstream info(Read(proc + "/fdinfo/" + fd));
      std::string key, mnt_id;
      while (info >> key)
        if (key == "mnt_id:") {
          info >> mnt_id;
          break;
        }
      if (!mnt_id.empty() && !mounts.count(mnt_id))
        return refuse(fd, "\"" + target + "\", a file of a mount outside the sandbox");
    }
  }
  return {};
}

}  // namespace airlock::checkpoint
