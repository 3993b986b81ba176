// The coordinator's eye on its nodes in Slurm mode: one batched `scontrol show node -o A,B,...` per
// interval, each node classified with nodeCondition, and only the changes reported.
//
// Why polling: a running job learns of a drain of one of its nodes only this way (docs/lab-notes.md: strigger
// --drained waits for the job to end, triggers are checked on a ~16 s timer); one call for all nodes
// costs 6-20 ms (fork + exec + one RPC to slurmctld), so a 1 s interval is cheap.
import { execFile } from 'node:child_process';
import { SLURM_DEFAULTS } from '../defaults.js';
import { parseNodes, nodeCondition, type NodeCondition, type SlurmNode } from './scontrol.js';

export interface NodeChange {
  node: string;
  condition: NodeCondition;
  previous: NodeCondition;
  /** State as printed, e.g. "MIXED+DRAIN" */
  state: string;
  reason?: string;
  /** Date.now() when the poll that saw it returned */
  seenAt: number;
}

export interface PollStats {
  polls: number;
  errors: number;
  lastMs: number;
  maxMs: number;
  totalMs: number;
  lastError?: string;
}

export interface NodeWatcherOptions {
  /**
   * the nodes to watch (asked before each poll: the list may change); 'all' = every node of the
   * cluster, one `scontrol show node -o` without names (symrun watchd)
   */
  nodes: () => string[] | 'all';
  intervalMs?: number;
  onChange: (changes: NodeChange[], nodes: SlurmNode[]) => void;
  /** after every successful poll, changes or not: every node it returned */
  onPoll?: (nodes: SlurmNode[], seenAt: number) => void;
  onError?: (e: Error) => void;
  /** runs `scontrol show node -o LIST` → stdout; [] = all nodes (tests pass a fake) */
  run?: (names: string[]) => Promise<string>;
}

export function scontrolShowNodes(names: string[], timeoutMs: number = SLURM_DEFAULTS.scontrolTimeoutMs): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('scontrol', ['show', 'node', '-o', ...(names.length ? [names.join(',')] : [])], { timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`scontrol show node failed: ${String(stderr).trim() || err.message}`));
      else resolve(String(stdout));
    });
  });
}

export class NodeWatcher {
  readonly intervalMs: number;
  readonly stats: PollStats = { polls: 0, errors: 0, lastMs: 0, maxMs: 0, totalMs: 0 };
  private known = new Map<string, NodeCondition>();
  private timer?: NodeJS.Timeout;
  private stopped = true;
  private ended = false;
  private inFlight?: Promise<void>;

  constructor(private opts: NodeWatcherOptions) {
    this.intervalMs = opts.intervalMs ?? SLURM_DEFAULTS.pollIntervalMs;
  }

  /** Last condition seen per node ('ok' before the first poll). */
  condition(node: string): NodeCondition {
    return this.known.get(node) ?? 'ok';
  }

  /**
   * Take these as the last conditions seen (nodes not in the map: 'ok'): the next poll reports what
   * differs from them. For a caller that learned node states elsewhere meanwhile (symrun watchd).
   */
  resync(known: ReadonlyMap<string, NodeCondition>): void {
    this.known = new Map(known);
  }

  /** Start polling (again, after stop() has resolved). */
  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.ended = false;
    this.schedule(0);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.ended = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    await this.inFlight?.catch(() => undefined);
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      const t = performance.now();
      this.inFlight = this.pollOnce().then(() => undefined, (e: Error) => { this.opts.onError?.(e); });
      void this.inFlight.finally(() => this.schedule(Math.max(0, this.intervalMs - (performance.now() - t))));
    }, ms);
    this.timer.unref?.();
  }

  /** One poll: returns (and reports) the nodes whose condition changed since the last poll. */
  async pollOnce(): Promise<NodeChange[]> {
    const want = this.opts.nodes();
    const all = want === 'all';
    const names = all ? [] : want;
    if (!all && names.length === 0) return [];
    const t = performance.now();
    let text: string;
    try {
      text = await (this.opts.run ?? scontrolShowNodes)(names);
    } catch (e) {
      this.stats.errors++;
      this.stats.lastError = (e as Error).message;
      throw e;
    } finally {
      const ms = performance.now() - t;
      this.stats.polls++;
      this.stats.lastMs = Math.round(ms * 10) / 10;
      this.stats.maxMs = Math.max(this.stats.maxMs, this.stats.lastMs);
      this.stats.totalMs += ms;
    }
    const seenAt = Date.now();
    const parsed = parseNodes(text);
    const nodes = all ? parsed : parsed.filter((n) => names.includes(n.name));
    const changes: NodeChange[] = [];
    for (const n of nodes) {
      const c = nodeCondition(n);
      const prev = this.known.get(n.name) ?? 'ok';
      this.known.set(n.name, c);
      if (c !== prev) changes.push({ node: n.name, condition: c, previous: prev, state: n.state, ...(n.reason ? { reason: n.reason } : {}), seenAt });
    }
    if (!this.ended) this.opts.onPoll?.(nodes, seenAt);
    if (changes.length && !this.ended) this.opts.onChange(changes, nodes);
    return changes;
  }
}
