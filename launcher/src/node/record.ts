// What the root node layer made for a job on this node, written down BEFORE each thing is made (so an
// interrupted prolog, a crashed helper or a killed job leave a record the epilog can undo exactly) in a
// root-owned directory: STATE/<node>/jobs/<J>/record.json (0644: the job's processes read the network
// facts, e.g. the MTU; only root writes it). The epilog removes what the record lists and nothing else.
import fs from 'node:fs';
import path from 'node:path';
import { writeFileAtomic } from '../util/fsatomic.js';
import { checkJobId } from './names.js';

export interface AttachedVm {
  vm: number;
  tap: string;
  mac: string;
  ip: string;
  standby?: { tap: string; mac: string };
  attachedAt: string;
}

export interface JobRecord {
  v: 1;
  job: string;
  uid: number;
  gid: number;
  user: string;
  node: string;
  createdAt: string;
  /** the job's run directory on this node (owned by the user, 0700) */
  runDir: string;
  network?: { bridge: string; vxlan: string; vni: number; group: string; dev: string; local: string; port: number; mtu: number };
  nftTable?: string;
  attached: AttachedVm[];
  /**
   * the VFs root claimed for the job on this node (`symrun node devices claim --json`, its `claimed`
   * entries: pci, type, mac or portGuid): the host agent hands these to the job's VMs (device/job-vfs.ts)
   */
  vfs?: Array<{ pci: string; type?: string; mac?: string; portGuid?: string }>;
  /** everything the prolog finished (the epilog undoes a partial one too) */
  complete: boolean;
}

export function nodeStateDir(stateRoot: string, node: string): string {
  if (!/^[A-Za-z0-9_.-]{1,63}$/.test(node)) throw new Error(`bad node name ${JSON.stringify(node)}`);
  return path.join(stateRoot, node);
}

export function recordDir(stateRoot: string, node: string, job: string): string {
  return path.join(nodeStateDir(stateRoot, node), 'jobs', checkJobId(job));
}

export function recordPath(stateRoot: string, node: string, job: string): string {
  return path.join(recordDir(stateRoot, node, job), 'record.json');
}

export function readRecord(stateRoot: string, node: string, job: string): JobRecord | undefined {
  try {
    const r = JSON.parse(fs.readFileSync(recordPath(stateRoot, node, job), 'utf8')) as JobRecord;
    return r && r.v === 1 && r.job === job ? r : undefined;
  } catch {
    return undefined;
  }
}

/** Root only: the directory chain is root-owned and not writable by others, the record 0644. */
export function writeRecord(stateRoot: string, r: JobRecord): void {
  const dir = recordDir(stateRoot, r.node, r.job);
  for (const d of [stateRoot, nodeStateDir(stateRoot, r.node), path.dirname(dir), dir]) {
    fs.mkdirSync(d, { recursive: true, mode: 0o755 });
    const st = fs.lstatSync(d);
    if (!st.isDirectory() || st.uid !== 0 || (st.mode & 0o022) !== 0) throw new Error(`${d} is not a root-owned directory writable only by root`);
  }
  writeFileAtomic(path.join(dir, 'record.json'), JSON.stringify(r, null, 1) + '\n', 0o644);
}

export function removeRecord(stateRoot: string, node: string, job: string): void {
  fs.rmSync(recordDir(stateRoot, node, job), { recursive: true, force: true });
}

/** Slurm job ids with a record on this node. */
export function recordedJobs(stateRoot: string, node: string): string[] {
  try {
    return fs.readdirSync(path.join(nodeStateDir(stateRoot, node), 'jobs')).filter((j) => /^[1-9][0-9]{0,9}$/.test(j));
  } catch {
    return [];
  }
}

/** The node helper's socket: STATE/<node>/noded.sock (mode 0666: anyone may ask; the proof says who asks). */
export function helperSocket(stateRoot: string, node: string): string {
  return path.join(nodeStateDir(stateRoot, node), 'noded.sock');
}

/** Where callers prove their uid to the helper (proof.ts): STATE/<node>/proof, mode 1733. */
export function proofDir(stateRoot: string, node: string): string {
  return path.join(nodeStateDir(stateRoot, node), 'proof');
}
