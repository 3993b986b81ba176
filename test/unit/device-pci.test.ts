import t from 'tap';
import { checkPciAddress, classKind, isPciAddress, parseCpuList, parseDriverOverride, parseHex, parseNumaNode } from '../../launcher/src/device/pci.js';

t.test('PCI addresses: only the canonical form; the error spells it', async (t) => {
  for (const a of ['0000:3b:02.0', '0000:00:1f.7', 'ffff:ff:1f.7']) t.ok(isPciAddress(a), a);
  for (const a of ['3b:02.0', '0000:3B:02.0', '0000:3b:20.0', '0000:3b:02.8', '0000:3b:02.0 ', '../0000:3b:02.0', '0000:3b:02.0/driver', '', 42]) t.notOk(isPciAddress(a), String(a));
  t.throws(() => checkPciAddress('3B:02.1', '--pci'), { code: 'ESYM_DEVICE_ARGS', field: '--pci', fix: 'write it as 0000:3b:02.1' });
  t.throws(() => checkPciAddress('../../etc/passwd', '--pci'), { code: 'ESYM_DEVICE_ARGS', fix: /lspci -D/ });
  t.equal(checkPciAddress('0000:3b:02.1', '--pci'), '0000:3b:02.1');
});

t.test('sysfs values as the kernel prints them', async (t) => {
  t.equal(parseHex('0x8086\n'), 0x8086);
  t.equal(parseHex('0x020700\n'), 0x020700);
  t.equal(parseHex('8086\n'), undefined);
  t.equal(parseNumaNode('-1\n'), undefined);
  t.equal(parseNumaNode('1\n'), 1);
  t.equal(parseNumaNode(undefined), undefined);
  t.equal(parseDriverOverride('(null)\n'), undefined);
  t.equal(parseDriverOverride('vfio-pci\n'), 'vfio-pci');
  t.equal(parseDriverOverride('\n'), undefined);
  t.same(parseCpuList('0-3,8-11\n'), [0, 1, 2, 3, 8, 9, 10, 11]);
  t.same(parseCpuList('5\n'), [5]);
  t.same(parseCpuList('\n'), []);
  t.equal(parseCpuList('3-1'), undefined);
  t.equal(parseCpuList('a-b'), undefined);
});

t.test('class codes', async (t) => {
  t.equal(classKind(0x020000), 'ethernet');
  t.equal(classKind(0x020700), 'infiniband');
  t.equal(classKind(0x060400), 'bridge');
  t.equal(classKind(0x060000), 'bridge');
  t.equal(classKind(0x010802), 'other');
  t.equal(classKind(undefined), 'other');
});

t.test('regression (found by fast-check): overlapping cpu ranges cannot add up past 65536 CPUs', async (t) => {
  t.equal(parseCpuList('0-65535,'.repeat(200) + '0'), undefined, '200 x 0-65535 is malformed, not 13 million entries');
  t.equal(parseCpuList('0-65535')?.length, 65536, 'the whole range once is fine');
});
