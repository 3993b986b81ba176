import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { programClosure } from '../../launcher/src/stage/index.js';
import { SymError } from '../../launcher/src/errors.js';
import { approxImageFiles } from '../fixtures/stage/image.js';

const fixtures = fileURLToPath(new URL('../../../test/fixtures/stage/', import.meta.url));
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'stage-closure-'));
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));

/** every symlink on the way from p to its file, and the file (as the host resolves them) */
function chain(p: string): string[] {
  const out: string[] = [];
  let cur = path.join(fs.realpathSync(path.dirname(p)), path.basename(p));
  for (let i = 0; i < 40; i++) {
    const st = fs.lstatSync(cur);
    out.push(cur);
    if (!st.isSymbolicLink()) return out;
    const next = path.resolve(path.dirname(cur), fs.readlinkSync(cur));
    cur = path.join(fs.realpathSync(path.dirname(next)), path.basename(next));
  }
  throw new Error('loop');
}

const libdir = path.join(dir, 'lib');
const ring = path.join(dir, 'ring');
t.before(async () => {
  fs.mkdirSync(libdir);
  await execa('mpicc', ['-shared', '-fPIC', '-Wl,-soname,libring.so.1', '-o', path.join(libdir, 'libring.so.1.0'), path.join(fixtures, 'ringlib.c')]);
  fs.symlinkSync('libring.so.1.0', path.join(libdir, 'libring.so.1'));
  fs.symlinkSync('libring.so.1', path.join(libdir, 'libring.so'));
  await execa('mpicc', ['-o', ring, path.join(fixtures, 'ring.c'), `-L${libdir}`, '-lring', '-lm', `-Wl,-rpath,${libdir}`]);
});

t.test('mpicc program: own rpath library with its symlink, libm, libmpi, loader', async (t) => {
  const c = await programClosure([ring], { imageFiles: new Set() });
  t.ok(c.files.includes(ring), 'the program');
  t.ok(c.files.includes(path.join(libdir, 'libring.so.1')), 'soname symlink');
  t.ok(c.files.includes(path.join(libdir, 'libring.so.1.0')), 'its target');
  t.notOk(c.files.includes(path.join(libdir, 'libring.so')), 'the dev symlink is not needed');
  for (const f of chain('/lib/x86_64-linux-gnu/libm.so.6')) t.ok(c.files.includes(f), `libm chain: ${f}`);
  for (const f of chain('/lib/x86_64-linux-gnu/libmpi.so.40')) t.ok(c.files.includes(f), `libmpi chain: ${f}`);
  for (const f of chain('/lib64/ld-linux-x86-64.so.2')) t.ok(c.files.includes(f), `loader chain: ${f}`);
  t.same(c.packages, [], 'not owned by a package');
  const sum = c.files.map((f) => fs.lstatSync(f)).filter((s) => s.isFile()).reduce((a, s) => a + s.size, 0);
  t.equal(c.bytes, sum, 'bytes = size of the regular files');
  for (const f of c.files) t.ok(path.isAbsolute(f) && fs.lstatSync(f), `${f} exists`);
});

t.test('files already in the image are skipped; the program and own lib are not', async (t) => {
  const image = await approxImageFiles();
  const t0 = Date.now();
  const c = await programClosure([ring], { imageFiles: image });
  const ms = Date.now() - t0;
  t.same(c.files.sort(), [ring, path.join(libdir, 'libring.so.1'), path.join(libdir, 'libring.so.1.0')].sort());
  t.match(c.notes.join('\n'), /already in the guest image/);
  t.comment(`ring closure vs image: ${c.files.length} files, ${c.bytes} bytes, ${ms} ms`);
  const full = await programClosure([ring], { imageFiles: new Set() });
  t.comment(`ring closure vs empty image: ${full.files.length} files, ${full.bytes} bytes`);
});

t.test('image link with a different target is overridden', async (t) => {
  // the image has libring.so.1 (as a path) but not our libring.so.1.0: ship both
  const c = await programClosure([ring], { imageFiles: new Set([path.join(libdir, 'libring.so.1')]) });
  t.ok(c.files.includes(path.join(libdir, 'libring.so.1')));
  t.ok(c.files.includes(path.join(libdir, 'libring.so.1.0')));
  t.match(c.notes.join('\n'), /host's link overrides it/);
  const c2 = await programClosure([ring], { imageFiles: new Set([path.join(libdir, 'libring.so.1'), path.join(libdir, 'libring.so.1.0')]) });
  t.notOk(c2.files.includes(path.join(libdir, 'libring.so.1')), 'same link and target in image: skipped');
});

t.test('missing library → ESYM_APP_LIB_MISSING naming lib and program', async (t) => {
  const d = path.join(dir, 'broken');
  fs.mkdirSync(d);
  await execa('mpicc', ['-shared', '-fPIC', '-Wl,-soname,libgone.so.7', '-o', path.join(d, 'libgone.so.7'), path.join(fixtures, 'ringlib.c')]);
  await execa('mpicc', ['-o', path.join(d, 'app'), path.join(fixtures, 'ring.c'), path.join(d, 'libgone.so.7'), '-lm']);
  fs.rmSync(path.join(d, 'libgone.so.7'));
  try {
    await programClosure([path.join(d, 'app')], { imageFiles: new Set() });
    t.fail('expected ESYM_APP_LIB_MISSING');
  } catch (e) {
    t.ok(e instanceof SymError);
    const s = e as SymError;
    t.equal(s.code, 'ESYM_APP_LIB_MISSING');
    t.match(s.message, /libgone\.so\.7/);
    t.ok(s.message.includes(path.join(d, 'app')), 'names the program');
    t.ok(s.fix);
  }
});

t.test('shell script pulls its interpreter; env scripts pull env and the named program', async (t) => {
  const sh = path.join(dir, 'run.sh');
  fs.writeFileSync(sh, '#!/bin/bash\necho hi\n', { mode: 0o755 });
  const c = await programClosure([sh], { imageFiles: new Set() });
  t.ok(c.files.includes(sh));
  for (const f of chain('/bin/bash')) t.ok(c.files.includes(f), `bash chain ${f}`);
  t.ok(c.files.some((f) => /libtinfo\.so/.test(f)), 'bash libraries (libtinfo)');
  t.same(c.packages, [], 'only the programs themselves bring their package files');

  const pl = path.join(dir, 'tool.pl');
  fs.writeFileSync(pl, '#!/usr/bin/env perl\nprint "x\\n";\n', { mode: 0o755 });
  const c2 = await programClosure([pl], { imageFiles: new Set(), PATH: '/usr/bin:/bin' });
  t.ok(c2.files.includes('/usr/bin/env'), 'env');
  t.ok(c2.files.includes('/usr/bin/perl') || c2.files.some((f) => /\/perl5?\.[0-9.]+$/.test(f)), 'perl');
  t.ok(c2.files.some((f) => /libcrypt\.so/.test(f)), 'perl libraries (libcrypt)');

  // interpreter in the image: only the script
  const c3 = await programClosure([sh], { imageFiles: new Set(chain('/bin/bash').concat(['/bin/bash'])) });
  t.notOk(c3.files.includes(fs.realpathSync('/bin/bash')));
});

t.test('hpcc: libblas through alternatives with the whole chain, and the package files', async (t) => {
  const image = await approxImageFiles();
  const t0 = Date.now();
  const c = await programClosure(['/usr/bin/hpcc'], { imageFiles: image });
  const ms = Date.now() - t0;
  const blas = chain('/usr/lib/x86_64-linux-gnu/libblas.so.3');
  t.ok(blas.length >= 3, `blas chain ${blas.join(' -> ')}`);
  t.ok(blas.some((f) => f.startsWith('/etc/alternatives/')), 'goes through /etc/alternatives');
  for (const f of blas) t.ok(c.files.includes(f), `blas chain: ${f}`);
  t.ok(c.packages.includes('hpcc'));
  t.ok(c.files.includes('/usr/bin/hpcc'));
  t.notOk(c.files.some((f) => f.startsWith('/usr/share/doc/') || f.startsWith('/usr/share/man/')), 'no docs');
  t.notOk(c.files.some((f) => /libmpi\.so/.test(f)), 'libmpi is in the image');
  t.match(c.notes.join('\n'), /package hpcc: \d+ documentation/);
  t.comment(`hpcc closure vs image: ${c.files.length} files, ${c.bytes} bytes, ${ms} ms:\n  ${c.files.join('\n  ')}`);
  const t1 = Date.now();
  const full = await programClosure(['/usr/bin/hpcc'], { imageFiles: new Set() });
  t.comment(`hpcc closure vs empty image: ${full.files.length} files, ${full.bytes} bytes, ${Date.now() - t1} ms`);
  t.ok(full.files.includes('/lib') || full.notes.some((n) => /\/lib /.test(n)), 'directory symlink /lib considered');
});

t.test('extraFiles are shipped with their chain', async (t) => {
  const c = await programClosure([ring], { imageFiles: new Set(), extraFiles: [path.join(libdir, 'libring.so')] });
  t.ok(c.files.includes(path.join(libdir, 'libring.so')));
});
