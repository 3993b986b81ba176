// `symrun checkpoint` (take a coordinated checkpoint of the running job) and `symrun checkpoints DIR`
// (list the checkpoints in a directory, verified). Talks to the job's control socket like migrate.ts.
import type { JobRef } from './jobref.js';
import path from 'node:path';
import { Option, type Command } from 'commander';
import { SymError, EXIT } from '../errors.js';
import type { OpEvent } from '../protocol/executor.js';
import { CONTROL_JOB_EVENTS, type CheckpointResult, type ControlJobEvents, type ControlMethods } from '../wire/control.js';
import { callerOf, onEvents } from '../agent/typed.js';
import { listCheckpoints, type CheckpointEntry } from '../checkpoint/manifest.js';
import { fmtBytes, renderPhaseTable } from './format.js';

type FindJob = (id?: string) => Promise<JobRef>;

export const CHECKPOINT_HELP = `
Every guest is quiesced, every interconnect device unplugged, every VM's state saved to a file (all
VMs at once), then the devices come back and the job goes on. The checkpoint is a directory
DIR/JOB-TIME/ with one state file per VM and manifest.json (sizes, sha256, VM specs); it exists only
once complete (written as JOB-TIME.tmp-XXXXXX, then renamed). Older checkpoints of the job beyond
--keep are removed only after that.

Examples:
  symrun checkpoint                          into the job's --checkpoint-dir
  symrun checkpoint --dir /shared/ckpt --keep 3
  symrun checkpoint --json                   one JSON result on stdout
  symrun checkpoints /shared/ckpt            list them (complete / incomplete / corrupt, verified)

Exit status: 0 the checkpoint is complete; 5 it was not taken and everything was rolled back (the job
runs on; e.g. not enough disk space); 4 a rollback step failed (the message says what is left where);
2 bad usage (no job, no checkpoint directory).`;

export function checkpointTable(events: OpEvent<string>[], r: CheckpointResult): string {
  return renderPhaseTable(events, { totalMs: r.totalMs, outcome: `${r.outcome}${r.frozenMs !== undefined ? ` (ranks frozen ${r.frozenMs} ms)` : ''}` }, (e, d) => {
    if (e.event !== 'end') return '';
    if (e.phase === 'save') return `${fmtBytes(Number(d.bytes ?? 0))} in ${d.vms} files`;
    if (e.phase === 'prepare') return `${fmtBytes(Number(d.freeBytes ?? 0))} free, ~${fmtBytes(Number(d.needBytes ?? 0))} needed`;
    if (e.phase === 'commit' && Array.isArray(d.pruned) && d.pruned.length) return `removed ${d.pruned.join(', ')}`;
    return '';
  });
}

export function checkpointExit(r: CheckpointResult): number {
  if (r.outcome === 'done') return 0;
  if (r.outcome === 'rolled-back') return EXIT.notMoved;
  return EXIT.runtime;
}

function parseKeep(v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v.trim())) throw new SymError('ESYM_USAGE', { message: `--keep must be a whole number, got ${JSON.stringify(v)}`, field: '--keep', value: v, fix: '--keep N keeps the N newest complete checkpoints of the job (0 = all)', exitCode: EXIT.usage });
  return Number(v);
}

function entryLine(e: CheckpointEntry): string {
  const vms = e.vms?.length ? `${e.vms.length} VMs (${e.vms.join(', ')})` : '-';
  return `${e.name.padEnd(40)} ${e.status.padEnd(10)} ${(e.time ?? '-').padEnd(24)} ${fmtBytes(e.sizeBytes).padStart(10)}  ${vms}${e.reason ? `\n${' '.repeat(42)}${e.reason}` : ''}`;
}

export function registerCheckpoint(program: Command, findJob: FindJob, setExit: (n: number) => void): void {
  program
    .command('checkpoint')
    .description('save the state of every VM of the running job (coordinated checkpoint)')
    .option('--job <id>', 'job id (default: the only running job)')
    .option('--dir <dir>', "checkpoint directory (default: the job's --checkpoint-dir)")
    .option('--keep <n>', "complete checkpoints of the job kept (default: the job's --keep)")
    .option('--json', 'print the result as JSON on stdout')
    .addOption(new Option('--fault <spec>', 'fault injection for tests (NAME@WHERE, docs/checkpoint.md); repeatable').hideHelp().argParser((v: string, prev: string[] = []) => [...prev, v]))
    .addHelpText('after', CHECKPOINT_HELP)
    .action(async (f: { job?: string; dir?: string; keep?: string; json?: boolean; fault?: string[] }) => {
      const keep = parseKeep(f.keep);
      const dir = f.dir !== undefined ? path.resolve(f.dir) : undefined;
      const j = await findJob(f.job);
      const peer = await j.connect();
      const events: OpEvent<string>[] = [];
      let op = '';
      onEvents<ControlJobEvents>(peer, CONTROL_JOB_EVENTS, (ev) => {
        if (ev.name !== 'op.event') return;
        const e = ev.data;
        if (e.kind !== 'checkpoint' || (op && e.op !== op)) return;
        if (e.op === '-') return; // the interval timer's notices
        if (!op) op = e.op;
        events.push(e);
        // on a terminal the job says each phase (one line per phase); a script gets them here
        if (!f.json && !process.stderr.isTTY && (e.event === 'end' || e.event === 'fail')) {
          const d = e.data ?? {};
          process.stderr.write(`symrun: checkpoint: ${e.phase} ${e.event === 'fail' ? `failed: ${d.error}` : 'done'}${e.ms !== undefined ? ` (${e.ms} ms)` : ''}\n`);
        }
      });
      let res: { op: string; name: string; result?: CheckpointResult };
      try {
        res = await callerOf<ControlMethods>(peer).call('checkpoint', { dir, keep, wait: true, reason: 'symrun checkpoint', faults: f.fault }, { timeoutMs: 24 * 3600_000 });
      } finally {
        peer.close();
      }
      const r = res.result!;
      const mine = events.filter((e) => e.op === res.op && e.event !== 'progress');
      if (f.json) process.stdout.write(JSON.stringify({ ...r, events: mine }, null, 2) + '\n');
      else {
        process.stdout.write(checkpointTable(mine, r) + '\n');
        if (r.outcome === 'done') process.stdout.write(`checkpoint ${r.path}: ${r.vms.length} VMs, ${fmtBytes(r.sizeBytes)}${r.pruned.length ? `; removed ${r.pruned.join(', ')}` : ''}\n`);
        else {
          process.stderr.write(`symrun: checkpoint ${r.name} ${r.outcome}${r.error ? `: ${r.error.message}` : ''}\n`);
          if (r.outcome === 'rolled-back') process.stderr.write('symrun: the job runs on as before; earlier checkpoints are untouched\n');
          for (const l of r.leftovers) process.stderr.write(`symrun: left behind after ${l.phase}: ${l.message}\n`);
        }
        for (const w of r.warnings) process.stderr.write(`symrun: warning: ${w}\n`);
      }
      setExit(checkpointExit(r));
    });

  program
    .command('checkpoints <dir>')
    .description('list the checkpoints in a directory: complete, incomplete or corrupt (sizes and sha256 verified)')
    .option('--quick', 'compare sizes only (no sha256)')
    .option('--json', 'JSON output')
    .action(async (dir: string, f: { quick?: boolean; json?: boolean }) => {
      const list = await listCheckpoints(path.resolve(dir), { hashes: !f.quick });
      if (f.json) {
        process.stdout.write(JSON.stringify(list.map(({ manifest, ...e }) => ({ ...e, ...(manifest ? { symrunVersion: manifest.symrunVersion, files: manifest.vms.map((v) => ({ vm: v.name, file: v.file, size: v.size, sha256: v.sha256 })) } : {}) })), null, 2) + '\n');
      } else if (!list.length) process.stdout.write(`no checkpoints in ${path.resolve(dir)}\n`);
      else {
        process.stdout.write(`${'NAME'.padEnd(40)} ${'STATUS'.padEnd(10)} ${'TIME'.padEnd(24)} ${'SIZE'.padStart(10)}  VMS\n`);
        for (const e of list) process.stdout.write(entryLine(e) + '\n');
      }
      setExit(0);
    });
}
