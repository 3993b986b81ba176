// Property-based tests (fast-check) of the node layer's parsers: node.conf (launcher/src/node/config.ts)
// and the helper's request wire (launcher/src/node/wire.ts, checked by NodeHelper.handle). Valid
// node.conf files read back; hostile ones give ESYM_NODE_CONFIG; hostile requests are refused with a
// SymError before anything is created.
import t from 'tap';
import fc from 'fast-check';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseNodeConfig, NODE_CONFIG_DEFAULTS, type NodeConfig } from '../../launcher/src/node/config.js';
import { NodeHelper } from '../../launcher/src/node/helper.js';
import { SymError } from '../../launcher/src/errors.js';
import { fuzzParams, caught, caughtAsync, hostileString } from '../fixtures/fuzz.js';

const absPath = fc.array(fc.stringMatching(/^[A-Za-z0-9_-]{1,8}$/), { minLength: 1, maxLength: 4 }).map((a) => '/' + a.join('/'));
const ipv4 = fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)).map((a) => a.join('.'));

t.test('node.conf: generated files read back (quotes, export, comments)', async () => {
  fc.assert(fc.property(
    fc.record({
      stateDir: absPath, runtimeDir: absPath, ip: absPath, qemu: absPath, overlayDev: fc.stringMatching(/^[A-Za-z0-9_.-]{1,15}$/),
      nodeAddr: ipv4, vxlanPort: fc.integer({ min: 1, max: 65535 }), vniBase: fc.integer({ min: 0, max: 99999999 }),
      prepare: fc.constantFrom('comment' as const, 'all' as const), allowExtraArgs: fc.boolean(), nodeName: fc.stringMatching(/^[A-Za-z0-9_.-]{1,63}$/),
    }),
    fc.constantFrom('', '"', "'"), fc.boolean(),
    (c, q, exp) => {
      const keys: Record<string, unknown> = {
        SYMRUN_NODE_STATE: c.stateDir, SYMRUN_RUNTIME_DIR: c.runtimeDir, SYMRUN_IP: c.ip, SYMRUN_QEMU: c.qemu, SYMRUN_OVERLAY_DEV: c.overlayDev,
        SYMRUN_NODE_ADDR: c.nodeAddr, SYMRUN_VXLAN_PORT: c.vxlanPort, SYMRUN_VNI_BASE: c.vniBase, SYMRUN_PREPARE: c.prepare,
        SYMRUN_ALLOW_EXTRA_ARGS: c.allowExtraArgs ? 1 : 0, SYMRUN_NODENAME: c.nodeName,
      };
      const text = '# node.conf\n\n' + Object.entries(keys).map(([k, v]) => `${exp ? 'export ' : ''}${k}=${q}${String(v)}${q}`).join('\n') + '\nOTHER_PROLOG_KEY=whatever\n';
      const got = parseNodeConfig(text);
      const want: NodeConfig = { ...NODE_CONFIG_DEFAULTS, ...c };
      if (JSON.stringify(got) !== JSON.stringify(want)) throw new Error(`${JSON.stringify(got)} != ${JSON.stringify(want)}`);
    },
  ), fuzzParams());
});

t.test('node.conf: hostile values give ESYM_NODE_CONFIG or a value that means what the field says', async () => {
  const keys = ['SYMRUN_NODE_STATE', 'SYMRUN_RUNTIME_DIR', 'SYMRUN_OVERLAY_DEV', 'SYMRUN_NODE_ADDR', 'SYMRUN_VXLAN_PORT', 'SYMRUN_VNI_BASE', 'SYMRUN_PREPARE', 'SYMRUN_ALLOW_EXTRA_ARGS', 'SYMRUN_IP', 'SYMRUN_NFT', 'SCONTROL', 'SYMRUN_QEMU', 'SYMRUN_NODENAME'];
  const value = fc.oneof(hostileString('/.a0123456789:- "\'$`;|&', 30), ipv4, fc.tuple(fc.nat(999), fc.nat(999), fc.nat(999), fc.nat(999)).map((a) => a.join('.')), absPath.map((p) => p + '/../etc'));
  fc.assert(fc.property(fc.array(fc.tuple(fc.constantFrom(...keys), value), { maxLength: 6 }), (lines) => {
    const text = lines.map(([k, v]) => `${k}=${v.replace(/\n/g, '')}`).join('\n');
    let c: NodeConfig | undefined;
    const e = caught(() => { c = parseNodeConfig(text, 'node.conf'); });
    if (e !== undefined) {
      if (!(e instanceof SymError) || e.code !== 'ESYM_NODE_CONFIG') throw e;
      return;
    }
    for (const f of ['stateDir', 'runtimeDir', 'ip', 'nft', 'scontrol', 'qemu'] as const) {
      if (!c![f].startsWith('/') || c![f].split('/').includes('..') || /\s/.test(c![f])) throw new Error(`${f}=${JSON.stringify(c![f])} accepted`);
    }
    if (c!.nodeAddr && !c!.nodeAddr.split('.').every((o) => Number(o) <= 255)) throw new Error(`nodeAddr ${c!.nodeAddr} accepted`);
    if (!(c!.vxlanPort >= 1 && c!.vxlanPort <= 65535)) throw new Error(`vxlanPort ${c!.vxlanPort}`);
  }), fuzzParams());
});

t.test('node helper wire: hostile requests are refused with a SymError, nothing is created', async () => {
  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'fuzz-node-'));
  t.teardown(() => fs.rmSync(stateDir, { recursive: true, force: true }));
  const made: string[] = [];
  const helper = new NodeHelper({
    cfg: { ...NODE_CONFIG_DEFAULTS, stateDir },
    node: 'n1',
    facts: async () => ({ uid: 1000, user: 'u', state: 'RUNNING', nodes: ['n1'] }) as never,
    net: {
      createTap: (async (_c: unknown, _r: unknown, tap: string) => { made.push(tap); }) as never,
      deleteLink: (async (_c: unknown, tap: string) => { made.push(`-${tap}`); }) as never,
      applyRules: (async () => { made.push('rules'); }) as never,
    },
  });
  const args = fc.oneof(
    fc.anything({ maxDepth: 2 }),
    fc.record({ job: fc.oneof(fc.constant('42'), fc.anything({ maxDepth: 1 }), hostileString('0123456789./', 12)), vm: fc.anything({ maxDepth: 1 }), ip: fc.oneof(fc.constant('198.18.0.5'), fc.anything({ maxDepth: 0 })), standby: fc.anything({ maxDepth: 0 }) }, { requiredKeys: [] }),
  );
  await fc.assert(fc.asyncProperty(fc.oneof(fc.constantFrom('attach', 'detach', 'info'), fc.string({ maxLength: 10 })), args, fc.integer({ min: -1, max: 70000 }), async (op, a, uid) => {
    const e = await caughtAsync(() => helper.handle(uid, op, a));
    if (!(e instanceof SymError)) throw e ?? new Error(`${op} ${JSON.stringify(a)} accepted without a job record`);
    if (made.length) throw new Error(`created ${made.join(',')}`);
  }), fuzzParams());
});
