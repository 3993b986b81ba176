// Property-based tests (fast-check) of the stage-out tar extractor (launcher/src/stage/untar.ts), which
// reads archives sent back by guests: generated trees round-trip through tarCreate; generated hostile
// archives (.., absolute paths, symlinks out then a file through them, hard links, huge sizes,
// truncation, random bytes) are refused with ESYM_STAGE_OUT_REJECTED, and nothing is ever written
// outside the target directory (nor inside it when refused).
import t from 'tap';
import fc from 'fast-check';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { tarCreate, tarExtractSafe } from '../../launcher/src/stage/index.js';
import { SymError } from '../../launcher/src/errors.js';
import { entry, paxEntry, archive, type RawEntry } from '../fixtures/stage/tarwriter.js';
import { fuzzParams, caughtAsync } from '../fixtures/fuzz.js';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'fuzz-untar-'));
t.teardown(() => fs.rmSync(root, { recursive: true, force: true }));
let n = 0;

/** every path under d (links not followed), with file contents */
function snapshot(d: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (rel: string) => {
    for (const name of fs.readdirSync(path.join(d, rel)).sort()) {
      const r = rel ? `${rel}/${name}` : name;
      const st = fs.lstatSync(path.join(d, r));
      if (st.isSymbolicLink()) out[r] = `-> ${fs.readlinkSync(path.join(d, r))}`;
      else if (st.isDirectory()) { out[r + '/'] = ''; walk(r); } else out[r] = fs.readFileSync(path.join(d, r), 'latin1');
    }
  };
  walk('');
  return out;
}

/** a fresh case: outer/ holds dest/ (the target) and outside/ (a place links point at) */
function fresh(): { outer: string; dest: string; outside: string } {
  const outer = path.join(root, String(n++));
  const dest = path.join(outer, 'dest');
  const outside = path.join(outer, 'outside');
  fs.mkdirSync(dest, { recursive: true });
  fs.mkdirSync(outside);
  fs.writeFileSync(path.join(outside, 'secret'), 'keep');
  return { outer, dest, outside };
}

const seg = fc.stringMatching(/^[A-Za-z0-9_][A-Za-z0-9_. -]{0,11}$/).filter((s) => s !== '.' && s !== '..' && !s.startsWith('.symrun-stage-out.'));
const relPath = fc.array(seg, { minLength: 1, maxLength: 3 }).map((a) => a.join('/'));

t.test('tarCreate → tarExtractSafe round-trips a generated tree', async () => {
  await fc.assert(fc.asyncProperty(
    fc.dictionary(relPath, fc.uint8Array({ maxLength: 700 }), { minKeys: 1, maxKeys: 6 }),
    async (tree) => {
      // drop paths that are a prefix directory of another path (a file cannot also be a directory)
      const keys = Object.keys(tree).filter((k) => !Object.keys(tree).some((o) => o.startsWith(k + '/')));
      const { outer, dest } = fresh();
      const src = path.join(outer, 'src');
      for (const k of keys) {
        fs.mkdirSync(path.dirname(path.join(src, k)), { recursive: true });
        fs.writeFileSync(path.join(src, k), tree[k]!);
      }
      const { stream, done } = tarCreate({ root: src, paths: keys });
      await tarExtractSafe(stream, dest, { maxBytes: 1 << 20 });
      await done;
      const a = snapshot(src);
      const b = snapshot(dest);
      if (JSON.stringify(a) !== JSON.stringify(b)) throw new Error(`extracted ${JSON.stringify(Object.keys(b))}, sent ${JSON.stringify(Object.keys(a))}`);
    },
  ), fuzzParams(0.25));
});

// hostile entries
const evilName = fc.oneof(
  relPath.map((p) => `../${p}`),
  relPath.map((p) => `${p}/../../${p}`),
  relPath.map((p) => `/${p}`),
  fc.constantFrom('..', '../outside/secret', '/etc/passwd', 'a/../../outside/x', './../x', '.symrun-stage-out.x/y', 'a//..//..//b'),
  fc.string({ unit: 'grapheme', minLength: 1, maxLength: 30 }),
  relPath,
);
const rawEntry: fc.Arbitrary<RawEntry> = fc.oneof(
  fc.record({ name: evilName, type: fc.constantFrom('0', '5', '7', '\0'), data: fc.string({ maxLength: 40 }) }),
  fc.record({ name: evilName, type: fc.constant('2'), linkname: fc.constantFrom('../outside', '/', '/etc', '..', 'x', '../../outside/secret') }),
  fc.record({ name: evilName, type: fc.constant('1'), linkname: fc.constantFrom('../outside/secret', '/etc/passwd', 'x') }),
  fc.record({ name: evilName, type: fc.constantFrom('3', '4', '6', 'Z', 'L', 'K', 'g', 'x'), data: fc.string({ maxLength: 20 }) }),
  fc.record({ name: evilName, type: fc.constant('0'), size: fc.constantFrom(8 ** 11 - 1, 1 << 30, 2000), data: fc.constant('x') }),
  fc.record({ name: evilName, data: fc.string({ maxLength: 20 }), badChecksum: fc.constant(true) }),
);
const part = fc.oneof(
  { weight: 5, arbitrary: rawEntry.map((e) => entry(e)) },
  { weight: 1, arbitrary: fc.dictionary(fc.constantFrom('path', 'size', 'linkpath', 'mtime'), fc.oneof(evilName, fc.constantFrom('-1', '1e30', 'NaN', '99999999999999999999'))).map((r) => paxEntry(r)) },
  { weight: 1, arbitrary: fc.uint8Array({ minLength: 1, maxLength: 1024 }).map((b) => Buffer.from(b)) },
);

async function extractHostile(buf: Buffer, cut: number | undefined, links: boolean): Promise<void> {
  const { outer, dest } = fresh();
  if (links) {
    // links already in the target directory pointing out of it (as a previous job could leave)
    fs.symlinkSync('../outside', path.join(dest, 'out'));
    fs.symlinkSync('../outside/secret', path.join(dest, 'secretlink'));
  }
  const before = snapshot(outer);
  const data = cut === undefined ? buf : buf.subarray(0, cut % (buf.length + 1));
  let ok = false;
  const e = await caughtAsync(async () => { await tarExtractSafe(Readable.from([data]), dest, { maxBytes: 4096, maxEntries: 50 }); ok = true; });
  if (!ok && !(e instanceof SymError && e.code === 'ESYM_STAGE_OUT_REJECTED')) throw e;
  const after = snapshot(outer);
  for (const [k, v] of Object.entries(before)) if (after[k] !== v) throw new Error(`${k} changed (${JSON.stringify(v)} -> ${JSON.stringify(after[k])})`);
  for (const k of Object.keys(after)) {
    if (k in before) continue;
    if (!ok) throw new Error(`refused, yet ${k} was written`);
    if (!k.startsWith('dest/')) throw new Error(`${k} written outside the target directory`);
  }
  if (fs.readFileSync(path.join(outer, 'outside/secret'), 'utf8') !== 'keep') throw new Error('wrote through a link');
}

t.test('hostile archives: refused with ESYM_STAGE_OUT_REJECTED, nothing written outside the target', async () => {
  await fc.assert(fc.asyncProperty(
    fc.array(part, { minLength: 1, maxLength: 5 }), fc.option(fc.nat(), { nil: undefined }), fc.boolean(), fc.boolean(),
    async (parts, cut, links, ended) => {
      await extractHostile(ended ? archive(...parts) : Buffer.concat(parts), cut, links);
    },
  ), fuzzParams(0.5));
});

t.test('symlink out, then a file through it: refused, the outside untouched', async () => {
  await fc.assert(fc.asyncProperty(relPath, fc.constantFrom('../outside', '/tmp', '..', '../../'), fc.boolean(), async (p, target, viaDir) => {
    const parts = [
      entry({ name: 'link', type: '2', linkname: target }),
      entry({ name: viaDir ? `link/${p}` : 'link', data: 'pwned' }),
    ];
    await extractHostile(archive(...parts), undefined, false);
    await extractHostile(archive(entry({ name: `out/${p}`, data: 'pwned' })), undefined, true);
    await extractHostile(archive(entry({ name: 'secretlink', data: 'pwned' })), undefined, true);
  }), fuzzParams(0.25));
});
