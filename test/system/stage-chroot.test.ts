// The host side of staging against the guest side's real tool (busybox tar), with a chroot standing in
// for the guest root: ship the program closure and the cwd, run there, bring the results back.
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { programClosure, snapshotDir, tarCreate, tarExtractSafe, resolveProgram } from '../../launcher/src/stage/index.js';

const fixtures = fileURLToPath(new URL('../../../test/fixtures/stage/', import.meta.url));
const busybox = ['/usr/bin/busybox', '/bin/busybox'].find((p) => fs.existsSync(p));
if (!busybox || process.getuid?.() !== 0) {
  t.plan(0, 'needs busybox and root (chroot)');
} else {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'stage-sys-'));
  t.teardown(() => fs.rmSync(work, { recursive: true, force: true }));

  /** what the guest does: `tar -x -C /` (busybox), here into a fresh root */
  async function shipInto(root: string, stream: NodeJS.ReadableStream, done: Promise<void>) {
    const bb = execa(busybox!, ['tar', '-x', '-f', '-', '-C', root], { input: undefined, stdin: 'pipe' });
    stream.pipe(bb.stdin!);
    await Promise.all([bb, done]);
  }

  t.test('program closure + cwd → busybox tar → chroot run → busybox tar → tarExtractSafe', async (t) => {
    const proj = path.join(work, 'proj');
    const lib = path.join(work, 'mylib');
    fs.mkdirSync(proj);
    fs.mkdirSync(lib);
    fs.writeFileSync(path.join(lib, 'ring.c'), 'int ring_next(int r, int s) { return (r + 1) % s; }\n');
    await execa('cc', ['-shared', '-fPIC', '-Wl,-soname,libring.so.1', '-o', path.join(lib, 'libring.so.1.0'), path.join(lib, 'ring.c')]);
    fs.symlinkSync('libring.so.1.0', path.join(lib, 'libring.so.1'));
    fs.writeFileSync(path.join(proj, 'app.c'), `
#include <stdio.h>
#include <math.h>
int ring_next(int, int);
int main(int argc, char **argv) {
  FILE *in = fopen("input.txt", "r"); char buf[64] = {0}; if (!in || !fgets(buf, sizeof buf, in)) return 3;
  FILE *o = fopen("out/result.txt", "w"); if (!o) return 4;
  fprintf(o, "next=%d sqrt=%.1f in=%s", ring_next(2, 3), sqrt(16.0 + argc - 1), buf); fclose(o);
  printf("ok\\n"); return 0;
}`);
    await execa('cc', ['-o', path.join(proj, 'app'), path.join(proj, 'app.c'), `-L${lib}`, path.join(lib, 'libring.so.1'), '-lm', `-Wl,-rpath,${lib}`]);
    fs.writeFileSync(path.join(proj, 'input.txt'), 'hello\n');
    fs.mkdirSync(path.join(proj, 'out'));
    fs.writeFileSync(path.join(proj, 'app.o'), 'junk');

    const prog = resolveProgram('./app', { cwd: proj });
    const t0 = Date.now();
    const closure = await programClosure([prog.hostPath, '/bin/bash'], { imageFiles: new Set() });
    const snap = await snapshotDir(proj, { maxBytes: 1 << 24, exclude: ['*.o', '*.c'] });
    t.comment(`closure ${closure.files.length} files ${closure.bytes} bytes; cwd ${snap.files.length} entries ${snap.bytes} bytes; ${Date.now() - t0} ms`);

    const root = path.join(work, 'guestroot');
    fs.mkdirSync(root);
    const c1 = tarCreate({ absolute: closure.files });
    await shipInto(root, c1.stream, c1.done);
    const c2 = tarCreate({ absolute: snap.files.map((f) => path.join(snap.root, f)) });
    await shipInto(root, c2.stream, c2.done);
    t.ok(fs.lstatSync(path.join(root, 'lib')).isSymbolicLink(), '/lib arrives as a symlink');
    t.notOk(fs.existsSync(path.join(root, proj, 'app.o')), 'excluded file not shipped');

    const run = await execa('chroot', [root, '/bin/bash', '-c', `cd ${proj} && ./app x`], { reject: false });
    t.equal(run.exitCode, 0, `ran in the chroot: ${run.stderr}`);
    t.equal(run.stdout, 'ok');

    // stage-out: the guest archives what it wrote, the host extracts it safely
    const back = execa(busybox!, ['tar', '-c', '-f', '-', '-C', path.join(root, proj), 'out'], { buffer: false });
    const res = await tarExtractSafe(back.stdout!, proj, { maxBytes: 1 << 20 });
    await back;
    t.same(res.files, ['out/result.txt']);
    t.equal(fs.readFileSync(path.join(proj, 'out/result.txt'), 'utf8'), 'next=0 sqrt=4.1 in=hello\n');
  });

  t.test('hpcc closure: every library resolves inside a root holding only the closure', async (t) => {
    const root = path.join(work, 'hpccroot');
    fs.mkdirSync(root);
    const t0 = Date.now();
    const closure = await programClosure(['/usr/bin/hpcc'], { imageFiles: new Set() });
    const ms = Date.now() - t0;
    const c = tarCreate({ absolute: closure.files });
    await shipInto(root, c.stream, c.done);
    t.comment(`hpcc closure (empty image): ${closure.files.length} files, ${closure.bytes} bytes, ${ms} ms`);
    const r = await execa('chroot', [root, '/lib64/ld-linux-x86-64.so.2', '--list', '/usr/bin/hpcc'], { reject: false });
    t.equal(r.exitCode, 0, r.stderr);
    t.notMatch(r.stdout, /not found/);
    t.match(r.stdout, /libblas\.so\.3 => \/lib\/x86_64-linux-gnu\/libblas\.so\.3/);
    t.ok(fs.statSync(path.join(root, 'usr/lib/x86_64-linux-gnu/libblas.so.3')).isFile(), 'the alternatives chain resolves in the root');
  });
}
