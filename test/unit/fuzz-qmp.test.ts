// Property-based tests (fast-check) of the QMP codec (launcher/src/qmp/codec.ts): messages round-trip
// through QmpDecoder at any chunking; hostile bytes give QmpProtocolError (ESYM_QMP_PROTOCOL) only,
// the decoder keeps no more than one line's worth of bytes and keeps going after a bad line.
import t from 'tap';
import fc from 'fast-check';
import { QmpDecoder, QmpProtocolError, decodeMessage, encodeCommand, type QmpMessage } from '../../launcher/src/qmp/codec.js';
import fs from 'node:fs';
import os from 'node:os';
import net from 'node:net';
import path from 'node:path';
import { QmpClient } from '../../launcher/src/qmp/client.js';
import { SymError } from '../../launcher/src/errors.js';
import { fuzzParams, caught, caughtAsync, hostileString, chunks } from '../fixtures/fuzz.js';

const json = fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.parse(JSON.stringify(v)) as unknown);
const obj = fc.dictionary(fc.string({ maxLength: 8 }).filter((k) => k !== '__proto__'), json, { maxKeys: 4 });
const id = fc.string({ unit: 'grapheme', maxLength: 12 });

/** a QMP line as QEMU would write it, and the message it stands for */
const qmpLine: fc.Arbitrary<{ line: object; msg: QmpMessage }> = fc.oneof(
  fc.record({ major: fc.nat(20), minor: fc.nat(20), micro: fc.nat(20), pkg: fc.string({ maxLength: 20 }), caps: fc.array(fc.constantFrom('oob', 'x'), { maxLength: 2 }) })
    .map(({ major, minor, micro, pkg, caps }) => ({
      line: { QMP: { version: { qemu: { major, minor, micro }, package: pkg }, capabilities: caps } },
      msg: { kind: 'greeting', version: { major, minor, micro }, package: pkg, capabilities: caps } as QmpMessage,
    })),
  fc.tuple(id, json).map(([i, v]) => ({ line: { return: v, id: i }, msg: { kind: 'return', id: i, value: v } as QmpMessage })),
  fc.tuple(id, fc.string({ maxLength: 20 }), fc.string({ maxLength: 40 })).map(([i, c, d]) => ({
    line: { error: { class: c, desc: d }, id: i }, msg: { kind: 'error', id: i, errorClass: c, desc: d } as QmpMessage,
  })),
  fc.tuple(fc.string({ minLength: 1, maxLength: 20 }), obj, fc.nat(), fc.nat(999999)).map(([ev, data, s, us]) => ({
    line: { event: ev, data, timestamp: { seconds: s, microseconds: us } },
    msg: { kind: 'event', event: ev, data, timestamp: { seconds: s, microseconds: us } } as QmpMessage,
  })),
);


t.test('QMP: generated lines decode to their messages at any chunking (CRLF as QEMU sends)', async () => {
  fc.assert(fc.property(fc.array(qmpLine, { minLength: 1, maxLength: 6 }), fc.array(fc.nat(), { maxLength: 10 }), fc.boolean(), (items, cuts, crlf) => {
    const wire = Buffer.from(items.map((i) => JSON.stringify(i.line) + (crlf ? '\r\n' : '\n')).join(''));
    const dec = new QmpDecoder();
    const got = chunks(wire, cuts).flatMap((c) => dec.feed(c));
    if (JSON.stringify(got) !== JSON.stringify(items.map((i) => i.msg))) throw new Error(`got ${JSON.stringify(got)}`);
    if (dec.buffered !== 0) throw new Error('bytes left over');
  }), fuzzParams());
});

t.test('QMP: encodeCommand gives one JSON line with the command, arguments and id', async () => {
  fc.assert(fc.property(id, fc.string({ minLength: 1, maxLength: 20 }), obj, (i, cmd, args) => {
    const line = encodeCommand(i, cmd, args);
    if (!line.endsWith('\n') || line.slice(0, -1).includes('\n')) throw new Error('not one line');
    const o = JSON.parse(line) as Record<string, unknown>;
    if (o.execute !== cmd || o.id !== i || JSON.stringify(o.arguments ?? {}) !== JSON.stringify(args)) throw new Error(line);
  }), fuzzParams());
});

t.test('QMP: hostile bytes give QmpProtocolError only; valid lines after a bad one still decode', async () => {
  const bad = fc.oneof(
    hostileString('{}[]":,QMPreturnerroreventid0123456789', 60).map((s) => s.replace(/\n/g, ' ')),
    fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify(v)),
    fc.anything({ maxDepth: 2 }).map((v) => { try { return JSON.stringify({ QMP: v }) ?? '1'; } catch { return '1'; } }),
    fc.integer({ min: 1, max: 3000 }).map((d) => '{"return":' + '['.repeat(d) + ']'.repeat(d) + '}'),
    fc.integer({ min: 300, max: 2000 }).map((n) => 'x'.repeat(n)), // over the 256-byte limit below
  );
  fc.assert(fc.property(bad, qmpLine, fc.array(fc.nat(), { maxLength: 4 }), (junk, good, cuts) => {
    const dec = new QmpDecoder({ maxLineBytes: 256 });
    const goodLine = JSON.stringify(good.line);
    const wire = Buffer.from(`${junk}\n${goodLine}\n`);
    const got: QmpMessage[] = [];
    for (const c of chunks(wire, cuts)) {
      const e = caught(() => { got.push(...dec.feed(c)); });
      if (e !== undefined) {
        if (!(e instanceof QmpProtocolError) || e.code !== 'ESYM_QMP_PROTOCOL') throw e;
        got.push(...e.messages);
      }
      if (dec.buffered > 256) throw new Error(`${dec.buffered} bytes buffered over a 256-byte limit`);
    }
    if (Buffer.byteLength(goodLine) <= 256 && JSON.stringify(got.at(-1)) !== JSON.stringify(good.msg)) throw new Error(`lost the good line: ${JSON.stringify(got)}`);
  }), fuzzParams());
});

t.test('QMP: decodeMessage on any value is a message or QmpProtocolError', async () => {
  fc.assert(fc.property(fc.anything({ maxDepth: 3, withNullPrototype: true, withBoxedValues: true }), (v) => {
    const e = caught(() => decodeMessage(v));
    if (e !== undefined && !(e instanceof QmpProtocolError)) throw e;
  }), fuzzParams());
});

t.test('QMP: good lines before a bad one in the same chunk are not lost', async () => {
  fc.assert(fc.property(fc.array(qmpLine, { minLength: 1, maxLength: 3 }), fc.boolean(), fc.integer({ min: 300, max: 1000 }), (items, newline, junk) => {
    const dec = new QmpDecoder({ maxLineBytes: 256 });
    const lines = items.map((i) => JSON.stringify(i.line)).filter((l) => Buffer.byteLength(l) <= 256);
    const wire = Buffer.from(lines.map((l) => l + '\n').join('') + 'x'.repeat(junk) + (newline ? '\n' : ''));
    const got: QmpMessage[] = [];
    const e = caught(() => { got.push(...dec.feed(wire)); });
    if (!(e instanceof QmpProtocolError)) throw e ?? new Error('an oversize line was accepted');
    got.push(...e.messages);
    if (got.length !== lines.length) throw new Error(`${lines.length} good lines, ${got.length} messages kept`);
  }), fuzzParams());
});

// ---------- client framing: a QMP peer that turns hostile after the handshake ----------
t.test('QMP client: hostile replies settle the call with a SymError (or its value), never hang or throw elsewhere', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fuzz-qmpc-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  let k = 0;
  const reply = fc.oneof(
    hostileString('{}[]":,returnerroreventid\r\n', 40),
    fc.tuple(json, fc.boolean()).map(([v, lf]) => JSON.stringify({ return: v, id: '__ID__' }) + (lf ? '\r\n' : '')),
    fc.constantFrom('{"error":{"class":"GenericError","desc":"no"},"id":"__ID__"}\r\n', '{"return":{},"id":"other"}\r\n', '{"QMP":{}}\r\n', '{"event":"STOP"}\r\n', 'x'.repeat(5000) + '\n'),
  );
  await fc.assert(fc.asyncProperty(fc.array(reply, { minLength: 1, maxLength: 3 }), fc.array(fc.nat(), { maxLength: 4 }), async (replies, cuts) => {
    const sock = path.join(dir, `q${k++}.sock`);
    const server = net.createServer((c) => {
      c.write('{"QMP":{"version":{"qemu":{"major":10,"minor":0,"micro":0},"package":""},"capabilities":[]}}\r\n');
      let buf = '';
      c.on('data', (d) => {
        buf += d.toString();
        for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
          const cmd = JSON.parse(buf.slice(0, nl)) as { execute: string; id: string };
          buf = buf.slice(nl + 1);
          if (cmd.execute === 'qmp_capabilities') { c.write(`{"return":{},"id":${JSON.stringify(cmd.id)}}\r\n`); continue; }
          const wire = Buffer.from(replies.join('').replaceAll('__ID__', cmd.id));
          for (const ch of chunks(wire, cuts)) c.write(ch);
        }
      });
      c.on('error', () => {});
    });
    await new Promise<void>((r) => server.listen(sock, r));
    try {
      const qmp = await QmpClient.connect(sock, { timeoutMs: 2000, maxLineBytes: 1024 });
      qmp.on('warning', () => {});
      qmp.on('error', () => {});
      const e = await caughtAsync(() => qmp.execute('query-status', undefined, { timeoutMs: 300 }));
      await qmp.close();
      if (e !== undefined && !(e instanceof SymError && e.code.startsWith('ESYM_QMP'))) throw e;
    } finally {
      await new Promise<void>((r) => server.close(() => r()));
    }
  }), fuzzParams(0.1));
});
