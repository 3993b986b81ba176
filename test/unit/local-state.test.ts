// Local-mode bookkeeping: state files, subnet claims, owner liveness (in a temporary state dir).
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import {
  claimPath, listClaims, listStateJobIds, ownerAlive, procStartTime, readState, statePath, stateDir, tryClaim, writeState,
  type LocalJobState,
} from '../../launcher/src/local/state.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'symrun-local-state-'));
process.env.SYMRUN_LOCAL_STATE_DIR = dir;
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));

const sample = (jobId: string): LocalJobState => ({
  version: 1, jobId, ownerPid: process.pid, ownerStartTime: procStartTime(process.pid), createdAt: new Date().toISOString(),
  phase: 'creating', hosts: 2, namespaces: [`symrun-${jobId}-sw`], links: [`sym-${jobId}`], files: [],
});

t.test('state files round-trip', async (t) => {
  t.equal(stateDir(), dir);
  writeState(sample('j1'));
  t.equal(statePath('j1'), path.join(dir, 'j1.json'));
  t.match(readState('j1'), { jobId: 'j1', hosts: 2, namespaces: ['symrun-j1-sw'] });
  t.equal(readState('nope'), undefined);
  fs.writeFileSync(statePath('j2'), '{ broken');
  t.equal(readState('j2'), undefined, 'unreadable state is undefined');
  t.same(listStateJobIds().sort(), ['j1', 'j2']);
  t.notOk(fs.readdirSync(dir).some((f) => f.endsWith('.tmp')), 'no temp files left');
});

t.test('subnet claims are exclusive', async (t) => {
  t.ok(tryClaim('198.18.9.0/24', 'j1'));
  t.notOk(tryClaim('198.18.9.0/24', 'j2'), 'second claim fails');
  t.equal(path.basename(claimPath('198.18.9.0/24')), 'net-198.18.9.0-24');
  t.same([...listClaims()], [['198.18.9.0/24', 'j1']]);
});

t.test('owner liveness', async (t) => {
  t.ok(ownerAlive({ ownerPid: process.pid, ownerStartTime: procStartTime(process.pid) }), 'this process');
  t.notOk(ownerAlive({ ownerPid: process.pid, ownerStartTime: '1' }), 'same pid, other start time = recycled pid');
  t.notOk(ownerAlive({ ownerPid: 0 }), 'pid 0');
  const child = spawnSync(process.execPath, ['-e', 'console.log(process.pid)']);
  const pid = Number(String(child.stdout).trim());
  t.notOk(ownerAlive({ ownerPid: pid }), 'exited process');
});
