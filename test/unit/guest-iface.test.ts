// guest/src/iface.ts canSend against a fake /sys/class/net: up (IFF_UP) with carrier sends even while
// the kernel's linkwatch has not yet turned operstate to "up" (the migration's reconfigure phase waits
// for this, not for operstate).
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { canSend } from '../../guest/src/iface.js';

function nic(t: { teardown(fn: () => void): void }, files: Record<string, string>): string {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'sysnet-'));
  t.teardown(() => fs.rmSync(root, { recursive: true, force: true }));
  fs.mkdirSync(path.join(root, 'eth1'));
  for (const [k, v] of Object.entries(files)) fs.writeFileSync(path.join(root, 'eth1', k), `${v}\n`);
  return root;
}

t.test('operstate lagging behind: up + carrier can send', async (t) => {
  t.equal(canSend('eth1', nic(t, { operstate: 'down', flags: '0x1003', carrier: '1' })), true);
});
t.test('operstate up is enough', async (t) => {
  t.equal(canSend('eth1', nic(t, { operstate: 'up', flags: '0x1003' })), true);
});
t.test('no carrier, or not up (IFF_UP clear), or no such interface: cannot send', async (t) => {
  t.equal(canSend('eth1', nic(t, { operstate: 'down', flags: '0x1003', carrier: '0' })), false);
  t.equal(canSend('eth1', nic(t, { operstate: 'down', flags: '0x1002', carrier: '1' })), false);
  t.equal(canSend('eth1', nic(t, { operstate: 'down', flags: 'garbage' })), false);
  t.equal(canSend('eth9', nic(t, {})), false);
});
