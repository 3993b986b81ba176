// `symrun migrate VM` and `symrun cancel VM`: talk to the running job's control socket, follow the
// operation's events (progress bar on a terminal, one line per phase otherwise), print the phase table.
import type { JobRef } from './jobref.js';
import { Option, type Command } from 'commander';
import cliProgress from 'cli-progress';
import { SymError, EXIT } from '../errors.js';
import { parseDurationMs, parseSizeBytes } from '../config/load.js';
import type { OpEvent, OpResult } from '../protocol/executor.js';
import { callerOf, onEvents } from '../agent/typed.js';
import { CONTROL_JOB_EVENTS, type ControlJobEvents, type ControlMethods, type QuiesceMode } from '../wire/control.js';
import type { MigrationMode } from '../wire/migration.js';
import { fmtBytes, renderPhaseTable } from './format.js';

type FindJob = (id?: string) => Promise<JobRef>;

const MODES: readonly MigrationMode[] = ['live', 'postcopy', 'stop-copy'];
const ADAPTERS: readonly QuiesceMode[] = ['freeze', 'failover', 'hooks'];

export const MIGRATE_HELP = `
Examples:
  symrun migrate vm2                         live-migrate vm2 to a free spare host
  symrun migrate vm2 --to h4 --mode postcopy
  symrun migrate vm2 --deadline 30s          act (postcopy / throttle / stop-copy) if it would take longer
  symrun migrate vm2 --quiesce failover      ranks keep running over the standby NIC
  symrun migrate vm2 --json                  one JSON result on stdout

Exit status: 0 the VM runs on the destination; 5 the migration was rolled back (the VM runs where it
was, the job is intact); 4 a rollback or the destination side failed (the message says what is left
where); 2 bad usage (no such VM or host).`;

export function phaseTable(events: OpEvent[], r: OpResult): string {
  return renderPhaseTable(events, r, (e, d) => {
    if (e.phase !== 'perform' || e.event !== 'end') return '';
    let note = `${fmtBytes(d.transferredBytes as number | undefined)} sent, downtime ${d.downtimeMs ?? '-'} ms, ${d.throughputMbps !== undefined ? `${Math.round(d.throughputMbps as number)} Mbit/s` : '-'}`;
    if ((d.actions as string[] | undefined)?.length) note += `, actions: ${(d.actions as string[]).join(', ')}`;
    return note;
  });
}

export function exitFor(r: OpResult): number {
  if (r.outcome === 'done') return 0;
  if (r.outcome === 'rolled-back') return EXIT.notMoved;
  return EXIT.runtime;
}

export function registerMigrate(program: Command, findJob: FindJob, setExit: (n: number) => void): void {
  program
    .command('migrate <vm>')
    .description('move a VM of the running job to another host, with its passthrough device')
    .option('--to <host>', 'destination host (default: a free spare)')
    .option('--mode <mode>', `live | postcopy | stop-copy (default from migration.mode)`)
    .option('--quiesce <adapter>', 'freeze | failover | hooks (default from migration.quiesce)')
    .option('--deadline <time>', 'finish within this (e.g. 30s): the deadline policy acts if it would not')
    .option('--bandwidth <size>', 'cap the migration stream for this move (e.g. 500M = 500 MiB/s)')
    .option('--job <id>', 'job id (default: the only running job)')
    .option('--json', 'print the result as JSON on stdout')
    .addOption(new Option('--fault <spec>', 'fault injection for tests (NAME@WHERE, docs/migration.md); repeatable').hideHelp().argParser((v: string, prev: string[] = []) => [...prev, v]))
    .option('--no-wait', 'return once the migration has started (prints its operation id)')
    .addHelpText('after', MIGRATE_HELP)
    .action(async (vm: string, f: { to?: string; mode?: string; quiesce?: string; deadline?: string; bandwidth?: string; fault?: string[]; job?: string; json?: boolean; wait: boolean }) => {
      let maxBandwidthBytes: number | undefined;
      if (f.bandwidth !== undefined) {
        try { maxBandwidthBytes = parseSizeBytes(f.bandwidth, '--bandwidth'); } catch {
          throw new SymError('ESYM_USAGE', { message: `cannot read the bandwidth ${JSON.stringify(f.bandwidth)}`, field: '--bandwidth', value: f.bandwidth, fix: 'a size per second like 500M or 2G (binary units)', exitCode: EXIT.usage });
        }
      }
      const mode = MODES.find((m) => m === f.mode);
      const quiesce = ADAPTERS.find((a) => a === f.quiesce);
      if (f.mode && !mode) throw new SymError('ESYM_USAGE', { message: `unknown migration mode ${JSON.stringify(f.mode)}`, field: '--mode', value: f.mode, fix: `use one of ${MODES.join(', ')}`, exitCode: EXIT.usage });
      if (f.quiesce && !quiesce) throw new SymError('ESYM_USAGE', { message: `unknown quiesce adapter ${JSON.stringify(f.quiesce)}`, field: '--quiesce', value: f.quiesce, fix: `use one of ${ADAPTERS.join(', ')}`, exitCode: EXIT.usage });
      let deadlineMs: number | undefined;
      if (f.deadline !== undefined) {
        try { deadlineMs = parseDurationMs(/^\d+$/.test(f.deadline) ? Number(f.deadline) : f.deadline); } catch {
          throw new SymError('ESYM_USAGE', { message: `cannot read the deadline ${JSON.stringify(f.deadline)}`, field: '--deadline', value: f.deadline, fix: 'a duration like 30s, 2m or 1500ms', exitCode: EXIT.usage });
        }
      }
      const j = await findJob(f.job);
      const peer = await j.connect();
      const job = callerOf<ControlMethods>(peer);
      const events: OpEvent[] = [];
      let op = '';
      const tty = !f.json && process.stderr.isTTY;
      const bar = tty ? new cliProgress.SingleBar({ stream: process.stderr, format: `${vm} {phase} [{bar}] {percentage}% {sent}/{total} {rate}`, hideCursor: true, clearOnComplete: true }, cliProgress.Presets.shades_classic) : undefined;
      let barOn = false;
      onEvents<ControlJobEvents>(peer, CONTROL_JOB_EVENTS, (ev) => {
        if (ev.name !== 'op.event') return;
        const e = ev.data;
        if ((op && e.op !== op) || (e.data as { vm?: string } | undefined)?.vm !== vm) return;
        events.push(e);
        const d = e.data ?? {};
        if (e.event === 'progress' && bar && typeof d.totalBytes === 'number' && (d.totalBytes as number) > 0) {
          const total = d.totalBytes as number;
          const sent = Math.min(total, (d.transferredBytes as number) ?? 0);
          const payload = { phase: 'perform', sent: fmtBytes(sent), total: fmtBytes(total), rate: d.throughputMbps ? `${Math.round(d.throughputMbps as number)} Mbit/s` : '' };
          if (!barOn) { bar.start(total, sent, payload); barOn = true; } else bar.update(sent, payload);
          return;
        }
        if (e.event === 'end' || e.event === 'fail' || e.event === 'action' || e.event === 'cancel') {
          if (barOn && e.phase === 'perform') { bar!.stop(); barOn = false; }
          // one line per phase on a terminal: the job says each phase (its log is the record); a script
          // (no terminal) gets them here
          if (!f.json && !tty) {
            const what = e.event === 'fail' ? `failed: ${d.error}` : e.event === 'action' ? `deadline policy: ${d.action ?? d.fault} (${d.reason ?? d.failed ?? ''})` : e.event;
            process.stderr.write(`symrun: ${vm}: ${e.phase} ${what}${e.ms !== undefined ? ` (${e.ms} ms)` : ''}\n`);
          }
        }
      });
      let res: { op: string; result?: OpResult };
      try {
        res = await job.call('migrate', { vm, to: f.to, mode, quiesce, deadlineMs, maxBandwidthBytes, faults: f.fault, wait: f.wait, reason: 'symrun migrate' }, { timeoutMs: 24 * 3600_000 });
      } finally {
        if (barOn) bar!.stop();
        peer.close();
      }
      op = res.op;
      if (!res.result) {
        process.stdout.write(f.json ? JSON.stringify({ op: res.op, vm, started: true }) + '\n' : `migration ${res.op} of ${vm} started; follow it with \`symrun status\`\n`);
        setExit(0);
        return;
      }
      const r = res.result;
      if (f.json) process.stdout.write(JSON.stringify({ ...r, vm, events: events.filter((e) => e.event !== 'progress') }, null, 2) + '\n');
      else {
        process.stdout.write(phaseTable(events, r) + '\n');
        if (r.outcome !== 'done') {
          process.stderr.write(`symrun: migration of ${vm} ${r.outcome}${r.error ? `: ${r.error.message}` : ''}\n`);
          for (const l of r.leftovers) process.stderr.write(`symrun: left behind after ${l.phase}: ${l.message}\n`);
          const back = (r as OpResult & { returnTrip?: OpResult }).returnTrip;
          if (back) process.stderr.write(`symrun: ${vm} was moved back (return trip ${back.op}: ${back.outcome})\n`);
        }
      }
      setExit(exitFor(r));
    });

  program
    .command('cancel <vm>')
    .description('abort the in-flight migration of a VM: everything rolls back to the source')
    .option('--job <id>', 'job id (default: the only running job)')
    .option('--json', 'JSON output')
    .action(async (vm: string, f: { job?: string; json?: boolean }) => {
      const j = await findJob(f.job);
      const peer = await j.connect();
      const r = await callerOf<ControlMethods>(peer).call('cancel', { vm }, { timeoutMs: 10_000 }).finally(() => peer.close());
      if (f.json) process.stdout.write(JSON.stringify(r) + '\n');
      else process.stdout.write(r.accepted ? `cancelling migration ${r.op} of ${vm} (was in ${r.phase}); it rolls back to the source\n` : `migration ${r.op} of ${vm} can no longer be cancelled (phase ${r.phase}: the VM already runs on the destination)\n`);
      setExit(r.accepted ? 0 : EXIT.runtime);
    });
}
