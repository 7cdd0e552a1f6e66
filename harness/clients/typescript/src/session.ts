// AirlockSandboxSession: the Agents SDK's SandboxSession on one airlock
// sandbox. Commands are airlock background processes (StartProcess, then
// ReadProcessOutput with wait_ms up to the tool's yield time), so a command
// that outlives its yield becomes a session the model polls and writes to
// with write_stdin (WriteProcessStdin), with a PTY when tty is asked for.
// Files go through the file RPCs, run inside the sandbox; apply_patch through
// ApplyPatch; the workspace archive is Download / Upload tar.
import { readFile as readHostFile, readdir, lstat, readlink } from 'node:fs/promises';
import { join as joinHost, resolve as resolveHost } from 'node:path';
import { StringDecoder } from 'node:string_decoder';
import { UserError } from '@openai/agents';
import type { Editor, ApplyPatchResult } from '@openai/agents';
import {
  Manifest,
  SandboxArchiveError,
  SandboxExposedPortUnavailableError,
  SandboxLifecycleError,
  SandboxUnsupportedFeatureError,
  WorkspacePathPolicy,
  normalizeExposedPort,
  recordExposedPortEndpoint,
  resolveSandboxArchiveLimits,
  type Entry,
  type ExecCommandArgs,
  type ExposedPortEndpoint,
  type ListDirectoryArgs,
  type MaterializeEntryArgs,
  type ReadFileArgs,
  type SandboxArchiveLimits,
  type SandboxDirectoryEntry,
  type SandboxExecResult,
  type SandboxSession,
  type SandboxSessionState,
  type ViewImageArgs,
  type WorkspaceArchiveOptions,
  type WriteStdinArgs,
} from '@openai/agents/sandbox';
import {
  elapsedSeconds,
  formatExecResponse,
  imageOutputFromBytes,
  MAX_VIEW_IMAGE_BYTES,
  mergeManifestDelta,
  mergeManifestEntryDelta,
  truncateOutput,
} from '@openai/agents-core/sandbox/internal';
import { AirlockConnection, AirlockError, chunked } from './rpc.js';
import { PROVIDER, assertEntrySupported, gitUrl, modeOf } from './manifest.js';
import { TarWriter, filterTar, listTar } from './tar.js';

const DEFAULT_EXEC_YIELD_TIME_MS = 10_000;
const DEFAULT_WRITE_STDIN_YIELD_TIME_MS = 250;
const READ_MAX_BYTES = 1 << 20;
/** Output kept per running session between polls (the oldest is dropped first), as the SDK's local client does. */
const MAX_PENDING_OUTPUT = 1 << 20;
const SIGINT = 2;
const SIGKILL = 9;

/** What a sandbox is created with; kept in the session state so a resume can build it again. */
export type AirlockCreateOptions = {
  /** Image name; default "host". */
  image?: string;
  limits?: { memoryBytes?: number; pids?: number; cpus?: number; diskBytes?: number; nofile?: number };
  /** "none" (loopback only, the default) or "proxy" (out only through the egress proxy). */
  network?: 'none' | 'proxy';
  egress?: { allow?: string[]; secrets?: string[]; transparent?: boolean };
  /** Ports of the sandbox the daemon forwards from its expose address (network "proxy"). */
  exposedPorts?: number[];
  labels?: Record<string, string>;
  lifetimeMs?: number;
  idleTimeoutMs?: number;
  hostname?: string;
  seccompProfile?: string;
  /** Writable layer on the pool: serializeSessionState then takes an airlock snapshot that resume restores. */
  snapshots?: boolean;
};

export interface AirlockSandboxSessionState extends SandboxSessionState {
  sandboxId: string;
  environment: Record<string, string>;
  createOptions: AirlockCreateOptions;
  /** Snapshot taken at the last serialization (sandboxes created with snapshots). */
  snapshotId?: string;
  /** Running command sessions by the id the model knows, so write_stdin still works after a resume. */
  processes?: Record<string, { processId: string; tty: boolean }>;
  nextSessionId?: number;
  defaultShell?: string;
  commandTimeoutMs?: number;
}

type RunningProcess = {
  processId: string;
  tty: boolean;
  out: StringDecoder;
  err: StringDecoder;
};

type Collected = { stdout: string; stderr: string; output: string; done: boolean; exitCode?: number };

function exitCodeOf(exit: any): number {
  if (!exit) return 1;
  if (exit.exec_error) return 127;
  if (exit.signal) return 128 + exit.signal;
  return exit.code ?? 0;
}

function isNotFound(e: unknown): boolean {
  return e instanceof AirlockError && e.code === 'NOT_FOUND';
}

export class AirlockSandboxSession implements SandboxSession<AirlockSandboxSessionState> {
  readonly state: AirlockSandboxSessionState;
  private readonly rpc: AirlockConnection;
  private archiveLimits?: SandboxArchiveLimits | null;
  private readonly processes = new Map<number, RunningProcess>();
  private closed = false;

  constructor(args: { state: AirlockSandboxSessionState; connection: AirlockConnection; archiveLimits?: SandboxArchiveLimits | null }) {
    this.state = args.state;
    this.rpc = args.connection;
    this.archiveLimits = args.archiveLimits;
    for (const [id, p] of Object.entries(this.state.processes ?? {})) {
      this.processes.set(Number(id), { ...p, out: new StringDecoder('utf8'), err: new StringDecoder('utf8') });
    }
  }

  get sandboxId(): string {
    return this.state.sandboxId;
  }

  // --- lifecycle ------------------------------------------------------------

  /** Whether the sandbox is running (not paused, stopped or gone). */
  async running(): Promise<boolean> {
    try {
      const s = await this.rpc.unary('Get', { id: this.sandboxId });
      return s.state === 'SANDBOX_STATE_RUNNING';
    } catch (e) {
      if (isNotFound(e)) return false;
      throw e;
    }
  }

  /** Resumes a paused sandbox; a stopped or destroyed one is an error naming its stop reason. */
  async start(): Promise<void> {
    const s = await this.rpc.unary('Get', { id: this.sandboxId });
    if (s.state === 'SANDBOX_STATE_PAUSED') await this.rpc.unary('Resume', { id: this.sandboxId });
    else if (s.state !== 'SANDBOX_STATE_RUNNING') {
      throw new SandboxLifecycleError(`airlock sandbox ${this.sandboxId} is ${s.state}${s.stop_reason ? ` (${s.stop_reason})` : ''}`, {
        provider: PROVIDER,
        sandboxId: this.sandboxId,
      });
    }
  }

  /** Kills the command sessions this session started that still run. */
  async stop(): Promise<void> {
    const all = [...this.processes.values()];
    this.processes.clear();
    this.syncProcessState();
    await Promise.all(
      all.map((p) =>
        this.rpc.unary('SignalProcess', { process: this.ref(p.processId), signo: SIGKILL }).catch(() => undefined),
      ),
    );
  }

  async shutdown(): Promise<void> {
    await this.stop();
  }

  /** Destroys the sandbox (every process and host resource of it). */
  async delete(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.processes.clear();
    this.syncProcessState();
    try {
      await this.rpc.unary('Destroy', { id: this.sandboxId });
    } catch (e) {
      if (!isNotFound(e)) throw e;
    }
  }

  async close(): Promise<void> {
    await this.delete();
  }

  setArchiveLimits(limits?: SandboxArchiveLimits | null): void {
    this.archiveLimits = limits;
  }

  supportsPty(): boolean {
    return true;
  }

  // --- paths ----------------------------------------------------------------

  private policy(): WorkspacePathPolicy {
    return new WorkspacePathPolicy({ root: this.state.manifest.root, extraPathGrants: this.state.manifest.extraPathGrants });
  }

  /** An absolute path inside the sandbox; escapes of the workspace (without a grant) are refused by the SDK's policy. */
  resolvePath(path?: string, forWrite = false): string {
    return this.policy().resolve(path, { forWrite }).path;
  }

  private file(path: string, runAs?: string, forWrite = false) {
    return { sandbox_id: this.sandboxId, path: this.resolvePath(path, forWrite), user: runAs ?? '' };
  }

  private ref(processId: string) {
    return { sandbox_id: this.sandboxId, process_id: processId };
  }

  // --- commands -------------------------------------------------------------

  private shellArgv(cmd: string, shell?: string, login = true): string[] {
    const sh = shell?.trim() || this.state.defaultShell || (login ? '/bin/bash' : '/bin/sh');
    return [sh, login ? '-lc' : '-c', cmd];
  }

  async execCommand(args: ExecCommandArgs): Promise<string> {
    return formatExecResponse(await this.exec(args));
  }

  async exec(args: ExecCommandArgs): Promise<SandboxExecResult> {
    const start = Date.now();
    const tty = args.tty ?? false;
    const deadline = start + (args.yieldTimeMs ?? DEFAULT_EXEC_YIELD_TIME_MS);
    // Started and first read in one call: a command that ends within its
    // yield time costs one round trip.
    const first = await this.rpc.unary('StartProcessAndRead', {
      start: {
        command: {
          sandbox_id: this.sandboxId,
          argv: this.shellArgv(args.cmd, args.shell, args.login ?? true),
          env: this.state.environment,
          cwd: this.resolvePath(args.workdir),
          user: args.runAs ?? '',
          tty,
          size: tty ? { rows: 24, cols: 80 } : undefined,
          timeout_ms: this.state.commandTimeoutMs ?? 0,
        },
        stdin: true,
      },
      max_bytes: READ_MAX_BYTES,
      wait_ms: Math.max(0, deadline - Date.now()),
    });
    const proc: RunningProcess = { processId: first.process.process_id, tty, out: new StringDecoder('utf8'), err: new StringDecoder('utf8') };
    const got = await this.collect(proc, deadline, first);
    const output = truncateOutput(got.output, args.maxOutputTokens);
    const result: SandboxExecResult = {
      output: output.text,
      stdout: got.stdout,
      stderr: got.stderr,
      wallTimeSeconds: elapsedSeconds(start),
      originalTokenCount: output.originalTokenCount,
    };
    if (got.done) {
      result.exitCode = got.exitCode;
      return result;
    }
    const sessionId = this.state.nextSessionId ?? 1;
    this.state.nextSessionId = sessionId + 1;
    this.processes.set(sessionId, proc);
    this.syncProcessState();
    result.sessionId = sessionId;
    return result;
  }

  async writeStdin(args: WriteStdinArgs): Promise<string> {
    const proc = this.processes.get(args.sessionId);
    if (!proc) {
      return formatExecResponse({ output: `write_stdin failed: session not found: ${args.sessionId}`, wallTimeSeconds: 0, exitCode: 1 });
    }
    const start = Date.now();
    let chars = args.chars ?? '';
    if (!proc.tty && chars.includes('\u0003')) {
      // Without a terminal there is no line discipline to turn ^C into SIGINT.
      await this.rpc.unary('SignalProcess', { process: this.ref(proc.processId), signo: SIGINT }).catch(() => undefined);
      chars = chars.split('\u0003').join('');
    }
    let note = '';
    if (chars.length > 0) {
      try {
        await this.rpc.unary('WriteProcessStdin', { process: this.ref(proc.processId), data: Buffer.from(chars, 'utf8') });
      } catch (e) {
        if (isNotFound(e)) {
          this.processes.delete(args.sessionId);
          this.syncProcessState();
          return formatExecResponse({ output: `write_stdin failed: session ${args.sessionId} is gone (${(e as AirlockError).details})`, wallTimeSeconds: 0, exitCode: 1 });
        }
        if (!(e instanceof AirlockError && e.code === 'FAILED_PRECONDITION')) throw e;
        note = `write_stdin: ${e.details}\n`;
      }
    }
    const got = await this.collect(proc, start + (args.yieldTimeMs ?? DEFAULT_WRITE_STDIN_YIELD_TIME_MS));
    const output = truncateOutput(note + got.output, args.maxOutputTokens);
    if (got.done) {
      this.processes.delete(args.sessionId);
      this.syncProcessState();
      return formatExecResponse({ output: output.text, wallTimeSeconds: elapsedSeconds(start), exitCode: got.exitCode, originalTokenCount: output.originalTokenCount });
    }
    return formatExecResponse({ output: output.text, wallTimeSeconds: elapsedSeconds(start), sessionId: args.sessionId, originalTokenCount: output.originalTokenCount });
  }

  /** Output until the process ends (and everything was read) or `deadline`
   *  passes, starting with `first` when the start already read some. */
  private async collect(proc: RunningProcess, deadline: number, first?: any): Promise<Collected> {
    const stdout: string[] = [];
    const stderr: string[] = [];
    const output: string[] = [];
    let size = 0;
    for (;;) {
      const wait = Math.max(0, deadline - Date.now());
      let r: any = first;
      first = undefined;
      try {
        r ??= await this.rpc.unary('ReadProcessOutput', { process: this.ref(proc.processId), max_bytes: READ_MAX_BYTES, wait_ms: wait });
      } catch (e) {
        if (isNotFound(e)) {
          // The daemon forgot it (the sandbox was rebuilt, or 256 newer processes ended since).
          const text = `[airlock: process ${proc.processId} is gone: ${(e as AirlockError).details}]\n`;
          return { stdout: stdout.join(''), stderr: stderr.join('') + text, output: output.join('') + text, done: true, exitCode: 1 };
        }
        throw e;
      }
      const o = proc.out.write(r.stdout);
      const er = proc.err.write(r.stderr);
      if (o) { stdout.push(o); output.push(o); size += o.length; }
      if (er) { stderr.push(er); output.push(er); size += er.length; }
      while (size > MAX_PENDING_OUTPUT && output.length > 1) size -= output.shift()!.length;
      if (r.eof) {
        const tail = proc.out.end() + proc.err.end();
        const exit = r.process?.exit;
        let text = output.join('') + tail;
        let errText = stderr.join('');
        if (exit?.exec_error) {
          text += `${exit.exec_error}\n`;
          errText += `${exit.exec_error}\n`;
        }
        if (exit?.timed_out) {
          text += `[airlock: killed after the command timeout of ${this.state.commandTimeoutMs} ms]\n`;
        }
        return { stdout: stdout.join('') + tail, stderr: errText, output: text, done: true, exitCode: exitCodeOf(exit) };
      }
      // A finished process with more buffered output is drained past the deadline.
      if (Date.now() >= deadline && r.process?.running !== false) {
        return { stdout: stdout.join(''), stderr: stderr.join(''), output: output.join(''), done: false };
      }
    }
  }

  private syncProcessState(): void {
    const out: Record<string, { processId: string; tty: boolean }> = {};
    for (const [id, p] of this.processes) out[String(id)] = { processId: p.processId, tty: p.tty };
    this.state.processes = out;
  }

  // --- files ----------------------------------------------------------------

  async readFile(args: ReadFileArgs): Promise<Uint8Array> {
    const data = await this.rpc.chunks('ReadFile', { file: this.file(args.path, args.runAs), offset: 0, length: args.maxBytes ?? 0 });
    return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  }

  async listDir(args: ListDirectoryArgs): Promise<SandboxDirectoryEntry[]> {
    const resolved = this.policy().resolve(args.path);
    const logical = resolved.workspaceRelativePath ?? resolved.path;
    const r = await this.rpc.unary('ListDir', { sandbox_id: this.sandboxId, path: resolved.path, user: args.runAs ?? '' });
    return (r.entries as any[]).map((e) => ({
      name: e.name,
      path: logical ? `${logical}/${e.name}` : e.name,
      type: e.type === 'FILE_TYPE_FILE' ? 'file' : e.type === 'FILE_TYPE_DIRECTORY' ? 'dir' : 'other',
    }));
  }

  private async stat(path: string, runAs?: string, follow = false): Promise<any | undefined> {
    try {
      return await this.rpc.unary('Stat', { file: this.file(path, runAs), follow_symlinks: follow });
    } catch (e) {
      if (isNotFound(e)) return undefined;
      throw e;
    }
  }

  async pathExists(path: string, runAs?: string): Promise<boolean> {
    return (await this.stat(path, runAs)) !== undefined;
  }

  async directoryExists(path: string, runAs?: string): Promise<boolean> {
    return (await this.stat(path, runAs, true))?.type === 'FILE_TYPE_DIRECTORY';
  }

  async viewImage(args: ViewImageArgs) {
    let r: any;
    try {
      r = await this.rpc.unary('ViewImage', this.file(args.path, args.runAs));
    } catch (e) {
      if (isNotFound(e)) throw new UserError(`Image file not found: ${args.path}`);
      throw e;
    }
    if (r.data.length > MAX_VIEW_IMAGE_BYTES) throw new UserError(`Image file exceeds the 10 MB limit: ${args.path}`);
    return imageOutputFromBytes(args.path, new Uint8Array(r.data.buffer, r.data.byteOffset, r.data.byteLength));
  }

  private async writeBytes(path: string, data: Uint8Array, mode: number, runAs?: string): Promise<void> {
    const header = { file: { sandbox_id: this.sandboxId, path, user: runAs ?? '' }, write_mode: 'WRITE_MODE_ATOMIC', mode, make_parents: true };
    await this.rpc.upload('WriteFile', [{ header }, ...chunked(data, (part) => ({ data: part }))]);
  }

  // --- apply_patch ------------------------------------------------------------

  createEditor(runAs?: string): Editor {
    return new AirlockEditor(this, runAs);
  }

  /** ApplyPatch with the structured operations (or V4A text), as `runAs`. */
  async applyPatch(request: { operations?: { type: string; path: string; diff: string; move_to?: string }[]; patch?: string }, runAs?: string) {
    return await this.rpc.unary('ApplyPatch', { sandbox_id: this.sandboxId, user: runAs ?? '', ...request });
  }

  /** A path for ApplyPatch: relative to the workspace (the API refuses anything outside it). */
  workspaceRelative(path: string): string {
    const r = this.policy().resolve(path, { forWrite: true });
    if (r.workspaceRelativePath === undefined) {
      throw new UserError(`apply_patch: "${path}" is outside the workspace ${this.state.manifest.root}; airlock's ApplyPatch edits the workspace only`);
    }
    return r.workspaceRelativePath;
  }

  // --- manifest -----------------------------------------------------------------

  async materializeEntry(args: MaterializeEntryArgs): Promise<void> {
    const logical = this.policy().resolve(args.path, { forWrite: true });
    assertEntrySupported(args.path, args.entry);
    await this.placeEntry(logical.path, args.entry, args.runAs);
    const rel = logical.workspaceRelativePath;
    if (rel !== undefined) this.state.manifest = mergeManifestEntryDelta(this.state.manifest, rel, structuredClone(args.entry));
  }

  async applyManifest(manifest: Manifest, runAs?: string): Promise<void> {
    if (manifest.root !== this.state.manifest.root) {
      throw new SandboxUnsupportedFeatureError(`${PROVIDER}: a running sandbox's workspace root is ${this.state.manifest.root}; a manifest with root ${manifest.root} can't be applied`, { provider: PROVIDER, feature: 'manifest.root' });
    }
    const known = new Set(this.state.manifest.users.map((u) => u.name));
    const added = manifest.users.filter((u) => !known.has(u.name));
    if (added.length > 0) {
      throw new SandboxUnsupportedFeatureError(`${PROVIDER}: users (${added.map((u) => u.name).join(', ')}) can only be given when the sandbox is created`, { provider: PROVIDER, feature: 'manifest.users' });
    }
    if (manifest.groups.length > 0) {
      throw new SandboxUnsupportedFeatureError(`${PROVIDER} does not support manifest groups`, { provider: PROVIDER, feature: 'manifest.groups' });
    }
    for (const [path, entry] of Object.entries(manifest.entries)) assertEntrySupported(path, entry);
    for (const [path, entry] of Object.entries(manifest.entries)) await this.placeEntry(this.resolvePath(path, true), entry, runAs);
    this.state.environment = { ...this.state.environment, ...(await manifest.resolveEnvironment()) };
    this.state.manifest = mergeManifestDelta(this.state.manifest, manifest);
  }

  /** One entry written into the running sandbox at absolute `path`. */
  private async placeEntry(path: string, entry: Entry, runAs?: string): Promise<void> {
    switch (entry.type) {
      case 'file': {
        const content = typeof entry.content === 'string' ? Buffer.from(entry.content, 'utf8') : entry.content;
        await this.writeBytes(path, content, modeOf(path, entry), runAs);
        return;
      }
      case 'dir':
        await this.rpc.unary('Mkdir', { file: { sandbox_id: this.sandboxId, path, user: runAs ?? '' }, parents: true, mode: modeOf(path, entry) });
        for (const [child, childEntry] of Object.entries(entry.children ?? {})) await this.placeEntry(`${path}/${child}`, childEntry, runAs);
        return;
      case 'local_file': {
        // The API has no call that copies a host path into a running sandbox
        // (host_copy exists only in CreateRequest), so the client reads it with
        // its own access and writes the bytes.
        const src = resolveHost(entry.src);
        const st = await lstat(src);
        if (!st.isFile()) throw new UserError(`${PROVIDER}: local_file ${src} is not a regular file`);
        await this.writeBytes(path, await readHostFile(src), st.mode & 0o777, runAs);
        return;
      }
      case 'local_dir': {
        const src = resolveHost(entry.src);
        const st = await lstat(src);
        if (!st.isDirectory()) throw new UserError(`${PROVIDER}: local_dir ${src} is not a directory`);
        const tar = new TarWriter();
        await addHostTree(tar, src, '');
        await this.upload(path, tar.finish(), runAs);
        return;
      }
      case 'git_repo':
        await this.cloneGit({ path, url: gitUrl(entry), ref: entry.ref, subpath: entry.subpath }, runAs);
        return;
      case 'mount':
        throw new SandboxUnsupportedFeatureError(
          `${PROVIDER} cannot add mount "${path}" to a running sandbox: host directories are bound only when the sandbox is created`,
          { provider: PROVIDER, feature: 'mount.live', path },
        );
      default:
        assertEntrySupported(path, entry);
    }
  }

  /**
   * Clones a git repository inside the sandbox, through its network policy.
   * Shallow first; a server on git's dumb HTTP transport (a bare repository
   * served as static files) can't do shallow clones, so for that one refusal
   * the clone is made again in full.
   */
  async cloneGit(clone: { path: string; url: string; ref?: string; subpath?: string }, runAs?: string): Promise<void> {
    const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
    const tmp = `${clone.path}.airlock-clone`;
    const gitClone = (depth: string) => `git clone --quiet ${depth}${clone.ref ? `--branch ${q(clone.ref)} ` : ''}-- ${q(clone.url)} ${q(tmp)}`;
    const script = [
      'set -e',
      `rm -rf ${q(tmp)}`,
      'rc=0',
      `out=$(${gitClone('--depth 1 ')} 2>&1) || rc=$?`,
      'if [ "$rc" -ne 0 ]; then',
      '  case "$out" in',
      `    *"does not support shallow"*) rm -rf ${q(tmp)}; ${gitClone('')} ;;`,
      `    *) printf '%s\\n' "$out" >&2; exit "$rc" ;;`,
      '  esac',
      'fi',
      `mkdir -p "$(dirname ${q(clone.path)})"`,
      `rm -rf ${q(clone.path)}`,
      clone.subpath ? `mv ${q(`${tmp}/${clone.subpath}`)} ${q(clone.path)} && rm -rf ${q(tmp)}` : `mv ${q(tmp)} ${q(clone.path)}`,
    ];
    const r = await this.exec({ cmd: script.join('\n'), login: false, shell: '/bin/sh', runAs, yieldTimeMs: 600_000 });
    if (r.exitCode !== 0) {
      const network = this.state.createOptions.network === 'proxy' ? 'its egress policy' : 'network "none" (create it with network "proxy" and the git host in egress.allow)';
      throw new UserError(`${PROVIDER}: git clone of ${clone.url} into ${clone.path} failed inside the sandbox (exit ${r.exitCode}; the sandbox reaches the network only through ${network}): ${r.output.trim().slice(-2000)}`);
    }
  }

  // --- workspace archive --------------------------------------------------------

  private excludedFromArchive(): (name: string) => boolean {
    const excluded = new Set<string>(this.state.manifest.ephemeralPersistencePaths());
    for (const t of this.state.manifest.mountTargets()) {
      const rel = this.policy().resolve(t.mountPath).workspaceRelativePath;
      if (rel !== undefined) excluded.add(rel);
    }
    const list = [...excluded].filter((p) => p !== undefined);
    return (name) => list.some((p) => p === '' || name === p || name.startsWith(`${p}/`));
  }

  /** The workspace as a tar archive (Download), without ephemeral entries and mounts. */
  async persistWorkspace(): Promise<Uint8Array> {
    const tar = await this.rpc.chunks('Download', { sandbox_id: this.sandboxId, path: this.state.manifest.root });
    return filterTar(tar, this.excludedFromArchive());
  }

  /** Replaces the workspace's contents with a tar archive (Upload), within the archive limits. */
  async hydrateWorkspace(data: string | ArrayBuffer | Uint8Array, options: WorkspaceArchiveOptions = {}): Promise<void> {
    const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data instanceof Uint8Array ? data : new Uint8Array(data);
    const limits = resolveSandboxArchiveLimits(options.archiveLimits === undefined ? this.archiveLimits : options.archiveLimits);
    if (limits?.maxInputBytes != null && bytes.byteLength > limits.maxInputBytes) {
      throw new SandboxArchiveError(`workspace archive is ${bytes.byteLength} bytes, over the limit of ${limits.maxInputBytes}`, { provider: PROVIDER });
    }
    let members;
    try {
      members = listTar(bytes);
    } catch (e) {
      throw new SandboxArchiveError(`workspace archive is not a valid tar: ${(e as Error).message}`, { provider: PROVIDER });
    }
    if (limits?.maxMembers != null && members.length > limits.maxMembers) {
      throw new SandboxArchiveError(`workspace archive has ${members.length} members, over the limit of ${limits.maxMembers}`, { provider: PROVIDER });
    }
    const total = members.reduce((n, m) => n + m.size, 0);
    if (limits?.maxExtractedBytes != null && total > limits.maxExtractedBytes) {
      throw new SandboxArchiveError(`workspace archive extracts to ${total} bytes, over the limit of ${limits.maxExtractedBytes}`, { provider: PROVIDER });
    }
    const excluded = this.excludedFromArchive();
    const bad = members.find((m) => m.name && excluded(m.name));
    if (bad) throw new SandboxArchiveError(`workspace archive writes "${bad.name}", a mount or ephemeral path of the manifest`, { provider: PROVIDER, path: bad.name });
    const root = this.state.manifest.root;
    const listing = await this.rpc.unary('ListDir', { sandbox_id: this.sandboxId, path: root, user: '' });
    for (const e of listing.entries as any[]) {
      if (excluded(e.name)) continue;
      await this.rpc.unary('Remove', { file: { sandbox_id: this.sandboxId, path: `${root}/${e.name}`, user: '' }, recursive: true });
    }
    await this.upload(root, bytes);
  }

  private async upload(directory: string, tar: Uint8Array, runAs?: string): Promise<void> {
    await this.rpc.upload('Upload', [
      { directory: { sandbox_id: this.sandboxId, path: directory, user: runAs ?? '' } },
      ...chunked(tar, (part) => ({ tar: part })),
    ]);
  }

  // --- ports ----------------------------------------------------------------------

  /** The host address airlockd forwards to `port` inside the sandbox (CreateRequest.expose_ports). */
  async resolveExposedPort(port: number): Promise<ExposedPortEndpoint> {
    const p = normalizeExposedPort(port);
    const s = await this.rpc.unary('Get', { id: this.sandboxId });
    const found = (s.exposed_ports as any[]).find((e) => e.port === p);
    if (!found || !found.host_address) {
      const configured = (s.exposed_ports as any[]).map((e) => e.port);
      throw new SandboxExposedPortUnavailableError(
        `airlock sandbox ${this.sandboxId} does not expose port ${p} (exposed: ${configured.length ? configured.join(', ') : 'none'}); ports are exposed at create time with options.exposedPorts, network "proxy" and the daemon's egress.expose_address`,
        { provider: PROVIDER, port: p, configuredPorts: configured },
      );
    }
    const addr: string = found.host_address;
    const colon = addr.lastIndexOf(':');
    const host = addr.slice(0, colon).replace(/^\[(.*)\]$/, '$1');
    return recordExposedPortEndpoint(this.state, { host, port: Number(addr.slice(colon + 1)), tls: false }, p);
  }
}

/** A host directory tree into `tar` (files, directories, symlinks as links; anything else refused). */
async function addHostTree(tar: TarWriter, dir: string, prefix: string): Promise<void> {
  for (const name of (await readdir(dir)).sort()) {
    const host = joinHost(dir, name);
    const rel = prefix ? `${prefix}/${name}` : name;
    const st = await lstat(host);
    if (st.isDirectory()) {
      tar.directory(rel, st.mode & 0o777);
      await addHostTree(tar, host, rel);
    } else if (st.isFile()) {
      tar.file(rel, await readHostFile(host), st.mode & 0o777);
    } else if (st.isSymbolicLink()) {
      tar.symlink(rel, await readlink(host));
    } else {
      throw new UserError(`${PROVIDER}: local_dir member ${host} is not a file, directory or symlink`);
    }
  }
}

/** The SDK's Editor for apply_patch, on airlock's ApplyPatch RPC. */
export class AirlockEditor implements Editor {
  constructor(private readonly session: AirlockSandboxSession, private readonly runAs?: string) {}

  private async apply(request: Parameters<AirlockSandboxSession['applyPatch']>[0]): Promise<ApplyPatchResult> {
    const r = await this.session.applyPatch(request, this.runAs);
    return { status: 'completed', output: r.summary };
  }

  async createFile(op: { type: 'create_file'; path: string; diff: string }): Promise<ApplyPatchResult> {
    return await this.apply({ operations: [{ type: 'create_file', path: this.session.workspaceRelative(op.path), diff: op.diff }] });
  }

  async updateFile(op: { type: 'update_file'; path: string; diff: string; moveTo?: string }): Promise<ApplyPatchResult> {
    const path = this.session.workspaceRelative(op.path);
    const moveTo = op.moveTo ? this.session.workspaceRelative(op.moveTo) : '';
    return await this.apply({ operations: [{ type: 'update_file', path, diff: op.diff, move_to: moveTo }] });
  }

  async deleteFile(op: { type: 'delete_file'; path: string }): Promise<ApplyPatchResult> {
    return await this.apply({ operations: [{ type: 'delete_file', path: this.session.workspaceRelative(op.path), diff: '' }] });
  }
}
