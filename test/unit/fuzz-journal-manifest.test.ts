// Property-based tests (fast-check) of the records symrun reads back from disk after a crash or in a
// new allocation: the operation journal (launcher/src/protocol/journal.ts readJournal) and the
// checkpoint manifest (launcher/src/checkpoint/manifest.ts verifyCheckpoint). Written records read
// back; hostile files (torn lines, garbage, wrong types, deep nesting, paths out of the checkpoint,
// links, devices) never throw anything but the module's verdict and never hang.
import t from 'tap';
import fc from 'fast-check';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import { FileJournal, readJournal, type JournalRecord } from '../../launcher/src/protocol/journal.js';
import { verifyCheckpoint, writeManifest, CKPT_FORMAT, CKPT_FORMAT_VERSION, MANIFEST_FILE, type CheckpointManifest } from '../../launcher/src/checkpoint/manifest.js';
import { SymError } from '../../launcher/src/errors.js';
import { fuzzParams, caught, caughtAsync, hostileString } from '../fixtures/fuzz.js';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'fuzz-records-'));
t.teardown(() => fs.rmSync(root, { recursive: true, force: true }));
let n = 0;
const json = fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.parse(JSON.stringify(v)) as unknown);

// ---------- journal ----------
const record: fc.Arbitrary<JournalRecord> = fc.record({
  op: fc.constantFrom('m1', 'm2', 'c1'), kind: fc.constantFrom('migration', 'checkpoint'), phase: fc.string({ maxLength: 10 }),
  state: fc.record({ phase: fc.string({ maxLength: 10 }) }) as unknown as fc.Arbitrary<JournalRecord['state']>,
  params: fc.option(fc.dictionary(fc.string({ maxLength: 6 }).filter((k) => k !== '__proto__'), json, { maxKeys: 3 }), { nil: undefined }),
}, { requiredKeys: ['op', 'kind', 'phase', 'state'] });

t.test('journal: the last record of every op reads back, with the first params kept', async () => {
  await fc.assert(fc.asyncProperty(fc.array(record, { maxLength: 10 }), fc.string({ maxLength: 30 }), async (recs, torn) => {
    const file = path.join(root, `j${n++}`, 'journal.jsonl');
    const j = new FileJournal(file);
    for (const r of recs) await j.write(r);
    fs.appendFileSync(file, torn.replace(/\n/g, ' ')); // a torn last line
    const got = readJournal(file);
    const want = new Map<string, JournalRecord>();
    for (const r of recs) want.set(r.op, { ...r, params: r.params ?? want.get(r.op)?.params });
    for (const [op, r] of want) {
      const g = got.get(op);
      const { ts: _ts, ...rest } = g ?? {} as JournalRecord;
      if (JSON.stringify({ ...rest, params: rest.params }) !== JSON.stringify({ ...r, params: r.params })
        && JSON.stringify(g?.state) !== JSON.stringify(r.state)) throw new Error(`${op}: ${JSON.stringify(g)} != ${JSON.stringify(r)}`);
      if (JSON.stringify(g?.params) !== JSON.stringify(r.params)) throw new Error(`${op} params ${JSON.stringify(g?.params)} != ${JSON.stringify(r.params)}`);
    }
  }), fuzzParams(0.5));
});

t.test('journal: hostile files never throw', async () => {
  const line = fc.oneof(
    hostileString('{}[]":,opstatekindphase\n', 50),
    fc.anything({ maxDepth: 3 }).map((v) => { try { return JSON.stringify(v) ?? ''; } catch { return ''; } }),
    fc.record({ op: fc.anything({ maxDepth: 1 }), state: fc.anything({ maxDepth: 1 }), params: fc.anything({ maxDepth: 2 }) }, { requiredKeys: [] }).map((o) => { try { return JSON.stringify(o); } catch { return '{}'; } }),
    fc.constantFrom('{"op":"__proto__","state":1}', '{"op":"constructor","state":{},"params":null}', '{"op":"x","state":1,"params":"s"}'),
    fc.integer({ min: 1, max: 20000 }).map((d) => `{"op":"x","state":${'['.repeat(d)}${']'.repeat(d)}}`),
  );
  fc.assert(fc.property(fc.array(line, { maxLength: 8 }), (lines) => {
    const file = path.join(root, `h${n++}.jsonl`);
    fs.writeFileSync(file, lines.join('\n'));
    const e = caught(() => readJournal(file));
    fs.rmSync(file);
    if (e !== undefined) throw e;
  }), fuzzParams());
  t.equal(readJournal(path.join(root, 'missing')).size, 0, 'a missing journal is empty');
});

// ---------- checkpoint manifest ----------
function manifest(vms: Array<{ name: string; file: string; data: Buffer }>): CheckpointManifest {
  return {
    format: CKPT_FORMAT, formatVersion: CKPT_FORMAT_VERSION, symrunVersion: '0', name: 'c', jobId: 'j', createdAt: new Date(0).toISOString(),
    command: { app: ['a'], cwd: '/' }, hosts: [], image: { hash: 'h', kernel: 'k', initrd: 'i', rootfs: 'r' },
    vms: vms.map((v) => ({ name: v.name, host: 'h', file: v.file, size: v.data.length, sha256: crypto.createHash('sha256').update(v.data).digest('hex'), spec: {} as never, device: { id: 'd', netdevId: 'n', model: 'm', mac: 'm', bus: 'b', tap: 't' }, network: {} })),
  };
}

t.test('manifest: a written checkpoint verifies complete; a changed byte makes it corrupt', async () => {
  await fc.assert(fc.asyncProperty(
    fc.uniqueArray(fc.stringMatching(/^vm[0-9]{1,3}$/), { minLength: 1, maxLength: 4 }), fc.uint8Array({ minLength: 1, maxLength: 500 }), fc.nat(),
    async (names, bytes, flip) => {
      const dir = path.join(root, `ck${n++}`);
      fs.mkdirSync(dir);
      const vms = names.map((name) => ({ name, file: `${name}.state`, data: Buffer.from(bytes) }));
      for (const v of vms) fs.writeFileSync(path.join(dir, v.file), v.data);
      writeManifest(dir, manifest(vms));
      const r = await verifyCheckpoint(dir);
      if (!r.ok || r.status !== 'complete' || JSON.stringify(r.manifest?.vms.map((v) => v.name)) !== JSON.stringify(names)) throw new Error(JSON.stringify(r));
      const f = path.join(dir, vms[0]!.file);
      const b = fs.readFileSync(f);
      b[flip % b.length] ^= 1;
      fs.writeFileSync(f, b);
      const r2 = await verifyCheckpoint(dir);
      if (r2.ok || r2.status !== 'corrupt') throw new Error(`a flipped byte verified: ${JSON.stringify(r2)}`);
    },
  ), fuzzParams(0.25));
});

t.test('manifest: hostile manifests and state files give a verdict (never a throw, a hang or a read outside)', async () => {
  const file = fc.oneof(
    fc.constantFrom('', '.', '..', '../outside', '/etc/passwd', 'a/../../x', 'sub', 'dev', 'link', 'zero', 'vm1.state', 'sub/../vm1.state', '\u0000', 'é'),
    hostileString('./\\vmstate', 20),
  );
  const hostileVm = fc.record({ name: fc.anything({ maxDepth: 0 }), file: fc.oneof(file, fc.anything({ maxDepth: 0 })), size: fc.oneof(fc.constant(0), fc.nat(), fc.anything({ maxDepth: 0 })), sha256: fc.oneof(fc.constant(crypto.createHash('sha256').digest('hex')), fc.anything({ maxDepth: 0 })) }, { requiredKeys: [] });
  const text = fc.oneof(
    fc.array(hostileVm, { maxLength: 4 }).map((vms) => JSON.stringify({ format: CKPT_FORMAT, formatVersion: CKPT_FORMAT_VERSION, jobId: 'j', createdAt: 'x', vms })),
    fc.anything({ maxDepth: 3 }).map((v) => { try { return JSON.stringify(v) ?? ''; } catch { return ''; } }),
    hostileString('{}[]":,formatvmsfile', 40),
    fc.integer({ min: 1, max: 20000 }).map((d) => '['.repeat(d) + ']'.repeat(d)),
  );
  await fc.assert(fc.asyncProperty(text, async (m) => {
    const outer = path.join(root, `hm${n++}`);
    const dir = path.join(outer, 'ckpt');
    fs.mkdirSync(path.join(dir, 'sub'), { recursive: true });
    fs.writeFileSync(path.join(outer, 'outside'), 'secret');
    fs.symlinkSync('/dev/zero', path.join(dir, 'zero')); // a reader that follows this never ends
    fs.symlinkSync('../outside', path.join(dir, 'link'));
    fs.writeFileSync(path.join(dir, MANIFEST_FILE), m);
    const e = await caughtAsync(async () => {
      const r = await verifyCheckpoint(dir, { hashes: true });
      if (!['complete', 'incomplete', 'corrupt'].includes(r.status)) throw new Error(`status ${r.status}`);
    });
    if (e !== undefined && !(e instanceof SymError)) throw e;
  }), fuzzParams(0.5));
});
