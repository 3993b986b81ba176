import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { execa } from 'execa';
import { snapshotDir, tarCreate, tarExtractSafe } from '../../launcher/src/stage/index.js';
import { SymError } from '../../launcher/src/errors.js';
import { entry, paxEntry, archive, header } from '../fixtures/stage/tarwriter.js';

function tmp(prefix: string): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  t.teardown(() => fs.rmSync(d, { recursive: true, force: true }));
  return d;
}

function listAll(d: string): string[] {
  const out: string[] = [];
  const walk = (rel: string) => {
    for (const n of fs.readdirSync(path.join(d, rel)).sort()) {
      const r = rel ? `${rel}/${n}` : n;
      out.push(r);
      const st = fs.lstatSync(path.join(d, r));
      if (st.isDirectory() && !st.isSymbolicLink()) walk(r);
    }
  };
  walk('');
  return out;
}

async function expectReject(t: any, buf: Buffer, re: RegExp, opts: { maxBytes?: number; dest?: string } = {}) {
  const outer = tmp('stage-evil-');
  const dest = opts.dest ?? path.join(outer, 'dest');
  fs.mkdirSync(dest, { recursive: true });
  const before = listAll(outer);
  try {
    await tarExtractSafe(Readable.from([buf]), dest, { maxBytes: opts.maxBytes ?? 1 << 20 });
    t.fail('expected ESYM_STAGE_OUT_REJECTED');
  } catch (e) {
    t.ok(e instanceof SymError, 'SymError');
    t.equal((e as SymError).code, 'ESYM_STAGE_OUT_REJECTED');
    t.match((e as SymError).message, re);
  }
  t.same(listAll(outer), before, 'nothing written anywhere');
}

t.test('tarCreate → tarExtractSafe round trip keeps content and mode', async (t) => {
  const src = tmp('stage-src-');
  fs.mkdirSync(path.join(src, 'sub/deeper'), { recursive: true });
  fs.mkdirSync(path.join(src, 'empty'), { mode: 0o750 });
  fs.chmodSync(path.join(src, 'empty'), 0o750);
  fs.writeFileSync(path.join(src, 'a.txt'), 'hello\n');
  fs.writeFileSync(path.join(src, 'run.sh'), '#!/bin/sh\n', { mode: 0o755 });
  fs.chmodSync(path.join(src, 'run.sh'), 0o755);
  fs.writeFileSync(path.join(src, 'secret'), 's', { mode: 0o600 });
  fs.chmodSync(path.join(src, 'secret'), 0o600);
  const big = Buffer.alloc(3 * 1024 * 1024 + 17);
  for (let i = 0; i < big.length; i++) big[i] = (i * 31) & 0xff;
  fs.writeFileSync(path.join(src, 'sub/deeper/big.bin'), big);
  const long = 'n'.repeat(120) + '/' + 'm'.repeat(150);
  fs.mkdirSync(path.join(src, 'n'.repeat(120)));
  fs.writeFileSync(path.join(src, long), 'long name');
  fs.writeFileSync(path.join(src, 'not-listed.txt'), 'x');
  fs.linkSync(path.join(src, 'a.txt'), path.join(src, 'hard.txt'));

  const snap = await snapshotDir(src, { maxBytes: 1 << 30, exclude: ['not-listed.txt'] });
  const { stream, done } = tarCreate({ root: snap.root, paths: snap.files });
  const dest = tmp('stage-dest-');
  const [res] = await Promise.all([tarExtractSafe(stream, dest, { maxBytes: 1 << 30 }), done]);
  t.same(res.files.sort(), ['a.txt', 'hard.txt', long, 'run.sh', 'secret', 'sub/deeper/big.bin'].sort());
  t.equal(fs.readFileSync(path.join(dest, 'a.txt'), 'utf8'), 'hello\n');
  t.equal(fs.readFileSync(path.join(dest, 'hard.txt'), 'utf8'), 'hello\n', 'hard link stored as a file');
  t.ok(fs.readFileSync(path.join(dest, 'sub/deeper/big.bin')).equals(big), 'big file intact');
  t.equal(fs.readFileSync(path.join(dest, long), 'utf8'), 'long name');
  t.equal(fs.statSync(path.join(dest, 'run.sh')).mode & 0o777, 0o755);
  t.equal(fs.statSync(path.join(dest, 'secret')).mode & 0o777, 0o600);
  t.equal(fs.statSync(path.join(dest, 'empty')).mode & 0o777, 0o750);
  t.ok(fs.statSync(path.join(dest, 'empty')).isDirectory(), 'empty dir kept');
  t.notOk(fs.existsSync(path.join(dest, 'not-listed.txt')));
  t.equal(Math.floor(fs.statSync(path.join(dest, 'a.txt')).mtimeMs / 1000), Math.floor(fs.statSync(path.join(src, 'a.txt')).mtimeMs / 1000), 'mtime');
  t.same(listAll(dest).filter((x) => x.startsWith('.symrun')), [], 'no staging dir left');
});

t.test('tarCreate {absolute}: names without leading /, no recursion, symlinks as symlinks, GNU tar reads it', async (t) => {
  const src = tmp('stage-abs-');
  fs.mkdirSync(path.join(src, 'd'));
  fs.writeFileSync(path.join(src, 'd/f'), 'F');
  fs.writeFileSync(path.join(src, 'd/unlisted'), 'U');
  fs.symlinkSync('f', path.join(src, 'd/l'));
  const { stream, done } = tarCreate({ absolute: [path.join(src, 'd'), path.join(src, 'd/f'), path.join(src, 'd/l')] });
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(Buffer.from(c as Buffer));
  await done;
  const tarFile = path.join(src, 'out.tar');
  fs.writeFileSync(tarFile, Buffer.concat(chunks));
  const list = (await execa('tar', ['-tvf', tarFile, '--numeric-owner'])).stdout.split('\n');
  const rel = src.slice(1);
  t.same(list.map((l) => l.split(/\s+/).slice(5).join(' ')), [`${rel}/d/`, `${rel}/d/f`, `${rel}/d/l -> f`]);
  t.match(list[1]!, /^-\S+ 0\/0 /, 'numeric owner');
});

t.test('tarCreate output survives a reader that attaches late (small archive, tar already gone)', async (t) => {
  const src = tmp('stage-late-');
  fs.writeFileSync(path.join(src, 'f'), 'late');
  const { stream, done } = tarCreate({ root: src, paths: ['f'] });
  await done; // tar has exited and its stdout has closed: whatever Node would discard is gone by now
  const dest = tmp('stage-late-dest-');
  const r = await tarExtractSafe(stream, dest, { maxBytes: 100 });
  t.same(r.files, ['f']);
  t.equal(fs.readFileSync(path.join(dest, 'f'), 'utf8'), 'late');
});

t.test('a failing stream is a rejection, with nothing written', async (t) => {
  const dest = tmp('stage-err-');
  const s = new Readable({ read() { this.push(entry({ name: 'a', data: 'x' })); this.destroy(new Error('connection reset')); } });
  await t.rejects(tarExtractSafe(s, dest, { maxBytes: 100 }), { code: 'ESYM_STAGE_OUT_REJECTED', message: /connection reset/ });
  t.same(fs.readdirSync(dest), []);
});

t.test('tarCreate fails loudly for a missing file', async (t) => {
  const src = tmp('stage-miss-');
  const { stream, done } = tarCreate({ root: src, paths: ['missing'] });
  stream.resume();
  await t.rejects(done, { code: 'ESYM_STAGE_TAR_FAILED' });
});

t.test('rejects ../ (written by GNU tar with -P --transform)', async (t) => {
  const src = tmp('stage-gnu-');
  fs.writeFileSync(path.join(src, 'evil'), 'EVIL');
  const tarFile = path.join(src, 'e.tar');
  await execa('tar', ['-cf', tarFile, '-P', '-C', src, '--transform', 's,^,../,', 'evil']);
  t.match((await execa('tar', ['-tPf', tarFile])).stdout, /^\.\.\/evil$/);
  await expectReject(t, fs.readFileSync(tarFile), /"\.\.\/evil".*'\.\.'/);
  // in the middle of a path
  await expectReject(t, archive(entry({ name: 'ok.txt', data: 'ok' }), entry({ name: 'a/../../evil', data: 'x' })), /a\/\.\.\/\.\.\/evil/);
});

t.test('rejects an absolute path (GNU tar -P)', async (t) => {
  const src = tmp('stage-gnu-');
  fs.writeFileSync(path.join(src, 'evil'), 'EVIL');
  const tarFile = path.join(src, 'e.tar');
  await execa('tar', ['-cPf', tarFile, path.join(src, 'evil')]);
  await expectReject(t, fs.readFileSync(tarFile), /absolute path/);
});

t.test('rejects symlinks (GNU tar and hand-made), also through pax/long names', async (t) => {
  const src = tmp('stage-gnu-');
  fs.symlinkSync('/etc/passwd', path.join(src, 'link'));
  const tarFile = path.join(src, 'e.tar');
  await execa('tar', ['-cf', tarFile, '-C', src, 'link']);
  await expectReject(t, fs.readFileSync(tarFile), /"link" is a symbolic link \(to "\/etc\/passwd"\)/);
  // classic: symlink to outside, then a file written through it
  await expectReject(t, archive(entry({ name: 'out', type: '2', linkname: '/tmp' }), entry({ name: 'out/pwned', data: 'x' })), /symbolic link/);
  await expectReject(t, archive(paxEntry({ path: 'x'.repeat(200) }), entry({ name: 'short', type: '2', linkname: '/' })), /symbolic link/);
});

t.test('rejects hard links, devices, fifos, unknown types', async (t) => {
  await expectReject(t, archive(entry({ name: 'h', type: '1', linkname: '/etc/shadow' })), /hard link/);
  await expectReject(t, archive(entry({ name: 'dev', type: '3' })), /device/);
  await expectReject(t, archive(entry({ name: 'blk', type: '4' })), /device/);
  await expectReject(t, archive(entry({ name: 'p', type: '6' })), /FIFO/);
  await expectReject(t, archive(entry({ name: 's', type: 'S', data: 'x' })), /unsupported entry type/);
});

t.test('rejects oversize: one big file, or the total', async (t) => {
  await expectReject(t, archive(entry({ name: 'big', data: Buffer.alloc(5000) })), /"big".*over the limit of 4096 bytes/, { maxBytes: 4096 });
  await expectReject(t, archive(entry({ name: 'a', data: Buffer.alloc(3000) }), entry({ name: 'b', data: Buffer.alloc(3000) })), /"b"/, { maxBytes: 4096 });
  // a header claiming a huge size, without the data (never read, never allocated)
  await expectReject(t, archive(header({ name: 'huge', size: 0o77777777777 })), /over the limit/, { maxBytes: 4096 });
});

t.test('rejects corrupt, truncated and tricky archives', async (t) => {
  await expectReject(t, archive(entry({ name: 'a', data: 'x', badChecksum: true })), /checksum/);
  const good = entry({ name: 'a', data: Buffer.alloc(2000, 7) });
  await expectReject(t, good.subarray(0, 1000), /truncated/);
  await expectReject(t, good, /truncated \(no end-of-archive/);
  await expectReject(t, archive(entry({ name: 'x', data: '1' }), entry({ name: 'x/y', data: '2' })), /both a file and a directory/);
  await expectReject(t, archive(paxEntry({ path: '/etc/cron.d/evil' }), entry({ name: 'innocent', data: 'x' })), /absolute path/);
  await expectReject(t, archive(entry({ name: '././@LongLink', type: 'L', data: '../../evil\0' }), entry({ name: 'innocent', data: 'x' })), /'\.\.'/);
});

t.test('never writes through a symlink already in destDir, nor over one', async (t) => {
  const outer = tmp('stage-victim-');
  const victim = path.join(outer, 'victim');
  fs.mkdirSync(victim);
  const dest = path.join(outer, 'dest');
  fs.mkdirSync(dest);
  fs.symlinkSync(victim, path.join(dest, 'data'));
  fs.symlinkSync(path.join(victim, 'f'), path.join(dest, 'result.txt'));
  await expectReject(t, archive(entry({ name: 'data/x', data: 'x' })), /symbolic link/, { dest });
  await expectReject(t, archive(entry({ name: 'result.txt', data: 'x' })), /symbolic link/, { dest });
  t.same(fs.readdirSync(victim), []);
});

t.test('overwrites regular files, creates dirs, applies uid/gid, drops setuid', async (t) => {
  const dest = tmp('stage-ok-');
  fs.writeFileSync(path.join(dest, 'out.txt'), 'old');
  const buf = archive(
    entry({ name: './', type: '5', mode: 0o755 }),
    entry({ name: './out.txt', data: 'new', mode: 0o644 }),
    entry({ name: 'res/', type: '5', mode: 0o700 }),
    entry({ name: 'res/r1', data: 'r1', mode: 0o4755 }),
    entry({ name: 'implicit/dir/f', data: 'f' }),
  );
  const r = await tarExtractSafe(Readable.from([buf]), dest, { maxBytes: 100, uid: 12345, gid: 23456 });
  t.same(r.files.sort(), ['implicit/dir/f', 'out.txt', 'res/r1']);
  t.equal(fs.readFileSync(path.join(dest, 'out.txt'), 'utf8'), 'new');
  const st = fs.statSync(path.join(dest, 'res/r1'));
  t.equal(st.mode & 0o7777, 0o755, 'setuid dropped');
  t.equal(st.uid, 12345);
  t.equal(st.gid, 23456);
  t.equal(fs.statSync(path.join(dest, 'implicit/dir')).uid, 12345, 'created dirs get the owner too');
  t.equal(fs.statSync(path.join(dest, 'res')).mode & 0o777, 0o700);
});

t.test('reads an archive made by busybox-style ustar (GNU tar --format=ustar) from a stream in small chunks', async (t) => {
  const src = tmp('stage-ustar-');
  fs.mkdirSync(path.join(src, 'out'));
  fs.writeFileSync(path.join(src, 'out/r0.txt'), 'rank 0\n');
  fs.writeFileSync(path.join(src, 'out/r1.txt'), 'rank 1\n');
  const tarFile = path.join(src, 'x.tar');
  await execa('tar', ['--format=ustar', '-cf', tarFile, '-C', src, 'out']);
  const data = fs.readFileSync(tarFile);
  const chunks: Buffer[] = [];
  for (let i = 0; i < data.length; i += 77) chunks.push(data.subarray(i, i + 77));
  const dest = tmp('stage-ustar-dest-');
  const r = await tarExtractSafe(Readable.from(chunks), dest, { maxBytes: 1000 });
  t.same(r.files.sort(), ['out/r0.txt', 'out/r1.txt']);
  t.equal(fs.readFileSync(path.join(dest, 'out/r1.txt'), 'utf8'), 'rank 1\n');
});
