// Simulated hosts for bench/scale.ts: one process holds many fake host agents, each a real job-channel
// connection (agent/channel.ts: the same handshake and framing as `symrun agent`) to the coordinator
// under test, and each VM's guest agent answered in place (sync, quiesce/resume, net-config, ping).
// What a fake does not simulate: QEMU, the guest's work, the transfer. Every call returns at once
// (mig.perform after --perform-ms), so the coordinator's own cost is what the bench sees.
//
// Driven over IPC by bench/scale.ts (child_process.fork):
//   parent -> {cmd:'start', host, port, secret, agents:[{name, vms:[...]}], performMs}
//   child  -> {ready: N} once every agent is connected and has announced its VMs' guest links
//   parent -> {cmd:'subscribe', host, port, secret, subs:[{name, nodes}]}   (watchd subscribers instead)
//   child  -> {subscribed: N}, then {changedAt: ms since the epoch} for every watch.changes received
//   parent -> {cmd:'stats'}  child -> {stats: {calls: {method: n}, frames: n, cpuMs}}
//   parent -> {cmd:'stop'}   child exits
import { connectChannel, type RpcPeer } from '../launcher/src/agent/channel.js';
import { PROTOCOL_VERSION, type GuestFrame, type HostFrame } from '../guest/protocol/index.js';
import { DEFAULTS } from '../launcher/src/defaults.js';

interface SubscribeMsg { cmd: 'subscribe'; host: string; port: number; secret: string; subs: Array<{ name: string; nodes: string[] }> }
interface StartMsg { cmd: 'start'; host: string; port: number; secret: string; agents: Array<{ name: string; vms: string[] }>; performMs: number }

const calls: Record<string, number> = {};
let frames = 0;

/** One fake host agent: its VMs (those it runs now) and their guests. */
function fakeAgent(peer: RpcPeer, name: string, initial: string[], performMs: number): void {
  const vms = new Set(initial);
  const guest = (vm: string, f: GuestFrame) => { frames++; peer.notify('guest.frame', { vm, frame: f }); };
  const count = (m: string) => { calls[m] = (calls[m] ?? 0) + 1; };
  const ok = (m: string, v: unknown = {}) => peer.handle(m, () => { count(m); return v; });
  peer.handle('mig.prepare', (p: { spec: { name: string } }) => { count('mig.prepare'); vms.add(p.spec.name); return { uri: `tcp:${name}:4444`, pid: 1 }; });
  peer.handle('vm.devices', () => { count('vm.devices'); return [{ qdevId: DEFAULTS.interconnect.deviceId }]; });
  peer.handle('mig.perform', async () => {
    count('mig.perform');
    await new Promise((r) => setTimeout(r, performMs));
    return { status: 'completed', transferredBytes: 1, remainingBytes: 0, totalBytes: 1 };
  });
  peer.handle('mig.finish', () => { count('mig.finish'); return { status: 'running' }; });
  peer.handle('guest.reconnect', (p: { name: string }) => { count('guest.reconnect'); peer.notify('guest.link', { vm: p.name, up: true }); return {}; });
  peer.handle('vm.stop', (p: { name: string }) => { count('vm.stop'); vms.delete(p.name); return {}; });
  for (const m of ['vm.unplug', 'vm.plug', 'vm.cont', 'mig.cancel', 'mig.action', 'vm.kill']) ok(m);
  peer.on('event', (ev: string, data: { vm: string; frame: HostFrame }) => {
    if (ev !== 'guest.send' || !vms.has(data.vm)) return;
    const f = data.frame;
    if (f.t === 'sync') guest(data.vm, { t: 'sync', id: f.id, v: PROTOCOL_VERSION, agent: { version: 'fake', hostname: data.vm, pid: 1, bootId: 'fake', uptime: 1 } });
    else if (f.t === 'ping') guest(data.vm, { t: 'pong', id: f.id });
    else if (f.t === 'req') {
      const value = f.op === 'quiesce' ? { adapter: 'freeze', frozen: 1 } : f.op === 'resume' ? { adapter: 'freeze' } : f.op === 'net-config' ? { name: 'symfab0', mac: '52:54:00:00:00:01', up: true, addresses: [] } : {};
      guest(data.vm, { t: 'res', id: f.id, ok: true, value });
    }
  });
  peer.start();
  for (const vm of vms) peer.notify('guest.link', { vm, up: true });
}

const peers: RpcPeer[] = [];
process.on('message', async (m: StartMsg | SubscribeMsg | { cmd: 'stats' | 'stop' }) => {
  if (m.cmd === 'subscribe') {
    await Promise.all(m.subs.map(async (s) => {
      const peer = await connectChannel({ host: m.host, port: m.port, secret: m.secret, name: s.name, timeoutMs: 60_000 });
      peers.push(peer);
      peer.on('event', (ev: string) => { if (ev === 'watch.changes') process.send!({ changedAt: performance.timeOrigin + performance.now() }); });
      peer.start();
      await peer.call('watch.subscribe', { nodes: s.nodes }, { timeoutMs: 60_000 });
    }));
    process.send!({ subscribed: m.subs.length });
  } else if (m.cmd === 'start') {
    for (const a of m.agents) {
      const peer = await connectChannel({ host: m.host, port: m.port, secret: m.secret, name: a.name, timeoutMs: 60_000 });
      peers.push(peer);
      fakeAgent(peer, a.name, a.vms, m.performMs);
    }
    process.send!({ ready: m.agents.length });
  } else if (m.cmd === 'stats') {
    const u = process.cpuUsage();
    process.send!({ stats: { calls, frames, cpuMs: (u.user + u.system) / 1000 } });
  } else if (m.cmd === 'stop') {
    for (const p of peers) p.close();
    process.exit(0);
  }
});
process.on('disconnect', () => process.exit(0));
