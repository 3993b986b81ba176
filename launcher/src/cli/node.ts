// `symrun node ...`: the root node layer's commands, run by Slurm's prolog/epilog and by the node
// helper's service (systemd unit, or one per node of the Slurm lab). Not for users: each checks it runs
// as root and takes the job only from Slurm's own environment (SLURM_JOB_ID/UID/GID, SLURMD_NODENAME).
import type { Command } from 'commander';
import { SymError, EXIT } from '../errors.js';
import { readNodeConfig } from '../node/config.js';
import { jobEnv, prolog } from '../node/prolog.js';
import { epilog } from '../node/epilog.js';
import { serveHelper } from '../node/helper.js';

function requireRootHere(what: string): void {
  if (process.getuid?.() !== 0) throw new SymError('ESYM_NEEDS_ROOT', { message: `symrun node ${what} is the root node layer: it must run as root (Slurm runs it)`, fix: 'see docs/site-install.md', exitCode: EXIT.environment });
}

const log = (l: string) => process.stderr.write(`symrun-node: ${l}\n`);

export function registerNode(program: Command, setExit: (n: number) => void): void {
  const node = program.command('node').description('root node layer (Slurm prolog/epilog, node helper): docs/site-install.md');
  node.command('prolog')
    .description("prepare this node for the job in Slurm's prolog environment (run dir, private network)")
    .action(async () => {
      requireRootHere('prolog');
      const cfg = readNodeConfig();
      const e = jobEnv(process.env, cfg);
      const r = await prolog(cfg, e);
      log(r.prepared ? `job ${e.job} (${e.user}): prepared ${r.record!.network!.bridge} (VNI ${r.record!.network!.vni}, MTU ${r.record!.network!.mtu}), ${r.record!.runDir}${r.record!.vfs?.length ? `, VFs ${r.record!.vfs.map((v) => v.pci).join(' ')}` : ''}` : r.why!);
      setExit(0);
    });
  node.command('epilog')
    .description("undo exactly what the prolog and the node helper made for the job in Slurm's epilog environment")
    .action(async () => {
      requireRootHere('epilog');
      const cfg = readNodeConfig();
      const e = jobEnv(process.env, cfg);
      const r = await epilog(cfg, e.job, e.node);
      if (!r) { log(`job ${e.job}: nothing of symrun's node layer here`); setExit(0); return; }
      log(`job ${e.job}: ${r.killed.length ? `stopped pids ${r.killed.join(' ')}; ` : ''}removed ${r.removed.join(', ')}${r.runDir ? `, ${r.runDir}` : ''}`);
      for (const p of r.problems) log(`job ${e.job}: problem: ${p}`);
      setExit(r.problems.length ? 1 : 0);
    });
  node.command('helper')
    .description('serve the node helper (symrun-noded): taps of a job\'s VMs for the job\'s owner')
    .option('--node <name>', 'this node\'s Slurm name (default: SYMRUN_NODENAME, else the short host name)')
    .action(async (f: { node?: string }) => {
      requireRootHere('helper');
      const cfg = readNodeConfig();
      const os = await import('node:os');
      const name = f.node ?? cfg.nodeName ?? os.hostname().split('.')[0]!;
      await serveHelper({ cfg, node: name }, log);
      log(`serving on ${cfg.stateDir}/${name}/noded.sock (pid ${process.pid})`);
      await new Promise<void>((resolve) => { for (const s of ['SIGTERM', 'SIGINT'] as const) process.once(s, () => resolve()); });
      setExit(0);
    });
}
