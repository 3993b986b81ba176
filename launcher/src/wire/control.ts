// The control socket contract: what the symrun CLI (`status`, `exec`, `migrate`, `cancel`,
// `checkpoint`; bench/control-load) asks of a running job, and the events on that connection. One
// table; the coordinator (coordinator/job/control.ts) answers through agent/typed.ts serve, the CLI
// (cli/status.ts, exec.ts, migrate.ts, checkpoint.ts) calls through callerOf.
//
// The wire: RUN_DIR/control.sock (unix, 0600 in a 0700 run directory), the channel's handshake with
// the job's control key, then sealed JSON lines (agent/channel.ts, docs/channels.md); through
// `symrun control-proxy` the same messages cross srun's stdio. On it:
//   call   CLI -> job   {t:'call', id, method, params} -> {t:'result', ...}      (ControlMethods)
//   event  job -> CLI   op.event (after migrate / checkpoint / events.subscribe), exec.out, exec.exit
//   event  CLI -> job   exec.in, exec.resize, exec.signal                          (ControlClientEvents)
// The job refuses params without a required field or with one of the wrong JSON kind (ESYM_RPC_PARAMS,
// naming the field: CONTROL_PARAMS). Types only (and one constant table): no I/O.
import type { OpEvent } from '../protocol/events.js';
import type { OpResult } from '../protocol/executor.js';
import type { CkptPhase } from '../protocol/checkpoint.js';
import type { MigrationMode } from './migration.js';
import type { EventChecks, ParamChecks } from './rpc.js';

type NoParams = Record<string, never>;

/** What a control client may ask of the job. */
export interface ControlMethods {
  'status':           { params: NoParams; result: JobStatus };
  'events.subscribe': { params: NoParams; result: Record<string, never> };                  // op.event from now on
  'migrate':          { params: MigrateRequest & { wait?: boolean }; result: { op: string; result?: OpResult } };   // result: with wait
  'cancel':           { params: { vm: string }; result: { op: string; accepted: boolean; phase: string } };
  'checkpoint':       { params: CheckpointRequest & { wait?: boolean }; result: { op: string; name: string; result?: CheckpointResult } };
  'exec.start':       { params: { vm: string; argv: string[]; pty?: { cols: number; rows: number }; cwd?: string }; result: { sid: string } };
}

/** Events the job sends a control client (no reply). */
export interface ControlJobEvents {
  'op.event':  OpEvent;                                         // a migration / checkpoint / restart phase
  'exec.out':  { sid: string; fd: 1 | 2; data: string };        // base64; sid '' before exec.start answered
  'exec.exit': { sid: string; status: number };
}

/** Events a control client sends the job (no reply): the input side of an exec. */
export interface ControlClientEvents {
  'exec.in':     { sid: string; data?: string; eof?: boolean };  // base64
  'exec.resize': { sid: string; cols: number; rows: number };
  'exec.signal': { sid: string; sig: string };
}

export const CONTROL_PARAMS: ParamChecks<ControlMethods> = {
  'status': {},
  'events.subscribe': {},
  'migrate': { vm: 'string' },
  'cancel': { vm: 'string' },
  'checkpoint': {},
  'exec.start': { vm: 'string', argv: 'array' },
};

/** How the ranks are held while a VM moves (migration.quiesce). */
export type QuiesceMode = 'freeze' | 'failover' | 'hooks';

export interface MigrateRequest {
  vm: string;
  /** destination host; default: a free spare */
  to?: string;
  mode?: MigrationMode;
  quiesce?: QuiesceMode;
  deadlineMs?: number;
  /** why (user, drain of host X, health check): recorded in the events */
  reason?: string;
  /** per-operation cap of the migration stream (bytes/s), e.g. to keep a link free */
  maxBandwidthBytes?: number;
  /** fault injection for this operation only (tests): NAME@WHERE, see faults.ts */
  faults?: string[];
}

export interface CheckpointRequest {
  /** checkpoint root (default checkpoint.dir) */
  dir?: string;
  /** complete checkpoints of this job kept (default checkpoint.keep) */
  keep?: number;
  /** why (user, interval): recorded in the events */
  reason?: string;
  /** fault injection for this checkpoint only (tests, the soak): NAME@WHERE, see faults.ts */
  faults?: string[];
}

export interface CheckpointResult extends OpResult<CkptPhase> {
  name: string;
  root: string;
  /** the complete checkpoint (outcome done) */
  path?: string;
  vms: Array<{ name: string; host: string; file: string; size: number; sha256: string; saveMs?: number }>;
  sizeBytes: number;
  /** ranks frozen: quiesce .. resume (ms) */
  frozenMs?: number;
  pruned: string[];
  warnings: string[];
}

/** `symrun status`: the job as its coordinator sees it (--json prints it as is). */
export interface JobStatus {
  jobId: string;
  pid: number;
  state: string;
  app: string[];
  cwd: string;
  mode?: string;
  hosts: Array<{ name: string; ip: string; role: 'lost' | 'vm' | 'spare'; agent: boolean; condition?: string; usable?: boolean }>;
  /** Slurm: the drain policy's notices and node conditions, the node feed */
  notices?: unknown;
  nodes?: unknown;
  watch?: unknown;
  vms: Array<{ name: string; host: string; ip: string; mac: string; state: string; agent: string; migrating?: string }>;
  migrations: Array<{ op: string; vm: string; from: string; to: string; phase: string; reason?: string; result?: OpResult }>;
  restarts: { count: number; max: number; lostHosts: string[]; log: Array<{ at: string; hosts: string[]; why: string; from?: string; ms?: number; moved?: Array<{ vm: string; from: string; to: string }> }> };
  phases: Record<string, number>;
}

/** The control client's check of each job event's payload (agent/typed.ts eventOf). */
export const CONTROL_JOB_EVENTS: EventChecks<ControlJobEvents> = {
  'op.event': { ts: 'string', op: 'string', kind: 'string', phase: 'string', event: 'string' },
  'exec.out': { sid: 'string', fd: 'number', data: 'string' },
  'exec.exit': { sid: 'string', status: 'number' },
};

/** The job's check of each control client event's payload. */
export const CONTROL_CLIENT_EVENTS: EventChecks<ControlClientEvents> = {
  'exec.in': { sid: 'string' },
  'exec.resize': { sid: 'string', cols: 'number', rows: 'number' },
  'exec.signal': { sid: 'string', sig: 'string' },
};
