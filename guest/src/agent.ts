// symrun guest agent: runs inside every VM (started by /sbin/init), speaks the guest protocol over a
// virtio-serial port. Survives the host side going away (migration): it reopens the port, answers the
// new host's sync and replays unacknowledged frames. Commands it starts never inherit the port's fd
// (libuv opens everything O_CLOEXEC), or after migration the port could not be reopened (EBUSY).
// The parts, one concern a file: channel.ts (the port), sessions.ts (commands), iface.ts/nic.ts/bond.ts
// (the interconnect), quiesce.ts + cgroup.ts (freeze/failover/hooks), rsh-relay.ts (mpirun's rsh).
import fs from 'node:fs';
import os from 'node:os';
import type { ExecArgs, NetConfigArgs, HostsArgs, QuiesceArgs } from '../protocol/index.js';
import { AgentError, log } from './util.js';
import { Channel } from './channel.js';
import { Sessions } from './sessions.js';
import { interfaces, ipPool } from './iface.js';
import { netConfig } from './nic.js';
import { bondConfig } from './bond.js';
import { ensureRxe } from './rxe.js';
import { Quiescer } from './quiesce.js';
import { RshRelay } from './rsh-relay.js';

const AGENT_VERSION = '0.1.0';
const PORT = process.env.SYMRUN_AGENT_PORT || '/dev/virtio-ports/org.symrun.agent.0';
const RSH_SOCK = process.env.SYMRUN_RSH_SOCK || '/run/symrun/rsh.sock';

let bootId = '';
function agentInfo() {
  if (!bootId) {
    try {
      bootId = fs.readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
    } catch {
      bootId = 'unknown';
    }
  }
  return { version: AGENT_VERSION, hostname: os.hostname(), pid: process.pid, bootId, uptime: os.uptime() };
}

const ch = new Channel(PORT, agentInfo);
const sessions = new Sessions((f) => ch.sendSeq(f));
const quiescer = new Quiescer(() => sessions.jobRoots());
const rsh = new RshRelay(RSH_SOCK, (f) => ch.sendSeq(f));

// ---------------- requests ----------------
async function handleReq(op: string, args: Record<string, unknown>): Promise<unknown> {
  switch (op) {
    case 'exec':
      return sessions.start(args as unknown as ExecArgs);
    case 'net-config': {
      const a = args as unknown as NetConfigArgs;
      const r = a.standbyMac ? await bondConfig(a as NetConfigArgs & { standbyMac: string }) : await netConfig(a);
      if (a.rxe !== undefined) await ensureRxe(String(a.rxe), a.name, a.address);
      return r;
    }
    case 'net-report':
      return interfaces();
    case 'hosts': {
      const a = args as unknown as HostsArgs;
      const lines = ['127.0.0.1\tlocalhost', `127.0.1.1\t${os.hostname()}`, '::1\tlocalhost ip6-localhost ip6-loopback'];
      for (const [ip, name] of a.entries) {
        if (!/^[\d.]+$/.test(ip) || !/^[A-Za-z0-9.-]+$/.test(name)) throw new AgentError('EINVAL', `bad hosts entry ${ip} ${name}`);
        if (name !== os.hostname()) lines.push(`${ip}\t${name}`);
        else lines[1] = `${ip}\t${name}`;
      }
      fs.writeFileSync('/etc/hosts', lines.join('\n') + '\n');
      return { lines: lines.length };
    }
    case 'quiesce':
      return quiescer.quiesce(args as unknown as QuiesceArgs);
    case 'resume':
      return quiescer.resume(args as unknown as QuiesceArgs);
    case 'info':
      return { ...agentInfo(), loadavg: os.loadavg(), freemem: os.freemem(), totalmem: os.totalmem(), sessions: [...sessions.all.keys()] };
    case 'kill':
      sessions.kill(String(args.sid), String(args.signal ?? 'SIGTERM'));
      return {};
    default:
      throw new AgentError('ENOSYS', `unknown op ${op}`);
  }
}

ch.onFrame = (f) => {
  switch (f.t) {
    case 'ping':
      ch.send({ t: 'pong', id: f.id });
      return;
    case 'req':
      handleReq(f.op, f.args).then(
        (value) => ch.send({ t: 'res', id: f.id, ok: true, value: value ?? null }),
        (e: unknown) => ch.send({ t: 'res', id: f.id, ok: false, error: { code: e instanceof AgentError ? e.code : 'EFAIL', message: (e as Error)?.message ?? String(e) } }),
      );
      return;
    case 'in':
      sessions.input(f.sid, f.data, f.eof);
      return;
    case 'resize':
      sessions.resize(f.sid, f.cols, f.rows);
      return;
    case 'signal':
      try { sessions.kill(f.sid, f.sig); } catch { /* bad signal */ }
      return;
    case 'rsh-out':
      rsh.out(f.rid, f.fd, f.data);
      return;
    case 'rsh-exit':
      rsh.exit(f.rid, f.code);
      return;
    default:
      return;
  }
};

process.on('uncaughtException', (e) => log(`uncaught: ${e.stack ?? e}`));
process.on('unhandledRejection', (e) => log(`unhandled: ${(e as Error)?.stack ?? e}`));
rsh.start();
ch.start();
log(`started (pid ${process.pid}, port ${PORT})`);
// `ip` processes started ahead for the reconfiguration after a move (warm-ip.ts); 2 s in, so their
// exec does not compete with the job's own start-up (whose first network set-up runs one at call time)
setTimeout(() => ipPool.fill(), 2000).unref();
