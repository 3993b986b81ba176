import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import os from 'node:os';
import { loadConfig } from '../../launcher/src/config/index.js';
import { SymError, EXIT, renderError } from '../../launcher/src/errors.js';
import { fixture, yamlFile, thrown } from '../fixtures/config/helpers.js';

const noEnv = {};
const load = (yaml: string) => thrown(() => loadConfig({ file: yamlFile(yaml), env: noEnv }));

/** Common shape of every config error. */
function isConfigError(t: any, e: any, code: string): void {
  t.type(e, SymError);
  t.equal(e.code, code);
  t.equal(e.exitCode, EXIT.usage, 'exit code 2');
  t.ok(typeof e.fix === 'string' && e.fix.length > 0, 'has a fix');
}

t.test('missing file: ESYM_CONFIG_NOT_FOUND with the path and a fix', async (t) => {
  const missing = path.join(path.dirname(yamlFile('')), 'nope.yaml');
  const e = thrown(() => loadConfig({ file: missing, env: noEnv }));
  isConfigError(t, e, 'ESYM_CONFIG_NOT_FOUND');
  t.equal(e.field, '--config');
  t.equal(e.value, missing);
  t.match(e.message, missing);
  t.match(e.fix, /--config/);

  const viaEnv = thrown(() => loadConfig({ env: { SYMRUN_CONFIG: missing } }));
  isConfigError(t, viaEnv, 'ESYM_CONFIG_NOT_FOUND');
  t.equal(viaEnv.field, 'SYMRUN_CONFIG', 'names where the path came from');
  t.match(viaEnv.fix, /SYMRUN_CONFIG/);
});

t.test('a directory instead of a file', async (t) => {
  const dir = path.dirname(yamlFile(''));
  const e = thrown(() => loadConfig({ file: dir, env: noEnv }));
  isConfigError(t, e, 'ESYM_CONFIG_NOT_FOUND');
  t.match(e.fix, path.join(dir, 'symrun.yaml'));
});

t.test('YAML syntax error: file:line:col and the reason', async (t) => {
  const file = fixture('bad-syntax.yaml');
  const e = thrown(() => loadConfig({ file, env: noEnv }));
  isConfigError(t, e, 'ESYM_CONFIG_SYNTAX');
  t.match(e.message, new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:\\d+:\\d+: YAML syntax error: \\S`));
  t.match(e.message, /Nested mappings|indent/i, "the parser's reason");
  t.ok(e.details.line >= 3 && e.details.line <= 4, 'points at the offending lines');
  t.equal(e.details.file, file);
  t.match(e.fix, /line \d+/);
  t.ok(typeof e.details.excerpt === 'string' && e.details.excerpt.includes('memory: 512M'), 'keeps the excerpt');

  const tabs = load('vm:\n\tcpus: 1\n');
  isConfigError(t, tabs, 'ESYM_CONFIG_SYNTAX');
  t.match(tabs.message, /:2:\d+: /);
  t.match(tabs.fix, /spaces, not tabs/);

  const dup = load('accel: kvm\naccel: tcg\n');
  isConfigError(t, dup, 'ESYM_CONFIG_SYNTAX');
  t.match(dup.message, /:2:\d+: .*unique/);
  t.match(dup.fix, /same key/);

  const unclosed = load('hosts: [a, b\nspares: 1\n');
  isConfigError(t, unclosed, 'ESYM_CONFIG_SYNTAX');
});

t.test('unknown key: suggestion from suggest(), dotted path, line number', async (t) => {
  const file = fixture('typo-key.yaml');
  const e = thrown(() => loadConfig({ file, env: noEnv }));
  isConfigError(t, e, 'ESYM_CONFIG_INVALID');
  t.match(e.message, "unknown key 'memroy' in vm; did you mean 'memory'?");
  t.match(e.message, `${file}:4:3:`, 'line and column of the key');
  t.equal(e.field, 'vm.memroy');
  t.equal(e.value, '1G');
  t.equal(e.fix, "rename 'memroy' to 'memory'");
  t.equal(e.details.line, 4);

  const top = load('acel: kvm\n');
  t.match(top.message, "unknown key 'acel' at the top level; did you mean 'accel'?");
  t.equal(top.field, 'acel');

  const none = load('interconnect:\n  zzzzzzzz: 1\n');
  t.match(none.message, "unknown key 'zzzzzzzz' in interconnect");
  t.notMatch(none.message, /did you mean/);
  t.match(none.fix, /remove 'zzzzzzzz'.*type, model, addresses, pool/, 'lists the allowed keys');
});

t.test('enum: allowed values and a guess', async (t) => {
  const e = load('accel: kmv\n');
  isConfigError(t, e, 'ESYM_CONFIG_INVALID');
  t.equal(e.field, 'accel');
  t.equal(e.value, 'kmv');
  t.match(e.message, 'accel must be one of auto, kvm, tcg');
  t.match(e.fix, 'use one of: auto, kvm, tcg');
  t.match(e.fix, "did you mean 'kvm'?");

  const model = load('interconnect: { model: e1000 }\n');
  t.equal(model.field, 'interconnect.model');
  t.match(model.fix, 'virtio-net-pci, e1000e');
});

t.test('type mismatch says what type was expected', async (t) => {
  const e = load('vm:\n  cpus: two\n');
  isConfigError(t, e, 'ESYM_CONFIG_INVALID');
  t.equal(e.field, 'vm.cpus');
  t.equal(e.value, 'two');
  t.match(e.message, 'vm.cpus must be a whole number, not a string ("two")');
  t.match(e.message, ':2:9:');
  t.match(e.fix, 'a whole number from 1 to 256');

  const frac = load('vm: { cpus: 1.5 }\n');
  t.match(frac.message, 'not a number with a fraction');

  const empty = load('vm:\n  cpus:\n');
  t.match(empty.message, 'vm.cpus is empty; it must be a whole number');

  const list = load('hosts: node01\n');
  t.equal(list.field, 'hosts');
  t.match(list.message, 'hosts must be a list, not a string');
  t.match(list.fix, '[node01, node02]');

  const bool = load('mpi: { tagOutput: "yes" }\n');
  t.equal(bool.field, 'mpi.tagOutput');
  t.match(bool.message, 'must be true or false');

  const section = load('vm: 4\n');
  t.equal(section.field, 'vm');
  t.match(section.message, 'vm must be a mapping (key: value), not a whole number (4)');

  const top = load('- a\n- b\n');
  isConfigError(t, top, 'ESYM_CONFIG_INVALID');
  t.equal(top.field, '(top level)');
  t.match(top.message, 'the top level must be a mapping');
});

t.test('integer ranges', async (t) => {
  const cases: Array<[string, string, unknown, RegExp]> = [
    ['vm: { cpus: 0 }', 'vm.cpus', 0, /at least 1/],
    ['vm: { cpus: 257 }', 'vm.cpus', 257, /at most 256/],
    ['local: 65', 'local', 65, /at most 64/],
    ['local: -1', 'local', -1, /at least 0/],
    ['spares: -2', 'spares', -2, /at least 0/],
    ['mpi: { np: 0 }', 'mpi.np', 0, /at least 1/],
    ['mpi: { slotsPerVm: 0 }', 'mpi.slotsPerVm', 0, /at least 1/],
  ];
  for (const [yaml, field, value, msg] of cases) {
    const e = load(yaml + '\n');
    isConfigError(t, e, 'ESYM_CONFIG_INVALID');
    t.equal(e.field, field, yaml);
    t.equal(e.value, value, yaml);
    t.match(e.message, msg, yaml);
    t.match(e.fix, /whole number/, yaml);
  }
});

t.test('memory: form, whole MiB, minimum 64 MiB', async (t) => {
  const small = load('vm:\n  memory: 32M\n');
  isConfigError(t, small, 'ESYM_CONFIG_INVALID');
  t.equal(small.field, 'vm.memory');
  t.equal(small.value, '32M');
  t.match(small.message, /too small.*minimum is 64 MiB/);
  t.match(small.message, ':2:11:');
  t.match(small.fix, 'at least 64M');

  const bare = load('vm: { memory: 63 }\n');
  t.match(bare.message, 'too small');

  const form = load('vm: { memory: 2 GB of RAM }\n');
  t.equal(form.field, 'vm.memory');
  t.equal(form.value, '2 GB of RAM');
  t.match(form.fix, /512M, 2G/);

  const frac = load('vm: { memory: 1000K }\n');
  t.match(frac.message, 'not a whole number of MiB');
  t.match(frac.fix, /1M/);

  const maxBytes = load('share: { maxBytes: lots }\n');
  t.equal(maxBytes.field, 'share.maxBytes');
  t.match(maxBytes.fix, /bytes/);
});

t.test('PCI addresses: pattern, dotted path with index', async (t) => {
  const e = load('interconnect:\n  type: vfio\n  pool: ["0000:3b:02.0", "3b:02.1"]\n');
  isConfigError(t, e, 'ESYM_CONFIG_INVALID');
  t.equal(e.field, 'interconnect.pool[1]');
  t.equal(e.value, '3b:02.1');
  t.match(e.message, ':3:26:');
  t.match(e.fix, '0000:3b:00.1');

  const byHost = load('interconnect:\n  type: vfio\n  addresses: { node01: "0000:3b:00.8" }\n');
  t.equal(byHost.field, 'interconnect.addresses.node01');
  t.equal(byHost.value, '0000:3b:00.8');

  const dotted = load('interconnect:\n  type: vfio\n  addresses: { node01.example.com: "x" }\n');
  t.equal(dotted.field, 'interconnect.addresses["node01.example.com"]');

  const badHost = load('interconnect:\n  type: vfio\n  addresses: { "node 1": "0000:3b:00.1" }\n');
  t.match(badHost.message, "invalid key 'node 1' in interconnect.addresses");
  t.match(badHost.fix, 'host name');

  const dup = load('interconnect: { type: vfio, pool: ["0000:3b:02.0", "0000:3b:02.0"] }\n');
  t.equal(dup.field, 'interconnect.pool[1]');
  t.match(dup.message, 'twice');
  t.match(dup.fix, 'remove the duplicate');
});

t.test('interconnect: vfio needs addresses or pool; type-specific keys', async (t) => {
  const e = thrown(() => loadConfig({ file: fixture('vfio-no-device.yaml'), env: noEnv }));
  isConfigError(t, e, 'ESYM_CONFIG_INVALID');
  t.equal(e.field, 'interconnect.type');
  t.equal(e.value, 'vfio');
  t.match(e.message, 'neither interconnect.addresses nor interconnect.pool');
  t.match(e.message, ':3:9:');
  t.match(e.fix, 'addresses');
  t.match(e.fix, 'pool');

  t.match(e.fix, 'Slurm');
  const inJob = loadConfig({ file: fixture('vfio-no-device.yaml'), env: { SLURM_JOB_ID: '4711' } });
  t.equal(inJob.interconnect.type, 'vfio', 'inside a Slurm job the node layer may give the VFs: no device needed in the config');
  t.equal(inJob.interconnect.type === 'vfio' ? inJob.interconnect.pool : 'not vfio', undefined);

  const emptyAddr = load('interconnect: { type: vfio, addresses: {} }\n');
  t.equal(emptyAddr.field, 'interconnect.addresses');

  const emptyPool = load('interconnect: { type: vfio, pool: [] }\n');
  t.equal(emptyPool.field, 'interconnect.pool');
  t.match(emptyPool.message, 'must not be empty');

  const model = load('interconnect: { type: vfio, pool: ["0000:3b:02.0"], model: e1000e }\n');
  t.equal(model.field, 'interconnect.model');
  t.match(model.message, 'only to type: emulated');

  const emulated = load('interconnect:\n  addresses: { node01: "0000:3b:00.1" }\n');
  t.equal(emulated.field, 'interconnect.addresses');
  t.match(emulated.message, 'only used with type: vfio');
  t.match(emulated.fix, "type: vfio");

  const missingHost = load('interconnect: { type: vfio, addresses: { node01: "0000:3b:00.1" } }\nhosts: [node01, node02]\n');
  t.equal(missingHost.field, 'hosts[1]');
  t.equal(missingHost.value, 'node02');
  t.match(missingHost.fix, 'node02');
});

t.test('network: subnet and interface names', async (t) => {
  const bad = [
    ['network: { subnet: 10.0.0.0/8 }', 'network.subnet', '10.0.0.0/8'],
    ['network: { subnet: 10.0.0.0/30 }', 'network.subnet', '10.0.0.0/30'],
    ['network: { subnet: 300.1.1.0/24 }', 'network.subnet', '300.1.1.0/24'],
    ['network: { subnet: dhcp }', 'network.subnet', 'dhcp'],
    ['network: { guestIfName: averyveryverylongname }', 'network.guestIfName', 'averyveryverylongname'],
    ['network: { guestIfName: "eth/0" }', 'network.guestIfName', 'eth/0'],
    ['network: { guestIfName: ".." }', 'network.guestIfName', '..'],
    ['network: { bridge: "br 0" }', 'network.bridge', 'br 0'],
  ];
  for (const [yaml, field, value] of bad) {
    const e = load(yaml + '\n');
    isConfigError(t, e, 'ESYM_CONFIG_INVALID');
    t.equal(e.field, field, yaml);
    t.equal(e.value, value, yaml);
  }
  t.match(load('network: { subnet: dhcp }\n').fix, /'auto' or an IPv4 network.*\/16 to \/28/);
  t.match(load('network: { guestIfName: averyveryverylongname }\n').fix, /15/);

  const hostBits = load('network: { subnet: 198.18.7.5/24 }\n');
  t.match(hostBits.message, 'host bits');
  t.equal(hostBits.fix, 'use 198.18.7.0/24');

  t.equal(loadConfig({ file: yamlFile('network: { subnet: 10.1.0.0/16, guestIfName: ib-fab.0 }\n'), env: noEnv }).network.subnet, '10.1.0.0/16');
});

t.test('several problems: the first in file order, and how many more', async (t) => {
  const e = thrown(() => loadConfig({ file: fixture('several-errors.yaml'), env: noEnv }));
  isConfigError(t, e, 'ESYM_CONFIG_INVALID');
  t.equal(e.field, 'accel', 'line 1 comes first');
  t.match(e.message, 'and 2 more problems');
  t.equal(e.details.problems.length, 3);
  t.same(e.details.problems.map((p: any) => p.field), ['accel', 'vm.cpus', 'local']);
  t.same(e.details.problems.map((p: any) => p.line), [1, 3, 4]);
  for (const p of e.details.problems) t.ok(p.fix && p.message, `${p.field} has message and fix`);
});

t.test('CLI overrides are validated the same way and named by option', async (t) => {
  const cases: Array<[object, string, unknown, RegExp]> = [
    [{ memory: '32M' }, '--memory', '32M', /too small/],
    [{ memory: 'lots' }, '--memory', 'lots', /is not valid/],
    [{ local: 'three' }, '--local', 'three', /must be a whole number, not "three"/],
    [{ local: '100' }, '--local', 100, /at most 64/],
    [{ cpus: 0 }, '--cpus', 0, /at least 1/],
    [{ np: '0' }, '-np', 0, /at least 1/],
    [{ slotsPerVm: 'x' }, '--slots-per-vm', 'x', /whole number/],
    [{ spares: '-1' }, '--spares', -1, /at least 0/],
    [{ accel: 'fast' }, '--accel', 'fast', /one of auto, kvm, tcg/],
    [{ subnet: '1.2.3.0/8' }, '--subnet', '1.2.3.0/8', /is not valid/],
    [{ hosts: ['ok', 'bad host'] }, '--hosts', 'bad host', /is not valid/],
    [{ mca: [['bad-name!', '1']] }, '--mca', 'bad-name!', /invalid key 'bad-name!'/],
  ];
  for (const [overrides, option, value, msg] of cases) {
    const e = thrown(() => loadConfig({ env: noEnv, overrides }));
    isConfigError(t, e, 'ESYM_CONFIG_INVALID');
    t.equal(e.field, option, JSON.stringify(overrides));
    t.same(e.value, value, JSON.stringify(overrides));
    t.match(e.message, msg, JSON.stringify(overrides));
    t.match(e.message, new RegExp(`^${option.replace(/[-]/g, '\\-')}`), 'message starts with the option');
  }
});

t.test('an override error comes before file errors; a good override hides a bad file value', async (t) => {
  const file = yamlFile('accel: kmv\nvm: { memory: 1M }\n');
  const e = thrown(() => loadConfig({ file, env: noEnv, overrides: { cpus: 'two' } }));
  t.equal(e.field, '--cpus');
  t.match(e.message, 'and 2 more problems');
  const ok = loadConfig({ file, env: noEnv, overrides: { accel: 'tcg', memory: '1G' } });
  t.equal(ok.vm.memoryMiB, 1024);
});

t.test('the CLI may rename options (optionNames)', async (t) => {
  const e = thrown(() => loadConfig({ env: noEnv, overrides: { np: 0 }, optionNames: { np: '--np' } }));
  t.equal(e.field, '--np');
});

t.test('renderError shows message, field, value, fix and code', async (t) => {
  const s = renderError(thrown(() => loadConfig({ file: fixture('typo-key.yaml'), env: noEnv })));
  t.match(s, "symrun: error: ");
  t.match(s, 'field: vm.memroy');
  t.match(s, 'value: "1G"');
  t.match(s, "fix:   rename 'memroy' to 'memory'");
  t.match(s, 'code:  ESYM_CONFIG_INVALID');
  const json = JSON.parse(renderError(thrown(() => loadConfig({ file: fixture('several-errors.yaml'), env: noEnv })), { json: true }));
  t.equal(json.error.details.problems.length, 3);
});

t.test('unreadable file', { skip: process.getuid?.() === 0 ? 'root reads anything' : false }, async (t) => {
  const f = yamlFile('accel: kvm\n');
  fs.chmodSync(f, 0o000);
  const e = thrown(() => loadConfig({ file: f, env: noEnv }));
  isConfigError(t, e, 'ESYM_CONFIG_UNREADABLE');
  t.match(e.fix, 'permissions');
});

t.test('regression (found by fast-check): an alias bomb is ESYM_CONFIG_SYNTAX, not a ReferenceError', async (t) => {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'cfg-bomb-'));
  t.teardown(() => fs.rmSync(d, { recursive: true, force: true }));
  const file = path.join(d, 'symrun.yaml');
  fs.writeFileSync(file, 'a0: &a0 ["lol"]\na1: &a1 [*a0, *a0]\na2: &a2 [*a1, *a1]\na3: &a3 [*a2, *a2]\na4: &a4 [*a3, *a3]\nvm:\n  extraArgs: *a4\n');
  try {
    loadConfig({ file, env: { HOME: d }, cwd: d });
    t.fail('accepted');
  } catch (e) {
    t.ok(e instanceof SymError, 'SymError');
    t.equal((e as SymError).code, 'ESYM_CONFIG_SYNTAX');
    t.match((e as SymError).message, /aliases/);
  }
});
