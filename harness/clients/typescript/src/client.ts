// AirlockSandboxClient: the Agents SDK's SandboxClient on airlockd. create
// builds a sandbox from the SDK manifest (Create), resume reconnects to it by
// id (Get/Resume) or, if it is gone, restores the snapshot taken when its
// state was serialized (Restore) or builds it again from the manifest;
// delete destroys it (Destroy) and its snapshot.
import {
  Manifest,
  SandboxConfigurationError,
  SandboxUnsupportedFeatureError,
  normalizeSandboxClientCreateArgs,
  type SandboxArchiveLimits,
  type SandboxClient,
  type SandboxClientCreateArgs,
  type SandboxClientOptions,
  type SandboxClientResumeOptions,
  type SandboxSessionSerializationOptions,
} from '@openai/agents/sandbox';
import { deserializeManifest, serializeManifest } from '@openai/agents-core/sandbox/internal';
import { AirlockConnection, AirlockError } from './rpc.js';
import { PROVIDER, assertEntrySupported, assertManifestSupported, mapEntries, mapUsers } from './manifest.js';
import { AirlockSandboxSession, type AirlockCreateOptions, type AirlockSandboxSessionState } from './session.js';

export interface AirlockSandboxClientOptions extends SandboxClientOptions, AirlockCreateOptions {
  /** airlockd's socket; default $AIRLOCK_SOCKET, else /run/airlock/airlockd.sock. */
  socket?: string;
  /** Shell for exec_command; default /bin/bash with login, /bin/sh without. */
  defaultShell?: string;
  /** Every command is killed after this long (Command.timeout_ms); default none. */
  commandTimeoutMs?: number;
  archiveLimits?: SandboxArchiveLimits | null;
}

const CREATE_KEYS = [
  'image', 'limits', 'network', 'egress', 'exposedPorts', 'labels', 'lifetimeMs', 'idleTimeoutMs', 'hostname', 'seccompProfile', 'snapshots',
] as const;

function createOptionsOf(o: AirlockSandboxClientOptions): AirlockCreateOptions {
  const out: Record<string, unknown> = {};
  for (const k of CREATE_KEYS) if (o[k] !== undefined) out[k] = structuredClone(o[k]);
  return out as AirlockCreateOptions;
}

function isNotFound(e: unknown): boolean {
  return e instanceof AirlockError && e.code === 'NOT_FOUND';
}

export class AirlockSandboxClient implements SandboxClient<AirlockSandboxClientOptions, AirlockSandboxSessionState> {
  readonly backendId = 'airlock';
  private readonly options: AirlockSandboxClientOptions;
  private connectionValue?: AirlockConnection;

  constructor(options: AirlockSandboxClientOptions = {}) {
    this.options = options;
  }

  /** The gRPC channel to airlockd, opened on first use and shared by this client's sessions. */
  get connection(): AirlockConnection {
    this.connectionValue ??= new AirlockConnection(this.options.socket);
    return this.connectionValue;
  }

  /** Closes the channel (sessions made by this client stop working). */
  close(): void {
    this.connectionValue?.close();
    this.connectionValue = undefined;
  }

  async create(args?: SandboxClientCreateArgs<AirlockSandboxClientOptions> | Manifest, manifestOptions?: AirlockSandboxClientOptions): Promise<AirlockSandboxSession> {
    // Refuse what airlock can't place before the SDK's own checks, so the error names the entry.
    const given = args instanceof Manifest ? args : args?.manifest;
    if (given instanceof Manifest) assertManifestSupported(given);
    else if (given?.entries) for (const [path, entry] of Object.entries(given.entries)) assertEntrySupported(path, entry);
    const createArgs = normalizeSandboxClientCreateArgs(args, manifestOptions);
    if (createArgs.snapshot && createArgs.snapshot.type !== 'noop') {
      throw new SandboxUnsupportedFeatureError(
        `${PROVIDER} does not take SDK snapshot specs (${createArgs.snapshot.type}); create with options.snapshots and the session state carries an airlock snapshot`,
        { provider: PROVIDER, feature: 'snapshot' },
      );
    }
    const options: AirlockSandboxClientOptions = { ...this.options, ...(createArgs.options ?? {}) };
    if (createArgs.archiveLimits !== undefined) options.archiveLimits = createArgs.archiveLimits;
    const manifest = createArgs.manifest;
    assertManifestSupported(manifest);
    const environment = await manifest.resolveEnvironment();
    const createOptions = createOptionsOf(options);
    const { sandbox, clones } = await this.createSandbox(manifest, environment, createOptions);
    const session = new AirlockSandboxSession({
      connection: this.connection,
      archiveLimits: options.archiveLimits,
      state: {
        manifest,
        sandboxId: sandbox.id,
        environment,
        createOptions,
        configuredExposedPorts: createOptions.exposedPorts ?? [],
        defaultShell: options.defaultShell,
        commandTimeoutMs: options.commandTimeoutMs,
      },
    });
    try {
      for (const clone of clones) await session.cloneGit(clone);
    } catch (e) {
      await session.delete().catch(() => undefined);
      throw e;
    }
    return session;
  }

  private async createSandbox(manifest: Manifest, environment: Record<string, string>, o: AirlockCreateOptions) {
    const mapped = mapEntries(manifest.root, manifest.entries);
    if ((o.exposedPorts?.length ?? 0) > 0 && o.network !== 'proxy') {
      throw new SandboxConfigurationError(`${PROVIDER}: exposedPorts needs network "proxy" (airlockd forwards them through the sandbox's relay)`, { provider: PROVIDER });
    }
    const l = o.limits ?? {};
    const request = {
      image: o.image ?? '',
      manifest: { root: manifest.root, entries: mapped.entries, environment, users: mapUsers(manifest) },
      limits: { memory_bytes: l.memoryBytes ?? 0, pids: l.pids ?? 0, cpus: l.cpus ?? 0, disk_bytes: l.diskBytes ?? 0, nofile: l.nofile ?? 0 },
      seccomp_profile: o.seccompProfile ?? '',
      network: o.network === 'proxy' ? 'NETWORK_MODE_PROXY' : 'NETWORK_MODE_NONE',
      labels: { 'airlock.client': 'openai-agents-ts', ...(o.labels ?? {}) },
      lifetime_ms: o.lifetimeMs ?? 0,
      idle_timeout_ms: o.idleTimeoutMs ?? 0,
      hostname: o.hostname ?? '',
      egress: o.egress ? { allow: o.egress.allow ?? [], secrets: o.egress.secrets ?? [], transparent: o.egress.transparent ?? false } : undefined,
      expose_ports: o.exposedPorts ?? [],
      snapshots: o.snapshots ?? false,
    };
    const sandbox = await this.connection.unary('Create', request);
    return { sandbox, clones: mapped.clones };
  }

  /**
   * Reconnects to the sandbox of `state`: a running one as it is, a paused one
   * resumed. One that is gone is restored from the snapshot taken when the
   * state was serialized, else built again from the manifest (its workspace
   * changes then are lost).
   */
  async resume(state: AirlockSandboxSessionState, options: SandboxClientResumeOptions<AirlockSandboxClientOptions> = {}): Promise<AirlockSandboxSession> {
    const archiveLimits = options.archiveLimits === undefined ? this.options.archiveLimits : options.archiveLimits;
    let sandbox: any;
    try {
      sandbox = await this.connection.unary('Get', { id: state.sandboxId });
    } catch (e) {
      if (!isNotFound(e)) throw e;
    }
    if (sandbox && sandbox.state === 'SANDBOX_STATE_PAUSED') {
      sandbox = await this.connection.unary('Resume', { id: state.sandboxId });
    }
    if (sandbox && sandbox.state === 'SANDBOX_STATE_RUNNING') {
      return new AirlockSandboxSession({ connection: this.connection, state, archiveLimits });
    }
    if (sandbox) await this.connection.unary('Destroy', { id: state.sandboxId }).catch(() => undefined);
    let restored: any;
    if (state.snapshotId) {
      try {
        restored = await this.connection.unary('Restore', { snapshot_id: state.snapshotId, labels: { 'airlock.client': 'openai-agents-ts', ...(state.createOptions.labels ?? {}) } });
      } catch (e) {
        if (!isNotFound(e)) throw e;
      }
    }
    const next: AirlockSandboxSessionState = { ...state, processes: {}, exposedPorts: undefined };
    if (restored) {
      next.sandboxId = restored.id;
      return new AirlockSandboxSession({ connection: this.connection, state: next, archiveLimits });
    }
    const { sandbox: created, clones } = await this.createSandbox(state.manifest, state.environment, state.createOptions);
    next.sandboxId = created.id;
    next.snapshotId = undefined;
    const session = new AirlockSandboxSession({ connection: this.connection, state: next, archiveLimits });
    for (const clone of clones) await session.cloneGit(clone);
    return session;
  }

  /** Destroys the sandbox of `state` and the snapshot its serialization took. */
  async delete(state: AirlockSandboxSessionState): Promise<void> {
    try {
      await this.connection.unary('Destroy', { id: state.sandboxId });
    } catch (e) {
      if (!isNotFound(e)) throw e;
    }
    if (state.snapshotId) {
      await this.connection.unary('DeleteSnapshot', { id: state.snapshotId }).catch((e) => {
        if (!isNotFound(e)) throw e;
      });
    }
  }

  canPersistOwnedSessionState(): boolean {
    return true;
  }

  /**
   * The provider state as JSON-safe values. A sandbox created with
   * `snapshots` that is about to be closed (or serialized by a caller
   * directly) gets a filesystem snapshot first, so resume can bring its
   * workspace back after it was destroyed. Older snapshots are not pruned
   * here (an earlier serialized state may still name one): the daemon's
   * snapshot_keep_last bounds them per sandbox.
   */
  async serializeSessionState(state: AirlockSandboxSessionState, options?: SandboxSessionSerializationOptions): Promise<Record<string, unknown>> {
    const keepsRunning = options?.preserveOwnedSession === true && options.reuseLiveSession !== false && options.willCloseAfterSerialize !== true;
    if (state.createOptions.snapshots && !keepsRunning) {
      const snap = await this.connection.unary('Snapshot', { sandbox_id: state.sandboxId, keep_last: 0, labels: { 'airlock.client': 'openai-agents-ts' } });
      state.snapshotId = snap.id;
    }
    return {
      manifest: serializeManifest(state.manifest),
      sandboxId: state.sandboxId,
      environment: { ...state.environment },
      createOptions: structuredClone(state.createOptions),
      configuredExposedPorts: state.configuredExposedPorts ?? [],
      exposedPorts: state.exposedPorts ?? null,
      snapshotId: state.snapshotId ?? null,
      processes: structuredClone(state.processes ?? {}),
      nextSessionId: state.nextSessionId ?? 1,
      defaultShell: state.defaultShell ?? null,
      commandTimeoutMs: state.commandTimeoutMs ?? null,
    };
  }

  async deserializeSessionState(record: Record<string, unknown>): Promise<AirlockSandboxSessionState> {
    const sandboxId = record.sandboxId;
    if (typeof sandboxId !== 'string' || !sandboxId) {
      throw new SandboxConfigurationError(`${PROVIDER}: serialized session state has no sandboxId`, { provider: PROVIDER });
    }
    const str = (v: unknown) => (typeof v === 'string' ? v : undefined);
    const num = (v: unknown) => (typeof v === 'number' ? v : undefined);
    const environment: Record<string, string> = {};
    for (const [k, v] of Object.entries((record.environment as Record<string, unknown>) ?? {})) if (typeof v === 'string') environment[k] = v;
    const processes: Record<string, { processId: string; tty: boolean }> = {};
    for (const [k, v] of Object.entries((record.processes as Record<string, any>) ?? {})) {
      if (v && typeof v.processId === 'string') processes[k] = { processId: v.processId, tty: v.tty === true };
    }
    return {
      ...record,
      manifest: deserializeManifest(record.manifest as Record<string, unknown>),
      sandboxId,
      environment,
      createOptions: structuredClone((record.createOptions as AirlockCreateOptions) ?? {}),
      configuredExposedPorts: Array.isArray(record.configuredExposedPorts) ? (record.configuredExposedPorts as number[]) : [],
      exposedPorts: (record.exposedPorts as any) ?? undefined,
      snapshotId: str(record.snapshotId),
      processes,
      nextSessionId: num(record.nextSessionId) ?? 1,
      defaultShell: str(record.defaultShell),
      commandTimeoutMs: num(record.commandTimeoutMs),
    };
  }
}
