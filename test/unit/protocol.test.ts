import t from 'tap';
import { parseGuestFrame, parseHostFrame, LineDecoder, ProtocolError, encodeFrame, exitStatus } from '../../guest/protocol/index.js';

t.test('guest frames are schema-checked (untrusted input)', async (t) => {
  t.same(parseGuestFrame('{"t":"out","seq":1,"sid":"s1","fd":1,"data":"aGk="}'), { t: 'out', seq: 1, sid: 's1', fd: 1, data: 'aGk=' });
  t.throws(() => parseGuestFrame('not json'), ProtocolError);
  t.throws(() => parseGuestFrame('{"t":"out","seq":1,"sid":"s1","fd":3,"data":""}'), ProtocolError, 'bad fd');
  t.throws(() => parseGuestFrame('{"t":"out","seq":1,"sid":"s1","fd":1,"data":"@@"}'), ProtocolError, 'not base64');
  t.throws(() => parseGuestFrame('{"t":"exit","seq":1,"sid":"s1","code":300,"signal":null}'), ProtocolError, 'code out of range');
  t.throws(() => parseGuestFrame('{"t":"res","id":"q1","ok":true,"value":1,"extra":1}'), ProtocolError, 'unexpected field');
  t.throws(() => parseGuestFrame('{"t":"evil"}'), ProtocolError);
  t.throws(() => parseGuestFrame('{"t":"sync","id":"x","v":1,"agent":{"version":"1","hostname":"h","pid":-1,"bootId":"b","uptime":1}}'), ProtocolError, 'negative pid');
  t.throws(() => parseGuestFrame('{"t":"out","seq":1,"sid":"s1","fd":1,"data":"aaaa"}', 2), ProtocolError, 'data over the limit');
});

t.test('host frames are checked by the guest too', async (t) => {
  t.equal(parseHostFrame('{"t":"req","id":"q1","op":"exec","args":{}}').t, 'req');
  t.throws(() => parseHostFrame('{"t":"req","id":"q1","op":"rm-rf","args":{}}'), ProtocolError, 'unknown op');
  t.throws(() => parseHostFrame('{"t":"signal","sid":"s","sig":"KILL; rm"}'), ProtocolError);
});

t.test('line decoder splits, joins partial lines and refuses oversize frames', async (t) => {
  const d = new LineDecoder(16);
  t.same(d.push(Buffer.from('ab')), []);
  t.same(d.push(Buffer.from('c\nde\n')), ['abc', 'de']);
  t.throws(() => d.push(Buffer.from('x'.repeat(20))), ProtocolError);
  t.same(d.push(Buffer.from('ok\n')), ['ok'], 'recovers after reset');
  t.equal(encodeFrame({ t: 'ping', id: 'p1' }), '{"t":"ping","id":"p1"}\n');
});

t.test('exit status: code, or 128+N for a signal', async (t) => {
  t.equal(exitStatus(3, null, { SIGKILL: 9 }), 3);
  t.equal(exitStatus(null, 'SIGKILL', { SIGKILL: 9 }), 137);
});
