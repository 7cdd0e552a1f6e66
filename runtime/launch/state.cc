#include "runtime/launch/state.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

#include "runtime/cgroups/cgroup.h"
#include "runtime/storage/idrange.h"
#include "runtime/storage/pool.h"

namespace airlock {
namespace {

Result<void> MakeDir(const std::string& path, mode_t mode) {
  if (mkdir(path.c_str(), mode) < 0 && errno != EEXIST) return Errno("mkdir", path);
  struct stat st;
  if (lstat(path.c_str(), &st) < 0) return Errno("stat", path);
  if (!S_ISDIR(st.st_mode)) return ErrnoValue(ENOTDIR, "mkdir", path);
  if (st.st_uid != 0 && geteuid() == 0) return Fail("runtime directory", path + " is not owned by root");
  return {};
}

std::string ReadAll(int fd) {
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = read(fd, buf, sizeof(buf))) > 0) out.append(buf, static_cast<size_t>(n));
  return out;
}

}  // namespace

Result<void> PrepareRuntimeDirs(const RuntimePaths& paths) {
  TRY(MakeDir(paths.state_root, 0700));
  TRY(MakeDir(paths.SandboxesDir(), 0700));
  TRY(MakeDir(paths.cache_dir, 0700));
  // The child walks to the stage as an unprivileged id: the run root must be
  // searchable, and the stage is an empty directory nothing else uses.
  TRY(MakeDir(paths.run_root, 0711));
  chmod(paths.run_root.c_str(), 0711);
  TRY(MakeDir(paths.StageDir(), 0700));
  return {};
}

Result<SandboxRecord> SandboxRecord::Create(const RuntimePaths& paths, const std::string& id) {
  // Built under a hidden name and renamed into place once locked: a cleanup
  // running meanwhile (another launch) must never see the record without
  // its lock held, or it would take it for a dead run's and remove it.
  SandboxRecord r;
  uint32_t nonce = 0;
  if (getrandom(&nonce, sizeof(nonce), 0) != sizeof(nonce)) return Errno("getrandom", "record name");
  char suffix[16];
  snprintf(suffix, sizeof(suffix), "%08x", nonce);
  const std::string staging = paths.SandboxesDir() + "/.new-" + id + "-" + suffix;
  r.dir_ = staging;
  if (mkdir(staging.c_str(), 0700) < 0) return Errno("mkdir", staging);
  r.lock_.Reset(open((staging + "/lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!r.lock_) return Errno("open", staging + "/lock");
  if (flock(r.lock_.get(), LOCK_EX | LOCK_NB) < 0) return Errno("flock", staging + "/lock");
  r.notes_.Reset(open((staging + "/cleanup").c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600));
  if (!r.notes_) return Errno("open", staging + "/cleanup");
  const std::string dir = paths.SandboxesDir() + "/" + id;
  if (renameat2(AT_FDCWD, staging.c_str(), AT_FDCWD, dir.c_str(), RENAME_NOREPLACE) < 0) {
    int err = errno;
    r.Remove();
    return ErrnoValue(err, "rename", dir);
  }
  r.dir_ = dir;
  return r;
}

Result<SandboxRecord> SandboxRecord::Adopt(const RuntimePaths& paths, const std::string& id, RecordNotes* notes) {
  SandboxRecord r;
  r.dir_ = paths.SandboxesDir() + "/" + id;
  r.lock_.Reset(open((r.dir_ + "/lock").c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW));
  if (!r.lock_) return Errno("open", r.dir_ + "/lock");
  if (flock(r.lock_.get(), LOCK_EX | LOCK_NB) < 0)
    return ErrnoValue(errno == EWOULDBLOCK ? EBUSY : errno, "flock", r.dir_ + "/lock (a live run holds it)");
  UniqueFd in(open((r.dir_ + "/cleanup").c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!in) return Errno("open", r.dir_ + "/cleanup");
  *notes = ParseRecordNotes(ReadAll(in.get()));
  r.notes_.Reset(open((r.dir_ + "/cleanup").c_str(), O_WRONLY | O_APPEND | O_CLOEXEC | O_NOFOLLOW));
  if (!r.notes_) return Errno("open", r.dir_ + "/cleanup");
  return r;
}

RecordNotes ParseRecordNotes(const std::string& notes) {
  RecordNotes out;
  size_t pos = 0;
  while (pos < notes.size()) {
    size_t nl = notes.find('\n', pos);
    if (nl == std::string::npos) break;
    std::string line = notes.substr(pos, nl - pos);
    pos = nl + 1;
    size_t sp = line.find(' ');
    if (sp == std::string::npos) continue;
    std::string kind = line.substr(0, sp), value = line.substr(sp + 1);
    if (kind == "cgroup") out.cgroups.push_back(value);
    else if (kind == "subvolume") out.subvolumes.push_back(value);
    else if (kind == "idrange") out.idranges.push_back(value);
  }
  return out;
}

Result<void> SandboxRecord::Note(const std::string& kind, const std::string& value) {
  std::string line = kind + " " + value + "\n";
  if (write(notes_.get(), line.data(), line.size()) != static_cast<ssize_t>(line.size()))
    return Errno("write", dir_ + "/cleanup");
  return {};
}

void SandboxRecord::Remove() {
  if (dir_.empty()) return;
  unlink((dir_ + "/cleanup").c_str());
  unlink((dir_ + "/lock").c_str());
  rmdir(dir_.c_str());
  notes_.Reset();
  lock_.Reset();
  dir_.clear();
}

Result<int> CleanupStaleSandboxes(const RuntimePaths& paths) {
  DIR* d = opendir(paths.SandboxesDir().c_str());
  if (d == nullptr) return errno == ENOENT ? Result<int>(0) : Errno("opendir", paths.SandboxesDir());
  std::vector<std::string> names;
  std::vector<std::string> staging;
  while (dirent* e = readdir(d)) {
    std::string name = e->d_name;
    if (name.starts_with(".new-")) staging.push_back(name);
    else if (name[0] != '.') names.push_back(name);
  }
  closedir(d);
  // Records a launch died building (before their rename): nothing was made
  // for them yet. Young ones may be in the making.
  for (const auto& name : staging) {
    std::string dir = paths.SandboxesDir() + "/" + name;
    struct stat st;
    if (stat(dir.c_str(), &st) != 0 || time(nullptr) - st.st_mtime < 60) continue;
    UniqueFd lock(open((dir + "/lock").c_str(), O_RDWR | O_CLOEXEC));
    if (lock && flock(lock.get(), LOCK_EX | LOCK_NB) < 0) continue;
    unlink((dir + "/cleanup").c_str());
    unlink((dir + "/lock").c_str());
    rmdir(dir.c_str());
  }
  int cleaned = 0;
  for (const auto& name : names) {
    std::string dir = paths.SandboxesDir() + "/" + name;
    UniqueFd lock(open((dir + "/lock").c_str(), O_RDWR | O_CLOEXEC));
    if (lock && flock(lock.get(), LOCK_EX | LOCK_NB) < 0) continue;  // a live run holds it
    if (!lock && errno != ENOENT) continue;
    // The lock file is created right after the directory; a directory without
    // one is a run that died in between, or one being created right now:
    // leave young ones alone.
    if (!lock) {
      struct stat st;
      if (stat(dir.c_str(), &st) == 0 && time(nullptr) - st.st_mtime < 60) continue;
    }
    std::string notes;
    UniqueFd nf(open((dir + "/cleanup").c_str(), O_RDONLY | O_CLOEXEC));
    if (nf) notes = ReadAll(nf.get());
    auto [cgroups, subvolumes, idranges] = ParseRecordNotes(notes);
    Result<void> ok;
    if (!cgroups.empty()) ok = cgroups::RemoveStale(cgroups);
    if (!ok) return Fail("cleanup of " + dir, ok.error().Message());
    if (!subvolumes.empty()) {
      auto pool = storage::Pool::Open({paths.PoolImage(), paths.PoolMountpoint(), 0});
      if (!pool) return Fail("cleanup of " + dir, pool.error().Message());
      for (const auto& s : subvolumes) {
        auto del = pool->DeleteSubvolume(s);
        if (!del) return Fail("cleanup of " + dir, del.error().Message());
      }
    }
    storage::IdAllocator ids(paths.IdRanges());
    for (const auto& owner : idranges) {
      auto rel = ids.Release(owner);
      if (!rel) return Fail("cleanup of " + dir, rel.error().Message());
    }
    unlink((dir + "/cleanup").c_str());
    unlink((dir + "/lock").c_str());
    rmdir(dir.c_str());
    ++cleaned;
  }
  return cleaned;
}

}  // namespace airlock
