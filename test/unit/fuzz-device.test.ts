// Property-based tests (fast-check) of the device layer's text parsers: sysfs values (launcher/src/device/
// pci.ts), relative sysfs paths (sysfs.ts checkRel, linkName), getent passwd lines (inputs.ts) and the
// node's device config node.yaml (nodeconfig.ts loadNodeConfig). Valid values round-trip; hostile ones
// give undefined / the module's SymError, bounded, and never another exception.
import t from 'tap';
import fc from 'fast-check';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseHex, parseIntValue, parseNumaNode, parseDriverOverride, parseCpuList, hex, isPciAddress } from '../../launcher/src/device/pci.js';
import { checkRel, linkName } from '../../launcher/src/device/sysfs.js';
import { parsePasswdLine } from '../../launcher/src/device/inputs.js';
import { loadNodeConfig, nodeConfigProblems } from '../../launcher/src/device/nodeconfig.js';
import { SymError } from '../../launcher/src/errors.js';
const x = (v: number, w: number) => v.toString(16).padStart(w, '0');
import { fuzzParams, caught, hostileString } from '../fixtures/fuzz.js';

t.test('sysfs numbers round-trip: hex, ints, cpu lists', async () => {
  fc.assert(fc.property(fc.nat(0xffffffff), fc.integer({ min: -1, max: 999999999 }), fc.uniqueArray(fc.nat(4095), { maxLength: 40 }), (h, i, cpus) => {
    if (parseHex(`${hex(h, 4)}\n`) !== h) throw new Error(`hex ${h}`);
    if (parseIntValue(`${i}\n`) !== i) throw new Error(`int ${i}`);
    if (parseNumaNode(`${i}\n`) !== (i < 0 ? undefined : i)) throw new Error(`numa ${i}`);
    const sorted = [...cpus].sort((a, b) => a - b);
    const ranges: string[] = [];
    for (let k = 0; k < sorted.length;) {
      let j = k;
      while (j + 1 < sorted.length && sorted[j + 1] === sorted[j]! + 1) j++;
      ranges.push(j > k ? `${sorted[k]}-${sorted[j]}` : String(sorted[k]));
      k = j + 1;
    }
    if (JSON.stringify(parseCpuList(ranges.join(',') + '\n')) !== JSON.stringify(sorted)) throw new Error(`cpulist ${ranges.join(',')}`);
  }), fuzzParams());
});

t.test('sysfs text: hostile values give undefined or a bounded value, never a throw', async () => {
  const text = fc.oneof(hostileString('0x123456789abcdefABCDEF-, \n', 40), fc.constantFrom('0-65535,'.repeat(200) + '0', '0x', '-', '(null)\n'));
  fc.assert(fc.property(fc.option(text, { nil: undefined }), (s) => {
    const h = parseHex(s);
    if (h !== undefined && !(Number.isInteger(h) && h >= 0 && h <= 0xffffffff)) throw new Error(`hex ${h}`);
    const i = parseIntValue(s);
    if (i !== undefined && !Number.isSafeInteger(i)) throw new Error(`int ${i}`);
    parseNumaNode(s);
    parseDriverOverride(s);
    const c = parseCpuList(s);
    if (c !== undefined && (c.length > 65536 || c.some((x) => !(x >= 0 && x <= 65535)))) throw new Error(`cpulist of ${c.length}`);
  }), fuzzParams());
});

t.test('relative sysfs paths: .., absolute and empty parts are refused; link names are one component', async () => {
  const seg = fc.oneof(fc.stringMatching(/^[A-Za-z0-9_:.-]{1,12}$/), fc.constantFrom('..', '.', '', '/'));
  fc.assert(fc.property(fc.array(seg, { minLength: 1, maxLength: 5 }), fc.boolean(), (parts, abs) => {
    const rel = (abs ? '/' : '') + parts.join('/');
    const e = caught(() => checkRel(rel));
    const bad = abs || rel.split('/').some((p) => p === '' || p === '.' || p === '..');
    if (bad !== (e !== undefined)) throw new Error(`${JSON.stringify(rel)}: ${e ? 'refused' : 'accepted'}`);
    const l = linkName(rel);
    if (l !== undefined && l.includes('/')) throw new Error(`linkName ${l}`);
  }), fuzzParams());
});

t.test('getent passwd lines: round-trip, hostile lines undefined', async () => {
  fc.assert(fc.property(fc.stringMatching(/^[a-z_][a-z0-9_-]{0,15}$/), fc.nat(2 ** 31), fc.nat(2 ** 31), hostileString(':x0123456789/\n', 40), (name, uid, gid, junk) => {
    const p = parsePasswdLine(`${name}:x:${uid}:${gid}:gecos:/home/${name}:/bin/sh\n`);
    if (p?.name !== name || p.uid !== uid || p.gid !== gid) throw new Error(JSON.stringify(p));
    const q = parsePasswdLine(junk);
    if (q !== undefined && !(Number.isSafeInteger(q.uid) && Number.isSafeInteger(q.gid) && q.name)) throw new Error(JSON.stringify(q));
  }), fuzzParams());
});

t.test('node.yaml: generated pools read back; hostile files give ESYM_NODE_CONFIG_* only', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fuzz-nodeyaml-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  let n = 0;
  const load = (text: string) => {
    const file = path.join(dir, `n${n++}.yaml`);
    fs.writeFileSync(file, text);
    return loadNodeConfig({ file, env: {}, hostname: 'n7', strictOwner: false });
  };
  const pci = fc.tuple(fc.nat(0xffff), fc.nat(0xff), fc.nat(0x1f), fc.nat(7)).map(([d, b, s, f]) => `${x(d, 4)}:${x(b, 2)}:${x(s, 2)}.${f}`);
  fc.assert(fc.property(fc.uniqueArray(pci, { minLength: 1, maxLength: 4 }), (pfs) => {
    if (!pfs.every(isPciAddress)) throw new Error(`generator: ${pfs}`);
    const cfg = load(`devices:\n  pools:\n    fabric:\n      pfs: [${pfs.map((p) => `"${p}"`).join(', ')}]\n`) as unknown as { devices: { pools: Array<{ name: string; pfs: string[] }> | Record<string, { pfs: string[] }> } };
    const pools = cfg.devices.pools;
    const got = Array.isArray(pools) ? pools.find((p) => p.name === 'fabric')?.pfs : pools.fabric?.pfs;
    if (JSON.stringify(got) !== JSON.stringify(pfs)) throw new Error(`read ${JSON.stringify(got)}`);
  }), fuzzParams(0.25));
  const hostile = fc.oneof(
    fc.tuple(fc.integer({ min: 2, max: 10 }), fc.integer({ min: 2, max: 10 })).map(([levels, k]) => {
      let s = 'x0: &a0 ["0000:3b:00.0"]\n';
      for (let i = 1; i < levels; i++) s += `x${i}: &a${i} [${Array(k).fill(`*a${i - 1}`).join(', ')}]\n`;
      return s + `devices:\n  pools:\n    p:\n      pfs: *a${levels - 1}\n`;
    }),
    fc.integer({ min: 1, max: 3000 }).map((d) => `devices: ${'['.repeat(d)}${']'.repeat(d)}\n`),
    hostileString('devices:pools node: name index binaries\n\t -[]{}&*!"', 60),
    fc.record({ node: fc.anything({ maxDepth: 2 }), devices: fc.anything({ maxDepth: 3 }), binaries: fc.anything({ maxDepth: 1 }) }, { requiredKeys: [] })
      .map((o) => { try { return JSON.stringify(o); } catch { return '{}'; } }),
  );
  fc.assert(fc.property(hostile, (text) => {
    const e = caught(() => load(text));
    if (e !== undefined && !(e instanceof SymError && e.code.startsWith('ESYM_NODE_CONFIG'))) throw e;
  }), fuzzParams(0.5));
  fc.assert(fc.property(fc.anything({ maxDepth: 4, withNullPrototype: true }), (raw) => {
    const e = caught(() => nodeConfigProblems(raw));
    if (e !== undefined) throw e;
  }), fuzzParams());
});
