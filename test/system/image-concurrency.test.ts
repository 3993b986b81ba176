// Two processes building the same image at once (fresh cache): both get the same complete image,
// and no temp directory or half image is left behind.
import t from 'tap';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { repoRoot } from '../../launcher/src/defaults.js';

const mod = path.join(repoRoot(), 'dist/launcher/src/image/index.js');
const script = `
import { buildImage } from ${JSON.stringify(mod)};
const info = await buildImage();
process.stdout.write(JSON.stringify(info));
`;

function builder(cache: string): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve) => {
    const c = spawn(process.execPath, ['--input-type=module', '-e', script], { env: { ...process.env, SYMRUN_CACHE_DIR: cache } });
    let out = '', err = '';
    c.stdout.on('data', (b) => { out += b; });
    c.stderr.on('data', (b) => { err += b; });
    c.on('close', (code) => resolve({ code, out, err }));
  });
}

t.test('concurrent builds into an empty cache', async (t) => {
  const cache = fs.mkdtempSync(path.join(os.tmpdir(), 'symrun-imgcache-'));
  t.teardown(() => fs.rmSync(cache, { recursive: true, force: true }));
  const [a, b] = await Promise.all([builder(cache), builder(cache)]);
  t.equal(a.code, 0, a.err);
  t.equal(b.code, 0, b.err);
  const ia = JSON.parse(a.out), ib = JSON.parse(b.out);
  t.equal(ia.dir, ib.dir, 'same image');
  t.ok(ia.builtNow || ib.builtNow, 'one of them built it');
  const left = fs.readdirSync(path.join(cache, 'images')).filter((n) => n !== '.hash-memo.json');
  t.same(left, [ia.hash], 'only the final image is left');
  t.same(fs.readdirSync(ia.dir).sort(), ['initrd.img', 'manifest.json', 'root.ext4', 'vmlinuz']);
});

t.test('an aborted build leaves nothing behind', async (t) => {
  const cache = fs.mkdtempSync(path.join(os.tmpdir(), 'symrun-imgcache-'));
  t.teardown(() => fs.rmSync(cache, { recursive: true, force: true }));
  const prev = process.env.SYMRUN_CACHE_DIR;
  process.env.SYMRUN_CACHE_DIR = cache;
  t.teardown(() => { if (prev === undefined) delete process.env.SYMRUN_CACHE_DIR; else process.env.SYMRUN_CACHE_DIR = prev; });
  const { buildImage } = await import('../../launcher/src/image/index.js');
  const ac = new AbortController();
  const steps: string[] = [];
  const p = buildImage({ signal: ac.signal, onProgress: (s) => { steps.push(s); if (s.startsWith('root: shared-library')) ac.abort(); } });
  const e = await p.then(() => undefined, (e: unknown) => e) as { code?: string };
  t.equal(e?.code, 'ESYM_IMAGE_ABORTED');
  t.same(fs.readdirSync(path.join(cache, 'images')).filter((n) => n !== '.hash-memo.json'), [], 'no temp dir, no image');
});
