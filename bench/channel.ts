// Channel benchmark: what sealing costs on the job channel (launcher/src/agent/channel.ts).
//
// Two modes over TCP on 127.0.0.1, both ends in this process:
//   plain   what channel version 1 did after its handshake: RpcPeer on the bare sockets, one JSON line
//           per message (no handshake is timed for it: it is a TCP connect);
//   sealed  serveChannel/connectChannel (version 2): the mutual handshake, then every message sealed
//           (AES-256-GCM, one JSON line {t:'sealed',n,c}).
// Per mode:
//   (throughput) N events of one payload size (128 B, 4 KiB, 64 KiB, 1 MiB of base64 text) sent one
//                way as fast as the socket takes them (the sender waits for 'drain' past 8 MiB queued);
//                timed from the first send to the last event received: messages/s, MB/s (payload bytes),
//                and this process's CPU per message (both ends, process.cpuUsage);
//   (rtt)        R sequential calls of a small echo: median and p95 round trip;
//   (connect)    C connections one after the other: connect (+ handshake when sealed) until the peer is
//                usable on both sides: median and p95.
// A benchmark, not a test: asserts nothing about time. JSON on stdout, markdown on stderr.
//   node dist/bench/channel.js [--quick] [--json-out FILE] [--md-out FILE]
import fs from 'node:fs';
import os from 'node:os';
import net from 'node:net';
import { once } from 'node:events';
import { parseArgs } from 'node:util';
import { serveChannel, connectChannel, RpcPeer, CHANNEL_VERSION } from '../launcher/src/agent/channel.js';

type Mode = 'plain' | 'sealed';
interface Pair { client: RpcPeer; server: RpcPeer; close(): Promise<void> }

async function pair(mode: Mode): Promise<Pair> {
  if (mode === 'sealed') {
    let got!: (p: RpcPeer) => void;
    const serverPeer = new Promise<RpcPeer>((r) => { got = r; });
    const srv = await serveChannel({ host: '127.0.0.1', secret: 'bench-secret-0123456789abcdef0123', onPeer: (p) => { p.start(); got(p); } });
    const client = (await connectChannel({ host: '127.0.0.1', port: srv.port, secret: 'bench-secret-0123456789abcdef0123', name: 'bench' })).start();
    const server = await serverPeer;
    return { client, server, close: async () => { client.close(); await srv.close({ graceMs: 200 }); } };
  }
  let got!: (s: net.Socket) => void;
  const accepted = new Promise<net.Socket>((r) => { got = r; });
  const srv = net.createServer((s) => got(s));
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  const port = (srv.address() as net.AddressInfo).port;
  const c = net.createConnection({ host: '127.0.0.1', port });
  await once(c, 'connect');
  const server = new RpcPeer(await accepted).start();
  const client = new RpcPeer(c).start();
  return { client, server, close: async () => { client.close(); server.close(); await new Promise<void>((r) => srv.close(() => r())); } };
}

const pct = (xs: number[], p: number) => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.floor(p * s.length))]!; };
const round = (x: number, d = 1) => Math.round(x * 10 ** d) / 10 ** d;

async function throughput(mode: Mode, size: number, n: number) {
  const p = await pair(mode);
  const data = 'x'.repeat(size);
  let received = 0;
  const done = new Promise<void>((resolve) => p.server.on('event', () => { if (++received === n) resolve(); }));
  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) {
    p.client.notify('bench', { i, data });
    if (p.client.sock.writableLength > 8 * 1024 * 1024) await once(p.client.sock, 'drain');
  }
  await done;
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  const cpu = process.cpuUsage(cpu0);
  await p.close();
  return { mode, size, messages: n, ms: round(ms), msgsPerS: Math.round(n / (ms / 1000)), MBperS: round((n * size) / 1e6 / (ms / 1000)), cpuUsPerMsg: round((cpu.user + cpu.system) / n) };
}

async function rtt(mode: Mode, r: number) {
  const p = await pair(mode);
  p.server.handle('echo', (x: unknown) => x);
  const us: number[] = [];
  for (let i = 0; i < r; i++) {
    const t0 = process.hrtime.bigint();
    await p.client.call('echo', { i, word: 'ping' });
    us.push(Number(process.hrtime.bigint() - t0) / 1e3);
  }
  await p.close();
  return { mode, calls: r, medianUs: round(pct(us, 0.5)), p95Us: round(pct(us, 0.95)) };
}

async function connects(mode: Mode, c: number) {
  const ms: number[] = [];
  for (let i = 0; i < c; i++) {
    const t0 = process.hrtime.bigint();
    const p = await pair(mode);
    ms.push(Number(process.hrtime.bigint() - t0) / 1e6);
    await p.close();
  }
  return { mode, connections: c, medianMs: round(ms.length ? pct(ms, 0.5) : 0, 2), p95Ms: round(ms.length ? pct(ms, 0.95) : 0, 2) };
}

function markdown(r: Awaited<ReturnType<typeof run>>): string {
  const L: string[] = [];
  L.push(`# Channel: plain (v1 framing) vs sealed (v${r.channelVersion})`, '');
  L.push(`${r.machine.cpus} × ${r.machine.cpu}, Node ${r.machine.node}, load ${r.machine.loadStart.join(' / ')} at the start, ${r.machine.loadEnd.join(' / ')} at the end (1/5/15 min); both ends in one process on 127.0.0.1.`, '');
  L.push('## Throughput (one way, events)', '', '| payload | mode | messages | messages/s | MB/s | CPU µs/message (both ends) | sealed ÷ plain (msgs/s) |', '| --- | --- | --- | --- | --- | --- | --- |');
  for (const t of r.throughput) {
    const plain = r.throughput.find((x) => x.size === t.size && x.mode === 'plain')!;
    const size = t.size >= 1 << 20 ? `${t.size >> 20} MiB` : t.size >= 1024 ? `${t.size >> 10} KiB` : `${t.size} B`;
    L.push(`| ${size} | ${t.mode} | ${t.messages} | ${t.msgsPerS} | ${t.MBperS} | ${t.cpuUsPerMsg} | ${t.mode === 'sealed' ? round(t.msgsPerS / plain.msgsPerS, 2) : ''} |`);
  }
  L.push('', '## Round trip (sequential calls, small echo)', '', '| mode | calls | median µs | p95 µs |', '| --- | --- | --- | --- |');
  for (const x of r.rtt) L.push(`| ${x.mode} | ${x.calls} | ${x.medianUs} | ${x.p95Us} |`);
  L.push('', '## Connection set-up (connect, + handshake when sealed)', '', '| mode | connections | median ms | p95 ms |', '| --- | --- | --- | --- |');
  for (const x of r.connect) L.push(`| ${x.mode} | ${x.connections} | ${x.medianMs} | ${x.p95Ms} |`);
  return L.join('\n');
}

async function run(quick: boolean) {
  const loadStart = os.loadavg().map((x) => round(x, 2));
  const cases: Array<[number, number]> = quick ? [[128, 5_000], [4096, 2_000], [65536, 200], [1 << 20, 16]] : [[128, 50_000], [4096, 20_000], [65536, 2_000], [1 << 20, 128]];
  const out = {
    channelVersion: CHANNEL_VERSION,
    machine: { cpu: os.cpus()[0]?.model ?? '?', cpus: os.cpus().length, node: process.version, loadStart, loadEnd: [] as number[] },
    throughput: [] as Array<Awaited<ReturnType<typeof throughput>>>,
    rtt: [] as Array<Awaited<ReturnType<typeof rtt>>>,
    connect: [] as Array<Awaited<ReturnType<typeof connects>>>,
  };
  for (const [size, n] of cases) for (const mode of ['plain', 'sealed'] as const) out.throughput.push(await throughput(mode, size, n));
  for (const mode of ['plain', 'sealed'] as const) out.rtt.push(await rtt(mode, quick ? 500 : 5_000));
  for (const mode of ['plain', 'sealed'] as const) out.connect.push(await connects(mode, quick ? 50 : 300));
  out.machine.loadEnd = os.loadavg().map((x) => round(x, 2));
  return out;
}

async function main(): Promise<void> {
  const { values: v } = parseArgs({ options: { quick: { type: 'boolean' }, 'json-out': { type: 'string' }, 'md-out': { type: 'string' }, help: { type: 'boolean' } } });
  if (v.help) {
    process.stdout.write('node dist/bench/channel.js [--quick] [--json-out FILE] [--md-out FILE]\n');
    return;
  }
  const r = await run(!!v.quick);
  const json = JSON.stringify(r, null, 2);
  const md = markdown(r);
  process.stdout.write(json + '\n');
  process.stderr.write(md + '\n');
  if (v['json-out']) fs.writeFileSync(v['json-out'], json + '\n');
  if (v['md-out']) fs.writeFileSync(v['md-out'], md + '\n');
}

main().catch((e: unknown) => {
  process.stderr.write(`bench/channel: ${(e as Error).stack ?? String(e)}\n`);
  process.exit(1);
});
