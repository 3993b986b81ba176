// Kernel-module closure resolution (launcher/src/image/modules.ts): pure functions over modules.dep text.
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { repoRoot } from '../../launcher/src/defaults.js';
import { SymError } from '../../launcher/src/errors.js';
import { moduleClosure, moduleName, parseModulesBuiltin, parseModulesDep, renderModulesDep } from '../../launcher/src/image/modules.js';

const depText = fs.readFileSync(path.join(repoRoot(), 'test/fixtures/image/modules.dep.debian-6.1'), 'utf8');
const LAB_ORDER = ['crc32c_generic', 'virtio_pci', 'virtio_blk', 'virtio_net', 'virtio_console', 'e1000e', 'ext4', 'overlay'];

/** violations of "every module appears after all modules it depends on" */
function topoViolations(order: string[], deps: Map<string, string[]>): string[] {
  const pos = new Map(order.map((p, i) => [p, i]));
  const bad: string[] = [];
  for (const p of order) {
    for (const d of deps.get(p) ?? []) {
      if (!pos.has(d)) bad.push(`${moduleName(d)} (needed by ${moduleName(p)}) is missing`);
      else if (pos.get(d)! > pos.get(p)!) bad.push(`${moduleName(d)} loads after ${moduleName(p)}`);
    }
  }
  return bad;
}

t.test('moduleName strips the path and compression, and normalises dashes', async (t) => {
  t.equal(moduleName('kernel/fs/ext4/ext4.ko'), 'ext4');
  t.equal(moduleName('kernel/crypto/crc32c_generic.ko.xz'), 'crc32c_generic');
  t.equal(moduleName('kernel/drivers/foo/snd-hda-intel.ko.zst'), 'snd_hda_intel');
  t.equal(moduleName('x.ko.gz'), 'x');
});

t.test('parseModulesDep', async (t) => {
  const d = parseModulesDep('# comment\nkernel/a.ko: kernel/b.ko kernel/c.ko\n\nkernel/b.ko:\nkernel/c.ko:   \ngarbage line\n');
  t.same([...d.keys()], ['kernel/a.ko', 'kernel/b.ko', 'kernel/c.ko']);
  t.same(d.get('kernel/a.ko'), ['kernel/b.ko', 'kernel/c.ko']);
  t.same(d.get('kernel/b.ko'), []);
  t.same(d.get('kernel/c.ko'), []);
});

t.test('closure of the lab-measured initrd list (Debian 6.1 modules.dep)', async (t) => {
  const deps = parseModulesDep(depText);
  const { order, builtin } = moduleClosure(depText, LAB_ORDER);
  t.same(builtin, []);
  t.same(new Set(order.map(moduleName)), new Set([...LAB_ORDER, 'virtio', 'virtio_ring', 'virtio_pci_legacy_dev',
    'virtio_pci_modern_dev', 'failover', 'net_failover', 'crc16', 'mbcache', 'jbd2']));
  t.equal(order.length, new Set(order).size, 'no module twice');
  t.same(topoViolations(order, deps), [], 'dependencies load first');
  // requested modules keep their relative order
  const req = order.map(moduleName).filter((n) => LAB_ORDER.includes(n));
  t.same(req, LAB_ORDER);
  t.equal(moduleName(order[0]!), 'crc32c_generic');
  t.same(order.slice(1, 5).map(moduleName), ['virtio_ring', 'virtio', 'virtio_pci_modern_dev', 'virtio_pci_legacy_dev'],
    'modules.dep lists dependencies so the last one loads first');
});

t.test('closure of the network modules pulls in tls for bonding', async (t) => {
  const { order } = moduleClosure(depText, ['virtio_net', 'e1000e', 'bonding', 'failover', 'net_failover']);
  t.same(order.map(moduleName), ['virtio_ring', 'virtio', 'failover', 'net_failover', 'virtio_net', 'e1000e', 'tls', 'bonding']);
  t.same(topoViolations(order, parseModulesDep(depText)), []);
});

t.test('names with dashes, and compressed modules', async (t) => {
  const text = 'kernel/a/foo-bar.ko.xz: kernel/b/dep-one.ko.xz\nkernel/b/dep-one.ko.xz:\n';
  const { order } = moduleClosure(text, ['foo-bar']);
  t.same(order, ['kernel/b/dep-one.ko.xz', 'kernel/a/foo-bar.ko.xz']);
  t.same(moduleClosure(text, ['foo_bar']).order, order);
  const rendered = renderModulesDep(parseModulesDep(text), order, (p) => p.replace(/\.xz$/, ''));
  t.equal(rendered, 'kernel/b/dep-one.ko:\nkernel/a/foo-bar.ko: kernel/b/dep-one.ko\n');
});

t.test('built-in modules are reported, not loaded', async (t) => {
  const builtin = parseModulesBuiltin('kernel/drivers/virtio/virtio_pci.ko\nkernel/fs/ext4/ext4.ko\n');
  const { order, builtin: hit } = moduleClosure('kernel/x.ko:\n', ['ext4', 'x'], builtin);
  t.same(order, ['kernel/x.ko']);
  t.same(hit, ['ext4']);
});

t.test('a module that does not exist is a SymError', async (t) => {
  const e = t.throws(() => moduleClosure(depText, ['virtio_pci', 'nosuchmod'])) as SymError;
  t.type(e, SymError);
  t.equal(e.code, 'ESYM_IMAGE_MODULE_MISSING');
  t.equal(e.value, 'nosuchmod');
  t.match(e.fix, /scripts\/setup/);
});

t.test('a dependency that modules.dep does not list is a SymError', async (t) => {
  const e = t.throws(() => moduleClosure('kernel/a.ko: kernel/gone.ko\n', ['a'])) as SymError;
  t.equal(e.code, 'ESYM_IMAGE_MODULE_MISSING');
  t.match(e.message, /gone\.ko/);
});

t.test('a dependency cycle is reported, not an endless loop', async (t) => {
  const e = t.throws(() => moduleClosure('kernel/a.ko: kernel/b.ko\nkernel/b.ko: kernel/a.ko\n', ['a'])) as SymError;
  t.equal(e.code, 'ESYM_IMAGE_MODULE_CYCLE');
  t.match(e.message, /a -> b -> a/);
});
