// resolveImage / imageFiles / prune (launcher/src/image/index.ts) against directories made here.
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { SymError, renderError } from '../../launcher/src/errors.js';
import { imageFiles, prune, resolveImage } from '../../launcher/src/image/index.js';

function tmpdir(t: { teardown(fn: () => void): void }): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'symrun-image-unit-'));
  t.teardown(() => fs.rmSync(d, { recursive: true, force: true }));
  return d;
}

function fakeImage(dir: string, files = ['vmlinuz', 'initrd.img', 'root.ext4']) {
  fs.mkdirSync(dir, { recursive: true });
  for (const f of files) fs.writeFileSync(path.join(dir, f), `fake ${f}\n`);
}

t.test('a directory that does not exist', async (t) => {
  const spec = path.join(tmpdir(t), 'nope');
  const e = await resolveImage(spec).then(() => undefined, (e: unknown) => e) as SymError;
  t.type(e, SymError);
  t.equal(e.code, 'ESYM_IMAGE_MISSING');
  t.equal(e.field, 'image');
  t.equal(e.value, spec);
  t.match(e.message, /does not exist/);
  t.match(e.fix, /symrun image build/);
  t.match(e.fix, /vmlinuz, initrd\.img, root\.ext4/);
  const text = renderError(e);
  t.notMatch(text, /\n\s+at /, 'no stack trace for the user');
  t.match(text, /field: image/);
});

t.test('a directory without root.ext4', async (t) => {
  const dir = path.join(tmpdir(t), 'img');
  fakeImage(dir, ['vmlinuz', 'initrd.img']);
  const e = await resolveImage(dir).then(() => undefined, (e: unknown) => e) as SymError;
  t.equal(e.code, 'ESYM_IMAGE_MISSING');
  t.equal(e.field, 'image');
  t.equal(e.value, dir);
  t.match(e.message, /lacks root\.ext4/);
  t.same(e.details, { missing: ['root.ext4'] });
  t.match(e.fix, /symrun image build/);
});

t.test('a file instead of a directory', async (t) => {
  const f = path.join(tmpdir(t), 'file');
  fs.writeFileSync(f, 'x');
  const e = await resolveImage(f).then(() => undefined, (e: unknown) => e) as SymError;
  t.equal(e.code, 'ESYM_IMAGE_MISSING');
  t.match(e.message, /not a directory/);
});

t.test('an empty spec', async (t) => {
  const e = await resolveImage('').then(() => undefined, (e: unknown) => e) as SymError;
  t.equal(e.code, 'ESYM_IMAGE_MISSING');
  t.equal(e.field, 'image');
});

t.test('a complete directory without manifest', async (t) => {
  const dir = path.join(tmpdir(t), 'img');
  fakeImage(dir);
  const info = await resolveImage(dir);
  t.equal(info.dir, dir);
  t.equal(info.kernel, path.join(dir, 'vmlinuz'));
  t.equal(info.initrd, path.join(dir, 'initrd.img'));
  t.equal(info.rootfs, path.join(dir, 'root.ext4'));
  t.equal(info.builtNow, false);
  t.equal(info.kernelVersion, 'unknown', 'not a bzImage');
  t.match(info.hash, /^[0-9a-f]{64}$/);
  t.equal((await resolveImage(dir)).hash, info.hash, 'stable');
  t.equal((await imageFiles(info)).size, 0, 'no manifest, no known files');
});

t.test('a directory with a manifest', async (t) => {
  const dir = path.join(tmpdir(t), 'img');
  fakeImage(dir);
  fs.writeFileSync(path.join(dir, 'manifest.json'), JSON.stringify({
    format: 1, hash: 'a'.repeat(64), createdAt: new Date().toISOString(), kernelVersion: '6.1.0-test', inputs: {},
    files: ['/bin', '/usr/bin/node', '/usr/lib/x86_64-linux-gnu/libc.so.6', '/etc/hosts'],
    aliases: { '/bin': '/usr/bin', '/lib': '/usr/lib' },
  }));
  const info = await resolveImage(dir);
  t.equal(info.hash, 'a'.repeat(64));
  t.equal(info.kernelVersion, '6.1.0-test');
  const files = await imageFiles(info);
  for (const f of ['/usr/bin/node', '/bin/node', '/usr/lib/x86_64-linux-gnu/libc.so.6', '/lib/x86_64-linux-gnu/libc.so.6', '/etc/hosts']) {
    t.ok(files.has(f), f);
  }
  t.notOk(files.has('/usr/etc/hosts'));
});

t.test('prune keeps the most recent images and the current one, and removes dead builders\' leftovers', async (t) => {
  const root = tmpdir(t);
  const names = ['1', '2', '3', '4', '5'].map((c) => c.repeat(64));
  names.forEach((n, i) => {
    fakeImage(path.join(root, n));
    const when = new Date(Date.now() - (10 - i) * 60_000); // 5 is the newest
    fs.utimesSync(path.join(root, n), when, when);
  });
  const deadTmp = `.tmp-${os.hostname()}-999999999-abcd1234`;
  const liveTmp = `.tmp-${os.hostname()}-${process.pid}-abcd1234`;
  for (const d of [deadTmp, liveTmp, '.del-0000']) fs.mkdirSync(path.join(root, d));
  fs.writeFileSync(path.join(root, '.hash-memo.json'), '{}');
  const removed = await prune(root, names[0]!, 3);
  const left = fs.readdirSync(root).sort();
  t.same(left, [liveTmp, '.hash-memo.json', names[0], names[3], names[4]].sort(), 'current (oldest) + 2 newest kept');
  t.same(removed.sort(), [deadTmp, '.del-0000', names[1], names[2]].sort());
});
