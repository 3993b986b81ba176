// `symrun node devices list|claim|release|check`: the root side of passthrough (launcher/src/device/),
// for the Slurm prolog, epilog and health check, or a root helper acting for a user after it checked that
// the user owns the job. Site settings come from the node config (/etc/symrun/node.yaml or
// SYMRUN_NODE_CONFIG); the command line takes only a job id, a uid, a count, and pool names or PCI
// addresses that must be in the configured pools: never a path.
import type { Command } from 'commander';
import { SymError, EXIT } from '../errors.js';
import { DeviceManager, type CheckResult, type ClaimResult, type Listing, type ReleaseResult } from '../device/manager.js';
import { checkJobId, checkSlots, checkUid } from '../device/inputs.js';
import { jobLiveness } from '../device/jobstate.js';
import { loadNodeConfig, type NodeConfig } from '../device/nodeconfig.js';
import { checkPciAddress } from '../device/pci.js';
import { resolvePools, selectPool } from '../device/pools.js';
import { execRunner, type Runner } from '../device/runner.js';
import { FsDeviceIO, type DeviceIO } from '../device/sysfs.js';
import type { StepHook } from '../device/claims.js';

export interface NodeDevicesDeps {
  env: NodeJS.ProcessEnv;
  /** effective uid of the caller (claim and release need root) */
  euid: number;
  run: Runner;
  /** sysfs access (default: the real files below the node config's devices.root) */
  io?: (cfg: NodeConfig) => DeviceIO;
  out: (s: string) => void;
  onStep?: StepHook;
}

const realDeps = (): NodeDevicesDeps => ({
  env: process.env,
  euid: process.geteuid?.() ?? 0,
  run: execRunner,
  out: (s) => process.stdout.write(s),
});

export const NODE_DEVICES_HELP = `
Root side of passthrough: the Slurm prolog claims VFs for a job, the epilog releases them, the health
check runs \`check\`. Pools, the claim directory and binaries come from the node config
(/etc/symrun/node.yaml or SYMRUN_NODE_CONFIG; docs/passthrough.md).

Examples:
  symrun node devices list [--json] [--stale]
  symrun node devices claim --job $SLURM_JOB_ID --uid $SLURM_JOB_UID --slots 2 --json
  symrun node devices claim --job 4711 --uid 1001 --slots 1 --pool 0000:3b:02.0,0000:3b:02.1
  symrun node devices release --job $SLURM_JOB_ID [--pci 0000:3b:02.0] [--json]
  symrun node devices check [--json] [--no-slurm]

Exit status: 0 done; 1 (check) a node problem; 2 bad input or node config; 3 not root, or a missing
part of the node (IOMMU, vfio-pci, binaries); 4 the claim failed (and was rolled back) or a release
left claims behind.`;

function managerFor(deps: NodeDevicesDeps, mutating: boolean, what: string): DeviceManager {
  if (mutating && deps.euid !== 0) {
    throw new SymError('ESYM_NEEDS_ROOT', { message: `symrun node devices ${what} binds devices and changes /dev/vfio ownership: it runs as root (Slurm prolog/epilog), not as uid ${deps.euid}`, fix: 'run it from the Slurm prolog/epilog (root); users get their VFs through the job', exitCode: EXIT.environment });
  }
  // as root (the real euid), the node config must be root's and not writable by others (loadNodeConfig)
  const cfg = loadNodeConfig({ env: deps.env });
  const io = deps.io ? deps.io(cfg) : new FsDeviceIO(cfg.devices.root);
  return new DeviceManager({ cfg, io, run: deps.run, ...(deps.onStep ? { onStep: deps.onStep } : {}) });
}

const json = (v: unknown) => JSON.stringify(v, null, 2) + '\n';

function showList(l: Listing, stale?: Map<string, string>): string {
  const rows = [`node ${l.node}${l.nodeIndex !== undefined ? ` (index ${l.nodeIndex})` : ' (no node index)'}; claims in ${l.stateDir}`];
  if (!l.vfs.length) rows.push('  no VFs in the configured pools');
  else {
    rows.push(`  ${'POOL'.padEnd(8)} ${'VF'.padEnd(13)} ${'PF'.padEnd(13)} ${'N'.padStart(3)} ${'TYPE'.padEnd(10)} ${'DRIVER'.padEnd(10)} ${'GROUP'.padStart(5)} ${'NUMA'.padStart(4)}  CLAIM`);
    for (const v of l.vfs) {
      const c = v.claim ? `job ${v.claim.job} uid ${v.claim.uid} slot ${v.claim.slot} ${v.claim.stage}${v.claim.mac ? ` ${v.claim.mac}` : ''}${v.claim.portGuid ? ` ${v.claim.portGuid}` : ''}${stale?.has(v.pci) ? ` STALE (${stale.get(v.pci)})` : ''}` : 'free';
      rows.push(`  ${v.pool.padEnd(8)} ${v.pci.padEnd(13)} ${v.pf.padEnd(13)} ${String(v.vfIndex).padStart(3)} ${v.type.padEnd(10)} ${(v.driver ?? '-').padEnd(10)} ${String(v.group ?? '-').padStart(5)} ${String(v.numaNode ?? '-').padStart(4)}  ${c}`);
    }
  }
  for (const c of l.strayClaims) rows.push(`  claim of ${c.pci} by job ${c.job}: that device is in no pool${stale?.has(c.pci) ? ` STALE (${stale.get(c.pci)})` : ''}`);
  for (const b of l.bad) rows.push(`  bad record ${b.file}: ${b.reason}`);
  if (l.claimsHidden) rows.push(`  claims not shown: ${l.claimsHidden}`);
  for (const p of l.problems) rows.push(`  problem: pool ${p.pool}: ${p.device} ${p.problem}`);
  return rows.join('\n') + '\n';
}

function showClaim(r: ClaimResult): string {
  const rows = r.claimed.map((c) => `claimed ${c.pci} (${c.type} VF ${c.vfIndex} of ${c.pf}/${c.pfInterface}) for job ${r.job}: slot ${c.slot}, ${c.mac ? `mac ${c.mac}` : `node_guid ${c.nodeGuid} port_guid ${c.portGuid}`}, ${c.vfioDevice} owned by uid ${r.uid}${c.numaNode !== undefined ? `, NUMA node ${c.numaNode}` : ''}`);
  for (const n of r.notes) rows.push(`note: ${n}`);
  return rows.join('\n') + '\n';
}

function showRelease(r: ReleaseResult): string {
  const rows: string[] = [];
  for (const v of r.released) {
    rows.push(`released ${v.pci} (slot ${v.slot}) of job ${r.job}`);
    for (const n of v.notes) rows.push(`  note: ${n}`);
  }
  for (const l of r.left) rows.push(`LEFT ${l.pci} of job ${r.job}: ${l.reason} (${l.fix})`);
  if (!r.released.length && !r.left.length) rows.push(`job ${r.job} holds no VF on this node`);
  return rows.join('\n') + '\n';
}

function showCheck(c: CheckResult): string {
  const rows = [c.ok ? `ok: ${c.free} VF${c.free === 1 ? '' : 's'} free, ${c.claimed} claimed` : `${c.problems.length} problem${c.problems.length > 1 ? 's' : ''} (${c.free} VFs free, ${c.claimed} claimed)`];
  for (const p of c.problems) rows.push(`problem: ${p}`);
  for (const n of c.notes) rows.push(`note: ${n}`);
  return rows.join('\n') + '\n';
}

export async function devicesList(f: { json?: boolean; stale?: boolean }, deps: NodeDevicesDeps): Promise<number> {
  const m = managerFor(deps, false, 'list');
  const l = m.list();
  let stale: Map<string, string> | undefined;
  if (f.stale) {
    const s = await m.stale((j) => jobLiveness(deps.run, m.cfg.binaries.scontrol, j));
    stale = new Map(s.map((x) => [x.claim.pci, x.job.detail]));
  }
  if (f.json) deps.out(json(stale ? { ...l, stale: [...stale].map(([pci, why]) => ({ pci, why })) } : l));
  else deps.out(showList(l, stale));
  return 0;
}

export async function devicesClaim(f: { job?: string; uid?: string; slots?: string; pool?: string; json?: boolean }, deps: NodeDevicesDeps): Promise<number> {
  const job = checkJobId(f.job);
  const slots = checkSlots(f.slots);
  const m = managerFor(deps, true, 'claim');
  const user = await checkUid(f.uid, deps.run, m.cfg.binaries.getent);
  const candidates = f.pool !== undefined ? selectPool(f.pool, resolvePools(m.io, m.cfg.devices.pools), m.io) : undefined;
  const r = await m.claim({ job, uid: user.uid, gid: user.gid, slots, ...(candidates ? { candidates } : {}) });
  deps.out(f.json ? json(r) : showClaim(r));
  return 0;
}

export async function devicesRelease(f: { job?: string; pci?: string; json?: boolean }, deps: NodeDevicesDeps): Promise<number> {
  const job = checkJobId(f.job);
  const pci = f.pci !== undefined ? checkPciAddress(f.pci, '--pci') : undefined;
  const m = managerFor(deps, true, 'release');
  const r = await m.release(job, pci !== undefined ? { pci } : {});
  deps.out(f.json ? json(r) : showRelease(r));
  return r.left.length ? EXIT.runtime : 0;
}

export async function devicesCheck(f: { json?: boolean; slurm?: boolean }, deps: NodeDevicesDeps): Promise<number> {
  const m = managerFor(deps, false, 'check');
  const c = await m.check(f.slurm === false ? undefined : (j) => jobLiveness(deps.run, m.cfg.binaries.scontrol, j));
  deps.out(f.json ? json(c) : showCheck(c));
  return c.ok ? 0 : 1;
}

/** Register `symrun node devices …` (under an existing `node` command if there is one). */
export function registerNodeDevices(program: Command, setExit: (n: number) => void, deps: () => NodeDevicesDeps = realDeps): void {
  const node = program.commands.find((c) => c.name() === 'node') ?? program.command('node').description('root-side node layer (Slurm prolog/epilog, health check)');
  const dev = node.command('devices').description('passthrough VFs of this node: list, claim for a job, release, check').addHelpText('after', NODE_DEVICES_HELP);
  dev.command('list').description('the VFs of the configured pools, their drivers, IOMMU groups, NUMA nodes and claims')
    .option('--json', 'machine-readable').option('--stale', 'mark claims whose Slurm job has ended (asks scontrol)')
    .action(async (f: { json?: boolean; stale?: boolean }) => setExit(await devicesList(f, deps())));
  dev.command('claim').description('claim VFs for a job on this node: bind them to vfio-pci, set MAC / GUIDs, give /dev/vfio/GROUP to the job\'s user (root)')
    .requiredOption('--job <id>', 'Slurm job id ($SLURM_JOB_ID)')
    .requiredOption('--uid <uid>', 'numeric uid of the job\'s user ($SLURM_JOB_UID)')
    .requiredOption('--slots <n>', 'how many VFs (one per VM of the job on this node)')
    .option('--pool <list>', 'only from these pools / PFs / VFs (comma-separated; all must be in the node config\'s pools)')
    .option('--json', 'print what was done as JSON')
    .action(async (f: { job?: string; uid?: string; slots?: string; pool?: string; json?: boolean }) => setExit(await devicesClaim(f, deps())));
  dev.command('release').description('undo exactly the claims of a job (root)')
    .requiredOption('--job <id>', 'Slurm job id')
    .option('--pci <address>', 'only this VF (it must be claimed by the job)')
    .option('--json', 'print what was done as JSON')
    .action(async (f: { job?: string; pci?: string; json?: boolean }) => setExit(await devicesRelease(f, deps())));
  dev.command('check').description('can this node lend VFs? (prolog / health check: exit 1 on a node problem)')
    .option('--json', 'machine-readable').option('--no-slurm', 'do not ask Slurm whether claimed jobs still exist')
    .action(async (f: { json?: boolean; slurm?: boolean }) => setExit(await devicesCheck(f, deps())));
}
