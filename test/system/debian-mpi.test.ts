// Real MPI programs we did not write: NetPIPE from Debian (netpipe-mpich2: NPmpich2, linked against
// MPICH; netpipe-openmpi: NPopenmpi, linked against Open MPI), 2 ranks across 2 local VMs. symrun finds
// the program on PATH, detects its MPI from its libraries (MPICH -> Hydra's mpiexec.hydra in the MPICH
// image; Open MPI -> mpirun), stages it, and copies NetPIPE's own output file back. Checked: the ranks
// are in different VMs, NetPIPE's ping-pong table runs from 1 byte up to the -u limit with a bandwidth
// above 0 at every size (in np.out, which NetPIPE writes with more digits than its screen table), exit 0.
// -u 65536 -n 20 -p 0 (fixed repeats, no perturbed sizes) keep each run to about 17 s under TCG (boot included).
// Installs nothing: scripts/setup installs both packages. Never skips: a missing part fails with how to
// install it.
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { need, needRoot, runSymrun } from '../fixtures/symrun-env.js';

need('NPmpich2', 'netpipe-mpich2');
need('NPopenmpi', 'netpipe-openmpi');
need('mpiexec.hydra', 'mpich');
need('qemu-system-x86_64', 'qemu-system-x86');
needRoot();

const UPPER = 65536;
const NETPIPE_ARGS = ['-u', String(UPPER), '-n', '20', '-p', '0'];

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'symrun-debian-mpi-'));
t.teardown(() => fs.rmSync(work, { recursive: true, force: true }));

interface Row { bytes: number; mbps: number }

/** NetPIPE's screen table (stderr): `  N:   BYTES bytes  REPS times -->  MBPS Mbps in  USEC usec`. */
function screenTable(stdout: string): Row[] {
  const rows: Row[] = [];
  for (const m of stdout.matchAll(/^\s*\d+:\s+(\d+) bytes\s+\d+ times -->\s+([\d.]+) Mbps in\s+[\d.]+ usec$/gm)) rows.push({ bytes: Number(m[1]), mbps: Number(m[2]) });
  return rows;
}

/** NetPIPE's output file: one line per size, `BYTES MBPS SECONDS`. */
function outFile(text: string): Row[] {
  return text.trim().split('\n').map((l) => l.trim().split(/\s+/).map(Number)).map(([bytes, mbps]) => ({ bytes: bytes!, mbps: mbps! }));
}

for (const c of [
  { program: 'NPmpich2', mpi: 'MPICH', pkg: 'netpipe-mpich2', hydra: true },
  { program: 'NPopenmpi', mpi: 'Open MPI', pkg: 'netpipe-openmpi', hydra: false },
]) {
  t.test(`${c.program} (${c.pkg}, ${c.mpi}): 2 ranks in 2 VMs, the ping-pong table up to ${UPPER} bytes`, async (t) => {
    const out = `np-${c.program}.out`;
    const r = await runSymrun(['--local', '2', '-np', '2', '--accel', 'tcg', '--', c.program, ...NETPIPE_ARGS, '-o', out], { cwd: work, timeoutMs: 240_000 });
    t.comment(`${c.program}: symrun exit ${r.code} in ${(r.ms / 1000).toFixed(1)} s`);
    t.equal(r.code, 0, `symrun exit 0 (stderr: ${r.stderr.slice(-2500)})`);
    if (c.hydra) t.match(r.stderr, new RegExp(`/usr/bin/${c.program} is an MPICH program: launching it with MPICH's mpiexec\\.hydra`), 'detected as MPICH, launched with Hydra');
    else t.notMatch(r.stderr, /MPICH program/, 'an Open MPI program: launched with mpirun, no MPICH notice');
    t.match(r.stdout, /^0: vm1$/m, 'rank 0 in vm1');
    t.match(r.stdout, /^1: vm2$/m, 'rank 1 in vm2 (one MPI job of 2 ranks, not singletons)');
    // NetPIPE prints its hosts on stdout, its running table on stderr
    t.match(r.stderr, /^Now starting the main loop$/m);

    const screen = screenTable(r.stderr);
    t.ok(screen.length >= 20, `${screen.length} table lines on stderr`);
    t.equal(screen[0]?.bytes, 1, 'from 1 byte');
    t.equal(screen[screen.length - 1]?.bytes, UPPER, `up to the -u limit (${UPPER} bytes)`);
    t.ok(screen.every((row, i) => i === 0 || row.bytes > screen[i - 1]!.bytes), 'sizes grow');
    t.ok(screen[screen.length - 1]!.mbps > 0, `${UPPER} bytes: ${screen[screen.length - 1]?.mbps} Mbps`);

    const file = path.join(work, out);
    t.ok(fs.existsSync(file), `${out}, written by rank 0 in vm1, came back to the host directory`);
    if (!fs.existsSync(file)) return;
    const rows = outFile(fs.readFileSync(file, 'utf8'));
    t.same(rows.map((x) => x.bytes), screen.map((x) => x.bytes), 'the file has the sizes of the screen table');
    const zero = rows.filter((x) => !(x.mbps > 0));
    t.same(zero, [], 'a bandwidth above 0 at every size');
    const best = Math.max(...rows.map((x) => x.mbps));
    t.comment(`${c.program}: ${rows.length} sizes, 1 byte: ${rows[0]?.mbps} Mbps; ${UPPER} bytes: ${rows[rows.length - 1]?.mbps} Mbps; best ${best} Mbps`);
  });
}
