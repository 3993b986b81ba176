import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { snapshotDir } from '../../launcher/src/stage/index.js';
import { SymError } from '../../launcher/src/errors.js';
import { checkpointName, createTempDir } from '../../launcher/src/checkpoint/manifest.js';

function tree(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'stage-snap-'));
  t.teardown(() => fs.rmSync(d, { recursive: true, force: true }));
  fs.mkdirSync(path.join(d, 'src/deep'), { recursive: true });
  fs.mkdirSync(path.join(d, 'build/obj'), { recursive: true });
  fs.mkdirSync(path.join(d, '.git'));
  fs.mkdirSync(path.join(d, 'empty'));
  fs.writeFileSync(path.join(d, 'input.dat'), Buffer.alloc(1000, 1));
  fs.writeFileSync(path.join(d, 'src/a.c'), 'int a;');
  fs.writeFileSync(path.join(d, 'src/a.o'), Buffer.alloc(500));
  fs.writeFileSync(path.join(d, 'src/deep/b.o'), Buffer.alloc(500));
  fs.writeFileSync(path.join(d, 'build/obj/x'), Buffer.alloc(5000));
  fs.writeFileSync(path.join(d, '.git/HEAD'), 'ref');
  fs.symlinkSync('input.dat', path.join(d, 'link-in'));
  fs.symlinkSync(path.join(d, 'src'), path.join(d, 'link-abs-in'));
  fs.symlinkSync('/etc/passwd', path.join(d, 'link-out'));
  fs.symlinkSync('../..', path.join(d, 'src', 'link-up'));
  fs.symlinkSync('nowhere', path.join(d, 'dangling-in'));
  return d;
}

t.test('walk: dirs, files, inside symlinks; outside symlinks skipped', async (t) => {
  const d = tree();
  const s = await snapshotDir(d, { maxBytes: 1 << 20, exclude: [] });
  t.equal(s.root, d);
  t.same(s.files, ['.git', '.git/HEAD', 'build', 'build/obj', 'build/obj/x', 'dangling-in', 'empty', 'input.dat',
    'link-abs-in', 'link-in', 'src', 'src/a.c', 'src/a.o', 'src/deep', 'src/deep/b.o']);
  t.equal(s.bytes, 1000 + 6 + 500 + 500 + 5000 + 3);
  t.same(s.skipped.map((x) => x.path).sort(), ['link-out', 'src/link-up']);
  t.match(s.skipped.find((x) => x.path === 'link-out')!.reason, /points outside/);
});

t.test('excludes: basenames, dirs only, anchored', async (t) => {
  const d = tree();
  const s = await snapshotDir(d, { maxBytes: 1 << 20, exclude: ['*.o', '.git', 'build/', 'link-*'] });
  t.same(s.files, ['dangling-in', 'empty', 'input.dat', 'src', 'src/a.c', 'src/deep']);
  t.equal(s.bytes, 1006);
  const s2 = await snapshotDir(d, { maxBytes: 1 << 20, exclude: ['src/*.o'] });
  t.ok(s2.files.includes('src/deep/b.o') && !s2.files.includes('src/a.o'), 'anchored pattern');
});

t.test('size limit → ESYM_SHARE_TOO_LARGE, exit 2, field, value, actual size, fix', async (t) => {
  const d = tree();
  try {
    await snapshotDir(d, { maxBytes: 4000, exclude: [] });
    t.fail('expected an error');
  } catch (e) {
    t.ok(e instanceof SymError);
    const s = e as SymError;
    t.equal(s.code, 'ESYM_SHARE_TOO_LARGE');
    t.equal(s.exitCode, 2);
    t.equal(s.field, 'share.maxBytes');
    t.equal(s.value, 4000);
    t.match(s.message, /7009 bytes/);
    t.match(s.message, /build/);
    t.match(s.fix, /share\.maxBytes/);
    t.match(s.fix, /share\.exclude/);
    t.match(s.fix, /smaller directory/);
  }
  // excluding the big part makes it fit
  const ok = await snapshotDir(d, { maxBytes: 4000, exclude: ['build/'] });
  t.equal(ok.bytes, 2009);
});

t.test('a directory tagged CACHEDIR.TAG (symrun checkpoint dirs are) is left out and counts nothing; a wrong signature does not', async (t) => {
  const d = tree();
  const root = path.join(d, 'ckpt-old');
  createTempDir(root, checkpointName('j1', new Date('2026-01-01T00:00:00Z')));
  fs.writeFileSync(path.join(root, 'big.state'), Buffer.alloc(9000));
  t.match(fs.readFileSync(path.join(root, 'CACHEDIR.TAG'), 'utf8'), /^Signature: 8a477f597d28d172789f06886806bc55/, 'createTempDir tags the checkpoint root');
  fs.mkdirSync(path.join(d, 'not-a-cache'));
  fs.writeFileSync(path.join(d, 'not-a-cache', 'CACHEDIR.TAG'), 'Signature: something else\n');
  const s = await snapshotDir(d, { maxBytes: 8000, exclude: ['build/'] });
  t.notOk(s.files.some((f) => f.startsWith('ckpt-old')), 'nothing of the tagged dir is shipped');
  t.ok(s.files.includes('not-a-cache/CACHEDIR.TAG'), 'an untagged dir with a file of that name is shipped');
  t.match(s.skipped, [{ path: 'ckpt-old', cache: true, reason: /CACHEDIR\.TAG/ }], 'and listed as skipped');
  t.ok(s.bytes < 8000, `its size does not count (${s.bytes} bytes)`);
});
