// The Agents SDK's manifest entries mapped onto airlock: what airlock can
// place in a sandbox, and a refusal naming the entry and why for what it
// can't (cloud-bucket mounts that carry keys, FUSE and other in-container
// mounts, Docker volumes).
import { resolve as resolveHostPath } from 'node:path';
import { Permissions, SandboxUnsupportedFeatureError, type Entry, type Manifest } from '@openai/agents/sandbox';

export const PROVIDER = 'AirlockSandboxClient';

/** One airlock.v1 ManifestEntry (the proto message as a plain object). */
export type AirlockManifestEntry = {
  path: string;
  host_copy?: string;
  host_bind?: string;
  content?: Buffer;
  empty_dir?: boolean;
  output_dir?: string;
  mode?: number;
};

/** A git repository to clone inside the sandbox once it runs. */
export type GitClone = {
  path: string; // absolute, inside the sandbox
  url: string;
  ref?: string;
  subpath?: string;
};

export type MappedEntries = {
  entries: AirlockManifestEntry[];
  clones: GitClone[];
};

const TYPED_MOUNTS: Record<string, string> = {
  s3_mount: 'an S3 bucket',
  gcs_mount: 'a GCS bucket',
  r2_mount: 'an R2 bucket',
  azure_blob_mount: 'an Azure Blob container',
  box_mount: 'a Box folder',
  s3_files_mount: 'an S3 Files file system',
};

function refuse(path: string, entry: Entry, why: string, feature: string): never {
  throw new SandboxUnsupportedFeatureError(`${PROVIDER} cannot place manifest entry "${path}" (${entry.type}): ${why}`, {
    provider: PROVIDER,
    feature,
    path,
    entryType: entry.type,
  });
}

function joinPath(root: string, path: string): string {
  if (path.startsWith('/')) return path;
  if (!path) return root;
  return root === '/' ? `/${path}` : `${root}/${path}`;
}

/** The permission bits of an entry's `permissions` (0: airlock's default). */
export function modeOf(path: string, entry: Entry): number {
  if (entry.permissions === undefined) return 0;
  const p = new Permissions(entry.permissions as any);
  if (p.sticky) refuse(path, entry, 'the sticky bit cannot be set through the API (ManifestEntry.mode is permission bits only)', 'permissions.sticky');
  return p.toMode() & 0o777;
}

/** The git URL of a git_repo entry: https://<host>/<repo>.git unless the repo is a URL already. */
export function gitUrl(entry: { repo: string; host?: string }): string {
  if (entry.repo.includes('://') || entry.repo.startsWith('git@')) return entry.repo;
  return `https://${entry.host ?? 'github.com'}/${entry.repo}.git`;
}

/**
 * Checks an entry (and its children) against what airlock supports, and
 * throws SandboxUnsupportedFeatureError naming the first one it can't place.
 */
export function assertEntrySupported(path: string, entry: Entry): void {
  if (entry.group !== undefined) {
    refuse(path, entry, 'entry ownership (group) is not part of the airlock.v1 manifest; files are owned by the sandbox root or by the request user', 'group');
  }
  if (entry.type in TYPED_MOUNTS) {
    refuse(
      path,
      entry,
      `it mounts ${TYPED_MOUNTS[entry.type]} with cloud credentials inside the sandbox; airlock keeps every credential outside the sandbox (reach the service through NETWORK_MODE_PROXY with an egress secret instead)`,
      'mount.cloud',
    );
  }
  switch (entry.type) {
    case 'file':
    case 'local_file':
    case 'local_dir':
    case 'git_repo':
      return;
    case 'dir':
      for (const [child, childEntry] of Object.entries(entry.children ?? {})) assertEntrySupported(`${path}/${child}`, childEntry);
      return;
    case 'mount': {
      const strategy = entry.mountStrategy?.type;
      if (strategy === 'in_container') {
        refuse(path, entry, 'in-container mounts (FUSE, rclone, mountpoint-s3, NFS) need /dev/fuse or CAP_SYS_ADMIN, which no airlock sandbox is given', 'mount.in_container');
      }
      if (strategy !== undefined && strategy !== 'local_bind') {
        refuse(path, entry, `mount strategy "${strategy}" is not supported; airlock binds host directories under the daemon's allowed roots (local_bind)`, `mount.${strategy}`);
      }
      if (typeof entry.source !== 'string' || !entry.source.startsWith('/')) {
        refuse(path, entry, 'a local_bind mount needs an absolute host source path', 'mount.source');
      }
      if (entry.provider !== undefined || entry.config !== undefined) {
        refuse(path, entry, 'provider mounts with configuration are not supported', 'mount.provider');
      }
      return;
    }
    default:
      refuse(path, entry, 'this entry type is not supported by airlock', entry.type);
  }
}

/**
 * The airlock.v1 manifest entries for SDK entries at create time: inline
 * files and directories, local files and directories as `host_copy` (the
 * daemon checks them against its allowed roots with the caller's own
 * access), local_bind mounts as `host_bind` (read-only) or `output_dir`
 * (readOnly: false), and git repositories to clone once the sandbox runs.
 */
export function mapEntries(root: string, entries: Record<string, Entry>): MappedEntries {
  const out: MappedEntries = { entries: [], clones: [] };
  const walk = (logical: string, entry: Entry) => {
    assertEntrySupported(logical, entry);
    const path = joinPath(root, logical);
    switch (entry.type) {
      case 'file':
        out.entries.push({
          path,
          content: typeof entry.content === 'string' ? Buffer.from(entry.content, 'utf8') : Buffer.from(entry.content),
          mode: modeOf(logical, entry),
        });
        return;
      case 'dir':
        out.entries.push({ path, empty_dir: true, mode: modeOf(logical, entry) });
        for (const [child, childEntry] of Object.entries(entry.children ?? {})) walk(`${logical}/${child}`, childEntry);
        return;
      case 'local_file':
      case 'local_dir':
        if (entry.permissions !== undefined) {
          refuse(logical, entry, 'permissions on a host copy are not supported: the copy keeps the host file modes', 'permissions');
        }
        out.entries.push({ path, host_copy: resolveHostPath(entry.src) });
        return;
      case 'git_repo':
        out.clones.push({ path, url: gitUrl(entry), ref: entry.ref, subpath: entry.subpath });
        return;
      case 'mount': {
        const target = typeof entry.mountPath === 'string' && entry.mountPath ? joinPath(root, entry.mountPath) : path;
        const source = entry.source as string;
        if (entry.readOnly === false) out.entries.push({ path: target, output_dir: source });
        else out.entries.push({ path: target, host_bind: source });
        return;
      }
    }
  };
  for (const [logical, entry] of Object.entries(entries)) walk(logical, entry);
  return out;
}

/** Every entry of a manifest checked (throws on the first unsupported one), and users and groups too. */
export function assertManifestSupported(manifest: Manifest): void {
  if (manifest.groups.length > 0) {
    throw new SandboxUnsupportedFeatureError(`${PROVIDER} does not support manifest groups: the airlock.v1 manifest has users only`, {
      provider: PROVIDER,
      feature: 'manifest.groups',
    });
  }
  const grant = manifest.extraPathGrants.find((g) => g.hostPath !== undefined);
  if (grant) {
    throw new SandboxUnsupportedFeatureError(
      `${PROVIDER} does not support path grant hostPath for "${grant.path}": a sandbox sees only its own filesystem; bind host directories with a local_bind mount entry`,
      { provider: PROVIDER, feature: 'manifest.extraPathGrants.hostPath', path: grant.path },
    );
  }
  for (const [path, entry] of Object.entries(manifest.entries)) assertEntrySupported(path, entry);
}

/** airlock users for the manifest's users: uid and gid 2000, 2001, ... in order (1000 is the host image's own user), home /home/<name>. */
export function mapUsers(manifest: Manifest): { name: string; uid: number; gid: number; home: string }[] {
  return manifest.users.map((u, i) => ({ name: u.name, uid: 2000 + i, gid: 2000 + i, home: `/home/${u.name}` }));
}
