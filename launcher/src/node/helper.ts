// symrun-noded: the small root helper for the middle of a job. Its whole API is three requests
// (wire.ts): attach VM i of job J on this node (its tap(s) owned by the job's user, bound to the VM's
// MAC and IP), detach it, and the job network's facts. Before anything it checks that the caller is
// the job's owner (proof.ts: the uid the kernel gives the caller's file; Slurm: the job's UserId) and
// that the job is RUNNING on this node with the node layer prepared (record.ts). Names and MACs come
// from names.ts, never from the request; the IP must lie in the site's guest range.
import net from 'node:net';
import path from 'node:path';
import fs from 'node:fs';
import { SymError, EXIT, isSymError } from '../errors.js';
import type { NodeConfig } from './config.js';
import { checkJobId, checkVmIndex, vmMacFor, vmTap, standbyTap } from './names.js';
import { readRecord, writeRecord, helperSocket, proofDir, type AttachedVm, type JobRecord } from './record.js';
import { applyRules, createTap, deleteLink } from './network.js';
import { jobFacts } from './slurm.js';
import { checkProof, ensureProofDir, newNonce } from './proof.js';
import { NODE_OPS, type AttachArgs, type AttachResult, type NodeOps, type RequestMsg } from './wire.js';
import { LineDecoder } from '../../../guest/protocol/index.js';

/** Guest addresses a job may use on its private network (the site may narrow it). */
export const GUEST_RANGE = { base: (198 << 24) | (18 << 16), prefixLen: 15 };

function inGuestRange(ip: string): boolean {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(ip);
  if (!m || m.slice(1).some((x) => Number(x) > 255)) return false;
  const v = ((Number(m[1]) << 24) | (Number(m[2]) << 16) | (Number(m[3]) << 8) | Number(m[4])) >>> 0;
  const mask = (~0 << (32 - GUEST_RANGE.prefixLen)) >>> 0;
  const last = Number(m[4]);
  return ((v & mask) >>> 0) === ((GUEST_RANGE.base & mask) >>> 0) && last !== 0 && last !== 255;
}

export interface HelperDeps {
  cfg: NodeConfig;
  node: string;
  /** who owns the job, its state and nodes (tests: a fake) */
  facts?: typeof jobFacts;
  /** make/remove interfaces and rules (tests: a recorder) */
  net?: { createTap: typeof createTap; deleteLink: typeof deleteLink; applyRules: typeof applyRules };
}

function denied(message: string, fix?: string): SymError {
  return new SymError('ESYM_NODE_DENIED', { message, fix, exitCode: EXIT.usage });
}

/** One request from a caller who proved `uid`: checked, then done. */
export class NodeHelper {
  private busy = new Map<string, Promise<unknown>>();
  private facts: typeof jobFacts;
  private net: NonNullable<HelperDeps['net']>;

  constructor(private d: HelperDeps) {
    this.facts = d.facts ?? jobFacts;
    this.net = d.net ?? { createTap, deleteLink, applyRules };
  }

  /** Requests of one job run one at a time (the record is read-modify-written). */
  async handle(uid: number, op: string, args: unknown): Promise<unknown> {
    if (!(NODE_OPS as readonly string[]).includes(op)) throw denied(`unknown request ${JSON.stringify(op)}`);
    const a = (args ?? {}) as Record<string, unknown>;
    const job = checkJobId(String(a.job ?? ''), 'job');
    const prev = this.busy.get(job) ?? Promise.resolve();
    const next = prev.catch(() => undefined).then(() => this.run(uid, op as keyof NodeOps, job, a));
    this.busy.set(job, next);
    try { return await next; } finally { if (this.busy.get(job) === next) this.busy.delete(job); }
  }

  private async authorize(uid: number, job: string): Promise<JobRecord> {
    const rec = readRecord(this.d.cfg.stateDir, this.d.node, job);
    if (!rec || !rec.complete || !rec.network) throw denied(`job ${job} has no symrun node layer on ${this.d.node}`, 'submit the job with --comment=symrun (or ask the site to prepare every job: SYMRUN_PREPARE=all); see docs/site-install.md');
    const f = await this.facts(this.d.cfg, job);
    if (f.uid !== uid || rec.uid !== uid) throw denied(`job ${job} is ${f.user}'s (uid ${f.uid}), not the caller's (uid ${uid})`);
    if (f.state !== 'RUNNING') throw denied(`job ${job} is ${f.state}, not RUNNING`);
    if (!f.nodes.includes(this.d.node)) throw denied(`job ${job} does not run on ${this.d.node}`);
    return rec;
  }

  private async run<K extends keyof NodeOps>(uid: number, op: K, job: string, a: Record<string, unknown>): Promise<NodeOps[K]['result']> {
    const rec = await this.authorize(uid, job);
    if (op === 'info') return { bridge: rec.network!.bridge, mtu: rec.network!.mtu, runDir: rec.runDir, vms: rec.attached.map((x) => x.vm) } as NodeOps[K]['result'];
    const vm = checkVmIndex(a.vm);
    if (op === 'detach') {
      const have = rec.attached.find((x) => x.vm === vm);
      if (!have) return { removed: [] } as NodeOps[K]['result'];
      const removed = [have.tap, ...(have.standby ? [have.standby.tap] : [])];
      for (const t of removed) await this.net.deleteLink(this.d.cfg, t);
      rec.attached = rec.attached.filter((x) => x.vm !== vm);
      writeRecord(this.d.cfg.stateDir, rec);
      await this.net.applyRules(this.d.cfg, job, rec.attached);
      return { removed } as NodeOps[K]['result'];
    }
    return this.attach(rec, { job, vm, ip: String(a.ip ?? ''), standby: a.standby === true }) as Promise<NodeOps[K]['result']>;
  }

  private async attach(rec: JobRecord, a: AttachArgs): Promise<AttachResult> {
    if (!inGuestRange(a.ip)) throw denied(`${JSON.stringify(a.ip)} is not a guest address (198.18.0.0/15, not .0 or .255)`);
    const taken = rec.attached.find((x) => x.ip === a.ip && x.vm !== a.vm);
    if (taken) throw denied(`${a.ip} is vm${taken.vm}'s address on this node`);
    const entry: AttachedVm = {
      vm: a.vm, tap: vmTap(a.job, a.vm), mac: vmMacFor(a.job, a.vm), ip: a.ip, attachedAt: new Date().toISOString(),
      ...(a.standby ? { standby: { tap: standbyTap(a.job, a.vm), mac: vmMacFor(a.job, a.vm, 'standby') } } : {}),
    };
    // written down before it is made: the epilog removes what the record lists
    rec.attached = [...rec.attached.filter((x) => x.vm !== a.vm), entry];
    writeRecord(this.d.cfg.stateDir, rec);
    await this.net.createTap(this.d.cfg, rec, entry.tap);
    if (entry.standby) await this.net.createTap(this.d.cfg, rec, entry.standby.tap);
    await this.net.applyRules(this.d.cfg, a.job, rec.attached);
    return { tap: entry.tap, mac: entry.mac, mtu: rec.network!.mtu, bridge: rec.network!.bridge, ...(entry.standby ? { standby: entry.standby } : {}) };
  }
}

/** Serve the helper until the process ends (systemd unit, or one per node of the Slurm lab). */
export async function serveHelper(d: HelperDeps, log: (line: string) => void = () => undefined): Promise<net.Server> {
  const helper = new NodeHelper(d);
  const sock = helperSocket(d.cfg.stateDir, d.node);
  const pdir = proofDir(d.cfg.stateDir, d.node);
  fs.mkdirSync(path.dirname(sock), { recursive: true, mode: 0o755 });
  ensureProofDir(pdir);
  fs.rmSync(sock, { force: true });
  const server = net.createServer((s) => {
    s.on('error', () => undefined);
    const nonce = newNonce();
    const dec = new LineDecoder(64 * 1024);
    let done = false;
    const timer = setTimeout(() => s.destroy(), 30_000);
    const reply = (m: unknown) => { done = true; clearTimeout(timer); s.end(JSON.stringify(m) + '\n'); };
    s.write(JSON.stringify({ t: 'challenge', nonce, dir: pdir }) + '\n');
    s.on('data', (b: Buffer) => {
      if (done) return;
      let lines: string[];
      try { lines = dec.push(b); } catch { s.destroy(); return; }
      const line = lines.find((l) => l.trim());
      if (line === undefined) return;
      let m: RequestMsg;
      try { m = JSON.parse(line) as RequestMsg; } catch { reply({ t: 'result', ok: false, error: { code: 'ESYM_NODE_DENIED', message: 'not JSON' } }); return; }
      if (m?.t !== 'request' || m.nonce !== nonce) { reply({ t: 'result', ok: false, error: { code: 'ESYM_NODE_DENIED', message: 'no request for this challenge' } }); return; }
      done = true;
      void (async () => {
        try {
          const uid = checkProof(pdir, nonce);
          const value = await helper.handle(uid, String(m.op), m.args);
          log(`uid ${uid}: ${m.op} ${JSON.stringify(m.args)}: ok`);
          reply({ t: 'result', ok: true, value });
        } catch (e) {
          log(`${m.op} ${JSON.stringify(m.args)}: refused: ${(e as Error).message}`);
          reply({ t: 'result', ok: false, error: isSymError(e) ? { code: e.code, message: e.message, fix: e.fix } : { code: 'ESYM_NODE_SETUP', message: (e as Error).message } });
        }
      })();
    });
  });
  await new Promise<void>((resolve, reject) => { server.once('error', reject); server.listen(sock, () => resolve()); });
  fs.chmodSync(sock, 0o666);
  return server;
}
