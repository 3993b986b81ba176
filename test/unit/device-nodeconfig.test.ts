import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { indexFromName, loadNodeConfig, requireNodeIndex } from '../../launcher/src/device/nodeconfig.js';

function file(t: { teardown(fn: () => void): void }, text: string, mode = 0o644): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'symrun-nodecfg-'));
  t.teardown(() => fs.rmSync(d, { recursive: true, force: true }));
  const f = path.join(d, 'node.yaml');
  fs.writeFileSync(f, text, { mode });
  fs.chmodSync(f, mode);
  return f;
}
const load = (f: string, env: NodeJS.ProcessEnv = {}) => loadNodeConfig({ file: f, env, hostname: 'n12.cluster.example', strictOwner: false });
const err = (fn: () => unknown): any => { try { fn(); } catch (e) { return e; } throw new Error('did not throw'); };

const FULL = `# a site's node config
node:
  name: gpu07
  index: 107
binaries:
  ip: /usr/sbin/ip
devices:
  stateDir: /run/symrun-node/claims
  pools:
    fabric:
      pfs: ["0000:3b:00.0", "0000:3b:00.1"]
      trust: false
    ib:
      vfs: ["0000:5e:00.1"]
      spoofCheck: false
`;

t.test('a full node config, with defaults for what it leaves out', async (t) => {
  const c = load(file(t, FULL));
  t.same(c.node, { name: 'gpu07', index: 107, indexFrom: 'config' });
  t.same(c.binaries, { ip: '/usr/sbin/ip', getent: '/usr/bin/getent', scontrol: '/usr/bin/scontrol' });
  t.same(c.devices.root, '/');
  t.same(c.devices.pools, [
    { name: 'fabric', pfs: ['0000:3b:00.0', '0000:3b:00.1'], vfs: [], spoofCheck: true, trust: false },
    { name: 'ib', pfs: [], vfs: ['0000:5e:00.1'], spoofCheck: false, trust: false },
  ]);
});

t.test('node name and index: config, else SLURMD_NODENAME / host name and the number it ends with', async (t) => {
  const f = file(t, 'devices: {}\n');
  t.same(load(f).node, { name: 'n12', index: 12, indexFrom: 'name' });
  t.same(load(f, { SLURMD_NODENAME: 'node-0042' }).node, { name: 'node-0042', index: 42, indexFrom: 'name' });
  const none = load(f, { SLURMD_NODENAME: 'login' });
  t.same(none.node, { name: 'login', indexFrom: 'none' });
  t.throws(() => requireNodeIndex(none), { code: 'ESYM_NODE_CONFIG_INVALID', field: 'node.index', fix: /set node\.index in .*node\.yaml/ });
  t.same(load(f, { SLURMD_NODENAME: 'n5000' }).node.indexFrom, 'none', 'beyond 4095: not usable as an index');
  t.same([indexFromName('n1'), indexFromName('rack3-node17'), indexFromName('ctl')], [1, 17, undefined]);
});

t.test('errors name the key, its line and column, the value and the fix', async (t) => {
  const cases: Array<[string, string, string | RegExp, RegExp]> = [
    ['devices:\n  pool:\n    a: { vfs: ["0000:3b:02.0"] }\n', 'devices.pool', /:2:3: unknown key 'pool' in devices; did you mean 'pools'\?/, /rename 'pool' to 'pools'/],
    ['devices:\n  pools:\n    fabric:\n      vfs: ["0000:3B:02.0"]\n', 'devices.pools.fabric.vfs[0]', /:4:13: devices\.pools\.fabric\.vfs\[0\] must be a PCI address like 0000:3b:02\.0 \(lower case, domain included\), not "0000:3B:02\.0"/, /lspci -D/],
    ['devices:\n  pools:\n    a: { pfs: ["0000:3b:00.0"] }\n    b: { vfs: ["0000:3b:00.0"] }\n', 'devices.pools.b.vfs[0]', /0000:3b:00\.0 is listed twice \(devices\.pools\.a\.pfs\[0\] and devices\.pools\.b\.vfs\[0\]\)/, /belongs to one pool/],
    ['devices:\n  pools:\n    empty: {}\n', 'devices.pools.empty', /pool empty has no devices/, /pfs .*vfs/],
    ['binaries:\n  ip: ip\n', 'binaries.ip', /:2:7: binaries\.ip must be an absolute path, not "ip"/, /never searches PATH/],
    ['devices:\n  stateDir: /\n', 'devices.stateDir', /must be an absolute directory path other than \//, /\/run\/symrun-node\/claims/],
    ['devices:\n  stateDir: /var/lib/../../etc\n', 'devices.stateDir', /must be an absolute directory path/, /e\.g\./],
    ['node:\n  index: 5000\n', 'node.index', /node\.index must be a whole number 0\.\.4095, not 5000/, /its own number/],
    ['devices:\n  pools:\n    "bad name": { vfs: ["0000:3b:02.0"] }\n', 'devices.pools["bad name"]', /invalid pool name 'bad name'/, /letters, digits/],
    ['devices:\n  pools:\n    a: { vfs: ["0000:3b:02.0"], trust: yes }\n', 'devices.pools.a.trust', /must be true or false, not "yes"/, /trust: false is the default/],
    ['- just\n- a list\n', '(top level)', /the top level must be a mapping/, /What a site configures/],
  ];
  for (const [text, field, msg, fix] of cases) {
    const e = err(() => load(file(t, text)));
    t.equal(e.code, 'ESYM_NODE_CONFIG_INVALID', field);
    t.equal(e.field, field);
    t.match(e.message, msg);
    t.match(e.fix, fix);
    t.equal(e.exitCode, 2);
  }
  const many = err(() => load(file(t, 'node: { index: -1 }\nbinaries: { ip: x }\n')));
  t.match(many.message, /\(and 1 more problem\)/);
  t.equal(many.details.problems.length, 2);
});

t.test('YAML syntax, a missing file, an unsafe file', async (t) => {
  const syn = err(() => load(file(t, 'devices:\n  pools:\n\tfabric: {}\n')));
  t.equal(syn.code, 'ESYM_NODE_CONFIG_SYNTAX');
  t.match(syn.message, /node\.yaml:3:\d+: YAML syntax error/);
  const dup = err(() => load(file(t, 'devices: {}\ndevices: {}\n')));
  t.equal(dup.code, 'ESYM_NODE_CONFIG_SYNTAX');
  const gone = err(() => loadNodeConfig({ env: { SYMRUN_NODE_CONFIG: '/nonexistent/node.yaml' }, strictOwner: false }));
  t.same([gone.code, gone.field], ['ESYM_NODE_CONFIG_NOT_FOUND', 'SYMRUN_NODE_CONFIG']);
  const open = file(t, FULL, 0o666);
  const unsafe = err(() => loadNodeConfig({ file: open, env: {}, strictOwner: true }));
  t.equal(unsafe.code, 'ESYM_NODE_CONFIG_UNSAFE');
  t.match(unsafe.message, /is writable by group or others \(mode 666\): root will not follow it/);
  t.match(unsafe.fix, /chown root:root .* && chmod 0644/);
});

t.test('regression (found by fast-check): an alias bomb in node.yaml is ESYM_NODE_CONFIG_SYNTAX, not a ReferenceError', async (t) => {
  const f = file(t, 'x0: &a0 ["0000:3b:00.0"]\nx1: &a1 [*a0, *a0, *a0, *a0, *a0, *a0, *a0]\nx2: &a2 [*a1, *a1, *a1, *a1, *a1, *a1, *a1]\ndevices:\n  pools:\n    p:\n      pfs: *a2\n');
  const e = err(() => load(f));
  t.equal(e.code, 'ESYM_NODE_CONFIG_SYNTAX');
  t.match(e.message, /aliases/);
});
