// Create requests and manifests: checked field by field before anything is
// built (errors name the field: "create.manifest.entries[2].path: ..."),
// then applied inside the new sandbox.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "airlock/v1/airlock.pb.h"
#include "harness/daemon/api_error.h"
#include "harness/daemon/host_paths.h"
#include "runtime/spec/spec.h"

namespace airlock::daemon {

struct Live;

// What a valid CreateRequest turns into before launch.
struct CreatePlan {
  std::string image = "host";
  std::string hostname = "sandbox";
  std::string seccomp_profile = "default";
  ResourceLimits limits;
  std::string workspace = "/workspace";
  std::vector<HostMount> mounts;  // host_bind and output_dir entries
  std::vector<UniqueFd> mount_fds;  // what each mount's source_fd points to
  std::vector<SeedCopy> seeds;    // host_copy entries
  std::vector<std::string> environment;  // the manifest's, K=V
  bool proxy = false;  // network mode proxy (the manager checks its policy)
};

// Checks every field of `request`; host paths against `allowed_roots` with
// the access of `caller_uid`/`caller_gid` (their groups are looked up only
// when the manifest names a host path).
ApiResult<CreatePlan> PlanCreate(const ::airlock::v1::CreateRequest& request,
                                 const std::vector<std::string>& allowed_roots, uid_t caller_uid, gid_t caller_gid);

// A command's base environment: the image's, then defaults for PATH, HOME,
// LANG, then the manifest's.
std::vector<std::string> BaseEnvironment(const std::vector<std::string>& image_env,
                                         const std::vector<std::string>& manifest_env);

// Creates the workspace (unless it exists already), inline files, empty
// directories and users inside the running sandbox.
ApiResult<void> ApplyManifest(Live& live, const ::airlock::v1::Manifest& manifest, bool workspace_exists = false);

// True if `request` has the warm pool's shape: the host image, no limits,
// the default profile, hostname and workspace, no network, no host paths.
bool HasCommonShape(const ::airlock::v1::CreateRequest& request);

}  // namespace airlock::daemon
