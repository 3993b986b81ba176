// Restart from a coordinated checkpoint (checkpoint/manifest.ts): in the running job after a node died
// (reactive restart, job.ts) and in a new allocation (`symrun restart DIR`). Picks the checkpoint and
// builds the ports of the restart protocol (protocol/restart.ts: stop, restore, cont, replug,
// reconfigure, resume; no rollback), run by the shared executor with the job's journal.
import fs from 'node:fs';
import path from 'node:path';
import { SymError, EXIT } from '../errors.js';
import { DEFAULTS, PROTOCOL_DEFAULTS } from '../defaults.js';
import { listCheckpoints, verifyCheckpoint, type CheckpointManifest, type CheckpointVm } from '../checkpoint/manifest.js';
import { Executor, type OpJournal, type Ports } from '../protocol/executor.js';
import { readJournal } from '../protocol/journal.js';
import type { OpEvent } from '../protocol/events.js';
import { RESTART, type RestartForward } from '../protocol/restart.js';
import type { JobAccess } from './migrate.js';
import { findArgs, plugParams, type InterconnectDevice } from './job/interconnect.js';

export type RestartPhase = RestartForward;

export interface PickedCheckpoint {
  dir: string;
  manifest: CheckpointManifest;
  /** newer checkpoints of the job that were not used, and why */
  refused: Array<{ name: string; reason: string }>;
  verifyMs: number;
}

/**
 * The checkpoint to restart from: `from` (a name under root, or a checkpoint directory), else the newest
 * complete one of `jobId` under root whose files verify. A corrupt or incomplete checkpoint is never used.
 */
export async function pickCheckpoint(root: string, o: { jobIds?: string[]; from?: string; signal?: AbortSignal } = {}): Promise<PickedCheckpoint> {
  const t0 = performance.now();
  if (o.from) {
    const dir = path.isAbsolute(o.from) ? o.from : path.join(root, o.from);
    if (!fs.existsSync(dir)) throw new SymError('ESYM_CKPT_REFUSED', { message: `no checkpoint ${o.from} in ${root}`, field: '--from', value: o.from, fix: `symrun checkpoints ${root} lists them`, exitCode: EXIT.usage });
    const r = await verifyCheckpoint(dir, { signal: o.signal });
    if (!r.ok || !r.manifest) {
      throw new SymError('ESYM_CKPT_REFUSED', {
        message: `checkpoint ${path.basename(dir)} is ${r.status}: ${r.problems.join('; ')}`,
        field: '--from', value: o.from,
        fix: `pick a complete one: symrun checkpoints ${root}`,
        exitCode: EXIT.usage,
      });
    }
    restartable(dir, r.manifest);
    return { dir, manifest: r.manifest, refused: [], verifyMs: Math.round(performance.now() - t0) };
  }
  if (!fs.existsSync(root)) throw new SymError('ESYM_NO_CHECKPOINT', { message: `no checkpoint yet: ${root} does not exist`, fix: 'take checkpoints while the job runs (--checkpoint-interval, or `symrun checkpoint`)', exitCode: EXIT.runtime });
  // sizes first (cheap), then hashes only for the candidate actually used
  const all = (await listCheckpoints(root, { hashes: false, signal: o.signal })).filter((c) => !o.jobIds || (c.jobId !== undefined && o.jobIds.includes(c.jobId)));
  const refused: PickedCheckpoint['refused'] = [];
  for (const c of all) {
    if (c.status !== 'complete') { refused.push({ name: c.name, reason: `${c.status}: ${c.reason ?? ''}`.trim() }); continue; }
    const r = await verifyCheckpoint(c.dir, { signal: o.signal });
    if (!r.ok || !r.manifest) { refused.push({ name: c.name, reason: `${r.status}: ${r.problems.join('; ')}` }); continue; }
    try { restartable(c.dir, r.manifest); } catch (e) { refused.push({ name: c.name, reason: (e as Error).message }); continue; }
    return { dir: c.dir, manifest: r.manifest, refused, verifyMs: Math.round(performance.now() - t0) };
  }
  throw new SymError('ESYM_NO_CHECKPOINT', {
    message: `no usable checkpoint${o.jobIds ? ` of job ${o.jobIds.join(' or ')}` : ''} in ${root}${refused.length ? ` (refused: ${refused.map((r) => `${r.name}: ${r.reason}`).join('; ')})` : ''}`,
    fix: 'take checkpoints while the job runs (--checkpoint-interval, or `symrun checkpoint`)',
    exitCode: EXIT.runtime,
  });
}

function restartable(dir: string, m: CheckpointManifest): void {
  if (!m.sessions || m.vms.some((v) => v.index === undefined || !v.ip)) {
    throw new SymError('ESYM_CKPT_OLD', { message: `checkpoint ${path.basename(dir)} was written by symrun ${m.symrunVersion} without the session record a restart needs`, fix: 'restart from a checkpoint taken by this version', exitCode: EXIT.usage });
  }
}

export interface RestoreOptions {
  access: JobAccess;
  checkpoint: PickedCheckpoint;
  /** VM -> host to restore it on */
  placement: Map<string, string>;
  /** VMs whose QEMU still runs somewhere (host): stopped first */
  running: Array<{ vm: string; host: string }>;
  emit(e: OpEvent<string>): void;
  op: string;
  /** the job's journal: a successor coordinator begins an interrupted restart again */
  journal?: OpJournal;
}

export interface RestoreResult {
  checkpoint: string;
  phases: Partial<Record<RestartPhase, number>>;
  totalMs: number;
  vms: Array<{ vm: string; host: string; loadMs?: number }>;
}

/** Bring every VM of the checkpoint back on `placement` and let the ranks go on (protocol/restart.ts). */
export async function restoreVms(o: RestoreOptions): Promise<RestoreResult> {
  const m = o.checkpoint.manifest;
  const loads = new Map<string, number>();
  const names = m.vms.map((v) => v.name);
  const exec = new Executor({
    op: o.op, machine: RESTART, ports: restartPorts(o, loads), journal: o.journal,
    onEvent: (e) => o.emit({ ...e, data: { vm: names.join(','), from: m.name, to: 'job', checkpoint: m.name, ...(e.data ?? {}) } }),
  });
  void o.journal?.write({ op: o.op, kind: 'restart', phase: 'new', state: exec.state, params: { checkpoint: o.checkpoint.dir, placement: Object.fromEntries(o.placement), running: o.running } });
  const r = await exec.start();
  if (r.outcome !== 'done') {
    throw new SymError('ESYM_RESTART', { message: `restart from ${m.name}: ${r.error?.message ?? r.outcome}`, fix: `restart the job in a new allocation: symrun restart ${path.dirname(o.checkpoint.dir)} --from ${m.name}` });
  }
  return { checkpoint: o.checkpoint.dir, phases: r.phasesMs, totalMs: r.totalMs, vms: names.map((n) => ({ vm: n, host: o.placement.get(n)!, loadMs: loads.get(n) })) };
}

function restartPorts(o: RestoreOptions, loads: Map<string, number>): Ports<RestartForward> {
  const { access: job, checkpoint: ck } = o;
  const m = ck.manifest;
  const names = m.vms.map((v) => v.name);
  const rec = (n: string): CheckpointVm => m.vms.find((v) => v.name === n)!;
  /** fn on every VM at once; one error naming every VM that failed */
  const each = async <T>(what: string, fn: (n: string) => Promise<T>): Promise<void> => {
    const rs = await Promise.allSettled(names.map(fn));
    const errs = rs.flatMap((r, i) => (r.status === 'rejected' ? [`${names[i]}: ${(r.reason as Error).message}`] : []));
    if (errs.length) throw new SymError('ESYM_RESTART', { message: `${what} failed on ${errs.join('; ')}` });
  };
  /** the device of VM n on its target, claimed there (a VF on a spare: one of that host's); the checkpoint's kind */
  const claimed = new Map<string, InterconnectDevice>();
  const claim = async (n: string, host: string): Promise<InterconnectDevice> => {
    const want = deviceOf(rec(n).device).kind;
    const d = await job.device(n, host);
    if (d.kind !== want) {
      throw new SymError('ESYM_DEVICE_KIND', {
        message: `${n} was checkpointed with a ${want === 'vfio' ? 'passed-through VF' : 'emulated NIC'}; this job gives it a ${d.kind === 'vfio' ? 'VF' : 'NIC'}`,
        field: 'interconnect.type', value: d.kind === 'vfio' ? 'vfio' : 'emulated',
        fix: `restart with the interconnect the checkpoint was taken with (interconnect.type: ${want === 'vfio' ? 'vfio' : 'emulated'})`,
      });
    }
    claimed.set(n, d);
    return d;
  };
  const hostOf = (h: string) => {
    const x = job.hosts().find((y) => y.name === h);
    if (!x) throw new SymError('ESYM_NO_HOST', { message: `no host ${h} in the job` });
    return x;
  };
  return {
    async stop() {
      // the survivors, and anything of this VM left on its target (e.g. a migration's destination)
      const stops = [...o.running, ...names.map((n) => ({ vm: n, host: o.placement.get(n)! }))];
      const seen = new Set<string>();
      await Promise.all(stops.filter((s) => { const k = `${s.vm}@${s.host}`; if (seen.has(k)) return false; seen.add(k); return true; }).map(async (s) => {
        try { await job.peer(s.host).call('vm.stop', { name: s.vm }, { timeoutMs: DEFAULTS.teardown.totalMs }); } catch { /* host lost: nothing to stop there */ }
      }));
    },
    restore: () => each('restore', async (n) => {
      const host = o.placement.get(n)!;
      const v = job.vm(n)!;
      job.setVmHost(n, host); // detaches the guest link; the restored guest syncs on the new one
      v.client.rewind(rec(n).guestSeq ?? 0);
      // the device first: a target without a usable VF fails the restart before the state is loaded
      await claim(n, host);
      const spec = job.spec(n, host, false);
      const r = await job.peer(host).call<{ loadMs: number }>('ckpt.restore', { spec, taps: job.taps(n, hostOf(host).bridge), file: path.join(ck.dir, rec(n).file), timeoutMs: 600_000 }, { timeoutMs: 610_000 });
      loads.set(n, r.loadMs);
    }),
    cont: () => each('cont', (n) => job.peer(job.vm(n)!.host).call('vm.cont', { name: n }, { timeoutMs: 30_000 })),
    replug: () => each('replug', async (n) => {
      const v = job.vm(n)!;
      // the kind of device the VM had when it was saved (a checkpoint of a vfio job plugs vfio again),
      // the one it holds on its host now (a VF moved to a spare is another VF, with another identity)
      const d = claimed.get(n) ?? await claim(n, v.host);
      await job.peer(v.host).call('vm.plug', plugParams(n, d, hostOf(v.host).bridge), { timeoutMs: DEFAULTS.hotplug.plugTimeoutMs + 2000 });
    }),
    reconfigure: () => each('reconfigure', async (n) => {
      const v = job.vm(n)!;
      await v.client.ready(PROTOCOL_DEFAULTS.finishTimeoutMs);
      // the saved configuration, found by the identity of the device it has now (a VF's MAC / GUID follow the node)
      const d = claimed.get(n) ?? await claim(n, v.host);
      await v.client.request('net-config', { ...rec(n).network, ...findArgs(d, v.mac) }, { timeoutMs: PROTOCOL_DEFAULTS.reconfigureTimeoutMs });
    }),
    resume: () => each('resume', (n) => job.vm(n)!.client.request('resume', resumeArgs(job, m), { timeoutMs: PROTOCOL_DEFAULTS.quiesceTimeoutMs })),
  };
}

function resumeArgs(job: JobAccess, m: CheckpointManifest): Record<string, unknown> {
  const adapter = m.quiesce ?? 'freeze';
  const a: Record<string, unknown> = { adapter };
  if (adapter === 'hooks' && job.migration.hooks.resume) a.command = job.migration.hooks.resume;
  return a;
}

/**
 * Where every VM goes: a VM whose host is alive stays there; the others take a usable spare each
 * (in host order). Returns the VMs that found no host.
 */
export function planRestart(vms: Array<{ vm: string; host: string }>, hosts: Array<{ name: string; usable: boolean }>): { placement: Map<string, string>; moved: Array<{ vm: string; from: string; to: string }>; homeless: string[] } {
  const placement = new Map<string, string>();
  const usable = new Set(hosts.filter((h) => h.usable).map((h) => h.name));
  const taken = new Set<string>();
  for (const v of vms) if (usable.has(v.host) && !taken.has(v.host)) { placement.set(v.vm, v.host); taken.add(v.host); }
  const free = hosts.filter((h) => h.usable && !taken.has(h.name)).map((h) => h.name);
  const moved: Array<{ vm: string; from: string; to: string }> = [];
  const homeless: string[] = [];
  for (const v of vms) {
    if (placement.has(v.vm)) continue;
    const to = free.shift();
    if (!to) { homeless.push(v.vm); continue; }
    placement.set(v.vm, to);
    moved.push({ vm: v.vm, from: v.host, to });
  }
  return { placement, moved, homeless };
}

/** A restart the journal shows in flight (its coordinator died): what a successor needs to begin it again. */
export interface RestartInFlight { op: string; phase: string; checkpoint: string; placement: Map<string, string> }

export function restartsInFlight(journalFile: string): RestartInFlight[] {
  const out: RestartInFlight[] = [];
  for (const r of readJournal(journalFile).values()) {
    if (r.kind !== 'restart' || !r.params || r.state.phase === 'new' || RESTART.isTerminal(r.state.phase)) continue;
    const p = r.params as { checkpoint?: unknown; placement?: unknown };
    if (typeof p.checkpoint !== 'string' || !p.placement || typeof p.placement !== 'object') continue;
    const placement = new Map(Object.entries(p.placement as Record<string, unknown>).filter((e): e is [string, string] => typeof e[1] === 'string'));
    out.push({ op: r.op, phase: r.state.phase, checkpoint: p.checkpoint, placement });
  }
  return out;
}

/** A checkpoint's device record (before the kind was recorded, every device was a NIC on a tap). */
function deviceOf(d: CheckpointVm['device']): InterconnectDevice {
  if ('kind' in d) return d;
  return { kind: 'nic', id: d.id, netdevId: d.netdevId, tap: d.tap, mac: d.mac, model: d.model === 'e1000e' ? 'e1000e' : 'virtio-net-pci', bus: d.bus };
}
