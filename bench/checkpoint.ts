// Checkpoint benchmark: what a coordinated checkpoint of a running job costs, and how big it is.
//
//   (a) scaling: a ring job on --local N (N = 1, 2, 3 by default, 512 MiB / 1 vCPU each), R checkpoints
//       each (`symrun checkpoint --json`): total time, ranks frozen, the save phase (all VMs saved in
//       parallel: it should stay near one VM's save time) and each VM's own save time
//   (b) size vs guest RAM: one VM with each --memory in the list, R checkpoints: state file size
//
// A benchmark, not a test: it asserts nothing about time; it exits non-zero only if a run itself fails.
// Needs root (symrun --local). JSON on stdout, markdown on stderr.
//
//   node dist/bench/checkpoint.js [--vms 1,2,3] [--memory 256M,512M,1G] [--repeat R] [--parts a,b]
//                                 [--json-out FILE] [--md-out FILE]
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { parseArgs } from 'node:util';
import { repoRoot } from '../launcher/src/defaults.js';
import { startRingJob } from '../test/fixtures/ring-job.js';

const MiB = 1024 * 1024;

function say(msg: string): void {
  process.stderr.write(`bench/checkpoint: ${msg}\n`);
}

interface Sample { totalMs: number; frozenMs: number; saveMs: number; commitMs: number; perVmSaveMs: number[]; sizeBytes: number; perVmBytes: number[] }
interface Row { vms: number; memory: string; samples: Sample[] }

const median = (xs: number[]) => { const s = [...xs].sort((a, b) => a - b); return s.length ? s[Math.floor((s.length - 1) / 2)]! : NaN; };
const range = (xs: number[]) => `${Math.min(...xs)}–${Math.max(...xs)}`;

async function measure(work: string, vms: number, memory: string, repeat: number): Promise<Row> {
  const ckpt = path.join(work, `ckpt-${vms}-${memory}`);
  // unique: stage-out copies each job's stop file back into the shared directory
  const stopFile = path.join(work, `stop-${vms}-${memory}-${Date.now()}`);
  say(`--local ${vms} --memory ${memory}: starting the ring`);
  const job = await startRingJob({ cwd: work, symrunArgs: ['--local', String(vms), '--memory', memory, '--checkpoint-dir', ckpt, '--keep', '1'], stopFile });
  const samples: Sample[] = [];
  try {
    for (let i = 0; i < repeat; i++) {
      const r = await job.sym(['checkpoint', '--json'], 600_000);
      let res: any;
      try { res = JSON.parse(r.stdout); } catch { throw new Error(`checkpoint: no JSON (exit ${r.code}): ${r.stdout}\n${r.stderr}`); }
      if (res.outcome !== 'done') throw new Error(`checkpoint ${res.outcome}: ${res.error?.message}`);
      const s: Sample = {
        totalMs: res.totalMs, frozenMs: res.frozenMs, saveMs: res.phasesMs.save, commitMs: res.phasesMs.commit,
        perVmSaveMs: res.vms.map((v: any) => v.saveMs), sizeBytes: res.sizeBytes, perVmBytes: res.vms.map((v: any) => v.size),
      };
      samples.push(s);
      say(`  #${i + 1}: total ${s.totalMs} ms, frozen ${s.frozenMs} ms, save ${s.saveMs} ms (per VM ${s.perVmSaveMs.join(', ')}), ${(s.sizeBytes / MiB).toFixed(1)} MiB`);
      await job.stillRunning(`checkpoint ${i + 1}`);
    }
    const { code } = await job.stop();
    if (code !== 0) throw new Error(`the ring job ended with ${code}: ${job.stderr().slice(-1500)}`);
    if (!/ring OK/.test(job.stdout())) throw new Error('the ring did not end OK');
  } finally {
    job.kill();
    fs.rmSync(ckpt, { recursive: true, force: true });
  }
  return { vms, memory, samples };
}

function toMib(s: string): number {
  const m = /^(\d+)([MG])$/i.exec(s);
  if (!m) throw new Error(`--memory items are like 256M or 1G (got ${s})`);
  return Number(m[1]) * (m[2]!.toUpperCase() === 'G' ? 1024 : 1);
}

async function main(): Promise<void> {
  const { values: o } = parseArgs({
    options: {
      vms: { type: 'string', default: '1,2,3' },
      memory: { type: 'string', default: '256M,512M,1G' },
      repeat: { type: 'string', default: '2' },
      parts: { type: 'string', default: 'a,b' },
      'json-out': { type: 'string' },
      'md-out': { type: 'string' },
    },
  });
  if (process.getuid?.() !== 0) { say('needs root (symrun --local)'); process.exit(2); }
  const repeat = Number(o.repeat);
  const parts = o.parts!.split(',');
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'symrun-bench-ckpt-'));
  execFileSync('mpicc', ['-O2', '-o', path.join(work, 'ring'), path.join(repoRoot(), 'test', 'fixtures', 'mpi', 'ring.c')]);
  const scaling: Row[] = [];
  const sizes: Row[] = [];
  try {
    if (parts.includes('a')) for (const n of o.vms!.split(',').map(Number)) scaling.push(await measure(work, n, '512M', repeat));
    if (parts.includes('b')) for (const m of o.memory!.split(',')) sizes.push(await measure(work, 1, m, repeat));
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
  const load = os.loadavg().map((x) => x.toFixed(1)).join(' ');
  const out = {
    when: new Date().toISOString(), host: os.hostname(), cpus: os.cpus().length, loadavg: load, repeat,
    scaling: scaling.map((r) => ({ vms: r.vms, memory: r.memory, samples: r.samples })),
    sizeVsRam: sizes.map((r) => ({ memory: r.memory, memoryMiB: toMib(r.memory), stateMiB: r.samples.map((s) => +(s.perVmBytes[0]! / MiB).toFixed(1)) })),
  };
  const md: string[] = [];
  md.push(`# Checkpoint benchmark (${out.when}, ${out.cpus} cores, load ${load}, TCG, median of ${repeat}, min–max)`, '');
  if (scaling.length) {
    md.push('| VMs | total ms | ranks frozen ms | save phase ms (all VMs in parallel) | one VM\'s save ms | commit ms (sha256 + manifest) | checkpoint MiB |', '|---|---|---|---|---|---|---|');
    for (const r of scaling) {
      const S = r.samples;
      const per = S.flatMap((s) => s.perVmSaveMs);
      md.push(`| ${r.vms} | ${median(S.map((s) => s.totalMs))} (${range(S.map((s) => s.totalMs))}) | ${median(S.map((s) => s.frozenMs))} | ${median(S.map((s) => s.saveMs))} (${range(S.map((s) => s.saveMs))}) | ${median(per)} (${range(per)}) | ${median(S.map((s) => s.commitMs))} | ${(median(S.map((s) => s.sizeBytes)) / MiB).toFixed(0)} |`);
    }
    md.push('');
  }
  if (sizes.length) {
    md.push('| guest RAM | state file MiB | % of RAM |', '|---|---|---|');
    for (const r of sizes) {
      const b = median(r.samples.map((s) => s.perVmBytes[0]!));
      md.push(`| ${r.memory} | ${(b / MiB).toFixed(1)} | ${((b / MiB / toMib(r.memory)) * 100).toFixed(0)} % |`);
    }
    md.push('');
  }
  const json = JSON.stringify(out, null, 2) + '\n';
  process.stdout.write(json);
  process.stderr.write(md.join('\n') + '\n');
  if (o['json-out']) fs.writeFileSync(o['json-out'], json);
  if (o['md-out']) fs.writeFileSync(o['md-out'], md.join('\n') + '\n');
}

main().catch((e) => {
  say(`failed: ${(e as Error).message}`);
  process.exit(1);
});
