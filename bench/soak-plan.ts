// The chaos soak's model (pure): which operations it tries, how often, with which fault, what outcome
// each may end in, and how a run's records become figures. bench/soak.ts drives a real job with it.
//
// Operations are a table (SOAK_OPS). Each has a weight, an optional fault from the fault-injection
// switch (coordinator/faults.ts, docs/migration.md) and the outcomes that are *allowed*:
//   done         the operation completed (a migration moved the VM, a checkpoint is complete)
//   rolled-back  it failed and everything is as before (VM on its source, devices back, ranks running)
//   recovered    the coordinator was killed mid-operation and `symrun recover` took the job over,
//                rolling the operation back or forward from the journal
//   restarted    an emulated host was powered off and the job restarted from its last checkpoint on a spare
// Anything else (rollback-failed, degraded, an unexpected outcome, a job that stopped, a leftover QEMU,
// a VM that stays paused, a ring that stops progressing, an operation the journal does not explain:
// journalUnexplained) is an invariant violation: the soak counts them and the run fails with the seed that reproduces it.
//
// Draws come from a seeded generator (mulberry32), so `--seed S` replays the same choices; timing on a
// loaded machine can still differ (a cancel may come after the transfer ended: then `done` is fine too).
// Preconditions keep the plan meaningful: a host power-off only after a complete checkpoint and while
// a spare is left for the restart and for later migrations; a cancel only for a live migration.

export type Outcome = 'done' | 'rolled-back' | 'recovered' | 'restarted';

export type OpKind = 'migrate' | 'cancel' | 'checkpoint' | 'checkpoint-full' | 'coordinator-kill' | 'host-kill';

export interface OpSpec {
  kind: OpKind;
  weight: number;
  /** NAME@WHERE for `--fault` (this operation only) */
  fault?: string;
  allowed: readonly Outcome[];
  /** a checkpoint operation (the coordinator-kill ones say through their fault) */
  checkpoint?: boolean;
}

export const SOAK_OPS = {
  'migrate': { kind: 'migrate', weight: 8, allowed: ['done'] },
  'migrate kill-dst-qemu': { kind: 'migrate', weight: 2, fault: 'kill-dst-qemu@perform', allowed: ['rolled-back'] },
  'migrate refuse-device-add': { kind: 'migrate', weight: 2, fault: 'refuse-device-add@dst', allowed: ['rolled-back'] },
  'migrate guest-stall': { kind: 'migrate', weight: 1, fault: 'guest-stall@quiesce', allowed: ['rolled-back'] },
  'migrate wrong-tls-key': { kind: 'migrate', weight: 1, fault: 'wrong-tls-key@dst', allowed: ['rolled-back'] },
  'migrate + cancel': { kind: 'cancel', weight: 2, allowed: ['rolled-back', 'done'] },
  'checkpoint': { kind: 'checkpoint', weight: 4, allowed: ['done'], checkpoint: true },
  'checkpoint fail-save': { kind: 'checkpoint', weight: 1, fault: 'fail-save@save', allowed: ['rolled-back'], checkpoint: true },
  'checkpoint disk-full': { kind: 'checkpoint-full', weight: 1, allowed: ['rolled-back'], checkpoint: true },
  'coordinator killed in a migration': { kind: 'coordinator-kill', weight: 1, fault: 'kill-coordinator@perform', allowed: ['recovered'] },
  'coordinator killed in a checkpoint': { kind: 'coordinator-kill', weight: 1, fault: 'kill-coordinator@save', allowed: ['recovered'], checkpoint: true },
  'host powered off': { kind: 'host-kill', weight: 1, allowed: ['restarted'] },
} as const satisfies Record<string, OpSpec>;

export type OpName = keyof typeof SOAK_OPS;

export const MODES = ['live', 'postcopy', 'stop-copy'] as const;
export const ADAPTERS = ['freeze', 'failover', 'hooks'] as const;

/** mulberry32: a small seeded generator with a full 2^32 period; returns numbers in [0, 1). */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface SoakState {
  /** a complete checkpoint exists (a restart has something to start from) */
  haveCheckpoint: boolean;
  /** hosts without a VM that are still alive */
  freeHosts: number;
  vms: readonly string[];
}

export interface Draw {
  name: OpName;
  vm: string;
  mode: (typeof MODES)[number];
  adapter: (typeof ADAPTERS)[number];
}

function pick<T>(r: () => number, xs: readonly T[]): T {
  return xs[Math.min(xs.length - 1, Math.floor(r() * xs.length))]!;
}

/** Operations that may be drawn in this state. */
export function eligible(s: SoakState): OpName[] {
  return (Object.keys(SOAK_OPS) as OpName[]).filter((n) => {
    const k = SOAK_OPS[n].kind;
    if (k === 'migrate' || k === 'cancel' || n === 'coordinator killed in a migration') return s.freeHosts >= 1;
    // the restart needs a spare, and a later migration another one
    if (k === 'host-kill') return s.haveCheckpoint && s.freeHosts >= 2;
    return true;
  });
}

/** The next operation: weighted among the eligible ones. Faults ride on live migrations only. */
export function draw(r: () => number, s: SoakState): Draw {
  const names = eligible(s);
  const total = names.reduce((a, n) => a + SOAK_OPS[n].weight, 0);
  let x = r() * total;
  let name = names[names.length - 1]!;
  for (const n of names) {
    x -= SOAK_OPS[n].weight;
    if (x < 0) { name = n; break; }
  }
  const vm = pick(r, s.vms);
  const spec: OpSpec = SOAK_OPS[name];
  const plain = name === 'migrate';
  const mode = plain ? pick(r, MODES) : 'live';
  // a cancel needs the transfer to be running when it comes: freeze keeps it simple and long enough
  const adapter = plain ? pick(r, ADAPTERS) : spec.kind === 'cancel' ? 'freeze' : pick(r, ADAPTERS);
  return { name, vm, mode, adapter };
}

export interface OpRecord {
  i: number;
  name: OpName;
  vm: string;
  mode?: string;
  adapter?: string;
  fault?: string;
  op?: string;
  /** what happened, as the soak saw it (an operation's outcome, or recovered/restarted, or 'lost') */
  outcome: string;
  ms: number;
  /** of ms: the invariant checks after the operation */
  checkMs?: number;
  /** invariant violations seen after this operation */
  violations: string[];
}

export interface SoakSummary {
  seed: number;
  minutes: number;
  operations: number;
  faults: number;
  byKind: Record<string, Record<string, number>>;
  outcomes: Record<string, number>;
  violations: number;
  violationList: Array<{ i: number; name: string; what: string }>;
  answerRight: boolean;
  exitCode: number | null;
  leftovers: string[];
  durationS: number;
  reproduce: string;
}

/** Figures of a run (pure). An outcome outside the operation's allowed set counts as a violation. */
export function summarize(o: { seed: number; minutes: number; records: OpRecord[]; final: string[]; answerRight: boolean; exitCode: number | null; leftovers: string[]; durationS: number }): SoakSummary {
  const byKind: Record<string, Record<string, number>> = {};
  const outcomes: Record<string, number> = {};
  const violationList: SoakSummary['violationList'] = [];
  for (const r of o.records) {
    (byKind[r.name] ??= {})[r.outcome] = (byKind[r.name]![r.outcome] ?? 0) + 1;
    outcomes[r.outcome] = (outcomes[r.outcome] ?? 0) + 1;
    const allowed = SOAK_OPS[r.name].allowed as readonly string[];
    if (!allowed.includes(r.outcome)) violationList.push({ i: r.i, name: r.name, what: `outcome ${r.outcome} (allowed: ${allowed.join(', ')})` });
    for (const v of r.violations) violationList.push({ i: r.i, name: r.name, what: v });
  }
  for (const v of o.final) violationList.push({ i: -1, name: 'end of the job', what: v });
  if (!o.answerRight) violationList.push({ i: -1, name: 'end of the job', what: 'the ring did not print ring OK (its checksum over every message)' });
  for (const l of o.leftovers) violationList.push({ i: -1, name: 'after the job', what: `left behind: ${l}` });
  return {
    seed: o.seed,
    minutes: o.minutes,
    operations: o.records.length,
    faults: o.records.filter((r) => r.fault || SOAK_OPS[r.name].kind === 'cancel' || SOAK_OPS[r.name].kind === 'host-kill' || SOAK_OPS[r.name].kind === 'checkpoint-full').length,
    byKind,
    outcomes,
    violations: violationList.length,
    violationList,
    answerRight: o.answerRight,
    exitCode: o.exitCode,
    leftovers: o.leftovers,
    durationS: o.durationS,
    reproduce: `npm run soak -- --minutes ${o.minutes} --seed ${o.seed}`,
  };
}

/** One operation's last journal record, as the soak reads it (protocol/journal.ts readJournal). */
export interface JournalOp {
  op: string;
  kind: string;
  phase: string;
  /** params.reason of a migration: `return trip of OP` for the move back after a failed replug */
  reason?: string;
  error?: string;
}

/**
 * Operations the journal does not explain (pure). Every operation must have ended done or rolled back,
 * with one documented exception (coordinator/migrate.ts afterOp): a migration whose destination refused
 * the device ends `degraded` (the VM ran there without it) and is moved back by a second migration, the
 * return trip, journaled with the reason `return trip of OP`. That pair is a rollback reached by two
 * migrations: the degraded record is explained when its return trip ended done, and only then.
 */
export function journalUnexplained(ops: readonly JournalOp[]): string[] {
  const tripDone = new Set(ops.filter((o) => o.kind === 'migrate' && o.phase === 'done' && o.reason?.startsWith('return trip of ')).map((o) => o.reason!.slice('return trip of '.length)));
  const out: string[] = [];
  for (const o of ops) {
    if (o.phase === 'done' || o.phase === 'rolled-back') continue;
    if (o.kind === 'migrate' && o.phase === 'degraded' && tripDone.has(o.op)) continue;
    out.push(`journal: ${o.kind} ${o.op} ended in ${o.phase}${o.error ? ` (${o.error})` : ''}${o.phase === 'degraded' && o.kind === 'migrate' ? ' and no return trip of it ended done' : ''}`);
  }
  return out;
}

/** The markdown table of a run. */
export function soakMarkdown(s: SoakSummary, env: string): string {
  const lines = [
    `# chaos soak: seed ${s.seed}, ${s.minutes} min requested, ${s.durationS} s run`,
    '',
    env,
    '',
    `operations ${s.operations} (with a fault, a cancel or a power-off: ${s.faults}); invariant violations **${s.violations}**; ` +
      `answer right: **${s.answerRight ? 'yes' : 'no'}** (exit ${s.exitCode}); reproduce: \`${s.reproduce}\``,
    '',
    '| operation | allowed | ' + ['done', 'rolled-back', 'recovered', 'restarted', 'other'].join(' | ') + ' |',
    '|---|---|---|---|---|---|---|',
  ];
  for (const name of Object.keys(SOAK_OPS) as OpName[]) {
    const k = s.byKind[name] ?? {};
    const known = ['done', 'rolled-back', 'recovered', 'restarted'];
    const other = Object.entries(k).filter(([o]) => !known.includes(o)).map(([o, n]) => `${o} ${n}`).join(', ');
    lines.push(`| ${name} | ${SOAK_OPS[name].allowed.join(', ')} | ${known.map((o) => k[o] ?? 0).join(' | ')} | ${other || 0} |`);
  }
  if (s.violationList.length) {
    lines.push('', 'Violations:', '');
    for (const v of s.violationList) lines.push(`- #${v.i} ${v.name}: ${v.what}`);
  }
  return lines.join('\n') + '\n';
}
