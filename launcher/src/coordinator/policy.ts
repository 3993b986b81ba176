// What the coordinator does when Slurm says a node of the job is going away (Slurm mode): move the
// VMs off it to spares, before the node is taken down (proactive migration).
//
// Rules:
//  - A node that becomes drain / reboot / fail / not-responding and runs a VM: migrate that VM to a
//    spare, with the reason recorded ("node n2 DRAIN: maint").
//  - Several at once: the most urgent first (not-responding, fail, reboot, drain), up to the spares;
//    Migrations caps how many run concurrently and reserves each destination when queued.
//  - No spare left: said once in `symrun status` (notices) and as an event; the job keeps running.
//    It is tried again when a host becomes usable (a drained spare is resumed, a node joins the job).
//  - down: QEMU there is gone already; nothing can be migrated (restart from a checkpoint is another
//    feature); reported.
//  - Undrain does not move VMs back. A node that is not 'ok' is no longer a migration target.
//  - A failed (rolled back) migration is retried once per incident; a VM that was moved off starts a
//    new incident (it can be moved again when its new node goes away too).
import type { OpEvent, OpResult } from '../protocol/executor.js';
import type { NodeCondition } from '../slurm/scontrol.js';
import type { NodeChange } from '../slurm/watch.js';

/** Lower = more urgent. Conditions not listed here do not trigger a migration. */
export const MOVE_PRIORITY: Readonly<Partial<Record<NodeCondition, number>>> = {
  'not-responding': 0,
  fail: 1,
  reboot: 2,
  drain: 3,
};

const MAX_ATTEMPTS = 2;

export interface PolicyPorts {
  /** VM names whose current host is `host` */
  vmsOn(host: string): string[];
  isMigrating(vm: string): boolean;
  /** false until the job runs (VMs can be migrated); evaluate() is called again then */
  canMigrate(): boolean;
  migrate(req: { vm: string; reason: string }): { op: string; done: Promise<OpResult> };
  /** a node running VMs is DOWN: they are lost with it (the job restarts them from a checkpoint) */
  lost?(node: string, why: string): void;
  event(e: OpEvent): void;
  say(msg: string): void;
}

export interface NodeInfo { condition: NodeCondition; state: string; reason?: string; since: string }

export interface Candidate { vm: string; node: string; condition: NodeCondition; reason: string }

/** The migrations a set of node conditions calls for, most urgent first (pure; unit-testable). */
export function planMoves(nodes: ReadonlyMap<string, NodeInfo>, vmsOn: (host: string) => string[], skip: (vm: string) => boolean): Candidate[] {
  const out: Array<Candidate & { prio: number }> = [];
  for (const [node, info] of nodes) {
    const prio = MOVE_PRIORITY[info.condition];
    if (prio === undefined) continue;
    for (const vm of vmsOn(node)) {
      if (skip(vm)) continue;
      out.push({ vm, node, condition: info.condition, reason: `node ${node} ${info.state.replace(/^[A-Z]+\+/, '')}${info.reason ? `: ${info.reason}` : ''}`, prio });
    }
  }
  out.sort((a, b) => a.prio - b.prio || a.node.localeCompare(b.node, 'en', { numeric: true }) || a.vm.localeCompare(b.vm, 'en', { numeric: true }));
  return out.map(({ prio: _p, ...c }) => c);
}

export class DrainPolicy {
  readonly nodes = new Map<string, NodeInfo>();
  /** human-readable, for `symrun status` */
  readonly notices: string[] = [];
  private attempts = new Map<string, number>();
  private waitingForSpare = new Set<string>();
  private lostReported = new Set<string>();

  constructor(private ports: PolicyPorts) {}

  /** A host whose node is not 'ok' takes no VM. */
  unusable(host: string): boolean {
    const c = this.nodes.get(host)?.condition;
    return c !== undefined && c !== 'ok';
  }

  private emit(action: string, data: Record<string, unknown>): void {
    this.ports.event({ ts: new Date().toISOString(), op: 'policy', kind: 'policy', phase: 'new', event: 'action', data: { action, ...data } });
  }

  private notice(msg: string): void {
    this.notices.push(`${new Date().toISOString()} ${msg}`);
    this.ports.say(msg);
  }

  onChanges(changes: NodeChange[]): void {
    let freed = false;
    for (const c of changes) {
      this.nodes.set(c.node, { condition: c.condition, state: c.state, ...(c.reason ? { reason: c.reason } : {}), since: new Date(c.seenAt).toISOString() });
      this.emit('node', { node: c.node, condition: c.condition, previous: c.previous, state: c.state, reason: c.reason, seenAt: new Date(c.seenAt).toISOString() });
      this.ports.say(`node ${c.node} is ${c.state}${c.reason ? ` (${c.reason})` : ''}: ${c.condition}`);
      if (c.condition === 'ok') {
        freed = true;
        // a new incident later gets fresh attempts
        for (const vm of this.ports.vmsOn(c.node)) this.attempts.delete(vm);
        this.lostReported.delete(c.node);
      }
      if (c.condition === 'down' && this.ports.vmsOn(c.node).length && !this.lostReported.has(c.node)) {
        this.lostReported.add(c.node);
        const vms = this.ports.vmsOn(c.node);
        this.notice(`node ${c.node} is DOWN${c.reason ? ` (${c.reason})` : ''}: ${vms.join(', ')} cannot be migrated off it`);
        this.emit('lost', { node: c.node, vms, state: c.state, reason: c.reason });
        this.ports.lost?.(c.node, `Slurm reports it ${c.state}${c.reason ? `: ${c.reason}` : ''}`);
      }
    }
    if (freed) this.waitingForSpare.clear();
    this.evaluate();
  }

  /** A host joined (e.g. the allocation grew): VMs waiting for a spare are tried again. */
  hostsChanged(): void {
    this.waitingForSpare.clear();
    this.evaluate();
  }

  /** Start the migrations the current node conditions call for (idempotent). */
  evaluate(): void {
    if (!this.ports.canMigrate()) return;
    const plan = planMoves(this.nodes, (h) => this.ports.vmsOn(h), (vm) => this.ports.isMigrating(vm) || this.waitingForSpare.has(vm) || (this.attempts.get(vm) ?? 0) >= MAX_ATTEMPTS);
    for (const c of plan) {
      let started: { op: string; done: Promise<OpResult> };
      try {
        started = this.ports.migrate({ vm: c.vm, reason: c.reason });
      } catch (e) {
        const code = (e as { code?: string }).code;
        if (code === 'ESYM_NO_SPARE' || code === 'ESYM_NO_HOST') {
          this.waitingForSpare.add(c.vm);
          this.notice(`${c.reason}: no spare left to move ${c.vm} to; the job keeps running there`);
          this.emit('no-spare', { vm: c.vm, node: c.node, from: c.node, condition: c.condition, reason: c.reason });
        } else {
          this.attempts.set(c.vm, (this.attempts.get(c.vm) ?? 0) + 1);
          this.notice(`${c.reason}: could not start migrating ${c.vm}: ${(e as Error).message}`);
          this.emit('migrate-error', { vm: c.vm, node: c.node, from: c.node, reason: c.reason, error: (e as Error).message, code });
        }
        continue;
      }
      this.attempts.set(c.vm, (this.attempts.get(c.vm) ?? 0) + 1);
      this.emit('migrate', { vm: c.vm, node: c.node, from: c.node, condition: c.condition, reason: c.reason, op: started.op });
      this.ports.say(`moving ${c.vm} off ${c.node} (${c.reason}): migration ${started.op}`);
      void started.done.then((r) => {
        // moved off: that incident is over; a later one (e.g. the destination drained too) gets fresh attempts
        if (r.outcome === 'done' || r.outcome === 'degraded') this.attempts.delete(c.vm);
        if (r.outcome !== 'done' && r.outcome !== 'degraded') this.notice(`migration of ${c.vm} off ${c.node} ended ${r.outcome}${r.error ? `: ${r.error.message}` : ''}`);
        this.evaluate();
      });
    }
  }

  status(): Record<string, unknown> {
    return { nodes: Object.fromEntries(this.nodes), notices: this.notices, waitingForSpare: [...this.waitingForSpare] };
  }
}
