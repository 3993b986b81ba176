// What the rooms of a job (agents, vms, staging, mpi session, control, restarts, allocation) share:
// the job's identity, options, VMs, hosts and state. The Job (job.ts) is the one implementation; the
// rooms see only this interface, so none of them imports job.ts (no cycles).
import type { SymrunConfig } from '../../config/types.js';
import type { ImageInfo } from '../../image/index.js';
import type { GuestClient } from '../../agent/guest.js';
import type { HostSet } from '../hosts.js';
import type { PickedCheckpoint } from '../restart.js';
import type { OpEvent } from '../../protocol/events.js';

export interface JobOptions {
  config: SymrunConfig;
  /** the application and its arguments */
  app: string[];
  cwd: string;
  quiet?: boolean;
  signal?: AbortSignal;
  stdout?: NodeJS.WritableStream;
  stderr?: NodeJS.WritableStream;
  /** called with each phase name and its duration (ms) */
  onPhase?: (phase: string, ms: number) => void;
  jobId?: string;
  /** append every protocol event (JSON lines) to this file */
  eventsFile?: string;
  /** `symrun restart`: resume this checkpoint (verified) instead of booting and launching */
  restore?: PickedCheckpoint;
}

export type JobState = 'starting' | 'running' | 'restarting' | 'finishing' | 'tearing-down' | 'done';

export interface VmState {
  name: string;
  /** 1-based; MACs, guest addresses and tap names derive from it */
  index: number;
  host: string;
  mac: string;
  ip: string;
  tap: string;
  client: GuestClient;
  state: 'booting' | 'ready' | 'running' | 'stopped' | 'checkpointing';
}

export interface JobContext {
  readonly id: string;
  readonly runDir: string;
  readonly opts: JobOptions;
  readonly config: SymrunConfig;
  readonly vms: Map<string, VmState>;
  /** hosts whose agent was lost (node died): no VM goes there again */
  readonly lostHosts: Set<string>;
  cluster?: HostSet;
  image?: ImageInfo;
  accel: 'kvm' | 'tcg';
  state: JobState;
  /** hosts that run VMs at start (the rest of cluster.hosts are spares) */
  vmHostCount: number;
  /** MACs and checkpoint names derive from this (a restarted job keeps its checkpoint's) */
  macSeed: string;
  /** guests' prefix length when restored from a checkpoint (their addresses are in the saved state) */
  prefixLenOverride?: number;
  readonly out: NodeJS.WritableStream;
  readonly err: NodeJS.WritableStream;
  say(msg: string): void;
  event(e: OpEvent): void;
  /** time a named phase of the job (phases of `symrun --json`) */
  phase<T>(name: string, fn: () => Promise<T>): Promise<T>;
  /** register a teardown step */
  onCleanup(what: string, fn: () => Promise<unknown> | unknown): void;
  /** recover.json is rewritten (local mode): sessions, hosts or VMs changed */
  saveRecovery(): void;
}

/** A job that is ending does not react to losses or allocation changes any more. */
export function ending(state: JobState): boolean {
  return state === 'tearing-down' || state === 'done' || state === 'finishing';
}
