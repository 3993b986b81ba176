// Property-based tests (fast-check) of the guest protocol (guest/protocol/index.ts): frames round-trip
// through encodeFrame/parse*Frame and LineDecoder at any chunking; hostile lines give ProtocolError only.
import t from 'tap';
import fc from 'fast-check';
import {
  encodeFrame, parseGuestFrame, parseHostFrame, LineDecoder, ProtocolError, OPS,
  type GuestFrame, type HostFrame,
} from '../../guest/protocol/index.js';
import { fuzzParams, caught, hostileString, chunks } from '../fixtures/fuzz.js';

const id = fc.stringMatching(/^[A-Za-z0-9_.:-]{1,64}$/);
const seq = fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER });
const b64 = fc.uint8Array({ maxLength: 64 }).map((b) => Buffer.from(b).toString('base64'));
const text = (max: number) => fc.string({ unit: 'grapheme', maxLength: Math.min(max, 40) });

const guestFrame: fc.Arbitrary<GuestFrame> = fc.oneof(
  fc.record({ t: fc.constant('sync' as const), id, v: fc.integer({ min: 0, max: 1000 }),
    agent: fc.record({ version: text(64), hostname: text(255), pid: fc.nat(), bootId: text(64), uptime: fc.double({ noNaN: true, noDefaultInfinity: true }).map((x) => (Object.is(x, -0) ? 0 : x)) }) }),
  fc.record({ t: fc.constant('pong' as const), id }),
  fc.record({ t: fc.constant('res' as const), id, ok: fc.constant(true as const), value: fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.parse(JSON.stringify(v)) as unknown) }),
  fc.record({ t: fc.constant('res' as const), id, ok: fc.constant(false as const), error: fc.record({ code: text(64), message: text(8192) }) }),
  fc.record({ t: fc.constant('out' as const), seq, sid: id, fd: fc.constantFrom(1 as const, 2 as const), data: b64 }),
  fc.record({ t: fc.constant('exit' as const), seq, sid: id, code: fc.option(fc.integer({ min: 0, max: 255 }), { nil: null }), signal: fc.option(fc.constantFrom('SIGKILL', 'SIGTERM'), { nil: null }) }),
  fc.record({ t: fc.constant('rsh' as const), seq, rid: id, host: text(255), argv: fc.array(text(100), { maxLength: 6 }) }),
  fc.record({ t: fc.constant('notice' as const), seq, level: fc.constantFrom('info' as const, 'warn' as const), text: text(8192) }),
) as fc.Arbitrary<GuestFrame>;

const hostFrame: fc.Arbitrary<HostFrame> = fc.oneof(
  fc.record({ t: fc.constant('sync' as const), id, lastSeq: fc.nat() }),
  fc.record({ t: fc.constant('ack' as const), seq: fc.nat() }),
  fc.record({ t: fc.constant('ping' as const), id }),
  fc.record({ t: fc.constant('req' as const), id, op: fc.constantFrom(...OPS), args: fc.dictionary(fc.string({ maxLength: 8 }), fc.jsonValue({ maxDepth: 2 })).map((v) => JSON.parse(JSON.stringify(v)) as Record<string, unknown>) }),
  fc.record({ t: fc.constant('in' as const), sid: id, data: b64, eof: fc.boolean() }, { requiredKeys: ['t', 'sid'] }),
  fc.record({ t: fc.constant('resize' as const), sid: id, cols: fc.integer({ min: 1, max: 10000 }), rows: fc.integer({ min: 1, max: 10000 }) }),
  fc.record({ t: fc.constant('signal' as const), sid: id, sig: fc.constantFrom('SIGINT', 'SIGTERM', 'SIGUSR1') }),
  fc.record({ t: fc.constant('rsh-out' as const), rid: id, fd: fc.constantFrom(1 as const, 2 as const), data: b64 }),
  fc.record({ t: fc.constant('rsh-exit' as const), rid: id, code: fc.integer({ min: 0, max: 255 }) }),
) as fc.Arbitrary<HostFrame>;


function onlyProtocolError(e: unknown): void {
  if (e !== undefined && !(e instanceof ProtocolError)) throw e;
}

t.test('guest frames: parseGuestFrame(encodeFrame(f)) = f, through a LineDecoder cut anywhere', async () => {
  fc.assert(fc.property(fc.array(guestFrame, { minLength: 1, maxLength: 5 }), fc.array(fc.nat(), { maxLength: 8 }), (frames, cuts) => {
    const wire = Buffer.from(frames.map(encodeFrame).join(''));
    const dec = new LineDecoder(1 << 20);
    const lines = chunks(wire, cuts).flatMap((c) => dec.push(c));
    const back = lines.map((l) => parseGuestFrame(l));
    if (JSON.stringify(back) !== JSON.stringify(frames)) throw new Error(`${JSON.stringify(frames)} read back as ${JSON.stringify(back)}`);
  }), fuzzParams());
});

t.test('host frames: parseHostFrame(encodeFrame(f)) = f', async () => {
  fc.assert(fc.property(hostFrame, (f) => {
    const back = parseHostFrame(encodeFrame(f).trimEnd());
    if (JSON.stringify(back) !== JSON.stringify(f)) throw new Error(`${JSON.stringify(f)} read back as ${JSON.stringify(back)}`);
  }), fuzzParams());
});

const hostileLine = fc.oneof(
  hostileString('{}[]":,tidseqokvaluesyncpongoutexitrshnotice0123456789', 60),
  fc.jsonValue({ maxDepth: 4 }).map((v) => JSON.stringify(v)),
  // a valid frame with one field replaced by a generated value of any type
  fc.tuple(fc.oneof(guestFrame, hostFrame), fc.string({ maxLength: 6 }), fc.anything({ maxDepth: 2 })).map(([f, k, v]) => {
    const o: Record<string, unknown> = { ...f };
    const keys = Object.keys(o);
    o[keys.length && k.length % 2 ? keys[k.length % keys.length]! : k] = v;
    try { return JSON.stringify(o); } catch { return '{}'; }
  }),
  // truncated valid frames
  fc.tuple(fc.oneof(guestFrame, hostFrame), fc.nat()).map(([f, n]) => { const s = JSON.stringify(f); return s.slice(0, n % (s.length + 1)); }),
  // deep nesting
  fc.integer({ min: 1, max: 5000 }).map((d) => `{"t":"res","id":"a","ok":true,"value":${'['.repeat(d)}${']'.repeat(d)}}`),
  fc.integer({ min: 1, max: 5000 }).map((d) => '['.repeat(d)),
);

t.test('hostile lines give ProtocolError only, from both parsers', async () => {
  fc.assert(fc.property(hostileLine, (line) => {
    onlyProtocolError(caught(() => parseGuestFrame(line, 4096)));
    onlyProtocolError(caught(() => parseHostFrame(line, 4096)));
  }), fuzzParams());
});

t.test('LineDecoder: no line over the limit is ever returned, and the buffer never grows past it', async () => {
  fc.assert(fc.property(fc.array(fc.uint8Array({ maxLength: 300 }), { maxLength: 20 }), fc.integer({ min: 1, max: 200 }), (parts, max) => {
    const dec = new LineDecoder(max);
    for (const p of parts) {
      let lines: string[] = [];
      const e = caught(() => { lines = dec.push(Buffer.from(p)); });
      onlyProtocolError(e);
      for (const l of lines) if (Buffer.byteLength(l) > max * 3) throw new Error(`line of ${Buffer.byteLength(l)} bytes with a ${max}-byte limit`);
      if ((dec as unknown as { len: number }).len > max) throw new Error('buffered past the limit');
    }
  }), fuzzParams());
});
