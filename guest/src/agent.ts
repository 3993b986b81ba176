// symrun guest agent: runs inside every VM (started by /sbin/init), speaks the guest protocol over a
// virtio-serial port. Survives the host side going away (migration): it reopens the port, answers the
// new host's sync and replays unacknowledged frames. Commands it starts never inherit the port's fd
// (libuv opens everything O_CLOEXEC), or after migration the port could not be reopened (EBUSY).
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import { spawn, spawnSync, execFile, type ChildProcess } from 'node:child_process';
import { promisify } from 'node:util';
import {
  PROTOCOL_VERSION, LineDecoder, parseHostFrame, encodeFrame, ProtocolError,
  type HostFrame, type GuestFrame, type ExecArgs, type NetConfigArgs, type HostsArgs, type QuiesceArgs, type InterfaceReport,
} from '../protocol/index.js';

const execFileP = promisify(execFile);
const AGENT_VERSION = '0.1.0';
const PORT = process.env.SYMRUN_AGENT_PORT || '/dev/virtio-ports/org.symrun.agent.0';
const RSH_SOCK = process.env.SYMRUN_RSH_SOCK || '/run/symrun/rsh.sock';
const CGROUP_ROOT = '/sys/fs/cgroup';
const JOB_CGROUP = `${CGROUP_ROOT}/symrun.job`;
const MAX_REPLAY_BYTES = 16 * 1024 * 1024;
const OUT_CHUNK = 16 * 1024;

function log(msg: string): void {
  process.stderr.write(`symrun-agent: ${msg}\n`);
}

// ---------------- channel ----------------
type Seqd = Extract<GuestFrame, { seq: number }>;
type DistributiveOmit<T, K extends keyof any> = T extends any ? Omit<T, K> : never;

class Channel {
  private fd: number | null = null;
  private connected = false; // a host has synced on the current open
  private decoder = new LineDecoder();
  private writeQueue: Buffer[] = [];
  private writing = false;
  private seq = 0;
  private replay: Array<{ seq: number; line: string }> = [];
  private replayBytes = 0;
  onFrame: (f: HostFrame) => void = () => {};

  start(): void {
    this.open();
  }

  private open(): void {
    fs.open(PORT, 'r+', (err, fd) => {
      if (err) {
        setTimeout(() => this.open(), err.code === 'ENOENT' ? 500 : 200);
        return;
      }
      this.fd = fd;
      this.decoder.reset();
      this.readLoop(fd);
    });
  }

  private readLoop(fd: number): void {
    const buf = Buffer.allocUnsafe(64 * 1024);
    const next = (): void => {
      fs.read(fd, buf, 0, buf.length, null, (err, n) => {
        if (err || n === 0) {
          // EOF: no host connected (boot, or the VM just moved). Reopen and wait for a new host.
          if (this.connected) log('host disconnected');
          this.connected = false;
          this.fd = null;
          fs.close(fd, () => setTimeout(() => this.open(), 200));
          return;
        }
        let lines: string[] = [];
        try {
          lines = this.decoder.push(buf.subarray(0, n));
        } catch (e) {
          log(`dropping oversize input: ${(e as Error).message}`);
        }
        for (const line of lines) {
          if (!line.trim()) continue;
          let f: HostFrame;
          try {
            f = parseHostFrame(line);
          } catch (e) {
            if (e instanceof ProtocolError) log(`bad frame from host: ${e.message}`);
            continue;
          }
          try {
            this.handle(f);
          } catch (e) {
            log(`handler failed: ${(e as Error).stack}`);
          }
        }
        next();
      });
    };
    next();
  }

  private handle(f: HostFrame): void {
    if (f.t === 'sync') {
      this.connected = true;
      this.ackUpTo(f.lastSeq);
      this.writeRaw(encodeFrame({ t: 'sync', id: f.id, v: PROTOCOL_VERSION, agent: agentInfo() }));
      for (const r of this.replay) this.writeRaw(r.line);
      return;
    }
    if (f.t === 'ack') {
      this.ackUpTo(f.seq);
      return;
    }
    if (!this.connected) return; // frames before sync are from a stale connection
    this.onFrame(f);
  }

  private ackUpTo(seq: number): void {
    while (this.replay.length && this.replay[0]!.seq <= seq) {
      this.replayBytes -= this.replay.shift()!.line.length;
    }
  }

  /** Unsequenced frame (responses, pong): only meaningful to the current host. */
  send(f: GuestFrame): void {
    if (this.connected) this.writeRaw(encodeFrame(f));
  }

  /** Sequenced frame: kept until acknowledged, replayed after reconnect. */
  sendSeq(f: DistributiveOmit<Seqd, 'seq'>): void {
    const seq = ++this.seq;
    const line = encodeFrame({ ...f, seq } as GuestFrame);
    this.replay.push({ seq, line });
    this.replayBytes += line.length;
    while (this.replayBytes > MAX_REPLAY_BYTES && this.replay.length > 1) {
      this.replayBytes -= this.replay.shift()!.line.length;
    }
    if (this.connected) this.writeRaw(line);
  }

  private writeRaw(line: string): void {
    this.writeQueue.push(Buffer.from(line));
    this.pump();
  }

  private pump(): void {
    if (this.writing) return;
    const fd = this.fd;
    if (fd === null || !this.connected) {
      this.writeQueue = [];
      return;
    }
    const b = this.writeQueue.shift();
    if (!b) return;
    this.writing = true;
    const writeAll = (buf: Buffer): void => {
      fs.write(fd, buf, 0, buf.length, null, (err, n) => {
        if (err) {
          this.writing = false;
          this.writeQueue = [];
          return; // replay covers sequenced frames
        }
        if (n < buf.length) return writeAll(buf.subarray(n));
        this.writing = false;
        this.pump();
      });
    };
    writeAll(b);
  }
}

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

const ch = new Channel();

// ---------------- sessions ----------------
interface Session {
  sid: string;
  child?: ChildProcess;
  pty?: { write(d: string): void; resize(c: number, r: number): void; kill(sig?: string): void; pid: number };
  pid: number;
  job: boolean;
}
const sessions = new Map<string, Session>();

function emitOut(sid: string, fd: 1 | 2, data: Buffer): void {
  for (let off = 0; off < data.length; off += OUT_CHUNK) {
    ch.sendSeq({ t: 'out', sid, fd, data: data.subarray(off, off + OUT_CHUNK).toString('base64') });
  }
}

let cgroupReady: boolean | null = null;
function ensureJobCgroup(): boolean {
  if (cgroupReady !== null) return cgroupReady;
  try {
    if (!fs.existsSync(`${CGROUP_ROOT}/cgroup.controllers`)) {
      fs.mkdirSync(CGROUP_ROOT, { recursive: true });
      if (spawnSync('mount', ['-t', 'cgroup2', 'none', CGROUP_ROOT], { stdio: 'ignore' }).status !== 0) throw new Error('mount cgroup2 failed');
    }
    fs.mkdirSync(JOB_CGROUP, { recursive: true });
    cgroupReady = fs.existsSync(`${JOB_CGROUP}/cgroup.freeze`);
  } catch (e) {
    log(`cgroup v2 freezer unavailable (${(e as Error).message}); falling back to SIGSTOP`);
    cgroupReady = false;
  }
  return cgroupReady;
}

async function startExec(a: ExecArgs): Promise<{ pid: number }> {
  if (sessions.has(a.sid)) throw new AgentError('EEXIST', `session ${a.sid} exists`);
  if (!Array.isArray(a.argv) || a.argv.length === 0 || !a.argv.every((s) => typeof s === 'string')) throw new AgentError('EINVAL', 'argv must be a non-empty string array');
  if (a.cwd !== undefined) {
    // spawn would report a missing cwd as the *program* not found (ENOENT, 127): say what is missing
    let dir = false;
    try { dir = fs.statSync(a.cwd).isDirectory(); } catch { /* missing */ }
    if (!dir) throw new AgentError('ENOENT', `working directory ${a.cwd} does not exist in ${os.hostname()}`);
  }
  const env = { PATH: '/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin', HOME: '/root', ...(a.env ?? {}) };
  let argv = a.argv;
  if (a.job && ensureJobCgroup()) {
    // enter the job cgroup before exec, so every descendant (ranks, orted) is frozen with it
    argv = ['/bin/sh', '-c', `echo $$ > ${JOB_CGROUP}/cgroup.procs && exec "$0" "$@"`, ...argv];
  }
  if (a.pty) {
    const pty = await import('node-pty');
    const p = pty.spawn(argv[0]!, argv.slice(1), { name: 'xterm-256color', cols: a.pty.cols, rows: a.pty.rows, cwd: a.cwd || '/root', env });
    const s: Session = { sid: a.sid, pty: p, pid: p.pid, job: !!a.job };
    sessions.set(a.sid, s);
    p.onData((d: string) => emitOut(a.sid, 1, Buffer.from(d)));
    p.onExit(({ exitCode, signal }: { exitCode: number; signal?: number }) => {
      sessions.delete(a.sid);
      ch.sendSeq({ t: 'exit', sid: a.sid, code: signal ? null : exitCode, signal: signal ? signalName(signal) : null });
    });
    return { pid: p.pid };
  }
  const child = spawn(argv[0]!, argv.slice(1), {
    cwd: a.cwd || '/',
    env,
    detached: true, // own process group: signals and freeze reach the whole tree
    stdio: [a.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'],
    uid: a.uid,
    gid: a.gid,
  });
  const s: Session = { sid: a.sid, child, pid: child.pid ?? -1, job: !!a.job };
  sessions.set(a.sid, s);
  child.stdout!.on('data', (d: Buffer) => emitOut(a.sid, 1, d));
  child.stderr!.on('data', (d: Buffer) => emitOut(a.sid, 2, d));
  child.stdin?.on('error', () => {});
  let done = false;
  const finish = (code: number | null, signal: string | null): void => {
    if (done) return;
    done = true;
    sessions.delete(a.sid);
    ch.sendSeq({ t: 'exit', sid: a.sid, code, signal });
  };
  child.on('error', (e: NodeJS.ErrnoException) => {
    const code = e.code === 'ENOENT' ? 127 : e.code === 'EACCES' ? 126 : 1;
    emitOut(a.sid, 2, Buffer.from(`symrun-agent: cannot execute ${argv[0]}: ${e.message}\n`));
    finish(code, null);
  });
  child.on('close', (code, signal) => finish(code, signal));
  return { pid: child.pid ?? -1 };
}

function signalName(n: number): string {
  for (const [k, v] of Object.entries(os.constants.signals)) if (v === n) return k;
  return `SIG${n}`;
}

function killSession(sid: string, sig: string): void {
  const s = sessions.get(sid);
  if (!s) return;
  const signo = (os.constants.signals as Record<string, number>)[sig];
  if (signo === undefined) throw new AgentError('EINVAL', `unknown signal ${sig}`);
  if (s.pty) {
    s.pty.kill(sig);
    return;
  }
  try {
    process.kill(-s.pid, signo); // the whole process group
  } catch {
    try {
      process.kill(s.pid, signo);
    } catch {
      /* already gone */
    }
  }
}

// ---------------- network ----------------
function readSys(p: string): string {
  try {
    return fs.readFileSync(p, 'utf8').trim();
  } catch {
    return '';
  }
}

async function interfaces(): Promise<InterfaceReport[]> {
  const out: InterfaceReport[] = [];
  let addrs: Record<string, string[]> = {};
  try {
    const { stdout } = await execFileP('ip', ['-j', 'addr', 'show']);
    for (const i of JSON.parse(stdout) as Array<{ ifname: string; addr_info?: Array<{ family: string; local: string; prefixlen: number }> }>) {
      addrs[i.ifname] = (i.addr_info ?? []).filter((x) => x.family === 'inet').map((x) => `${x.local}/${x.prefixlen}`);
    }
  } catch {
    addrs = {};
  }
  for (const name of fs.readdirSync('/sys/class/net')) {
    out.push({ name, mac: readSys(`/sys/class/net/${name}/address`), up: readSys(`/sys/class/net/${name}/operstate`) === 'up', addresses: addrs[name] ?? [] });
  }
  return out;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// ---------------- failover bond ----------------
// The interconnect name (e.g. symfab0) is an active-backup bond; its slaves are the passthrough NIC
// (NAMEp, primary) and the virtio standby (NAMEs), which migrates with the VM. Quiesce makes the
// standby active, so the unplug of the primary does not interrupt traffic; after the replug the new
// NIC is enslaved and, being the primary, active again. Ranks never stop.
const bondDir = (bond: string) => `/sys/class/net/${bond}/bonding`;
const slaveName = (bond: string, role: 'p' | 's') => `${bond.slice(0, 14)}${role}`;

async function waitIface(pred: (n: string) => boolean, what: string, waitMs: number): Promise<string> {
  const deadline = Date.now() + waitMs;
  for (;;) {
    const hit = fs.readdirSync('/sys/class/net').find(pred);
    if (hit) return hit;
    if (Date.now() > deadline) throw new AgentError('ENODEV', `${what} did not appear within ${waitMs} ms`);
    await sleep(50);
  }
}

/** A NIC with this MAC that is not (yet) part of the bond (enslaved NICs carry the bond's MAC). */
function freeNicWithMac(n: string, mac: string, bond: string): boolean {
  return n !== bond && readSys(`/sys/class/net/${n}/address`) === mac && !fs.existsSync(`/sys/class/net/${n}/master`) && !fs.existsSync(`/sys/class/net/${n}/bonding`);
}

async function enslave(bond: string, cur: string, name: string): Promise<void> {
  await ipBatch([`link set dev ${cur} down`, ...(cur !== name ? [`link set dev ${cur} name ${name}`] : [])]);
  fs.writeFileSync(`${bondDir(bond)}/slaves`, `+${name}`);
}

async function bondConfig(a: NetConfigArgs & { standbyMac: string }): Promise<InterfaceReport> {
  const bond = a.name;
  const mac = a.mac.toLowerCase();
  const sbMac = a.standbyMac.toLowerCase();
  const waitMs = a.waitMs ?? 10_000;
  const prim = slaveName(bond, 'p');
  const stby = slaveName(bond, 's');
  if (!fs.existsSync(bondDir(bond))) {
    await execFileP('modprobe', ['bonding', 'max_bonds=0']).catch(() => undefined);
    fs.writeFileSync('/sys/class/net/bonding_masters', `+${bond}`);
    fs.writeFileSync(`${bondDir(bond)}/mode`, 'active-backup');
    fs.writeFileSync(`${bondDir(bond)}/miimon`, '50');
    await ipBatch([`addr flush dev ${bond}`, `addr add ${a.address} dev ${bond}`, `link set dev ${bond} up`]);
  }
  const slaves = () => readSys(`${bondDir(bond)}/slaves`).split(/\s+/).filter(Boolean);
  if (!slaves().includes(stby)) await enslave(bond, await waitIface((n) => freeNicWithMac(n, sbMac, bond) || n === stby, `standby NIC ${sbMac}`, waitMs), stby);
  if (!slaves().includes(prim)) {
    // the passthrough NIC: at boot, or freshly hot-plugged after a migration
    const cur = await waitIface((n) => freeNicWithMac(n, mac, bond), `NIC with MAC ${mac}`, waitMs);
    await enslave(bond, cur, prim);
  }
  fs.writeFileSync(`${bondDir(bond)}/primary`, prim);
  const mtu = checkMtu(a.mtu);
  const shown = await ipBatch([`addr replace ${a.address} dev ${bond}`, ...(mtu ? [`link set dev ${bond} mtu ${mtu}`] : []), `addr show dev ${bond}`]);
  const deadline = Date.now() + 10_000;
  while (readSys(`${bondDir(bond)}/active_slave`) !== prim && Date.now() < deadline) {
    fs.writeFileSync(`${bondDir(bond)}/active_slave`, prim);
    await sleep(50);
  }
  if (a.announce) void execFileP('arping', ['-U', '-c', '2', '-I', bond, a.address.split('/')[0]!]).catch(() => undefined);
  return reportOf(bond, shown);
}

/** The report of interface NAME from `ip -json addr show` output (`shown`), sysfs for the rest. */
async function reportOf(name: string, shown: string): Promise<InterfaceReport> {
  // (an `ip` whose batch mode prints `addr show` without addresses: ask once more, the slow way)
  const addresses = inetAddrs(shown).get(name) ?? (await interfaces()).find((i) => i.name === name)?.addresses;
  if (!addresses || !fs.existsSync(`/sys/class/net/${name}`)) throw new AgentError('ENODEV', `interface ${name} vanished`);
  return { name, mac: readSys(`/sys/class/net/${name}/address`), up: readSys(`/sys/class/net/${name}/operstate`) === 'up', addresses };
}

/** failover quiesce: traffic to the standby before the primary is unplugged. */
async function failoverToStandby(bond: string): Promise<void> {
  if (!fs.existsSync(bondDir(bond))) throw new AgentError('EINVAL', `no failover bond ${bond} in this VM: start the job with migration.quiesce: failover`);
  const stby = slaveName(bond, 's');
  const deadline = Date.now() + 10_000;
  while (readSys(`${bondDir(bond)}/active_slave`) !== stby) {
    if (Date.now() > deadline) throw new AgentError('ETIMEDOUT', `bond ${bond} did not switch to ${stby}`);
    fs.writeFileSync(`${bondDir(bond)}/active_slave`, stby);
    await sleep(20);
  }
}

/** An MTU from the host (checked: a guest applies only a sane value). */
function checkMtu(v: unknown): number | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 576 || v > 65520) throw new AgentError('EINVAL', `bad MTU ${JSON.stringify(v)}`);
  return v;
}

async function netConfig(a: NetConfigArgs): Promise<InterfaceReport> {
  if (a.standbyMac) return bondConfig(a as NetConfigArgs & { standbyMac: string });
  const mac = String(a.mac).toLowerCase();
  if (!/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/.test(mac)) throw new AgentError('EINVAL', `bad MAC ${a.mac}`);
  if (!/^[A-Za-z0-9_.-]{1,15}$/.test(a.name)) throw new AgentError('EINVAL', `bad interface name ${a.name}`);
  if (!/^\d+\.\d+\.\d+\.\d+\/\d+$/.test(a.address)) throw new AgentError('EINVAL', `bad address ${a.address}`);
  const mtu = checkMtu(a.mtu);
  const deadline = Date.now() + (a.waitMs ?? 10_000);
  let cur: string | undefined;
  for (;;) {
    cur = fs.readdirSync('/sys/class/net').find((n) => readSys(`/sys/class/net/${n}/address`) === mac);
    if (cur || Date.now() > deadline) break;
    await sleep(50);
  }
  if (!cur) throw new AgentError('ENODEV', `no interface with MAC ${mac} appeared within ${a.waitMs ?? 10_000} ms`);
  // one `ip` process for the whole change (rename, address, up) and the report: under TCG every exec
  // costs ~0.1 s, and the ranks are frozen while this runs (six execs before: ~0.6 s)
  const cmds = [
    ...(cur !== a.name ? [`link set dev ${cur} down`, `link set dev ${cur} name ${a.name}`] : []),
    `addr flush dev ${a.name}`,
    `addr add ${a.address} dev ${a.name}`,
    ...(mtu ? [`link set dev ${a.name} mtu ${mtu}`] : []),
    `link set dev ${a.name} up`,
    `addr show dev ${a.name}`,
  ];
  const shown = await ipBatch(cmds);
  const upDeadline = Date.now() + 10_000;
  while (readSys(`/sys/class/net/${a.name}/operstate`) !== 'up' && Date.now() < upDeadline) await sleep(20);
  if (a.announce) {
    const ip = a.address.split('/')[0]!;
    // gratuitous ARP so the switches learn where the MAC lives now (the MAC itself never changes, so
    // the peers' ARP caches stay right). Sent in the background: arping -c 2 takes a second, and
    // every millisecond here is time the ranks stay frozen.
    void execFileP('arping', ['-U', '-c', '2', '-I', a.name, ip]).catch(() => execFileP('busybox', ['arping', '-U', '-c', '2', '-I', a.name, ip]).catch(() => undefined));
  }
  return reportOf(a.name, shown);
}

/** `ip -json -batch -`: the commands in one process (it stops at the first that fails); its JSON output. */
function ipBatch(cmds: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile('ip', ['-json', '-batch', '-'], { timeout: 15_000 }, (err, stdout, stderr) => {
      if (err) reject(new AgentError('EIO', `ip: ${String(stderr).trim() || err.message} (commands: ${cmds.join('; ')})`));
      else resolve(String(stdout));
    });
    child.stdin!.end(cmds.join('\n') + '\n');
  });
}

/** inet addresses per interface from `ip -json addr show` output (one JSON array per show command). */
function inetAddrs(json: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const line of json.split('\n')) {
    const t = line.trim();
    if (!t.startsWith('[')) continue;
    for (const i of JSON.parse(t) as Array<{ ifname: string; addr_info?: Array<{ family: string; local: string; prefixlen: number }> }>) {
      if (i.addr_info) out.set(i.ifname, i.addr_info.filter((x) => x.family === 'inet').map((x) => `${x.local}/${x.prefixlen}`));
    }
  }
  return out;
}

// ---------------- quiesce ----------------
let frozenPids: number[] = [];

function jobPids(): number[] {
  // fallback: every descendant of job sessions
  const children = new Map<number, number[]>();
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    const st = readSys(`/proc/${d}/stat`);
    const m = /\) \S+ (\d+)/.exec(st);
    if (!m) continue;
    const pp = Number(m[1]);
    if (!children.has(pp)) children.set(pp, []);
    children.get(pp)!.push(Number(d));
  }
  const out: number[] = [];
  const stack = [...sessions.values()].filter((s) => s.job).map((s) => s.pid);
  while (stack.length) {
    const p = stack.pop()!;
    out.push(p);
    stack.push(...(children.get(p) ?? []));
  }
  return out;
}

// A quiesce that is overtaken by a resume (the host gave up waiting and rolled back) must not
// freeze anything when it finally runs: every quiesce/resume takes a ticket, later ones win.
let quiesceTicket = 0;

async function quiesce(a: QuiesceArgs): Promise<{ adapter: string; frozen: number }> {
  const ticket = ++quiesceTicket;
  if (a.stallMs) await sleep(Math.min(a.stallMs, 600_000));
  if (ticket !== quiesceTicket) throw new AgentError('ECANCELED', 'quiesce overtaken by a resume; nothing frozen');
  if (a.adapter === 'freeze') {
    if (ensureJobCgroup()) {
      fs.writeFileSync(`${JOB_CGROUP}/cgroup.freeze`, '1');
      const deadline = Date.now() + 10_000;
      while (!/frozen 1/.test(readSys(`${JOB_CGROUP}/cgroup.events`)) && Date.now() < deadline) await sleep(10);
      const n = readSys(`${JOB_CGROUP}/cgroup.procs`).split('\n').filter(Boolean).length;
      if (!/frozen 1/.test(readSys(`${JOB_CGROUP}/cgroup.events`))) throw new AgentError('ETIMEDOUT', 'job cgroup did not freeze within 10 s');
      return { adapter: 'freeze', frozen: n };
    }
    frozenPids = jobPids();
    for (const p of frozenPids) try { process.kill(p, 'SIGSTOP'); } catch { /* gone */ }
    return { adapter: 'freeze', frozen: frozenPids.length };
  }
  if (a.adapter === 'failover') {
    // ranks keep running over the standby path
    await failoverToStandby(a.bond ?? 'symfab0');
    return { adapter: 'failover', frozen: 0 };
  }
  if (a.adapter === 'hooks') {
    if (a.command) await execFileP('/bin/sh', ['-c', a.command], { timeout: 60_000 });
    return { adapter: 'hooks', frozen: 0 };
  }
  throw new AgentError('EINVAL', `unknown quiesce adapter ${String(a.adapter)}`);
}

async function resume(a: QuiesceArgs): Promise<{ adapter: string }> {
  quiesceTicket++;
  if (a.adapter === 'freeze') {
    if (ensureJobCgroup()) fs.writeFileSync(`${JOB_CGROUP}/cgroup.freeze`, '0');
    for (const p of frozenPids) try { process.kill(p, 'SIGCONT'); } catch { /* gone */ }
    frozenPids = [];
  } else if (a.adapter === 'hooks') {
    if (a.command) await execFileP('/bin/sh', ['-c', a.command], { timeout: 60_000 });
  }
  return { adapter: a.adapter };
}

// ---------------- rsh relay (mpirun's plm_rsh_agent) ----------------
const rshClients = new Map<string, net.Socket>();
let rshCounter = 0;

function startRshServer(): void {
  fs.mkdirSync(RSH_SOCK.replace(/\/[^/]+$/, ''), { recursive: true });
  try { fs.unlinkSync(RSH_SOCK); } catch { /* none */ }
  const srv = net.createServer((sock) => {
    const dec = new LineDecoder(1024 * 1024);
    let rid: string | undefined;
    sock.on('data', (d) => {
      let lines: string[];
      try { lines = dec.push(d); } catch { sock.destroy(); return; }
      for (const l of lines) {
        if (rid) continue;
        try {
          const req = JSON.parse(l) as { host: string; argv: string[] };
          rid = `r${process.pid}-${++rshCounter}`;
          rshClients.set(rid, sock);
          ch.sendSeq({ t: 'rsh', rid, host: String(req.host), argv: req.argv.map(String) });
        } catch {
          sock.end(JSON.stringify({ code: 255, error: 'bad request' }) + '\n');
        }
      }
    });
    sock.on('close', () => { if (rid) rshClients.delete(rid); });
    sock.on('error', () => {});
  });
  srv.listen(RSH_SOCK, () => fs.chmodSync(RSH_SOCK, 0o600));
}

// ---------------- requests ----------------
class AgentError extends Error {
  constructor(readonly code: string, message: string) {
    super(message);
  }
}

async function handleReq(op: string, args: Record<string, unknown>): Promise<unknown> {
  switch (op) {
    case 'exec':
      return startExec(args as unknown as ExecArgs);
    case 'net-config':
      return netConfig(args as unknown as NetConfigArgs);
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
      return quiesce(args as unknown as QuiesceArgs);
    case 'resume':
      return resume(args as unknown as QuiesceArgs);
    case 'info':
      return { ...agentInfo(), loadavg: os.loadavg(), freemem: os.freemem(), totalmem: os.totalmem(), sessions: [...sessions.keys()] };
    case 'kill':
      killSession(String(args.sid), String(args.signal ?? 'SIGTERM'));
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
    case 'in': {
      const s = sessions.get(f.sid);
      if (!s) return;
      if (f.data) {
        const b = Buffer.from(f.data, 'base64');
        if (s.pty) s.pty.write(b.toString('utf8'));
        else s.child?.stdin?.write(b);
      }
      if (f.eof) s.child?.stdin?.end();
      return;
    }
    case 'resize':
      sessions.get(f.sid)?.pty?.resize(f.cols, f.rows);
      return;
    case 'signal':
      try { killSession(f.sid, f.sig); } catch { /* bad signal */ }
      return;
    case 'rsh-out': {
      rshClients.get(f.rid)?.write(JSON.stringify({ fd: f.fd, data: f.data }) + '\n');
      return;
    }
    case 'rsh-exit': {
      const sock = rshClients.get(f.rid);
      rshClients.delete(f.rid);
      sock?.end(JSON.stringify({ code: f.code }) + '\n');
      return;
    }
    default:
      return;
  }
};

process.on('uncaughtException', (e) => log(`uncaught: ${e.stack ?? e}`));
process.on('unhandledRejection', (e) => log(`unhandled: ${(e as Error)?.stack ?? e}`));
startRshServer();
ch.start();
log(`started (pid ${process.pid}, port ${PORT})`);
