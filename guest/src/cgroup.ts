// The job's cgroup (v2): every rank is started inside it, so the freeze adapter stops the whole job with
// one write. Without a cgroup v2 freezer the agent falls back to SIGSTOP of the sessions' process trees.
import fs from 'node:fs';
import { spawnSync } from 'node:child_process';
import { log } from './util.js';

const CGROUP_ROOT = '/sys/fs/cgroup';
export const JOB_CGROUP = `${CGROUP_ROOT}/symrun.job`;

let cgroupReady: boolean | null = null;
export function ensureJobCgroup(): boolean {
  if (cgroupReady !== null) return cgroupReady;
  try {
    if (!fs.existsSync(`${CGROUP_ROOT}/cgroup.controllers`)) {
      fs.mkdirSync(CGROUP_ROOT, { recursive: true });
      if (spawnSync('mount', ['-t', 'cgroup2', 'none', CGROUP_ROOT], { stdio: 'ignore' }).status !== 0) throw new Error('mount cgroup2 failed');
    }
    fs.mkdirSync(JOB_CGROUP, { recursive: true });
    cgroupReady = fs.existsSync(`${JOB_CGROUP}/cgroup.freeze`);
  } catch (e) {
    log(`cgroup v2 freezer unavailable (${(e as Error).message}); falling back to SIGSTOP`);
    cgroupReady = false;
  }
  return cgroupReady;
}

