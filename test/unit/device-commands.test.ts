import t from 'tap';
import { isUnsupported, showCommand, vfResetCommands, vfSetCommands } from '../../launcher/src/device/vfcmd.js';

t.test('Ethernet VF: MAC, spoof-check, trust, one command each, with what may fail', async (t) => {
  const c = vfSetCommands('/sbin/ip', 'ens1f0', 3, { type: 'ethernet', mac: 'c2:00:49:9c:04:42', spoofCheck: true, trust: false });
  t.same(c.map((x) => x.argv), [
    ['/sbin/ip', 'link', 'set', 'dev', 'ens1f0', 'vf', '3', 'mac', 'c2:00:49:9c:04:42'],
    ['/sbin/ip', 'link', 'set', 'dev', 'ens1f0', 'vf', '3', 'spoofchk', 'on'],
    ['/sbin/ip', 'link', 'set', 'dev', 'ens1f0', 'vf', '3', 'trust', 'off'],
  ]);
  t.same(c.map((x) => [x.what, x.required, x.unsupportedOk]), [['mac', true, false], ['spoofchk', true, false], ['trust', false, true]]);
  const loose = vfSetCommands('/usr/sbin/ip', 'eth2', 0, { type: 'ethernet', mac: 'c2:00:00:0c:00:40', spoofCheck: false, trust: true });
  t.same(loose.map((x) => x.argv.slice(7)), [['mac', 'c2:00:00:0c:00:40'], ['spoofchk', 'off'], ['trust', 'on']]);
  t.same(loose.map((x) => [x.required, x.unsupportedOk]), [[true, false], [false, true], [true, false]], 'trust on is required when asked; spoofchk off may be unsupported');
});

t.test('InfiniBand VF: node_guid and port_guid through the PF\'s IPoIB netdev', async (t) => {
  const c = vfSetCommands('/sbin/ip', 'ib0', 1, { type: 'infiniband', nodeGuid: 'c2:00:00:09:33:80:88:40', portGuid: 'c2:80:00:09:33:80:88:40' });
  t.same(c.map((x) => x.argv), [['/sbin/ip', 'link', 'set', 'dev', 'ib0', 'vf', '1', 'node_guid', 'c2:00:00:09:33:80:88:40', 'port_guid', 'c2:80:00:09:33:80:88:40']]);
  t.equal(c[0]!.required, true);
});

t.test('release: Ethernet back to neutral, InfiniBand untouched; nothing required', async (t) => {
  t.same(vfResetCommands('/sbin/ip', 'ens1f0', 2, 'ethernet').map((x) => [x.argv.slice(4).join(' '), x.required]), [
    ['ens1f0 vf 2 mac 00:00:00:00:00:00', false], ['ens1f0 vf 2 trust off', false], ['ens1f0 vf 2 spoofchk on', false],
  ]);
  t.same(vfResetCommands('/sbin/ip', 'ib0', 2, 'infiniband'), []);
});

t.test('bad arguments never reach a command line', async (t) => {
  const eth = (mac: string) => vfSetCommands('/sbin/ip', 'ens1f0', 0, { type: 'ethernet', mac, spoofCheck: true, trust: false });
  t.throws(() => eth('C2:00:00:0C:00:40'), { code: 'ESYM_DEVICE_ARGS', field: 'MAC' });
  t.throws(() => eth('c3:00:00:0c:00:40'), { code: 'ESYM_DEVICE_ARGS', fix: /unicast/ });
  t.throws(() => eth('00:00:00:00:00:00'), { code: 'ESYM_DEVICE_ARGS' });
  t.throws(() => eth('c2:00:00:0c:00:40 trust on'), { code: 'ESYM_DEVICE_ARGS' });
  t.throws(() => vfSetCommands('ip', 'ens1f0', 0, { type: 'ethernet', mac: 'c2:00:00:0c:00:40', spoofCheck: true, trust: false }), { code: 'ESYM_DEVICE_ARGS', field: 'binaries.ip' });
  t.throws(() => vfSetCommands('/sbin/ip', 'ens1f0 up', 0, { type: 'ethernet', mac: 'c2:00:00:0c:00:40', spoofCheck: true, trust: false }), { code: 'ESYM_DEVICE_ARGS', field: 'PF interface' });
  t.throws(() => vfSetCommands('/sbin/ip', 'averyveryverylongname', 0, { type: 'ethernet', mac: 'c2:00:00:0c:00:40', spoofCheck: true, trust: false }), { code: 'ESYM_DEVICE_ARGS', field: 'PF interface' });
  t.throws(() => vfSetCommands('/sbin/ip', 'ib0', -1, { type: 'infiniband', nodeGuid: 'c2:00:00:09:33:80:88:40', portGuid: 'c2:80:00:09:33:80:88:40' }), { code: 'ESYM_DEVICE_ARGS', field: 'VF index' });
  t.throws(() => vfSetCommands('/sbin/ip', 'ib0', 0, { type: 'infiniband', nodeGuid: 'c2:00:00:09:33:80:88', portGuid: 'c2:80:00:09:33:80:88:40' }), { code: 'ESYM_DEVICE_ARGS', field: 'node GUID' });
});

t.test('ip\'s "not supported" answer and the printable form', async (t) => {
  t.ok(isUnsupported('RTNETLINK answers: Operation not supported\n'));
  t.notOk(isUnsupported('RTNETLINK answers: Invalid argument\n'));
  t.equal(showCommand(['/sbin/ip', 'link', 'set', 'dev', 'ens1f0', 'vf', '0', 'mac', 'c2:00:00:0c:00:40']), '/sbin/ip link set dev ens1f0 vf 0 mac c2:00:00:0c:00:40');
  t.equal(showCommand(['echo', 'a b', "it's"]), `echo 'a b' 'it'\\''s'`);
});
