// The MPI_Finalize hang of MPICH 4.0 (ch4:ucx) over UCX's tcp transport, and symrun's fix (docs/mpi.md,
// "MPI_Finalize and UCX over TCP"), on this host's own MPICH with three ranks over loopback, no VMs:
// finalize-late.c makes the last rank enter MPI_Finalize ~2 s after the others while making MPI progress.
// Without the library symrun preloads into MPICH ranks the job hangs (ranks 0 and 1 blocked in the PMI
// barrier, rank 2 waiting for the ACKs of its flush); with it (built by mpi/finalize-shim.ts, the same
// code the MPICH image gets) every rank finishes, run after run.
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync, spawn } from 'node:child_process';
import { repoRoot } from '../../launcher/src/defaults.js';
import { buildFinalizeShim } from '../../launcher/src/mpi/finalize-shim.js';
import { need } from '../fixtures/symrun-env.js';

need('mpicc.mpich', 'libmpich-dev');
need('mpiexec.hydra', 'mpich');
need('cc', 'gcc');

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'symrun-mpich-fin-'));
t.teardown(() => fs.rmSync(work, { recursive: true, force: true }));
const prog = path.join(work, 'finalize-late');
execFileSync('mpicc.mpich', ['-O2', '-o', prog, path.join(repoRoot(), 'test', 'fixtures', 'mpi', 'finalize-late.c')]);

// inter-rank traffic over UCX's tcp transport (MPICH's own shared memory off), as between symrun's VMs
const ucxTcp = { UCX_TLS: 'tcp,self', UCX_NET_DEVICES: 'lo', MPIR_CVAR_NOLOCAL: '1' };

interface Run { exited: boolean; code: number | null; stderr: string; ms: number }

/** mpiexec.hydra -n 3 PROGRAM [with -genv LD_PRELOAD lib]; killed (its whole process group) after ms. */
function hydra(preload: string | undefined, ms: number): Promise<Run> {
  const args = ['-n', '3', ...(preload ? ['-genv', 'LD_PRELOAD', preload] : []), prog];
  const t0 = Date.now();
  const child = spawn('mpiexec.hydra', args, { cwd: work, env: { ...process.env, ...ucxTcp }, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stdout!.on('data', (d) => (stderr += d));
  child.stderr!.on('data', (d) => (stderr += d));
  return new Promise((resolve) => {
    let exited = false;
    const timer = setTimeout(() => {
      try { process.kill(-child.pid!, 'SIGKILL'); } catch { /* gone */ }
    }, ms);
    child.on('exit', (code, sig) => { exited = sig === null; });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ exited, code, stderr, ms: Date.now() - t0 });
    });
  });
}

t.test('without the library: the late rank\'s MPI_Finalize never returns (the hang is reproduced)', async (t) => {
  const r = await hydra(undefined, 15_000);
  t.notOk(r.exited, `no exit within 15 s (exit ${r.code}; ${r.ms} ms)`, { stderr: r.stderr });
  t.match(r.stderr, /rank 2 finalizing/, 'the late rank reached MPI_Finalize');
  t.notMatch(r.stderr, /rank 2 done/, 'and never left it');
  t.comment(`without the library: killed after ${r.ms} ms; ${r.stderr.match(/rank \d (finalizing|done)/g)?.join(', ')}`);
});

t.test('with symrun\'s finalize library preloaded: every rank finishes, 5 runs in a row', async (t) => {
  const lib = path.join(work, 'libsymrun-ucx-finalize.so');
  await buildFinalizeShim(lib);
  for (let i = 1; i <= 5; i++) {
    const r = await hydra(lib, 30_000);
    t.ok(r.exited, `run ${i}: mpiexec exited by itself (${r.ms} ms)`, { stderr: r.stderr });
    t.equal(r.code, 0, `run ${i}: exit 0`);
    for (const k of [0, 1, 2]) t.match(r.stderr, new RegExp(`rank ${k} done`), `run ${i}: rank ${k} left MPI_Finalize`);
    t.comment(`with the library, run ${i}: ${r.ms} ms`);
  }
});
