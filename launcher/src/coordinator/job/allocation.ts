// Slurm mode: the job follows its nodes and its allocation. Node states come from the cluster's symrun
// watchd (slurm.watcher) or from the job's own polling; the drain policy (policy.ts) moves VMs off
// nodes that go away. The allocation's node list (watchd, or `scontrol show job`; SLURM_JOB_NODELIST
// goes stale): a node that left is lost (as if it died); a node given to the job since (an expand
// allocation merged with `scontrol update jobid=J NumNodes=ALL`) gets a host agent and becomes a spare.
import { SymError } from '../../errors.js';
import { SLURM_DEFAULTS } from '../../defaults.js';
import { opEvent } from '../../protocol/events.js';
import { NodeFeed } from '../../slurm/feed.js';
import { DrainPolicy } from '../policy.js';
import { currentAllocationNodes, type HostSet } from '../hosts.js';
import type { Migrations } from '../migrate.js';
import type { HostAgents } from './agents.js';
import { ending, type JobContext } from './context.js';

export interface AllocationDeps {
  agents: HostAgents;
  migrations: Migrations;
  hostLost(host: string, why: string): void;
}

export class Allocation {
  policy?: DrainPolicy;
  feed?: NodeFeed;
  private check?: Promise<void>;

  constructor(private job: JobContext, private d: AllocationDeps) {}

  /** Follow the nodes (watchd if configured, else polling) and the allocation; the policy acts on changes. */
  watch(cluster: HostSet): void {
    const job = this.job;
    const policy = new DrainPolicy({
      vmsOn: (h) => [...job.vms.values()].filter((v) => v.host === h).map((v) => v.name),
      isMigrating: (vm) => this.d.migrations.active(vm) !== undefined,
      canMigrate: () => job.state === 'running',
      migrate: (req) => {
        const h = job.vms.get(req.vm)?.host;
        if (h && job.lostHosts.has(h)) throw new SymError('ESYM_HOST_LOST', { message: `${req.vm} cannot be migrated: host ${h} is lost (the job restarts it from its last checkpoint)` });
        return this.d.migrations.migrate(req);
      },
      lost: (node, why) => this.d.hostLost(node, why),
      event: (e) => job.event(e),
      say: (m) => job.say(m),
    });
    this.policy = policy;
    let lastError = '';
    const sc = job.config.slurm;
    const feed = new NodeFeed({
      nodes: () => cluster.hosts.map((h) => h.name),
      intervalMs: sc.pollIntervalMs,
      ...(sc.watcher ? { watcher: { address: sc.watcher, keyFile: sc.watcherKey, auth: sc.watcherAuth, user: sc.watcherUser } } : {}),
      name: `symrun ${job.id}${cluster.slurmJobId ? ` (Slurm job ${cluster.slurmJobId})` : ''} pid ${process.pid}`,
      onChange: (changes) => policy.onChanges(changes),
      ...(cluster.slurmJobId ? { allocation: { job: cluster.slurmJobId, intervalMs: SLURM_DEFAULTS.allocationCheckMs, run: () => currentAllocationNodes(process.env), onChange: (nodes: string[]) => void this.apply(nodes) } } : {}),
      // (an interrupted job: Slurm signalled the polls too; nothing to say about them)
      onError: (e) => { if (job.opts.signal?.aborted || ending(job.state)) return; if (e.message !== lastError) job.say(`watching the nodes: ${e.message}`); lastError = e.message; },
      say: (m) => job.say(m),
    });
    this.feed = feed;
    feed.start();
    job.onCleanup('node watcher', () => feed.stop());
  }

  /** The allocation as slurmctld has it now (after a restart: did more nodes leave?). */
  async recheck(): Promise<void> {
    let nodes: string[];
    try { nodes = await currentAllocationNodes(process.env); } catch { return; /* slurmctld busy: the node watcher and the heartbeat still see a loss */ }
    await this.apply(nodes);
  }

  /** Apply the allocation's node list now; one at a time, idempotent. */
  apply(nodes: string[]): Promise<void> {
    const run = async () => {
      const job = this.job;
      const cluster = job.cluster;
      if (!cluster?.adopt || ending(job.state)) return;
      for (const h of cluster.hosts) if (!nodes.includes(h.name) && !job.lostHosts.has(h.name)) this.d.hostLost(h.name, 'it is no longer in the allocation (scontrol show job)');
      let added: Awaited<ReturnType<NonNullable<HostSet['adopt']>>>;
      try { added = await cluster.adopt(nodes); } catch (e) { job.say(`the allocation has new nodes (${nodes.join(',')}), but their addresses are unknown: ${(e as Error).message}`); return; }
      await Promise.all(added.map(async (h) => {
        job.say(`node ${h.name} joined the allocation: starting its host agent`);
        job.event(opEvent('policy', '-', 'new', 'action', { action: 'host-added', host: h.name }));
        try {
          await this.d.agents.start(cluster, h.name);
        } catch (e) {
          // lost: an agent that connects after all is not taken, the node is no target
          this.d.hostLost(h.name, `${(e as Error).message}; it is not used`);
          return;
        }
        job.say(`node ${h.name} is a spare now`);
        this.policy?.hostsChanged();
      }));
    };
    const next = (this.check ?? Promise.resolve()).then(run);
    this.check = next.catch(() => undefined);
    return next;
  }
}
