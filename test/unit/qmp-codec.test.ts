import t from 'tap';
import { encodeCommand, QmpDecoder, QmpProtocolError } from '../../launcher/src/qmp/codec.js';

t.test('encodeCommand builds one JSON line', async (t) => {
  const line = encodeCommand('sym-1', 'device_del', { id: 'nic0' });
  t.equal(line.endsWith('\n'), true);
  t.equal(line.indexOf('\n'), line.length - 1, 'exactly one line');
  t.same(JSON.parse(line), { execute: 'device_del', arguments: { id: 'nic0' }, id: 'sym-1' });
  t.same(JSON.parse(encodeCommand('x', 'query-status')), { execute: 'query-status', id: 'x' }, 'no arguments key when none');
  t.same(JSON.parse(encodeCommand('x', 'query-status', {})), { execute: 'query-status', id: 'x' });
  t.throws(() => encodeCommand('x', ''));
  // strings with newlines are escaped, so the line stays one line
  const l2 = encodeCommand('y', 'human-monitor-command', { 'command-line': 'a\nb' });
  t.equal(l2.split('\n').length, 2);
});

t.test('decoder classifies greeting, return, error, event', async (t) => {
  const d = new QmpDecoder();
  const msgs = d.feed(
    '{"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7}, "package": "Debian"}, "capabilities": ["oob"]}}\r\n' +
    '{"return": {}, "id": "sym-1"}\r\n' +
    '{"id": "sym-2", "error": {"class": "DeviceNotFound", "desc": "Device \'x\' not found"}}\r\n' +
    '{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "DEVICE_DELETED", "data": {"device": "nic0", "path": "/machine/peripheral/nic0"}}\r\n' +
    '{"return": [1,2]}\r\n');
  t.same(msgs, [
    { kind: 'greeting', version: { major: 7, minor: 2, micro: 22 }, package: 'Debian', capabilities: ['oob'] },
    { kind: 'return', id: 'sym-1', value: {} },
    { kind: 'error', id: 'sym-2', errorClass: 'DeviceNotFound', desc: "Device 'x' not found" },
    { kind: 'event', event: 'DEVICE_DELETED', data: { device: 'nic0', path: '/machine/peripheral/nic0' }, timestamp: { seconds: 1, microseconds: 2 } },
    { kind: 'return', id: undefined, value: [1, 2] },
  ]);
});

t.test('decoder reassembles lines split across chunks, including inside UTF-8', async (t) => {
  const d = new QmpDecoder();
  const full = Buffer.from('{"return": "héllo ✓", "id": "a"}\n{"event": "STOP", "timestamp": {"seconds": 0, "microseconds": 0}}\n');
  const got = [];
  for (let i = 0; i < full.length; i++) got.push(...d.feed(full.subarray(i, i + 1)));
  t.same(got.map((m) => m.kind), ['return', 'event']);
  t.equal((got[0] as { value: unknown }).value, 'héllo ✓');
  t.equal(d.buffered, 0);
});

t.test('decoder rejects garbage with a typed error and keeps going', async (t) => {
  const d = new QmpDecoder();
  try {
    d.feed('{"return": 1, "id": "ok"}\nnot json at all\n');
    t.fail('should throw');
  } catch (e) {
    t.ok(e instanceof QmpProtocolError);
    t.equal((e as QmpProtocolError).code, 'ESYM_QMP_PROTOCOL');
    t.same((e as QmpProtocolError).messages.map((m) => m.kind), ['return'], 'good messages before the bad line are kept');
  }
  t.throws(() => d.feed('[1,2,3]\n'), { code: 'ESYM_QMP_PROTOCOL' });
  t.throws(() => d.feed('{"foo": 1}\n'), { code: 'ESYM_QMP_PROTOCOL' });
  t.throws(() => d.feed('{"QMP": {"version": {}}}\n'), { code: 'ESYM_QMP_PROTOCOL' });
  t.same(d.feed('{"return": 2}\n').length, 1, 'still usable afterwards');
});

t.test('decoder rejects oversize lines', async (t) => {
  const d = new QmpDecoder({ maxLineBytes: 64 });
  t.throws(() => d.feed('{"return": "' + 'x'.repeat(100) + '"}\n'), { code: 'ESYM_QMP_PROTOCOL', message: /longer than 64 bytes/ });
  // oversize without a newline yet: throws as soon as the limit is crossed, and skips the rest of that line
  t.throws(() => d.feed('{"return": "' + 'y'.repeat(100)), { code: 'ESYM_QMP_PROTOCOL' });
  t.same(d.feed('yyyy"}\n{"return": 3}\n'), [{ kind: 'return', id: undefined, value: 3 }]);
});

t.test('regression (found by fast-check): a good line before an unterminated oversize line in one chunk is kept', async (t) => {
  const dec = new QmpDecoder({ maxLineBytes: 256 });
  try {
    dec.feed('{"QMP":{"version":{"qemu":{"major":0,"minor":0,"micro":0},"package":""},"capabilities":[]}}\n' + 'x'.repeat(300));
    t.fail('oversize line accepted');
  } catch (e) {
    t.ok(e instanceof QmpProtocolError, 'QmpProtocolError');
    t.equal((e as QmpProtocolError).messages.length, 1, 'the greeting is handed back with the error');
    t.equal((e as QmpProtocolError).messages[0]?.kind, 'greeting');
  }
});
