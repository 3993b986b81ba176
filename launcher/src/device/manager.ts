// The host-side device manager: claim VFs for a job (claim -> settings through the PF -> vfio-pci ->
// /dev/vfio/<group> to the job's user), release exactly a job's claims, list, check. Runs as root, from
// the Slurm prolog/epilog (symrun node devices …) or a root helper; everything it touches is named by
// the node config or read back from sysfs, never by a path a user gave.
//
// claim(job, uid, K), per slot, all or nothing:
//   1. reserve the job's lowest free slot (claims.ts: link(2), exclusive)       -> MAC / GUIDs (identity.ts)
//   2. for each candidate VF in pool order: skip it if claimed, if its IOMMU group is not viable or not
//      isolated (iommu.ts), or if a process holds the group open; else link the claim record. Losing the
//      link race means someone else got it: next candidate.
//   3. with the claim in place, check the group's claims again. Two jobs claiming two VFs of one group at
//      once both link first and check after, so at least one of them sees the other's claim and backs off
//      (both may: then both try other VFs): never two jobs in one group.
//   4. ip link set PF vf N mac/spoofchk/trust, or node_guid/port_guid (vfcmd.ts)        stage configured
//   5. bind to vfio-pci (bind.ts), then check viability once more with the real drivers  stage bound
//   6. chown uid:gid + chmod 0600 /dev/vfio/<group>, read back                            stage ready
//   A failure at any step releases what this call claimed (the job's earlier claims stay) and the error
//   says what could not be undone.
// release(job): for each claim of that job only (re-read from its file just before acting): refuse while a
// process holds /dev/vfio/<group>; give the node back to root (unless another claim of the same job is in
// that group); give the VF back to its previous driver; reset MAC/trust/spoofchk; remove the claim and its
// slot (a VF that no longer exists has nothing to give back: its claim is dropped with a note). A claim
// that cannot be undone stays (the epilog reports it and Slurm drains the node); a crashed
// claimer's half-done claim is undone the same way: every step of release is idempotent.
import { SymError, EXIT } from '../errors.js';
import { bindVfio, restoreDriver, VFIO_DRIVER, type SysfsWrite } from './bind.js';
import { ClaimStore, newNonce, type Claim, type StepHook, type BadRecord } from './claims.js';
import { devPath, driverLoaded, groupMembers, hasIommu, readFunction, readPf, type PciFunction } from './discover.js';
import { vfioHolders, vfioNode, type Holder } from './holders.js';
import { MAX_SLOT, vfMac, vfNodeGuid, vfPortGuid } from './identity.js';
import { groupError, groupVerdict, type GroupProblem } from './iommu.js';
import type { JobLiveness } from './jobstate.js';
import { requireNodeIndex, type NodeConfig } from './nodeconfig.js';
import { resolvePools, type PoolVf, type PoolProblem } from './pools.js';
import type { Runner } from './runner.js';
import type { DeviceIO } from './sysfs.js';
import { isUnsupported, showCommand, vfResetCommands, vfSetCommands, type PlannedCommand } from './vfcmd.js';

export interface ManagerDeps {
  cfg: NodeConfig;
  io: DeviceIO;
  run: Runner;
  /** default: a ClaimStore on cfg.devices.stateDir */
  store?: ClaimStore;
  /** progress of a claim/release, step by step (logs; tests stop a claimer at a chosen step) */
  onStep?: StepHook;
  now?: () => Date;
}

export interface ClaimRequest {
  job: string;
  uid: number;
  gid: number;
  /** how many VFs */
  slots: number;
  /** restrict to these pool VFs (a --pool selection); default: every pool */
  candidates?: PoolVf[];
}

export interface ClaimedVf {
  pci: string;
  pf: string;
  pfInterface: string;
  vfIndex: number;
  type: 'ethernet' | 'infiniband';
  pool: string;
  slot: number;
  mac?: string;
  nodeGuid?: string;
  portGuid?: string;
  group: number;
  /** the device node the job's QEMU opens */
  vfioDevice: string;
  /** pinning advice: the VF's NUMA node and local CPUs */
  numaNode?: number;
  localCpus?: number[];
  boundFrom: string | null;
  /** what was done, in order */
  actions: string[];
}

export interface ClaimResult {
  job: string;
  uid: number;
  gid: number;
  node: string;
  nodeIndex: number;
  claimed: ClaimedVf[];
  notes: string[];
}

export interface ReleasedVf { pci: string; slot: number; actions: string[]; notes: string[] }
export interface LeftVf { pci: string; reason: string; fix: string }

export interface ReleaseResult {
  job: string;
  released: ReleasedVf[];
  /** claims of the job that could not be undone (still claimed) */
  left: LeftVf[];
  /** slot and temp files of the job removed */
  removed: string[];
}

export interface ListedVf {
  pci: string;
  pf: string;
  vfIndex: number;
  type: 'ethernet' | 'infiniband';
  pool: string;
  driver?: string;
  group?: number;
  numaNode?: number;
  localCpus?: number[];
  netdevs: string[];
  claim?: Pick<Claim, 'job' | 'uid' | 'slot' | 'stage' | 'claimedAt' | 'mac' | 'nodeGuid' | 'portGuid' | 'boundFrom'>;
}

export interface Listing {
  node: string;
  nodeIndex?: number;
  stateDir: string;
  vfs: ListedVf[];
  /** claims of VFs that are in no pool (any more) */
  strayClaims: Claim[];
  bad: BadRecord[];
  problems: PoolProblem[];
  /** set when the caller may not read the claims (not root): VFs are listed without them */
  claimsHidden?: string;
}

export interface CheckResult {
  ok: boolean;
  problems: string[];
  notes: string[];
  free: number;
  claimed: number;
}

/** Why a candidate VF was not taken (details.refused of a failed claim). */
export type Refusal = { pci: string; reason: string; group?: number } & Partial<GroupProblem>;

export class DeviceManager {
  readonly cfg: NodeConfig;
  readonly io: DeviceIO;
  readonly run: Runner;
  readonly store: ClaimStore;
  private readonly step: StepHook;
  private readonly now: () => Date;

  constructor(d: ManagerDeps) {
    this.cfg = d.cfg;
    this.io = d.io;
    this.run = d.run;
    this.step = d.onStep ?? (() => {});
    this.store = d.store ?? new ClaimStore(d.cfg.devices.stateDir, { onStep: this.step });
    this.now = d.now ?? (() => new Date());
  }

  private claimOf(pci: string): string | undefined {
    return this.store.get(pci)?.job;
  }

  private members(group: number): PciFunction[] {
    return groupMembers(this.io, group).map((a) => readFunction(this.io, a)).filter((f): f is PciFunction => !!f);
  }

  private pfInterface(pf: string): string {
    const rec = readPf(this.io, pf);
    const ifn = rec?.netdevs[0];
    if (!ifn) {
      throw new SymError('ESYM_DEVICE_NO_PF_INTERFACE', { message: `PF ${pf} has no network interface, so its VFs cannot be configured (ip link set PF vf N …)`, field: 'pci', value: pf, fix: `load the PF's driver and check ls /sys/bus/pci/devices/${pf}/net`, exitCode: EXIT.environment });
    }
    return ifn;
  }

  private async runPlanned(cmds: PlannedCommand[], actions: string[], notes: string[]): Promise<void> {
    for (const c of cmds) {
      this.step('command', { argv: c.argv });
      const r = await this.run(c.argv);
      const line = showCommand(c.argv);
      if (r.code === 0) { actions.push(line); continue; }
      const err = r.stderr.trim().split('\n')[0] ?? '';
      if (!c.required || (c.unsupportedOk && isUnsupported(r.stderr))) {
        notes.push(`${line}: ${err || `exit ${r.code}`}${c.unsupportedOk && isUnsupported(r.stderr) ? ' (the driver has no such setting; the VF is in that state anyway)' : ''}`);
        continue;
      }
      throw new SymError('ESYM_DEVICE_COMMAND', { message: `${line} failed (exit ${r.code}): ${err}`, field: c.what, value: line, fix: c.what === 'spoofchk' ? 'the PF driver must support VF spoof checking; a site whose NIC cannot sets spoofCheck: false for the pool' : `check the PF driver and ${c.argv[0]} (ip -d link show ${c.argv[4]})`, exitCode: EXIT.runtime, details: { argv: c.argv, code: r.code, stderr: r.stderr } });
    }
  }

  /** Claim req.slots VFs for a job on this node: all of them, or none (see the header). */
  async claim(req: ClaimRequest): Promise<ClaimResult> {
    const nodeIndex = requireNodeIndex(this.cfg);
    this.store.init();
    const resolved = resolvePools(this.io, this.cfg.devices.pools);
    const candidates = req.candidates ?? resolved.vfs;
    if (!candidates.length) {
      throw new SymError('ESYM_DEVICE_NONE_FREE', { message: `no VFs in the pools of this node${resolved.problems.length ? `: ${resolved.problems[0]!.device} ${resolved.problems[0]!.problem}` : ''}`, field: 'devices.pools', fix: resolved.problems[0]?.fix ?? 'configure devices.pools in the node config (docs/passthrough.md)', exitCode: EXIT.environment, details: { problems: resolved.problems } });
    }
    const done: ClaimedVf[] = [];
    const mine: Claim[] = [];
    const notes: string[] = [];
    // who holds which /dev/vfio node: one /proc scan per call (it reads every fd of every process)
    const holders = vfioHolders(this.io);
    try {
      for (let i = 0; i < req.slots; i++) {
        const slot = this.store.reserveSlot(req.job, MAX_SLOT);
        if (slot === undefined) throw new SymError('ESYM_DEVICE_NONE_FREE', { message: `job ${req.job} holds all ${MAX_SLOT + 1} VF slots of this node`, field: '--slots', value: req.slots, fix: 'release VFs the job no longer uses', exitCode: EXIT.runtime });
        let claim: Claim | undefined;
        const refused: Refusal[] = [];
        let taken = 0;
        try {
          for (const cand of candidates) {
            const got = this.tryCandidate(req, cand, slot, nodeIndex, holders, refused);
            if (got === null) taken++;
            else if (got) { claim = got; break; }
          }
        } finally {
          if (!claim) this.store.releaseSlot(req.job, slot);
        }
        if (!claim) {
          const first = refused[0];
          const groupOnly = !!first && taken === 0 && refused.every((r) => r.rule);
          const more = refused.length > 1 ? ` (and ${refused.length - 1} more refused: details.refused)` : '';
          throw new SymError(groupOnly ? 'ESYM_DEVICE_IOMMU_GROUP' : 'ESYM_DEVICE_NONE_FREE', {
            message: groupOnly
              ? `no VF can be handed to job ${req.job}: ${first!.pci} ${first!.reason}${more}`
              : `no free VF for job ${req.job} (slot ${slot}, VF ${i + 1} of ${req.slots}): ${taken} of ${candidates.length} claimed by jobs${refused.length ? `, ${refused.length} refused: ${first!.pci} ${first!.reason}` : ''}`,
            field: groupOnly ? 'pci' : '--slots', value: groupOnly ? first!.pci : req.slots,
            fix: groupOnly ? groupError(first!.pci, { group: first!.group, ok: false, problems: [{ device: first!.device!, rule: first!.rule!, reason: first!.reason }] }).fix
              : refused.length ? 'see details.refused for each VF that could not be used; `symrun node devices check` explains' : 'fewer VMs per node, or more VFs in the pool (sriov_numvfs)',
            exitCode: EXIT.runtime, details: { refused },
          });
        }
        mine.push(claim);
        done.push(await this.setUp(claim, notes));
      }
    } catch (e) {
      const undo: string[] = [];
      for (const c of [...mine].reverse()) {
        const r = await this.releaseClaim(c, vfioHolders(this.io), this.store.list().claims);
        if ('reason' in r) undo.push(`${c.pci}: ${r.reason}`);
      }
      if (e instanceof SymError) {
        throw new SymError(e.code, {
          message: `${e.message}${mine.length ? (undo.length ? `; rolled back, except: ${undo.join('; ')}` : `; the ${mine.length} VF${mine.length > 1 ? 's' : ''} this call had claimed were released`) : ''}`,
          field: e.field, value: e.value, fix: undo.length ? `${e.fix ?? ''}; then: symrun node devices release --job ${req.job}` : e.fix, exitCode: e.exitCode,
          details: { ...(e.details ?? {}), rolledBack: mine.map((c) => c.pci), notUndone: undo }, cause: e,
        });
      }
      throw e;
    }
    return { job: req.job, uid: req.uid, gid: req.gid, node: this.cfg.node.name, nodeIndex, claimed: done, notes };
  }

  /** A claim of cand, null if someone else holds it, undefined if refused (reason pushed). */
  private tryCandidate(req: ClaimRequest, cand: PoolVf, slot: number, nodeIndex: number, holders: Map<number, Holder[]>, refused: Refusal[]): Claim | null | undefined {
    const pci = cand.vf.address;
    const owner = this.claimOf(pci);
    if (owner !== undefined) return null;
    const f = readFunction(this.io, pci);
    if (!f) { refused.push({ pci, reason: 'has disappeared' }); return undefined; }
    const verdict = groupVerdict(f, f.iommuGroup !== undefined ? this.members(f.iommuGroup) : [], (a) => this.claimOf(a), req.job);
    if (!verdict.ok) { refused.push({ pci, group: verdict.group, ...verdict.problems[0]!, reason: groupError(pci, verdict).message.replace(/^VF \S+ /, '') }); return undefined; }
    const held = holders.get(f.iommuGroup!);
    if (held?.length) { refused.push({ pci, reason: `its /dev/vfio/${f.iommuGroup} is held open by pid ${held.map((h) => `${h.pid}${h.comm ? ` (${h.comm})` : ''}`).join(', ')} outside every claim` }); return undefined; }
    const id = { job: Number(req.job), node: nodeIndex, slot };
    const claim: Claim = {
      version: 1, pci, pf: cand.vf.pf, vfIndex: cand.vf.vfIndex, type: cand.type, pool: cand.pool.name,
      job: req.job, uid: req.uid, gid: req.gid, slot, node: this.cfg.node.name, nodeIndex,
      claimedAt: this.now().toISOString(), boundFrom: f.driver ?? null, overrideFrom: f.driverOverride ?? null,
      group: f.iommuGroup ?? null,
      mac: cand.type === 'ethernet' ? vfMac(id) : null,
      nodeGuid: cand.type === 'infiniband' ? vfNodeGuid(id) : null,
      portGuid: cand.type === 'infiniband' ? vfPortGuid(id) : null,
      stage: 'claimed', claimerPid: process.pid, nonce: newNonce(),
    };
    if (!this.store.tryClaim(claim)) return null;
    // link-then-check: the group's claims once more, with ours in place
    const again = groupVerdict(f, this.members(f.iommuGroup!), (a) => this.claimOf(a), req.job);
    if (!again.ok) {
      this.store.remove(pci, req.job);
      refused.push({ pci, group: again.group, ...again.problems[0]!, reason: groupError(pci, again).message.replace(/^VF \S+ /, '') });
      return undefined;
    }
    return claim;
  }

  private async setUp(c: Claim, notes: string[]): Promise<ClaimedVf> {
    const actions: string[] = [`claimed ${c.pci} (slot ${c.slot}) in ${this.store.dir}`];
    const pfIf = this.pfInterface(c.pf);
    const settings = c.type === 'ethernet'
      ? { type: 'ethernet' as const, mac: c.mac!, spoofCheck: this.poolOf(c).spoofCheck, trust: this.poolOf(c).trust }
      : { type: 'infiniband' as const, nodeGuid: c.nodeGuid!, portGuid: c.portGuid! };
    await this.runPlanned(vfSetCommands(this.cfg.binaries.ip, pfIf, c.vfIndex, settings), actions, notes);
    let cur: Claim = { ...c, stage: 'configured' };
    this.store.update(cur);
    const b = bindVfio(this.io, c.pci);
    actions.push(...b.writes.map(showWrite));
    if (!b.writes.length) actions.push(`${c.pci} was bound to vfio-pci already`);
    cur = { ...cur, stage: 'bound' };
    this.store.update(cur);
    const f = readFunction(this.io, c.pci)!;
    const after = groupVerdict(f, this.members(c.group!), (a) => this.claimOf(a), c.job);
    if (!after.ok) throw groupError(c.pci, after);
    const node = vfioNode(c.group!);
    if (!this.io.owner(node)) await waitFor(() => this.io.owner(node) !== undefined, 2000);
    if (!this.io.owner(node)) {
      throw new SymError('ESYM_DEVICE_BIND', { message: `/${node} did not appear after ${c.pci} was bound to vfio-pci`, field: 'pci', value: c.pci, fix: 'check that devtmpfs is mounted on /dev and dmesg for vfio errors', exitCode: EXIT.runtime });
    }
    try {
      this.io.setOwner(node, c.uid, c.gid, 0o600);
    } catch (e) {
      throw new SymError('ESYM_DEVICE_OWNER', { message: `cannot give /${node} to uid ${c.uid}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, field: '--uid', value: c.uid, fix: 'run as root', exitCode: EXIT.environment, cause: e });
    }
    const o = this.io.owner(node);
    if (!o || o.uid !== c.uid || o.gid !== c.gid || o.mode !== 0o600) {
      throw new SymError('ESYM_DEVICE_OWNER', { message: `/${node} is ${o ? `${o.uid}:${o.gid} mode ${o.mode.toString(8)}` : 'gone'} right after chown ${c.uid}:${c.gid} + chmod 0600 (a udev rule changing it?)`, field: '--uid', value: c.uid, fix: 'remove udev rules that set OWNER/GROUP/MODE on vfio group nodes', exitCode: EXIT.environment });
    }
    actions.push(`chown ${c.uid}:${c.gid} /${node}; chmod 0600 /${node}`);
    this.store.update({ ...cur, stage: 'ready' });
    this.step('ready', { job: c.job, pci: c.pci });
    return {
      pci: c.pci, pf: c.pf, pfInterface: pfIf, vfIndex: c.vfIndex, type: c.type, pool: c.pool, slot: c.slot,
      ...(c.mac ? { mac: c.mac } : {}), ...(c.nodeGuid ? { nodeGuid: c.nodeGuid, portGuid: c.portGuid! } : {}),
      group: c.group!, vfioDevice: `/${node}`,
      ...(f.numaNode !== undefined ? { numaNode: f.numaNode } : {}), ...(f.localCpus ? { localCpus: f.localCpus } : {}),
      boundFrom: c.boundFrom, actions,
    };
  }

  private poolOf(c: Claim) {
    return this.cfg.devices.pools.find((p) => p.name === c.pool) ?? { spoofCheck: true, trust: false };
  }

  /**
   * Undo one claim (see the header). Returns what was done, or why the claim stays. `claims` is every
   * claim of the node (to see whether the job keeps another VF in the same group).
   */
  private async releaseClaim(c: Claim, holders: Map<number, Holder[]>, claims: readonly Claim[]): Promise<ReleasedVf | LeftVf> {
    const actions: string[] = [];
    const notes: string[] = [];
    // re-read: act only on the record as it is now, and only if it is still this job's
    const cur = this.store.get(c.pci);
    if (!cur || cur.job !== c.job) return { pci: c.pci, reason: cur ? `now claimed by job ${cur.job}` : 'no longer claimed', fix: 'nothing to do' };
    if (cur.group !== null) {
      const h = holders.get(cur.group);
      if (h?.length) {
        return { pci: cur.pci, reason: `/dev/vfio/${cur.group} is still held open by pid ${h.map((x) => `${x.pid}${x.comm ? ` (${x.comm})` : ''}`).join(', ')}`, fix: `stop the job's QEMU first (the epilog kills the job's processes before it releases), then release again` };
      }
      const node = vfioNode(cur.group);
      const sharing = claims.some((o) => o.pci !== cur.pci && o.job === cur.job && o.group === cur.group && this.store.get(o.pci)?.job === cur.job);
      const own = this.io.owner(node);
      if (own && !sharing && (own.uid !== 0 || own.gid !== 0 || own.mode !== 0o600)) {
        try {
          this.io.setOwner(node, 0, 0, 0o600);
          actions.push(`chown 0:0 /${node}; chmod 0600 /${node}`);
        } catch (e) {
          return { pci: cur.pci, reason: `cannot take /${node} back: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, fix: `chown root:root /${node}, then release again` };
        }
      }
    }
    if (!this.io.exists(devPath(cur.pci))) {
      // the VF is gone (its PF's sriov_numvfs was lowered, the PF removed): nothing left to restore
      notes.push(`${cur.pci} no longer exists (VFs removed?): nothing to give back, the claim is dropped`);
    } else {
      try {
        const r = restoreDriver(this.io, cur.pci, cur.boundFrom ?? undefined, cur.overrideFrom ?? undefined);
        actions.push(...r.writes.map(showWrite));
      } catch (e) {
        return { pci: cur.pci, reason: (e as Error).message, fix: (e as SymError).fix ?? 'see dmesg' };
      }
      let pfIf: string | undefined;
      try { pfIf = this.pfInterface(cur.pf); } catch (e) { notes.push((e as Error).message); }
      if (pfIf) await this.runPlanned(vfResetCommands(this.cfg.binaries.ip, pfIf, cur.vfIndex, cur.type), actions, notes);
    }
    if (!this.store.remove(cur.pci, cur.job)) return { pci: cur.pci, reason: 'the claim changed while it was being released', fix: 'release again' };
    this.store.releaseSlot(cur.job, cur.slot);
    actions.push(`unclaimed ${cur.pci} (slot ${cur.slot})`);
    return { pci: cur.pci, slot: cur.slot, actions, notes };
  }

  /** Release the claims of job (only those; with pci: only that one, which must be the job's). */
  async release(job: string, opts: { pci?: string } = {}): Promise<ReleaseResult> {
    this.store.init();
    const all = this.store.list();
    const mineNow = all.claims.filter((c) => c.job === job && (opts.pci === undefined || c.pci === opts.pci));
    if (opts.pci !== undefined && !mineNow.length) {
      const other = all.claims.find((c) => c.pci === opts.pci);
      throw new SymError('ESYM_DEVICE_NOT_CLAIMED', { message: `${opts.pci} is ${other ? `claimed by job ${other.job}, not job ${job}` : 'not claimed'}: nothing released`, field: '--pci', value: opts.pci, fix: 'symrun node devices list shows the claims', exitCode: EXIT.usage });
    }
    const holders = vfioHolders(this.io);
    const out: ReleaseResult = { job, released: [], left: [], removed: [] };
    for (const c of mineNow) {
      const r = await this.releaseClaim(c, holders, all.claims);
      if ('reason' in r) out.left.push(r);
      else out.released.push(r);
    }
    if (opts.pci === undefined && !out.left.length) out.removed = this.store.removeJobLeftovers(job);
    return out;
  }

  list(): Listing {
    const resolved = resolvePools(this.io, this.cfg.devices.pools);
    let st: ReturnType<ClaimStore['list']>;
    let hidden: string | undefined;
    try {
      st = this.store.list();
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EACCES') throw e;
      st = { claims: [], bad: [], slots: [], temps: [] };
      hidden = `the claims in ${this.store.dir} are readable by root only`;
    }
    const byPci = new Map(st.claims.map((c) => [c.pci, c]));
    const vfs: ListedVf[] = resolved.vfs.map(({ pool, vf, type }) => {
      const c = byPci.get(vf.address);
      return {
        pci: vf.address, pf: vf.pf, vfIndex: vf.vfIndex, type, pool: pool.name, netdevs: vf.netdevs,
        ...(vf.driver ? { driver: vf.driver } : {}), ...(vf.iommuGroup !== undefined ? { group: vf.iommuGroup } : {}),
        ...(vf.numaNode !== undefined ? { numaNode: vf.numaNode } : {}), ...(vf.localCpus ? { localCpus: vf.localCpus } : {}),
        ...(c ? { claim: { job: c.job, uid: c.uid, slot: c.slot, stage: c.stage, claimedAt: c.claimedAt, mac: c.mac, nodeGuid: c.nodeGuid, portGuid: c.portGuid, boundFrom: c.boundFrom } } : {}),
      };
    });
    const inPool = new Set(vfs.map((v) => v.pci));
    return {
      node: this.cfg.node.name, ...(this.cfg.node.index !== undefined ? { nodeIndex: this.cfg.node.index } : {}), stateDir: this.store.dir,
      vfs, strayClaims: st.claims.filter((c) => !inPool.has(c.pci)), bad: st.bad, problems: resolved.problems,
      ...(hidden ? { claimsHidden: hidden } : {}),
    };
  }

  /** Claims whose Slurm job has ended (or is unknown to Slurm): the epilog did not release them. */
  async stale(liveness: (job: string) => Promise<JobLiveness>): Promise<Array<{ claim: Claim; job: JobLiveness }>> {
    const claims = this.store.list().claims;
    const jobs = new Map<string, JobLiveness>();
    for (const j of new Set(claims.map((c) => c.job))) jobs.set(j, await liveness(j));
    return claims.filter((c) => jobs.get(c.job)!.state === 'gone').map((c) => ({ claim: c, job: jobs.get(c.job)! }));
  }

  /** Can this node lend its VFs? For the prolog and the health check: problems are node problems. */
  async check(liveness?: (job: string) => Promise<JobLiveness>): Promise<CheckResult> {
    const problems: string[] = [];
    const notes: string[] = [];
    const pools = this.cfg.devices.pools;
    if (!pools.length) return { ok: true, problems, notes: ['no device pools configured: nothing to check'], free: 0, claimed: 0 };
    if (this.cfg.node.index === undefined) problems.push(`node ${this.cfg.node.name} has no index (node.index), so VF MACs/GUIDs cannot be made`);
    try {
      this.store.init();
    } catch (e) {
      problems.push((e as Error).message);
    }
    const resolved = resolvePools(this.io, pools);
    for (const p of resolved.problems) problems.push(`pool ${p.pool}: ${p.device} ${p.problem} (${p.fix})`);
    if (resolved.vfs.length) {
      if (!hasIommu(this.io)) problems.push('the kernel has no IOMMU groups (IOMMU off: intel_iommu=on / amd_iommu=on, VT-d/AMD-Vi in the firmware): no VF can be passed through');
      if (!driverLoaded(this.io, VFIO_DRIVER)) problems.push('the vfio-pci driver is not loaded (modprobe vfio-pci)');
      else if (!this.io.exists('dev/vfio/vfio')) problems.push('/dev/vfio/vfio is missing (vfio not loaded, or /dev not devtmpfs)');
    }
    const st = (() => { try { return this.store.list(); } catch (e) { problems.push((e as Error).message); return undefined; } })();
    for (const b of st?.bad ?? []) problems.push(`claim directory: ${b.file} is not a valid record (${b.reason}); remove it by hand once checked`);
    const claims = st?.claims ?? [];
    const byPci = new Map(claims.map((c) => [c.pci, c]));
    const holders = vfioHolders(this.io);
    let free = 0;
    for (const { vf } of resolved.vfs) {
      const c = byPci.get(vf.address);
      if (c) {
        if (c.stage === 'ready' && vf.driver !== VFIO_DRIVER) problems.push(`${vf.address} is claimed by job ${c.job} but bound to ${vf.driver ?? 'no driver'}, not vfio-pci`);
        if (c.stage !== 'ready') notes.push(`${vf.address}: the claim of job ${c.job} stopped at stage ${c.stage} (claimer pid ${c.claimerPid}); its release undoes it`);
        continue;
      }
      if (vf.iommuGroup !== undefined && holders.get(vf.iommuGroup)?.length) {
        problems.push(`${vf.address} is claimed by no job, but /dev/vfio/${vf.iommuGroup} is held by pid ${holders.get(vf.iommuGroup)!.map((h) => `${h.pid}${h.comm ? ` (${h.comm})` : ''}`).join(', ')}`);
        continue;
      }
      const v = groupVerdict(vf, vf.iommuGroup !== undefined ? this.members(vf.iommuGroup) : [], (a) => byPci.get(a)?.job, '(none)');
      const hard = v.problems.filter((p) => p.rule !== 'isolation' || !byPci.has(p.device));
      if (hard.length) { problems.push(groupError(vf.address, { ...v, problems: hard }).message); continue; }
      if (v.ok) free++;
      else notes.push(`${vf.address} waits for its IOMMU group: ${v.problems[0]!.device} ${v.problems[0]!.reason}`);
    }
    const inPool = new Set(resolved.vfs.map((v) => v.vf.address));
    for (const c of claims) if (!inPool.has(c.pci)) problems.push(`${c.pci} is claimed by job ${c.job} but is in no pool (the node config changed?): symrun node devices release --job ${c.job}`);
    if (liveness) {
      for (const s of await this.stale(liveness)) problems.push(`stale claim: ${s.claim.pci} by job ${s.claim.job} (${s.job.detail}): symrun node devices release --job ${s.claim.job}`);
    }
    return { ok: problems.length === 0, problems, notes, free, claimed: claims.length };
  }
}

function showWrite(w: SysfsWrite): string {
  return `echo ${JSON.stringify(w.data.replace(/\n$/, ''))} > /${w.file}`;
}

async function waitFor(cond: () => boolean, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!cond() && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
}
