// `symrun status`: hosts, VMs, migrations, restarts of the running job (--json: the coordinator's record).
import type { Command } from 'commander';
import { findJob } from './jobref.js';
import { callerOf } from '../agent/typed.js';
import type { ControlMethods } from '../wire/control.js';

export function registerStatus(program: Command): void {
  program
    .command('status')
    .description('hosts, VMs and phase of the running job')
    .option('--job <id>', 'job id (default: the only running job)')
    .option('--json', 'stable JSON output')
    .addHelpText('after', `
Exit status: 0; 2 if no job is running on this machine, --job names none, or several run and --job is
missing (error code ESYM_NO_JOB, as JSON on stderr with --json); 4 if the job cannot be reached.`)
    .action(async (f: { job?: string; json?: boolean }) => {
      const j = await findJob(f.job);
      const peer = await j.connect();
      const s = await callerOf<ControlMethods>(peer).call('status', {}, { timeoutMs: 10_000 });
      peer.close();
      if (f.json) process.stdout.write(JSON.stringify(s, null, 2) + '\n');
      else {
        process.stdout.write(`job ${s.jobId}: ${s.state}\n`);
        process.stdout.write(`  ${'VM'.padEnd(6)} ${'HOST'.padEnd(8)} ${'IP'.padEnd(16)} ${'STATE'.padEnd(9)} AGENT\n`);
        for (const v of s.vms) process.stdout.write(`  ${v.name!.padEnd(6)} ${v.host!.padEnd(8)} ${v.ip!.padEnd(16)} ${v.state!.padEnd(9)} ${v.agent}\n`);
        const spares = s.hosts.filter((h) => h.role === 'spare').map((h) => h.name);
        if (spares.length) process.stdout.write(`  spare hosts: ${spares.join(', ')}\n`);
        const migs = (s as { migrations?: Array<{ op: string; vm: string; from: string; to: string; phase: string; reason?: string; result?: { outcome: string; totalMs: number } }> }).migrations ?? [];
        for (const m of migs) {
          process.stdout.write(`  migration ${m.op}: ${m.vm} ${m.from} -> ${m.to}: ${m.result ? `${m.result.outcome} in ${m.result.totalMs} ms` : m.phase}${m.reason ? ` (${m.reason})` : ''}\n`);
        }
        const lost = s.hosts.filter((h) => h.role === 'lost').map((h) => h.name);
        if (lost.length) process.stdout.write(`  lost hosts: ${lost.join(', ')}\n`);
        const rs = (s as { restarts?: { count: number; max: number; log: Array<{ at: string; hosts: string[]; from?: string; ms?: number; moved?: Array<{ vm: string; to: string }> }> } }).restarts;
        for (const [i, r] of (rs?.log ?? []).entries()) {
          process.stdout.write(`  restart ${i + 1}/${rs!.max}: ${r.hosts.join(', ')} lost at ${r.at}; ${r.from ? `from checkpoint ${r.from}` : 'from the beginning'}${r.moved?.length ? `, ${r.moved.map((m) => `${m.vm} on ${m.to}`).join(', ')}` : ''}${r.ms !== undefined ? ` (${r.ms} ms)` : ' (in progress)'}\n`);
        }
      }
    });

}
