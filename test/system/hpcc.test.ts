// A real Debian MPI benchmark in the VMs: `symrun --local 2 -np 2 -- hpcc` (HPC Challenge, from the
// Debian package, linked to BLAS through update-alternatives). symrun finds hpcc on PATH, stages it with
// its library closure (/usr/lib/x86_64-linux-gnu/libblas.so.3 -> /etc/alternatives/... -> blas/...)
// and the current directory (hpccinf.txt), and copies hpccoutf.txt back. Problem sizes are tiny so it
// runs in about 1.5 min under TCG (most of it the fixed-length latency/bandwidth test).
// Never skips: a missing part fails with how to install it.
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { need, needRoot, runSymrun } from '../fixtures/symrun-env.js';
import { resolveImage, imageFiles } from '../../launcher/src/image/index.js';
import { programClosure } from '../../launcher/src/stage/index.js';

need('hpcc', 'hpcc');
need('qemu-system-x86_64', 'qemu-system-x86');
needRoot();

/** HPL input: one N=200, NB=40 problem on a 1x2 grid (2 ranks); PTRANS adds nothing. */
const HPCCINF = `HPLinpack benchmark input file
Innovative Computing Laboratory, University of Tennessee
HPL.out      output file name (if any)
8            device out (6=stdout,7=stderr,file)
1            # of problems sizes (N)
200          Ns
1            # of NBs
40           NBs
0            PMAP process mapping (0=Row-,1=Column-major)
1            # of process grids (P x Q)
1            Ps
2            Qs
16.0         threshold
1            # of panel fact
2            PFACTs (0=left, 1=Crout, 2=Right)
1            # of recursive stopping criterium
4            NBMINs (>= 1)
1            # of panels in recursion
2            NDIVs
1            # of recursive panel fact.
1            RFACTs (0=left, 1=Crout, 2=Right)
1            # of broadcast
1            BCASTs (0=1rg,1=1rM,2=2rg,3=2rM,4=Lng,5=LnM)
1            # of lookahead depth
1            DEPTHs (>=0)
2            SWAP (0=bin-exch,1=long,2=mix)
64           swapping threshold
0            L1 in (0=transposed,1=no-transposed) form
0            U  in (0=transposed,1=no-transposed) form
1            Equilibration (0=no,1=yes)
8            memory alignment in double (> 0)
##### This line (no. 32) is ignored (it serves as a separator). ######
0                      		Number of additional problem sizes for PTRANS
1200 10000 30000        	values of N
0                       	number of additional blocking sizes for PTRANS
40 9 8 13 13 20 16 32 64       	values of NB
`;

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'symrun-hpcc-'));
t.teardown(() => fs.rmSync(work, { recursive: true, force: true }));

t.test('hpcc from PATH, with its BLAS closure, runs in 2 VMs and its output comes back', async (t) => {
  fs.writeFileSync(path.join(work, 'hpccinf.txt'), HPCCINF);
  const r = await runSymrun(['--local', '2', '-np', '2', '--json', '--', 'hpcc'], { cwd: work, timeoutMs: 1_000_000 });
  t.equal(r.code, 0, `symrun exit 0 (stderr: ${r.stderr.slice(-2000)})`);
  const outf = path.join(work, 'hpccoutf.txt');
  t.ok(fs.existsSync(outf), 'hpccoutf.txt came back to the host directory');
  if (!fs.existsSync(outf)) return;
  const out = fs.readFileSync(outf, 'utf8');
  t.match(out, /^Hostname: 'vm1'$/m, 'written by rank 0 in vm1, not on the host');
  t.match(out, /^Begin of Summary section\.$/m);
  t.match(out, /^End of Summary section\.$/m);
  t.match(out, /^End of HPC Challenge tests\.$/m, 'hpcc completed');
  t.match(out, /^CommWorldProcs=2$/m, 'two MPI ranks');
  t.match(out, /^HPL_N=200$/m, 'our input file was used');
  t.match(out, /^Success=1$/m, 'hpcc reports success');
  t.match(out, /\|\|Ax-b\|\|_oo.*PASSED/, 'the HPL residual check passed');
  t.notMatch(out, /FAILED/, 'no failed check');
  t.match(r.stderr, /vm1: \d+ file\(s\) written by the job copied back/);
});

t.test('what that run staged: hpcc, the BLAS alternatives chain and the library, not in the image', async (t) => {
  // the image the run used is cached: this only reads its manifest
  const files = await imageFiles(await resolveImage('auto'));
  t.ok(files.size > 100, 'the image lists its files');
  const c = await programClosure(['/usr/bin/hpcc'], { imageFiles: files });
  t.ok(c.files.includes('/usr/bin/hpcc'));
  const blasLink = c.files.find((f) => /\/libblas\.so\.3$/.test(f) && fs.lstatSync(f).isSymbolicLink());
  t.ok(blasLink, `the libblas.so.3 link is staged (${c.files.filter((f) => f.includes('blas')).join(' ')})`);
  t.ok(c.files.some((f) => f.startsWith('/etc/alternatives/libblas')), 'with the alternatives link');
  const real = fs.realpathSync('/usr/lib/x86_64-linux-gnu/libblas.so.3');
  t.ok(c.files.includes(real), `and the library itself (${real})`);
  t.notOk(files.has(real), 'which the image does not have: the run above needed the staging');
});
