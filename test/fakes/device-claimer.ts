// A claimer process for the device layer's concurrency and crash tests: a DeviceManager over the fake
// kernel (fake-kernel.ts) on a shared fake tree, claiming for one job when told to.
//   node device-claimer.js '<json: {root, stateDir, job, uid, gid, slots, candidates?, stopAt?}>'
// Protocol on stdout (JSON lines, written synchronously): {"ready":true}, then after a line "go" on stdin
// the result {"result": ClaimResult} or {"error": {code, message, details}}. With stopAt = a step name
// (claims.ts / manager.ts onStep; its stopAfter-th occurrence, default the first), it prints {"stopped": step} when it reaches that step and then blocks
// for ever (synchronously, in the middle of the claim): the test kills it there, as a crash would.
// Commands are not run: they are appended to <root>/.fake/commands.log and answered with exit 0.
import fs from 'node:fs';
import path from 'node:path';
import { DeviceManager } from '../../launcher/src/device/manager.js';
import { resolvePools } from '../../launcher/src/device/pools.js';
import type { NodeConfig } from '../../launcher/src/device/nodeconfig.js';
import { FakeKernelIO } from './fake-kernel.js';

interface Args { root: string; cfg: NodeConfig; job: string; uid: number; gid: number; slots: number; candidates?: string[]; stopAt?: string; stopAfter?: number }

const say = (o: unknown) => fs.writeSync(1, JSON.stringify(o) + '\n');

async function main(): Promise<void> {
  const a = JSON.parse(process.argv[2]!) as Args;
  const io = new FakeKernelIO(a.root);
  const log = path.join(a.root, '.fake/commands.log');
  let seen = 0;
  const m = new DeviceManager({
    cfg: a.cfg, io,
    run: async (argv) => { fs.appendFileSync(log, JSON.stringify({ pid: process.pid, argv }) + '\n'); return { code: 0, stdout: '', stderr: '' }; },
    onStep: (step) => {
      if (step !== a.stopAt || ++seen < (a.stopAfter ?? 1)) return;
      say({ stopped: step });
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0);
    },
  });
  say({ ready: true });
  await new Promise<void>((resolve) => {
    let buf = '';
    process.stdin.on('data', (d) => { buf += String(d); if (buf.includes('go\n')) resolve(); });
  });
  process.stdin.pause();
  try {
    const candidates = a.candidates ? resolvePools(io, a.cfg.devices.pools).vfs.filter((v) => a.candidates!.includes(v.vf.address)) : undefined;
    const r = await m.claim({ job: a.job, uid: a.uid, gid: a.gid, slots: a.slots, ...(candidates ? { candidates } : {}) });
    say({ result: r });
  } catch (e) {
    const err = e as { code?: string; message: string; details?: unknown };
    say({ error: { code: err.code, message: err.message, details: err.details } });
  }
  process.exit(0);
}

void main();
