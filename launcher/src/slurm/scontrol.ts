// `scontrol show node -o` / `scontrol show job -o` output: a pure codec, no I/O.
//
// Format (Slurm 22.05.8, captured on the lab cluster: test/fixtures/slurm/*.txt):
//   one record per line (`-o`), `Key=Value` pairs separated by spaces. Keys start with an upper-case
//   letter and may contain ':' '/' ('AllocNode:Sid=ctl:1761', 'CPUs/Task=1'). Some values contain spaces:
//   'OS=Linux 6.18.44-fc-v669 #1 SMP PREEMPT_DYNAMIC @0', a job's 'JobName'/'Command'/'Comment', and a
//   node's 'Reason=<free text> [user@time]', which Slurm prints after every other field (only
//   'Comment='/'Extra=' may follow it). A word that does not start a `Key=` pair is therefore glued to
//   the previous value; a node's Reason is cut at its "[user@time]" trailer, so a reason text may
//   contain anything, even "a=b". The multi-line form (without -o) is accepted too.
//
// Node state (src/common/slurm_protocol_defs.c: node_state_string_complete): the base state
// (IDLE ALLOCATED MIXED DOWN ERROR FUTURE UNKNOWN) followed by '+FLAG' for each flag, e.g.
// "MIXED+DRAIN", "DOWN+NOT_RESPONDING", "IDLE+DRAIN+REBOOT_REQUESTED". `sinfo` prints the other form
// (node_state_string: "draining", "drained", "down*", "idle~" with suffix characters, man sinfo
// "NODE STATE CODES"); parseNodeState accepts both.
import { SymError, EXIT } from '../errors.js';
import { expandHostlist } from './hostlist.js';

/** Base states of Slurm 22.05 (NODE_STATE_BASE). */
export const NODE_BASE_STATES = ['DOWN', 'IDLE', 'ALLOCATED', 'ERROR', 'MIXED', 'FUTURE', 'UNKNOWN'] as const;

/** Flag names printed by scontrol 22.05 (node_state_flags[] in slurm_protocol_defs.c). */
export const NODE_STATE_FLAGS = [
  'CLOUD', 'COMPLETING', 'DRAIN', 'DYNAMIC_FUTURE', 'DYNAMIC_NORM', 'INVALID_REG', 'FAIL', 'MAINTENANCE',
  'POWER_DOWN', 'POWER_UP', 'PERFCTRS', 'POWERED_DOWN', 'REBOOT_REQUESTED', 'REBOOT_ISSUED', 'RESERVED',
  'RESUME', 'NOT_RESPONDING', 'PLANNED', 'POWERING_UP', 'POWERING_DOWN',
] as const;

/** sinfo suffix characters (man sinfo, NODE STATE CODES) → the scontrol flag they stand for. */
export const NODE_STATE_SUFFIXES: Readonly<Record<string, string>> = {
  '*': 'NOT_RESPONDING',
  '~': 'POWERED_DOWN',
  '#': 'POWERING_UP',
  '!': 'POWER_DOWN',
  '%': 'POWERING_DOWN',
  '$': 'MAINTENANCE',
  '@': 'REBOOT_REQUESTED',
  '^': 'REBOOT_ISSUED',
  '-': 'PLANNED',
};

/** sinfo's long names (node_state_string) that are a base state plus flags. */
const SINFO_NAMES: Readonly<Record<string, { base: string; flags: string[] }>> = {
  DRAINED: { base: 'IDLE', flags: ['DRAIN'] },
  DRAINING: { base: 'ALLOCATED', flags: ['DRAIN'] },
  DRAIN: { base: 'IDLE', flags: ['DRAIN'] },
  FAILING: { base: 'ALLOCATED', flags: ['FAIL'] },
  FAIL: { base: 'IDLE', flags: ['FAIL'] },
  COMPLETING: { base: 'IDLE', flags: ['COMPLETING'] },
  MAINT: { base: 'IDLE', flags: ['MAINTENANCE'] },
  REBOOT_ISSUED: { base: 'IDLE', flags: ['REBOOT_ISSUED'] },
  REBOOT_REQUESTED: { base: 'IDLE', flags: ['REBOOT_REQUESTED'] },
  RESERVED: { base: 'IDLE', flags: ['RESERVED'] },
  PLANNED: { base: 'IDLE', flags: ['PLANNED'] },
  POWERED_DOWN: { base: 'IDLE', flags: ['POWERED_DOWN'] },
  POWERING_DOWN: { base: 'IDLE', flags: ['POWERING_DOWN'] },
  POWERING_UP: { base: 'IDLE', flags: ['POWERING_UP'] },
  INVAL: { base: 'IDLE', flags: ['INVALID_REG'] },
  // sinfo %t short forms
  ALLOC: { base: 'ALLOCATED', flags: [] },
  MIX: { base: 'MIXED', flags: [] },
  DRNG: { base: 'ALLOCATED', flags: ['DRAIN'] },
  UNK: { base: 'UNKNOWN', flags: [] },
};

export interface NodeState {
  /** e.g. "MIXED" */
  base: string;
  /** e.g. ["DRAIN"], in the order printed */
  flags: string[];
}

/**
 * Parse "MIXED+DRAIN", "DOWN+NOT_RESPONDING", "IDLE*", "draining", "down*" … (case-insensitive).
 * The sinfo forms lose information (measured: sinfo's "reboot^" is scontrol's DOWN+DRAIN+REBOOT_ISSUED,
 * "draining" hides MIXED vs ALLOCATED): decide on scontrol's form; sinfo's is accepted for humans.
 */
export function parseNodeState(state: string): NodeState {
  let s = String(state ?? '').trim().toUpperCase();
  const flags: string[] = [];
  // sinfo suffix characters (several may be combined, e.g. "idle*~")
  const suffix: string[] = [];
  while (s.length > 1 && NODE_STATE_SUFFIXES[s[s.length - 1]!] !== undefined) {
    suffix.unshift(NODE_STATE_SUFFIXES[s[s.length - 1]!]!);
    s = s.slice(0, -1);
  }
  const [head = '', ...rest] = s.split('+');
  let base = head;
  const named = SINFO_NAMES[head];
  if (!(NODE_BASE_STATES as readonly string[]).includes(head) && named) {
    base = named.base;
    flags.push(...named.flags);
  }
  for (const f of rest) if (f !== '' && !flags.includes(f)) flags.push(f);
  for (const f of suffix) if (!flags.includes(f)) flags.push(f);
  return { base: base || 'UNKNOWN', flags };
}

export interface SlurmNode {
  name: string;
  /** the State field as printed, e.g. "MIXED+DRAIN" */
  state: string;
  /** e.g. "MIXED" */
  baseState: string;
  /** e.g. ["DRAIN"]; NOT_RESPONDING is sinfo's '*' */
  flags: string[];
  /** admin / Slurm reason text without the "[user@time]" trailer */
  reason?: string;
  reasonUser?: string;
  reasonTime?: string;
  addr?: string;
  hostname?: string;
  cpuTot?: number;
  cpuAlloc?: number;
  partitions?: string[];
  /** every Key=Value pair as printed ("(null)" kept) */
  fields: Record<string, string>;
}

export type NodeCondition = 'ok' | 'drain' | 'reboot' | 'fail' | 'down' | 'not-responding';

/**
 * What a node's state means for the VMs on it (most severe first):
 *  - 'down': base DOWN (slurmctld gave up on it: SlurmdTimeout passed or `state=down`), or base
 *    FUTURE (not part of the cluster yet), or flags POWERED_DOWN / POWERING_DOWN. Its processes are
 *    gone or about to be; nothing can be migrated off it.
 *  - 'not-responding': flag NOT_RESPONDING (sinfo '*'): slurmd missed pings; it becomes DOWN after
 *    SlurmdTimeout unless it answers again. Also base UNKNOWN (slurmctld has not heard from it yet).
 *  - 'fail': flag FAIL (sinfo FAIL / FAILING: "expected to fail soon", `scontrol update state=fail`),
 *    flag INVALID_REG (INVAL: registered with less hardware than configured), base ERROR.
 *  - 'reboot': flag REBOOT_REQUESTED or REBOOT_ISSUED (`scontrol reboot [ASAP]`, sinfo '@' / '^');
 *    checked before 'drain' because `reboot ASAP` also sets DRAIN.
 *  - 'drain': flag DRAIN (sinfo DRAINING while jobs run, DRAINED when idle), or POWER_DOWN (sinfo
 *    '!': pending power down, which like a drain waits for the node to become idle).
 *  - 'ok': anything else (IDLE, ALLOCATED, MIXED with COMPLETING, RESERVED, PLANNED, MAINTENANCE,
 *    CLOUD, DYNAMIC_*, POWER_UP, POWERING_UP, RESUME …).
 * Documented against Slurm 22.05: man sinfo "NODE STATE CODES" and node_state_flags[] in
 * src/common/slurm_protocol_defs.c.
 */
export function nodeCondition(node: Pick<SlurmNode, 'baseState' | 'flags'> | NodeState | string): NodeCondition {
  const st: NodeState = typeof node === 'string'
    ? parseNodeState(node)
    : 'baseState' in node ? { base: node.baseState.toUpperCase(), flags: node.flags.map((f) => f.toUpperCase()) } : node;
  const has = (f: string) => st.flags.includes(f);
  if (st.base === 'DOWN' || st.base === 'FUTURE' || has('POWERED_DOWN') || has('POWERING_DOWN')) return 'down';
  if (has('NOT_RESPONDING') || st.base === 'UNKNOWN') return 'not-responding';
  if (has('FAIL') || has('INVALID_REG') || st.base === 'ERROR') return 'fail';
  if (has('REBOOT_REQUESTED') || has('REBOOT_ISSUED')) return 'reboot';
  if (has('DRAIN') || has('POWER_DOWN')) return 'drain';
  return 'ok';
}

// ---- Key=Value records -------------------------------------------------------------------------

const KEY_RE = /^([A-Z][A-Za-z0-9_:/.]*)=(.*)$/s;

/**
 * Split one record ("Key=Value Key=Value ...") into pairs, in order. Words that do not start a
 * `Key=` pair belong to the previous value ("OS=Linux 6.1 #1 SMP" → OS: "Linux 6.1 #1 SMP").
 * Repeated keys: the first wins in the map (all are in `pairs`).
 */
export function parseKeyValues(record: string): { pairs: Array<[string, string]>; map: Record<string, string> } {
  const pairs: Array<[string, string]> = [];
  for (const word of record.split(/[ \t\n]+/)) {
    if (word === '') continue;
    const m = KEY_RE.exec(word);
    if (m) pairs.push([m[1]!, m[2]!]);
    else if (pairs.length > 0) {
      const last = pairs[pairs.length - 1]!;
      last[1] = last[1] === '' ? word : `${last[1]} ${word}`;
    }
    // a stray word before any key (never printed by scontrol) is dropped
  }
  const map: Record<string, string> = {};
  for (const [k, v] of pairs) if (!(k in map)) map[k] = v;
  return { pairs, map };
}

/** Split scontrol output into records, one per `firstKey=` (works for -o and for the multi-line form). */
export function splitRecords(text: string, firstKey: string): string[] {
  const out: string[] = [];
  let cur: string[] | undefined;
  for (const raw of String(text).split('\n')) {
    const line = raw.replace(/\r$/, '');
    if (line.startsWith(`${firstKey}=`)) {
      if (cur) out.push(cur.join(' '));
      cur = [line];
    } else if (cur && line.trim() !== '') {
      cur.push(line.trim());
    }
  }
  if (cur) out.push(cur.join(' '));
  return out;
}

function num(v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const m = /^([0-9]+)/.exec(v);
  return m ? Number(m[1]) : undefined;
}

function nonNull(v: string | undefined): string | undefined {
  return v === undefined || v === '' || v === '(null)' || v === 'N/A' ? undefined : v;
}

function badOutput(what: string, record: string, why: string): SymError {
  return new SymError('ESYM_SLURM_OUTPUT', {
    message: `cannot read \`scontrol show ${what}\` output: ${why}`,
    value: record.length > 200 ? `${record.slice(0, 200)}…` : record,
    fix: 'this Slurm version prints something symrun does not understand; report it with the output of `scontrol -V` and the line above',
    exitCode: EXIT.environment,
  });
}

/** Parse one node record (one line of `scontrol show node -o`). */
export function parseNodeRecord(record: string): SlurmNode {
  // Reason runs to its "[user@time]" trailer (or to the end of the line)
  let rest = record;
  let reason: string | undefined;
  let reasonUser: string | undefined;
  let reasonTime: string | undefined;
  const ri = record.search(/(^|\s)Reason=/);
  if (ri >= 0) {
    const start = record.indexOf('Reason=', ri) + 'Reason='.length;
    const tail = record.slice(start);
    const m = /^(.*?) ?\[([^\]@]*)@([^\]]*)\](.*)$/s.exec(tail);
    if (m) {
      reason = m[1]!;
      reasonUser = m[2]!;
      reasonTime = m[3]!;
      rest = `${record.slice(0, ri)} ${m[4]!}`;
    } else {
      reason = tail.trim();
      rest = record.slice(0, ri);
    }
  }
  const { map } = parseKeyValues(rest);
  if (reason !== undefined) map.Reason = reason;
  const name = map.NodeName;
  if (!name) throw badOutput('node', record, 'no NodeName= field');
  if (map.State === undefined) throw badOutput('node', record, `node ${name} has no State= field`);
  const st = parseNodeState(map.State);
  const node: SlurmNode = { name, state: map.State, baseState: st.base, flags: st.flags, fields: map };
  if (nonNull(reason) !== undefined) node.reason = reason;
  if (reasonUser !== undefined) node.reasonUser = reasonUser;
  if (reasonTime !== undefined) node.reasonTime = reasonTime;
  if (nonNull(map.NodeAddr)) node.addr = map.NodeAddr;
  if (nonNull(map.NodeHostName)) node.hostname = map.NodeHostName;
  const cpuTot = num(map.CPUTot);
  if (cpuTot !== undefined) node.cpuTot = cpuTot;
  const cpuAlloc = num(map.CPUAlloc);
  if (cpuAlloc !== undefined) node.cpuAlloc = cpuAlloc;
  if (nonNull(map.Partitions)) node.partitions = map.Partitions!.split(',').filter(Boolean);
  return node;
}

/** Parse `scontrol show node -o [NAME]` output (any number of lines; "" → []). */
export function parseNodes(text: string): SlurmNode[] {
  return splitRecords(text, 'NodeName').map(parseNodeRecord);
}

export interface SlurmJob {
  jobId: string;
  name?: string;
  /** JobState, e.g. "RUNNING", "PENDING", "COMPLETED", "NODE_FAIL" */
  state: string;
  /** Reason field of the job ("None", "Resources", "NodeDown", …) */
  reason?: string;
  /** NodeList, expanded (nodes that left the job, e.g. after a --no-kill node failure, are gone) */
  nodeList: string[];
  /** NumNodes (the lower bound of "3-3" for pending jobs) */
  numNodes?: number;
  numCpus?: number;
  numTasks?: number;
  cpusPerTask?: number;
  batchHost?: string;
  workDir?: string;
  stdOut?: string;
  stdErr?: string;
  command?: string;
  partition?: string;
  /** ExitCode "status:signal" */
  exitCode?: { status: number; signal: number };
  requeue?: boolean;
  restarts?: number;
  fields: Record<string, string>;
}

/** Parse one job record (one line of `scontrol show job -o ID`). */
export function parseJobRecord(record: string): SlurmJob {
  const { map } = parseKeyValues(record);
  const jobId = map.JobId;
  if (!jobId) throw badOutput('job', record, 'no JobId= field');
  if (map.JobState === undefined) throw badOutput('job', record, `job ${jobId} has no JobState= field`);
  const job: SlurmJob = {
    jobId,
    state: map.JobState,
    nodeList: expandHostlist(map.NodeList ?? '', { field: 'NodeList' }),
    fields: map,
  };
  const set = <K extends keyof SlurmJob>(k: K, v: SlurmJob[K] | undefined) => {
    if (v !== undefined) job[k] = v;
  };
  set('name', nonNull(map.JobName));
  set('reason', nonNull(map.Reason));
  set('numNodes', num(map.NumNodes));
  set('numCpus', num(map.NumCPUs));
  set('numTasks', num(map.NumTasks));
  set('cpusPerTask', num(map['CPUs/Task']));
  set('batchHost', nonNull(map.BatchHost));
  set('workDir', nonNull(map.WorkDir));
  set('stdOut', nonNull(map.StdOut));
  set('stdErr', nonNull(map.StdErr));
  set('command', nonNull(map.Command));
  set('partition', nonNull(map.Partition));
  const ec = /^([0-9]+):([0-9]+)$/.exec(map.ExitCode ?? '');
  if (ec) job.exitCode = { status: Number(ec[1]), signal: Number(ec[2]) };
  if (map.Requeue !== undefined) job.requeue = map.Requeue === '1';
  set('restarts', num(map.Restarts));
  return job;
}

/** Parse `scontrol show job -o [ID]` output ("" → []). */
export function parseJobs(text: string): SlurmJob[] {
  return splitRecords(text, 'JobId').map(parseJobRecord);
}

/** Job states after which the job will not run again (squeue man page, JOB STATE CODES). */
export const JOB_FINAL_STATES = [
  'BOOT_FAIL', 'CANCELLED', 'COMPLETED', 'DEADLINE', 'FAILED', 'NODE_FAIL', 'OUT_OF_MEMORY', 'PREEMPTED', 'TIMEOUT',
] as const;

export function isJobFinished(state: string): boolean {
  return (JOB_FINAL_STATES as readonly string[]).includes(state.toUpperCase());
}
