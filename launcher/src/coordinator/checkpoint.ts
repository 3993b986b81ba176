// Coordinated checkpoints of a running job: builds the phase ports of the checkpoint protocol
// (protocol/checkpoint.ts) out of host-agent RPCs and guest-agent requests, exactly like migrate.ts does
// for migrations, and runs them with the same executor (journal, events, rollback and recovery rules).
//   prepare      coordinator: disk-space check (statfs; guest RAM per VM), ROOT/NAME.tmp-XXXX
//   quiesce      guest agents: every rank frozen (the QuiesceGate shared with migrations)
//   unplug       host agents: every VM's interconnect device removed (no packet between the saves)
//   save         host agents, all VMs at once: stop + migrate "exec:cat > FILE" (FILE.part, fsync, rename)
//   cont         host agents: every VM runs again
//   replug / reconfigure / resume   as after a migration
//   commit       coordinator: sha256 of every file, manifest.json, fsync, rename to NAME, prune (--keep)
// A checkpoint and a migration never overlap: migrations are refused while the VMs are marked
// `checkpointing`, and a checkpoint is refused while a migration runs.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { SymError, EXIT } from '../errors.js';
import { DEFAULTS, PROTOCOL_DEFAULTS, CHECKPOINT_DEFAULTS } from '../defaults.js';
import { Executor, type OpJournal, type Ports } from '../protocol/executor.js';
import { opEvent, type OpEvent } from '../protocol/events.js';
import { CHECKPOINT, type CkptForward, type CkptRollback, type CkptMark, type CkptState } from '../protocol/checkpoint.js';
import type { Terminal } from '../protocol/machine.js';
import {
  CKPT_FORMAT, CKPT_FORMAT_VERSION, checkpointName, checkSpace, createTempDir, estimateBytes, freeBytes, hashFile, noSpaceError,
  publish, pruneCheckpoints, stateFileName, symrunVersion, writeManifest, type CheckpointManifest, type CheckpointSessions, type CheckpointVm,
} from '../checkpoint/manifest.js';
import { detectQemu, qemuArgs } from '../vm/index.js';
import type { SymrunConfig } from '../config/types.js';
import type { JobAccess, QuiesceGate, QuiesceAdapter } from './migrate.js';
import { checkTransportAdapter } from '../mpi/transport.js';
import { parseFaults } from './faults.js';
import { isPlugged, plugParams, unplugParams } from './job/interconnect.js';
import { readJournal } from '../protocol/journal.js';
import type { CheckpointRequest, CheckpointResult } from '../wire/control.js';

export type CheckpointOutcome = Terminal;

export type { CheckpointRequest, CheckpointResult } from '../wire/control.js';

export interface CheckpointInfo {
  op: string;
  name: string;
  root: string;
  phase: string;
  startedAt: string;
  reason?: string;
  result?: CheckpointResult;
}

/** What checkpoints need of the job beyond JobAccess (job.ts hands these over). */
export interface CheckpointHost {
  readonly access: JobAccess;
  config(): SymrunConfig;
  app(): { app: string[]; cwd: string };
  /** job state: checkpoints only while `running` */
  state(): string;
  gate(): QuiesceGate;
  migrating(): boolean;
  /** the job's journal (journal.jsonl, shared with migrations) */
  journal(): OpJournal | undefined;
  /** sessions running in the guests (recorded for restart) */
  sessions(): CheckpointSessions;
  emit(e: OpEvent<string>): void;
}

type CheckpointExecutor = Executor<CkptForward, CkptRollback, CkptMark>;
interface Entry { info: CheckpointInfo; exec: CheckpointExecutor; done: Promise<CheckpointResult> }

export class Checkpoints {
  private ops = new Map<string, Entry>();
  private imageHashMemo = new Map<string, string>();

  constructor(private h: CheckpointHost) {}

  list(): CheckpointInfo[] {
    return [...this.ops.values()].map((o) => ({ ...o.info, phase: o.exec.state.phase }));
  }

  active(): Entry | undefined {
    return [...this.ops.values()].find((o) => !o.info.result);
  }

  /** Control-socket entry: start one checkpoint; with wait, resolve with its result. */
  async request(a: CheckpointRequest & { wait?: boolean }): Promise<{ op: string; name: string; result?: CheckpointResult }> {
    const { op, name, done } = this.checkpoint(a);
    if (a.wait === false) return { op, name };
    return { op, name, result: await done };
  }

  checkpoint(req: CheckpointRequest): { op: string; name: string; done: Promise<CheckpointResult> } {
    const job = this.h.access;
    const cfg = this.h.config();
    if (this.h.state() !== 'running') throw new SymError('ESYM_JOB_STATE', { message: `job ${job.id} is ${this.h.state()}; a checkpoint is taken while the job runs`, fix: 'wait until `symrun status` shows the job running' });
    const root = req.dir ?? cfg.checkpoint.dir;
    if (!root) throw new SymError('ESYM_CKPT_NO_DIR', { message: 'no checkpoint directory', field: '--checkpoint-dir', fix: 'start the job with --checkpoint-dir DIR (or checkpoint.dir in symrun.yaml), or pass --dir DIR to symrun checkpoint', exitCode: EXIT.usage });
    if (!path.isAbsolute(root)) throw new SymError('ESYM_CKPT_DIR', { message: `checkpoint directory must be absolute: ${root}`, field: '--dir', value: root, exitCode: EXIT.usage, fix: 'give an absolute path (host agents and QEMU do not share your working directory)' });
    const keep = req.keep ?? cfg.checkpoint.keep;
    if (!Number.isInteger(keep) || keep < 0) throw new SymError('ESYM_USAGE', { message: `--keep must be a whole number, 0 (all) or more; got ${keep}`, field: '--keep', value: keep, exitCode: EXIT.usage });
    // a checkpoint quiesces with freeze (or hooks): refused for an RDMA job before anything is touched
    if (job.transport) checkTransportAdapter({ ...job.transport, adapter: cfg.migration.quiesce, op: 'checkpoint', field: 'migration.quiesce' });
    const busy = this.active();
    if (busy) throw new SymError('ESYM_BUSY', { message: `checkpoint ${busy.info.name} is being taken (${busy.exec.state.phase})`, fix: 'wait for it to finish' });
    if (this.h.migrating()) throw new SymError('ESYM_BUSY', { message: 'a migration is in progress; a checkpoint needs every VM where it is', fix: 'wait for the migration to finish (symrun status), then checkpoint' });
    const names = job.vmNames();
    for (const n of names) {
      const v = job.vm(n)!;
      if (v.state !== 'ready' && v.state !== 'running') throw new SymError('ESYM_VM_STATE', { message: `${n} is ${v.state}; every VM must run to be checkpointed` });
    }

    const op = `c${crypto.randomBytes(3).toString('hex')}`;
    const name = checkpointName(job.id);
    const info: CheckpointInfo = { op, name, root, phase: 'queued', startedAt: new Date().toISOString(), reason: req.reason };
    const ctx: Ctx = { op, name, root, keep, names, tmp: undefined, vms: new Map(), warnings: [], pruned: [], faults: Array.isArray(req.faults) ? req.faults.map(String) : [] };
    const exec: CheckpointExecutor = new Executor({
      op, machine: CHECKPOINT, ports: this.ports(ctx),
      journal: this.h.journal(),
      onEvent: (e) => {
        if (e.phase === 'quiesce' && e.event === 'begin') ctx.frozenAt = performance.now();
        if (e.phase === 'resume' && e.event === 'end' && ctx.frozenAt !== undefined) ctx.frozenMs = Math.round(performance.now() - ctx.frozenAt);
        this.h.emit({ ...e, data: { vm: names.join(','), from: 'job', to: ctx.final ?? path.join(root, name), checkpoint: name, ...(e.data ?? {}) } });
      },
    });
    // migrations are refused while the VMs are being checkpointed (their state says why)
    const marked: string[] = [];
    for (const n of names) { const v = job.vm(n)!; v.state = 'checkpointing'; marked.push(n); }
    void this.h.journal()?.write({ op, kind: 'checkpoint', phase: 'new', state: exec.state, params: { ...info, keep } });
    const done = exec.start().then((r) => {
      for (const n of marked) { const v = job.vm(n); if (v && v.state === 'checkpointing') v.state = 'running'; }
      const res: CheckpointResult = {
        ...r, name, root, ...(r.outcome === 'done' && ctx.final ? { path: ctx.final } : {}),
        vms: [...ctx.vms.values()].filter((v) => v.sha256).map((v) => ({ name: v.name, host: v.host, file: v.file, size: v.size, sha256: v.sha256, saveMs: v.saveMs })),
        sizeBytes: ctx.sizeBytes ?? 0, frozenMs: ctx.frozenMs, pruned: ctx.pruned, warnings: ctx.warnings,
      };
      if (r.outcome !== 'done') { res.vms = []; res.sizeBytes = 0; }
      info.result = res;
      return res;
    });
    this.ops.set(op, { info, exec, done });
    return { op, name, done };
  }

  /**
   * After a coordinator restart (`symrun recover`): checkpoints the journal (kind "checkpoint") shows in
   * flight, taken over as the protocol's recovery table says (protocol/checkpoint.ts): commit is run
   * again (idempotent: it finishes from the temp dir, or finds the renamed checkpoint), so is a rollback
   * step in flight; before commit the phase in flight is taken as failed and the planned rollback runs
   * (every VM `cont`, devices back, guests resumed, NAME.tmp-XXXX removed).
   */
  recoverFromJournal(): Array<{ op: string; phase: string; done: Promise<CheckpointResult> }> {
    const out: Array<{ op: string; phase: string; done: Promise<CheckpointResult> }> = [];
    const file = (this.h.journal() as { file?: string } | undefined)?.file;
    if (!file) return out;
    for (const r of readJournal(file).values()) {
      const state = r.state as unknown as CkptState;
      if (r.kind !== 'checkpoint' || !r.params || state.phase === 'new' || CHECKPOINT.isTerminal(state.phase)) continue;
      const p = r.params as unknown as CheckpointInfo & { keep?: number };
      const info: CheckpointInfo = { op: r.op, name: p.name, root: p.root, phase: state.phase, startedAt: p.startedAt, reason: `recovered after a coordinator restart (was in ${state.phase})` };
      const ctx: Ctx = { op: r.op, name: p.name, root: p.root, keep: p.keep ?? this.h.config().checkpoint.keep, names: this.h.access.vmNames(), tmp: tempDirsOf(p.root, p.name)[0], vms: new Map(), warnings: [], pruned: [] };
      const exec: CheckpointExecutor = new Executor({
        op: r.op, machine: CHECKPOINT, ports: this.ports(ctx), journal: this.h.journal(), from: state,
        onEvent: (e) => this.h.emit({ ...e, data: { vm: ctx.names.join(','), from: 'job', to: path.join(ctx.root, ctx.name), checkpoint: ctx.name, ...(e.data ?? {}) } }),
      });
      const started = exec.recover(`the coordinator was restarted during ${state.phase}`);
      const done = started.then((res) => {
        const result: CheckpointResult = { ...res, name: ctx.name, root: ctx.root, ...(res.outcome === 'done' ? { path: ctx.final } : {}), vms: [], sizeBytes: 0, pruned: ctx.pruned, warnings: ctx.warnings };
        info.result = result;
        return result;
      });
      this.ops.set(r.op, { info, exec, done });
      out.push({ op: r.op, phase: state.phase, done });
    }
    return out;
  }

  /**
   * The periodic timer (checkpoint.interval); stop() also waits (bounded) for a checkpoint in flight.
   * `firstMs`: the first one after this long instead of a whole interval (a recovered job goes on with
   * its clock); `onTaken`: called when a periodic checkpoint completed (the job records its clock).
   */
  startTimer(intervalMs = this.h.config().checkpoint.intervalMs, o: { firstMs?: number; onTaken?: (at: Date) => void } = {}): { stop(): Promise<void> } {
    let timer: NodeJS.Timeout | undefined;
    const tick = () => {
      if (this.h.state() !== 'running') return;
      let why = '';
      if (this.active()) why = 'the previous checkpoint is still being taken';
      else if (this.h.migrating()) why = 'a migration is in progress';
      if (why) {
        this.h.emit(opEvent('checkpoint', '-', 'new', 'progress', { skipped: why, reason: 'interval' }));
        return;
      }
      try {
        void this.checkpoint({ reason: `every ${Math.round(intervalMs! / 1000)} s` }).done.then((r) => { if (r.outcome === 'done') o.onTaken?.(new Date()); }, () => undefined);
      } catch (e) {
        this.h.emit(opEvent('checkpoint', '-', 'new', 'progress', { skipped: (e as Error).message, reason: 'interval' }));
      }
    };
    if (intervalMs && intervalMs > 0) {
      const every = () => { timer = setInterval(tick, intervalMs); timer.unref(); };
      if (o.firstMs !== undefined && o.firstMs < intervalMs) {
        timer = setTimeout(() => { if (timer) { tick(); every(); } }, Math.max(0, o.firstMs));
        timer.unref();
      } else every();
    }
    return {
      stop: async () => {
        if (timer) clearInterval(timer);
        timer = undefined;
        const a = this.active();
        if (!a) return;
        let t: NodeJS.Timeout | undefined;
        await Promise.race([a.done, new Promise((r) => { t = setTimeout(r, CHECKPOINT_DEFAULTS.drainTimeoutMs); })]).finally(() => clearTimeout(t));
      },
    };
  }

  private imageHash(kernel: string, initrd: string, rootfs: string): string {
    const key = `${kernel}\0${initrd}\0${rootfs}`;
    const have = this.imageHashMemo.get(key);
    if (have) return have;
    let hash: string | undefined;
    try {
      // a cached image (image/index.ts) names itself by its content hash in manifest.json
      const m = JSON.parse(fs.readFileSync(path.join(path.dirname(rootfs), 'manifest.json'), 'utf8')) as { hash?: string };
      if (typeof m.hash === 'string' && m.hash) hash = m.hash;
    } catch { /* a user's image directory */ }
    if (!hash) {
      const h = crypto.createHash('sha256');
      for (const f of [kernel, initrd, rootfs]) h.update(fs.readFileSync(f));
      hash = h.digest('hex');
    }
    this.imageHashMemo.set(key, hash);
    return hash;
  }

  private ports(ctx: Ctx): Ports<CkptForward | CkptRollback> {
    const h = this.h;
    const faults = parseFaults([process.env.SYMRUN_FAULTS ?? '', ...(ctx.faults ?? [])].filter(Boolean).join(','));
    const self = this;
    const job = h.access;
    const vm = (n: string) => job.vm(n)!;
    const peerOf = (n: string) => job.peer(vm(n).host);
    const hostOf = (name: string) => job.hosts().find((x) => x.name === name)!;
    const cfg = h.config();
    // failover keeps ranks running: a checkpoint needs them stopped everywhere
    const adapter: QuiesceAdapter = cfg.migration.quiesce === 'hooks' ? 'hooks' : 'freeze';
    const device = (n: string) => job.device(n, vm(n).host);
    /** run fn for every VM at once; throw one error naming every VM that failed */
    const each = async <T>(what: string, fn: (n: string) => Promise<T>): Promise<Map<string, T>> => {
      const rs = await Promise.allSettled(ctx.names.map((n) => fn(n)));
      const out = new Map<string, T>();
      const errs: string[] = [];
      let first: unknown;
      rs.forEach((r, i) => {
        if (r.status === 'fulfilled') out.set(ctx.names[i]!, r.value);
        else { first ??= r.reason; errs.push(`${ctx.names[i]}: ${(r.reason as Error).message}`); }
      });
      if (errs.length) {
        if (errs.length === 1 && first instanceof SymError) throw first;
        throw new SymError((first as SymError)?.code ?? 'ESYM_CKPT_STEP', { message: `${what} failed on ${errs.join('; ')}`, cause: first });
      }
      return out;
    };
    const unplugged = (n: string) => peerOf(n).call('vm.devices', { name: n }).then((d) => !isPlugged(d));
    const replug = () => each('replug', async (n) => {
      if (!(await unplugged(n))) return { skipped: 'device still plugged' };
      // the device the VM holds on its host (a VF: the same one it was unplugged from)
      return peerOf(n).call('vm.plug', plugParams(n, await device(n), hostOf(vm(n).host).bridge), { timeoutMs: DEFAULTS.hotplug.plugTimeoutMs + 2000 });
    });
    const reconfigure = () => each('reconfigure', (n) => vm(n).client.request('net-config', job.netConfigArgs(n), { timeoutMs: PROTOCOL_DEFAULTS.reconfigureTimeoutMs }));
    const contAll = () => each('cont', (n) => peerOf(n).call('ckpt.resume', { name: n }, { timeoutMs: CHECKPOINT_DEFAULTS.contTimeoutMs }));
    const count = <T>(m: Map<string, T>, f: (v: T) => boolean) => [...m.values()].filter(f).length;

    return {
      async prepare() {
        fs.mkdirSync(ctx.root, { recursive: true, mode: 0o700 });
        const need = estimateBytes(ctx.names.length, cfg.vm.memoryMiB);
        const sp = checkSpace(ctx.root, need);
        ctx.tmp = createTempDir(ctx.root, ctx.name);
        return { dir: ctx.tmp, needBytes: sp.needBytes, freeBytes: sp.freeBytes };
      },
      quiesce: (signal) => h.gate().acquire(ctx.op, adapter, ctx.names[0]!, signal, parseFaults('')),
      async unplug(signal) {
        const r = await each('unplug', async (n) => {
          if (await unplugged(n)) return false;
          await peerOf(n).call('vm.unplug', unplugParams(n, await device(n)), { timeoutMs: DEFAULTS.hotplug.unplugTimeoutMs + 2000, signal });
          return true;
        });
        return { vms: ctx.names.length, unplugged: count(r, (x) => x) };
      },
      async save(signal) {
        const tmp = ctx.tmp!;
        ctx.sessions = h.sessions();
        const onAbort = () => { for (const n of ctx.names) { try { void peerOf(n).call('ckpt.resume', { name: n }).catch(() => undefined); } catch { /* host lost */ } } };
        signal.addEventListener('abort', onAbort, { once: true });
        try {
          const r = await each('save', async (n) => {
            // fault fail-save@save: the first VM's state goes to a directory that does not exist (QEMU's own failure)
            const file = path.join(tmp, ...(faults.has('fail-save', 'save') && n === ctx.names[0] ? ['no-such-dir'] : []), stateFileName(n));
            const host = vm(n).host;
            const t0 = performance.now();
            try {
              const p = await peerOf(n).call('ckpt.save', { name: n, file, timeoutMs: CHECKPOINT_DEFAULTS.saveTimeoutMs }, { timeoutMs: CHECKPOINT_DEFAULTS.saveTimeoutMs + 10_000 });
              const size = fs.statSync(file).size;
              // the VM is stopped: every frame its agent had sent is in (or still in its own replay buffer)
              ctx.vms.set(n, { name: n, host, file: stateFileName(n), size, sha256: '', saveMs: p.saveMs ?? Math.round(performance.now() - t0), guestSeq: vm(n).client.receivedSeq });
              return { size, transferredBytes: p.transferredBytes, saveMs: p.saveMs };
            } catch (e) {
              // out of space shows up as QEMU's "Unable to write to command: Broken pipe": say what it is
              let free = Infinity;
              try { free = freeBytes(tmp); } catch { /* dir gone */ }
              if (free < 8 * 1024 * 1024 || /No space|ENOSPC/i.test((e as Error).message)) throw noSpaceError(ctx.root, estimateBytes(ctx.names.length, cfg.vm.memoryMiB), free, `the state of ${n}`, e);
              throw e;
            }
          });
          if (signal.aborted) throw signal.reason;
          if (faults.has('kill-coordinator', 'save')) process.kill(process.pid, 'SIGKILL');
          const total = [...r.values()].reduce((s, x) => s + x.size, 0);
          return { vms: r.size, bytes: total, perVm: Object.fromEntries([...r].map(([n, x]) => [n, { size: x.size, saveMs: x.saveMs }])) };
        } finally {
          signal.removeEventListener('abort', onAbort);
        }
      },
      async cont() {
        const r = await contAll();
        return { vms: r.size, resumed: count(r, (x) => x.resumed) };
      },
      async replug() {
        return { vms: (await replug()).size };
      },
      async reconfigure() {
        return { vms: (await reconfigure()).size };
      },
      resume: () => h.gate().release(ctx.op, adapter, ctx.names[0]!),
      async commit() {
        const done = path.join(ctx.root, ctx.name);
        if (!ctx.tmp && fs.existsSync(path.join(done, 'manifest.json'))) { ctx.final = done; return { path: done, recovered: true } } // renamed before a coordinator restart
        const tmp = ctx.tmp!;
        const hashes = await Promise.all(ctx.names.map(async (n) => ({ n, ...(await hashFile(path.join(tmp, stateFileName(n)))) })));
        let qemuVersion: string | undefined;
        let version: { major: number; minor: number; micro: number } | undefined;
        try { version = (await detectQemu()).version; qemuVersion = `${version.major}.${version.minor}.${version.micro}`; } catch { /* recorded without */ }
        const vms: CheckpointVm[] = [];
        for (const { n, sha256, size } of hashes) {
          const v = vm(n);
          const rec = ctx.vms.get(n) ?? { name: n, host: v.host, file: stateFileName(n), size, sha256 }; // (recovered op)
          ctx.vms.set(n, rec);
          rec.sha256 = sha256;
          rec.size = size;
          const spec = job.spec(n, v.host, false);
          const d = await device(n);
          vms.push({
            name: n, host: v.host, file: rec.file, size, sha256, spec,
            ...(version ? { qemuArgs: qemuArgs(spec, { version }) } : {}),
            device: d,
            network: job.netConfigArgs(n),
            saveMs: rec.saveMs,
            index: v.index, ip: v.ip, ...(rec.guestSeq !== undefined ? { guestSeq: rec.guestSeq } : {}),
          });
        }
        const s0 = vms[0]!.spec;
        const hosts = job.hosts().map((x) => ({ name: x.name, ip: x.ip, role: ctx.names.some((n) => vm(n).host === x.name) ? 'vm' : 'spare' }));
        const m: CheckpointManifest = {
          format: CKPT_FORMAT, formatVersion: CKPT_FORMAT_VERSION, symrunVersion: symrunVersion(),
          name: ctx.name, jobId: job.id, createdAt: new Date().toISOString(), frozenMs: ctx.frozenMs,
          command: { ...h.app(), argv: process.argv.slice(2) },
          hosts,
          image: { hash: self.imageHash(s0.kernel, s0.initrd, s0.rootfs), kernel: s0.kernel, initrd: s0.initrd, rootfs: s0.rootfs },
          ...(qemuVersion ? { qemu: { version: qemuVersion } } : {}),
          config: cfg,
          ...(ctx.sessions ? { sessions: ctx.sessions } : {}),
          quiesce: adapter,
          vms,
        };
        try {
          writeManifest(tmp, m);
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code === 'ENOSPC') throw noSpaceError(ctx.root, 1024 * 1024, freeBytes(tmp), 'the manifest', e);
          throw e;
        }
        const final = publish(tmp, path.join(ctx.root, ctx.name));
        ctx.final = final;
        ctx.tmp = undefined; // nothing to discard any more
        ctx.sizeBytes = vms.reduce((s, v) => s + v.size, 0) + fs.statSync(path.join(final, 'manifest.json')).size;
        // older checkpoints go only now that the new one is complete
        try {
          ctx.pruned = pruneCheckpoints(ctx.root, job.id, ctx.keep, { except: ctx.name }).removed;
        } catch (e) {
          ctx.warnings.push(`pruning older checkpoints failed: ${(e as Error).message}`);
        }
        return { path: final, bytes: ctx.sizeBytes, pruned: ctx.pruned };
      },
      // ---- rollback (before commit): the job runs on as before, the temp dir goes ----
      async 'rb-cont'() {
        if (faults.has('kill-coordinator', 'rb-cont')) process.kill(process.pid, 'SIGKILL');
        const r = await contAll();
        return { vms: r.size, resumed: count(r, (x) => x.resumed) };
      },
      async 'rb-replug'() {
        return { vms: (await replug()).size };
      },
      async 'rb-reconfigure'() {
        return { vms: (await reconfigure()).size };
      },
      'rb-resume': () => h.gate().release(ctx.op, adapter, ctx.names[0]!),
      async 'rb-discard'() {
        // this checkpoint's NAME.tmp-XXXX (also after a coordinator restart, when only the name is known)
        const tmps = tempDirsOf(ctx.root, ctx.name);
        if (ctx.tmp && !tmps.includes(ctx.tmp)) tmps.push(ctx.tmp);
        for (const d of tmps) fs.rmSync(d, { recursive: true, force: true });
        ctx.tmp = undefined;
        return tmps.length ? { removed: tmps } : { skipped: 'no temporary directory' };
      },
    };
  }
}

function tempDirsOf(root: string, name: string): string[] {
  try {
    return fs.readdirSync(root).filter((d) => d.startsWith(`${name}.tmp-`)).map((d) => path.join(root, d));
  } catch {
    return [];
  }
}

interface Ctx {
  op: string;
  name: string;
  root: string;
  keep: number;
  names: string[];
  tmp?: string;
  final?: string;
  vms: Map<string, { name: string; host: string; file: string; size: number; sha256: string; saveMs?: number; guestSeq?: number }>;
  /** sessions at the save (taken while the ranks are frozen) */
  sessions?: CheckpointSessions;
  sizeBytes?: number;
  frozenAt?: number;
  frozenMs?: number;
  warnings: string[];
  pruned: string[];
  /** faults of this checkpoint only (a recovered one has none) */
  faults?: string[];
}
