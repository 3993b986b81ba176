// Placement options on the Slurm lab (test/cluster/slurm.ts), docs/placement.md. One 3-node lab, two
// sbatch jobs one after the other (never both at once: VMs under TCG on a small machine):
//   1. #SBATCH -N 3; symrun --spares 1 -N 2 --ntasks-per-node 2 -c 1 -- ./ring
//      -> 4 ranks, 2 in vm1 and 2 in vm2 (2 vCPUs each, mpirun --map-by slot:PE=1), n3 the spare
//   2. #SBATCH -N 2 -n 3; symrun -- ./ring   (no rank option: SLURM_NTASKS=3 from the sbatch line)
//      -> 3 ranks: vm1 runs 0 and 1, vm2 runs 2
// The ring prints "rank R of N on HOST" for every rank; a guest's hostname is its VM name.
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { startSlurmLab, type SlurmLab } from '../cluster/slurm.js';
import { need, needRoot } from '../fixtures/symrun-env.js';
import { symrunPath, untapEnv } from '../fixtures/slurm-ring.js';
import { repoRoot } from '../../launcher/src/defaults.js';

needRoot('the Slurm lab and the VMs need root');
for (const [c, p] of [['slurmctld', 'slurm-wlm'], ['mpicc', 'libopenmpi-dev'], ['qemu-system-x86_64', 'qemu-system-x86']] as const) need(c, p);

const FINAL = ['COMPLETED', 'FAILED', 'CANCELLED', 'TIMEOUT', 'NODE_FAIL', 'OUT_OF_MEMORY', 'BOOT_FAIL', 'DEADLINE'];

/** "rank R of N on HOST" lines of the ring, sorted by rank. */
function ranksOf(out: string): Array<[number, number, string]> {
  return [...out.matchAll(/^rank (\d+) of (\d+) on (\S+)$/gm)]
    .map((m) => [Number(m[1]), Number(m[2]), m[3]!] as [number, number, string])
    .sort((a, b) => a[0] - b[0]);
}

t.test('placement options on Slurm: -N / --ntasks-per-node / -c on symrun\'s line, -n from the sbatch line', async (t) => {
  const lab: SlurmLab = await startSlurmLab({ nodes: 3, name: `sp${process.pid.toString(36)}`.slice(0, 16), temporary: true });
  t.teardown(() => lab.stop());
  const work = path.join(lab.workDir, `placement-${process.pid}`);
  fs.mkdirSync(work, { recursive: true });
  execFileSync('mpicc', ['-O2', '-o', path.join(work, 'ring'), path.join(repoRoot(), 'test', 'fixtures', 'mpi', 'ring.c')]);

  const run = async (tag: string, sbatch: string, symrunArgs: string[]) => {
    const out = path.join(work, `${tag}.out`);
    const script = [
      '#!/bin/bash',
      `#SBATCH ${sbatch}`,
      `#SBATCH -o ${out}`,
      'unset NODE_OPTIONS',
      `cd ${work}`,
      `exec ${symrunPath} ${symrunArgs.join(' ')} -- ./ring 20`,
      '',
    ].join('\n');
    const t0 = Date.now();
    const jobId = await lab.sbatch(script, { cwd: work, env: untapEnv() });
    const j = await lab.waitJob(jobId, FINAL, 900_000);
    let text = '';
    try { text = fs.readFileSync(out, 'utf8'); } catch { /* no output */ }
    return { j, out: text, s: ((Date.now() - t0) / 1000).toFixed(1) };
  };

  await t.test('#SBATCH -N 3; symrun --spares 1 -N 2 --ntasks-per-node 2 -c 1: 2 ranks in vm1, 2 in vm2, n3 spare', async (t) => {
    const { j, out, s } = await run('npn', '-N 3', ['--spares', '1', '-N', '2', '--ntasks-per-node', '2', '-c', '1']);
    t.comment(`job ${j.state} ${s} s after sbatch`);
    t.equal(j.state, 'COMPLETED', `batch job COMPLETED (output: ${out.slice(-3000)})`);
    t.match(out, /symrun: placement: 2 VMs on n1, n2, 4 ranks \(2 per VM\), 2 vCPUs per VM, 1 vCPU bound to each rank \(--map-by slot:PE=1\); spare: n3/, 'the plan names n3 as the spare');
    t.match(out, /booting 2 VMs \([^)]*2 vCPU\) on 2 hosts \+ 1 spare/, 'VMs on 2 hosts, 2 vCPUs each, 1 spare');
    t.same(ranksOf(out), [[0, 4, 'vm1'], [1, 4, 'vm1'], [2, 4, 'vm2'], [3, 4, 'vm2']], '4 ranks: 0,1 in vm1, 2,3 in vm2');
    t.match(out, /ring OK: ranks=4/);
  });

  await t.test('#SBATCH -N 2 -n 3; symrun with no rank option: 3 ranks (SLURM_NTASKS)', async (t) => {
    const { j, out, s } = await run('n3', '-N 2 -n 3', []);
    t.comment(`job ${j.state} ${s} s after sbatch`);
    t.equal(j.state, 'COMPLETED', `batch job COMPLETED (output: ${out.slice(-3000)})`);
    t.match(out, /symrun: placement: ranks from the allocation: SLURM_NTASKS=3 \(-n\)/);
    t.match(out, /symrun: placement: 2 VMs on n1, n2, 3 ranks \(2 per VM\)/);
    t.same(ranksOf(out), [[0, 3, 'vm1'], [1, 3, 'vm1'], [2, 3, 'vm2']], '3 ranks: mpirun fills vm1 first');
    t.match(out, /ring OK: ranks=3/);
  });
});
