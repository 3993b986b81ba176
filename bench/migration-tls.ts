// Part (e) of bench/migration.ts: what encrypting the migration stream costs. One guest (memstress
// rewriting a small working set, symrun's default VM size), moved R times in plain and R times with TLS,
// alternating (plain, TLS, plain, TLS, …) in the same run, through the host agent's own code
// (agent/hostagent.ts: key derivation, key files, tls-creds-psk, tls-creds) with the same tuning as
// `symrun migrate` (maxBandwidth 10G, downtime-limit 300 ms), over 127.0.0.1. Per migration: total time
// (perform called → destination running), QEMU's total-time and downtime, throughput (bytes sent / QEMU
// total-time, MB/s = 10^6 bytes/s). It measures; it asserts nothing.
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { HostAgent } from '../launcher/src/agent/hostagent.js';
import { newTlsRequest } from '../launcher/src/migration/psk.js';
import { vmPaths, type VmSpec } from '../launcher/src/vm/index.js';
import { DEFAULTS } from '../launcher/src/defaults.js';
import type { MigrationTuning } from '../launcher/src/migration/qemu.js';
import type { RpcPeer } from '../launcher/src/agent/channel.js';
import { buildMemstressInitramfs, findKernel, parseMemstressLog } from '../test/fixtures/memstress/build.js';

export interface TlsRun { tls: boolean; totalMs: number; qemuTotalMs?: number; downtimeMs?: number; transferredBytes: number; throughputMBps?: number; qemuMbps?: number; loadavg1: number }
export interface TlsResult { memstressMiB: number; memoryMiB: number; accel: string; repeat: number; bootMs?: number; runs: TlsRun[]; memstressCorrupt?: number; error?: string }

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const load1 = () => Number(os.loadavg()[0]!.toFixed(2));

function peer(): RpcPeer {
  const p = { handle: () => p, on: () => p, start: () => undefined, notify: () => undefined, closed: false };
  return p as unknown as RpcPeer;
}

export async function tlsVsPlain(top: string, o: { repeat: number; memstressMiB: number; memoryMiB: number; say: (m: string) => void }): Promise<TlsResult> {
  const res: TlsResult = { memstressMiB: o.memstressMiB, memoryMiB: o.memoryMiB, accel: 'tcg', repeat: o.repeat, runs: [] };
  const dir = fs.mkdtempSync(path.join(top, 'tls-'));
  const secret = crypto.randomBytes(32).toString('hex');
  const initrd = buildMemstressInitramfs(path.join(dir, 'memstress.cpio'), { sizeMiB: o.memstressMiB });
  const rootfs = path.join(dir, 'root.img');
  fs.writeFileSync(rootfs, Buffer.alloc(1024 * 1024));
  const spec = (host: string): VmSpec => {
    const runDir = path.join(dir, host, 'vm1');
    fs.mkdirSync(runDir, { recursive: true });
    return {
      name: 'vm1', runDir, accel: 'tcg', memoryMiB: o.memoryMiB, cpus: 1, machine: DEFAULTS.vm.machine, kernel: findKernel(), initrd, rootfs,
      append: 'console=ttyS0 panic=-1 loglevel=4', agentSocket: path.join(runDir, 'agent.sock'), agentPortName: DEFAULTS.agent.portName, rootPorts: 0, extraArgs: [],
    };
  };
  const consoleOf = (host: string) => { try { return fs.readFileSync(vmPaths(spec(host)).consoleLog, 'utf8'); } catch { return ''; } };
  const agents: HostAgent[] = [];
  const tuning: MigrationTuning = { maxBandwidthBytes: DEFAULTS.migration.maxBandwidthBytes, downtimeLimitMs: DEFAULTS.migration.downtimeLimitMs };
  try {
    let srcHost = 'h0';
    let src = new HostAgent(srcHost, peer(), { secret });
    agents.push(src);
    const t0 = performance.now();
    await src.startVm(spec(srcHost), []);
    for (const end = Date.now() + 300_000; !parseMemstressLog(consoleOf(srcHost)).okGens.includes(2);) {
      if (Date.now() > end) throw new Error(`memstress guest did not run 2 generations in 300 s: ${consoleOf(srcHost).split('\n').slice(-5).join(' | ')}`);
      await sleep(200);
    }
    res.bootMs = Math.round(performance.now() - t0);
    o.say(`tls: guest booted in ${res.bootMs} ms`);
    for (let i = 0; i < 2 * o.repeat; i++) {
      const tls = i % 2 === 1;
      const dstHost = `h${i + 1}`;
      const dst = new HostAgent(dstHost, peer(), { secret });
      agents.push(dst);
      const op = `m${String(i + 1).padStart(6, '0')}`;
      const req = tls ? newTlsRequest(op) : undefined;
      const l = load1();
      const prep = await dst.prepareIncoming(spec(dstHost), [], tuning, '127.0.0.1', req);
      const ta = performance.now();
      const fin = await src.perform({ name: 'vm1', uri: prep.uri, tuning, mode: 'live', op, ...(req ? { tls: req } : {}) });
      await dst.finishIncoming('vm1', 120_000);
      const totalMs = Math.round(performance.now() - ta);
      const run: TlsRun = {
        tls, totalMs, qemuTotalMs: fin.totalTimeMs, downtimeMs: fin.downtimeMs, transferredBytes: fin.transferredBytes,
        throughputMBps: fin.totalTimeMs ? Math.round(fin.transferredBytes / 1e6 / (fin.totalTimeMs / 1000)) : undefined,
        qemuMbps: fin.throughputMbps !== undefined ? Math.round(fin.throughputMbps) : undefined, loadavg1: l,
      };
      res.runs.push(run);
      o.say(`tls: ${i + 1}/${2 * o.repeat} ${tls ? 'TLS  ' : 'plain'}: total ${totalMs} ms, QEMU ${fin.totalTimeMs} ms, downtime ${fin.downtimeMs} ms, ${(fin.transferredBytes / 2 ** 20).toFixed(0)} MiB, ${run.throughputMBps} MB/s`);
      await src.stopVm('vm1');
      src = dst;
      srcHost = dstHost;
      await sleep(2000);
    }
    await sleep(3000);
    const l = parseMemstressLog(consoleOf(srcHost));
    res.memstressCorrupt = l.corrupt.length + l.failedGens.length + l.kernelTrouble.length;
  } catch (e) {
    res.error = (e as Error).message;
    o.say(`tls: FAILED: ${res.error}`);
  } finally {
    await Promise.all(agents.map((a) => a.stopAll().catch(() => undefined)));
  }
  return res;
}

interface Stat { median: number; min: number; max: number; n: number }
function stat(xs: Array<number | undefined>): Stat | null {
  const s = xs.filter((x): x is number => typeof x === 'number' && Number.isFinite(x)).sort((a, b) => a - b);
  if (!s.length) return null;
  const m = Math.floor(s.length / 2);
  return { median: Math.round(s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2), min: s[0]!, max: s[s.length - 1]!, n: s.length };
}

export function tlsSummary(r: TlsResult) {
  const side = (tls: boolean) => {
    const rs = r.runs.filter((x) => x.tls === tls);
    return {
      n: rs.length, totalMs: stat(rs.map((x) => x.totalMs)), qemuTotalMs: stat(rs.map((x) => x.qemuTotalMs)), downtimeMs: stat(rs.map((x) => x.downtimeMs)),
      transferredMiB: stat(rs.map((x) => Math.round(x.transferredBytes / 2 ** 20))), throughputMBps: stat(rs.map((x) => x.throughputMBps)),
    };
  };
  return { plain: side(false), tls: side(true) };
}

export function tlsMarkdown(r: TlsResult): string {
  const s = tlsSummary(r);
  const f = (x: Stat | null) => (!x ? 'n/a' : x.n > 1 ? `${x.median} (${x.min}–${x.max})` : String(x.median));
  const L = [
    `## (e) Encrypted migration stream: plain vs TLS (PSK), same guest, same run`, '',
    `Guest: ${r.memoryMiB} MiB, 1 vCPU, ${r.accel.toUpperCase()}, memstress rewriting ${r.memstressMiB} MiB; ${r.repeat} migrations each way, alternating plain/TLS, through the host agent's code over 127.0.0.1 (max-bandwidth 10 GiB/s, downtime-limit 300 ms). Median (min–max).`, '',
    '| | plain | TLS |', '|---|---:|---:|',
    `| total (perform → destination running), ms | ${f(s.plain.totalMs)} | ${f(s.tls.totalMs)} |`,
    `| QEMU total-time, ms | ${f(s.plain.qemuTotalMs)} | ${f(s.tls.qemuTotalMs)} |`,
    `| downtime, ms | ${f(s.plain.downtimeMs)} | ${f(s.tls.downtimeMs)} |`,
    `| transferred, MiB | ${f(s.plain.transferredMiB)} | ${f(s.tls.transferredMiB)} |`,
    `| throughput, MB/s (bytes sent / QEMU total-time) | ${f(s.plain.throughputMBps)} | ${f(s.tls.throughputMBps)} |`,
    '', `memstress after the last move: ${r.memstressCorrupt === undefined ? 'n/a' : r.memstressCorrupt === 0 ? 'intact' : `${r.memstressCorrupt} problems`}.${r.error ? ` FAILED: ${r.error.split('\n')[0]}` : ''}`, '',
  ];
  return L.join('\n');
}
