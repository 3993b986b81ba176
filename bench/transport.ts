// MPI point-to-point latency and bandwidth between 2 VMs, interconnect.transport tcp vs rdma (Soft-RoCE),
// side by side in one run: Debian's NetPIPE (NPopenmpi, netpipe-openmpi; a program we did not write)
// with 2 ranks in 2 local VMs under TCG, started by symrun exactly as a user would:
//   symrun --local 2 -np 2 --accel tcg --transport T -- NPopenmpi -u UPPER -n REPS -p 0 -o np-T.out
// The transports alternate (tcp, rdma, tcp, rdma, ... with --repeat R). Per run: NetPIPE's own output
// file (bytes, Mbps, seconds per transfer = half a round trip), and the evidence of what carried the
// messages: with rdma UCX's own endpoint report (UCX_LOG_LEVEL=info: `ep_cfg[..]: tag(rc_verbs/rxe0:1)`),
// with tcp the absence of any UCX output. It measures; it asserts nothing about speed.
//   sudo node dist/bench/transport.js [--upper BYTES] [--reps N] [--repeat R] [--json-out FILE] [--md-out FILE]
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { parseArgs } from 'node:util';
import { runSymrun } from '../test/fixtures/symrun-env.js';

const USAGE = `usage: node dist/bench/transport.js [--upper BYTES] [--reps N] [--repeat R] [--json-out FILE] [--md-out FILE]
  --upper BYTES   NetPIPE's largest message (-u; default 65536)
  --reps N        NetPIPE's repetitions per size (-n; default 20)
  --repeat R      runs of each transport, alternating (default 1)
  --json-out FILE also write the JSON there
  --md-out FILE   also write the markdown there`;

function fail(msg: string, code = 2): never {
  process.stderr.write(`bench/transport: ${msg}\n${code === 2 ? USAGE + '\n' : ''}`);
  process.exit(code);
}

function opts() {
  let v;
  try {
    v = parseArgs({ options: { upper: { type: 'string' }, reps: { type: 'string' }, repeat: { type: 'string' }, 'json-out': { type: 'string' }, 'md-out': { type: 'string' }, help: { type: 'boolean' } } }).values;
  } catch (e) { fail((e as Error).message); }
  if (v.help) { process.stdout.write(USAGE + '\n'); process.exit(0); }
  const int = (name: string, s: string | undefined, def: number, min: number) => {
    if (s === undefined) return def;
    const n = Number(s);
    if (!Number.isInteger(n) || n < min) fail(`--${name} ${JSON.stringify(s)}: an integer >= ${min} is needed`);
    return n;
  };
  return { upper: int('upper', v.upper, 65536, 8), reps: int('reps', v.reps, 20, 1), repeat: int('repeat', v.repeat, 1, 1), jsonOut: v['json-out'], mdOut: v['md-out'] };
}

type Transport = 'tcp' | 'rdma';
interface Row { bytes: number; mbps: number; usec: number }
interface Run {
  transport: Transport; exitCode: number | null; wallMs: number; rows: Row[];
  /** UCX's endpoint configurations as it reported them (rdma), or [] */
  ucxEndpoints: string[];
  /** tcp: lines of UCX output (there should be none) */
  ucxLines: number;
  ranksIn: string[]; stderrTail?: string;
}

/** NetPIPE's output file: one line per size, `BYTES MBPS SECONDS` (seconds per transfer, half a round trip). */
function outFile(text: string): Row[] {
  return text.trim().split('\n').filter(Boolean).map((l) => l.trim().split(/\s+/).map(Number)).map(([bytes, mbps, s]) => ({ bytes: bytes!, mbps: mbps!, usec: Number((s! * 1e6).toFixed(1)) }));
}

const median = (xs: number[]) => { const s = [...xs].sort((a, b) => a - b); const m = s.length >> 1; return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2; };

async function main(): Promise<number> {
  const o = opts();
  if (process.getuid?.() !== 0) fail('needs root: symrun --local creates network namespaces, bridges and taps (run it with sudo)', 3);
  for (const [cmd, pkg] of [['NPopenmpi', 'netpipe-openmpi'], ['mpirun', 'openmpi-bin'], ['qemu-system-x86_64', 'qemu-system-x86'], ['rdma', 'iproute2']]) {
    try { execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }); } catch { fail(`${cmd} is missing: run \`bash scripts/setup\` (installs ${pkg})`, 3); }
  }
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'symrun-bench-transport-'));
  const runs: Run[] = [];
  try {
    // UCX reports the transport of each endpoint at log level info (rdma); with tcp UCX is never loaded
    fs.writeFileSync(path.join(work, 'ucx-info.yaml'), 'mpi:\n  extraArgs: ["-x", "UCX_LOG_LEVEL=info"]\n');
    for (let i = 0; i < 2 * o.repeat; i++) {
      const transport: Transport = i % 2 === 0 ? 'tcp' : 'rdma';
      const out = `np-${transport}-${i}.out`;
      const args = ['--config', 'ucx-info.yaml', '--local', '2', '-np', '2', '--accel', 'tcg', '--transport', transport, '--', 'NPopenmpi', '-u', String(o.upper), '-n', String(o.reps), '-p', '0', '-o', out];
      process.stderr.write(`bench/transport: run ${i + 1}/${2 * o.repeat}: symrun ${args.join(' ')}\n`);
      const r = await runSymrun(args, { cwd: work, timeoutMs: 600_000 });
      const all = r.stdout + r.stderr;
      const file = path.join(work, out);
      const run: Run = {
        transport, exitCode: r.code, wallMs: r.ms, rows: fs.existsSync(file) ? outFile(fs.readFileSync(file, 'utf8')) : [],
        ucxEndpoints: [...new Set([...all.matchAll(/UCX\s+INFO\s+ep_cfg\[\d+\]: (.*)$/gm)].map((m) => m[1]!.trim()))],
        ucxLines: all.split('\n').filter((l) => /UCX/.test(l)).length,
        ranksIn: [...all.matchAll(/^(\d+): (vm\d+)$/gm)].map((m) => `${m[1]}:${m[2]}`),
      };
      if (r.code !== 0 || !run.rows.length) run.stderrTail = r.stderr.slice(-3000);
      runs.push(run);
      process.stderr.write(`bench/transport: ${transport}: exit ${r.code} in ${(r.ms / 1000).toFixed(1)} s, ${run.rows.length} sizes, UCX endpoints: ${run.ucxEndpoints.join('; ') || 'none'}\n`);
    }
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }

  const at = (rs: Run[], bytes: number, k: 'mbps' | 'usec') => {
    const xs = rs.map((r) => r.rows.find((x) => x.bytes === bytes)?.[k]).filter((x): x is number => typeof x === 'number');
    return xs.length ? Number(median(xs).toFixed(k === 'mbps' ? 2 : 1)) : null;
  };
  const sizes = [1, 8, 64, 1024, 8192, o.upper];
  const summary = Object.fromEntries((['tcp', 'rdma'] as const).map((tr) => {
    const ok = runs.filter((r) => r.transport === tr && r.exitCode === 0 && r.rows.length);
    return [tr, {
      runsOk: ok.length,
      latencyUsec: Object.fromEntries(sizes.map((b) => [b, at(ok, b, 'usec')])),
      bandwidthMbps: Object.fromEntries(sizes.map((b) => [b, at(ok, b, 'mbps')])),
      bestMbps: ok.length ? median(ok.map((r) => Math.max(...r.rows.map((x) => x.mbps)))) : null,
      wallMs: ok.length ? median(ok.map((r) => r.wallMs)) : null,
    }];
  })) as Record<Transport, { runsOk: number; latencyUsec: Record<number, number | null>; bandwidthMbps: Record<number, number | null>; bestMbps: number | null; wallMs: number | null }>;
  const result = {
    benchmark: 'transport',
    date: new Date().toISOString(),
    machine: { hostname: os.hostname(), cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model ?? 'unknown', kernel: os.release() },
    setup: { accel: 'tcg', vms: 2, ranks: 2, program: 'NPopenmpi (netpipe-openmpi)', netpipeArgs: ['-u', o.upper, '-n', o.reps, '-p', 0], repeat: o.repeat },
    summary, runs,
  };
  const json = JSON.stringify(result, null, 2) + '\n';
  const f = (x: number | null | undefined, unit = '') => (x === null || x === undefined ? 'n/a' : `${x}${unit}`);
  const ratio = (a: number | null, b: number | null) => (a && b ? `${(a / b).toFixed(2)}×` : 'n/a');
  const md = [
    `# MPI over tcp vs rdma (Soft-RoCE) between 2 VMs`,
    '',
    `${result.date}, ${result.machine.cpus} CPUs (${result.machine.cpuModel}), QEMU TCG, 1 rank per VM, NetPIPE \`NPopenmpi -u ${o.upper} -n ${o.reps} -p 0\`, ${o.repeat} run(s) of each transport, alternating; medians. Time = NetPIPE's time per transfer (half a round trip).`,
    '',
    '| message | tcp time | rdma time | tcp bandwidth | rdma bandwidth | rdma/tcp bandwidth |',
    '|---:|---:|---:|---:|---:|---:|',
    ...sizes.map((b) => `| ${b} B | ${f(summary.tcp.latencyUsec[b], ' µs')} | ${f(summary.rdma.latencyUsec[b], ' µs')} | ${f(summary.tcp.bandwidthMbps[b], ' Mbps')} | ${f(summary.rdma.bandwidthMbps[b], ' Mbps')} | ${ratio(summary.rdma.bandwidthMbps[b]!, summary.tcp.bandwidthMbps[b]!)} |`),
    `| best | | | ${f(summary.tcp.bestMbps, ' Mbps')} | ${f(summary.rdma.bestMbps, ' Mbps')} | ${ratio(summary.rdma.bestMbps, summary.tcp.bestMbps)} |`,
    '',
    'What carried the messages (per run):',
    '',
    ...runs.map((r) => `- ${r.transport}: exit ${r.exitCode}, ${(r.wallMs / 1000).toFixed(1)} s (boot included), ranks ${r.ranksIn.join(' ') || 'n/a'}, ${r.transport === 'rdma' ? `UCX endpoints: ${r.ucxEndpoints.map((e) => `\`${e}\``).join(', ') || 'none reported'}` : `UCX output lines: ${r.ucxLines} (UCX never loaded)`}`),
    '',
  ].join('\n');
  process.stdout.write(json);
  process.stderr.write(md);
  if (o.jsonOut) fs.writeFileSync(o.jsonOut, json);
  if (o.mdOut) fs.writeFileSync(o.mdOut, md);
  return runs.every((r) => r.exitCode === 0 && r.rows.length) ? 0 : 1;
}

process.exitCode = await main();
