// Checkpoint directories: manifest, publish (tmp -> final), verify, list, prune (--keep), space check.
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import {
  CKPT_FORMAT, CKPT_FORMAT_VERSION, checkpointName, createTempDir, writeManifest, publish, verifyCheckpoint, listCheckpoints,
  pruneCheckpoints, checkSpace, estimateBytes, hashFile, symrunVersion, isTempName, MANIFEST_FILE, type CheckpointManifest,
} from '../../launcher/src/checkpoint/manifest.js';
import type { VmSpec } from '../../launcher/src/vm/index.js';

function tmpRoot(t: { teardown(fn: () => void): void }): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'ckpt-man-'));
  t.teardown(() => fs.rmSync(d, { recursive: true, force: true }));
  return d;
}

const spec = (name: string): VmSpec => ({
  name, runDir: `/run/symrun/j1/host1/${name}`, accel: 'tcg', memoryMiB: 512, cpus: 1, machine: 'q35', kernel: '/img/vmlinuz', initrd: '/img/initrd.img',
  rootfs: '/img/root.ext4', append: 'console=ttyS0', agentSocket: '/run/a.sock', agentPortName: 'symrun.agent', rootPorts: 2, extraArgs: [],
});

/** A complete checkpoint of `vms` VMs made the way the coordinator does it. */
async function makeCheckpoint(root: string, jobId: string, at: Date, vms = ['vm1', 'vm2'], bytes = 100_000): Promise<{ name: string; dir: string; m: CheckpointManifest }> {
  const name = checkpointName(jobId, at);
  const tmp = createTempDir(root, name);
  const entries = [];
  for (const [i, vm] of vms.entries()) {
    const data = crypto.randomBytes(bytes + i);
    fs.writeFileSync(path.join(tmp, `${vm}.state`), data);
    entries.push({
      name: vm, host: `host${i + 1}`, file: `${vm}.state`, size: data.length, sha256: crypto.createHash('sha256').update(data).digest('hex'), spec: spec(vm),
      device: { id: 'symfab0', netdevId: 'symfab0nd', model: 'virtio-net-pci', mac: `52:54:00:00:00:0${i + 1}`, bus: 'rp1', tap: `symtap${i + 1}` },
      network: { name: 'eth1', address: `198.18.0.${i + 2}/24` },
    });
  }
  const m: CheckpointManifest = {
    format: CKPT_FORMAT, formatVersion: CKPT_FORMAT_VERSION, symrunVersion: symrunVersion(), name, jobId, createdAt: at.toISOString(),
    command: { app: ['./ring', '100'], cwd: '/work' }, hosts: [{ name: 'host1', ip: '198.18.0.1', role: 'vm' }],
    image: { hash: 'abc', kernel: '/img/vmlinuz', initrd: '/img/initrd.img', rootfs: '/img/root.ext4' }, vms: entries,
  };
  t.ok(isTempName(path.basename(tmp)), 'written into NAME.tmp-XXXX');
  writeManifest(tmp, m);
  const dir = publish(tmp, path.join(root, name));
  return { name, dir, m };
}

t.test('names sort by time; the package version is recorded', async (t) => {
  const a = checkpointName('j1', new Date('2026-11-22T04:18:00.123Z'));
  t.equal(a, 'j1-20261122T041800123Z');
  t.ok(a < checkpointName('j1', new Date('2026-11-22T04:18:00.124Z')));
  t.match(symrunVersion(), /^\d+\.\d+\.\d+/);
});

t.test('a published checkpoint verifies: format, sizes, sha256', async (t) => {
  const root = tmpRoot(t);
  const { dir, m } = await makeCheckpoint(root, 'j1', new Date());
  t.notOk(fs.readdirSync(root).some(isTempName), 'no temp dir left after publish');
  const v = await verifyCheckpoint(dir);
  t.equal(v.status, 'complete');
  t.ok(v.ok);
  t.same(v.files.map((f) => f.ok), [true, true]);
  t.equal(v.manifest?.jobId, 'j1');
  t.same(v.manifest?.vms.map((x) => x.spec.name), ['vm1', 'vm2'], 'VM specs in the manifest');
  const h = await hashFile(path.join(dir, 'vm1.state'));
  t.equal(h.sha256, m.vms[0]!.sha256);
  t.throws(() => publish(dir, dir), /exists already/);
});

t.test('corruption is found: flipped byte, truncated file, missing file, bad manifest, unknown format', async (t) => {
  const root = tmpRoot(t);
  const flip = await makeCheckpoint(root, 'j1', new Date('2026-01-01T00:00:01Z'));
  const f = path.join(flip.dir, 'vm2.state');
  const buf = fs.readFileSync(f);
  buf[500] = buf[500]! ^ 0x01;
  fs.writeFileSync(f, buf);
  let v = await verifyCheckpoint(flip.dir);
  t.equal(v.status, 'corrupt');
  t.match(v.reason, /vm2\.state \(vm2\) sha256 .* does not match/);
  v = await verifyCheckpoint(flip.dir, { hashes: false });
  t.equal(v.status, 'complete', 'a size-only check cannot see a flipped byte');

  const trunc = await makeCheckpoint(root, 'j1', new Date('2026-01-01T00:00:02Z'));
  fs.truncateSync(path.join(trunc.dir, 'vm1.state'), 10);
  t.match((await verifyCheckpoint(trunc.dir)).reason, /vm1\.state \(vm1\) has 10 bytes, the manifest says/);

  const miss = await makeCheckpoint(root, 'j1', new Date('2026-01-01T00:00:03Z'));
  fs.rmSync(path.join(miss.dir, 'vm2.state'));
  t.match((await verifyCheckpoint(miss.dir)).reason, /vm2\.state \(vm2\) is missing/);

  const bad = await makeCheckpoint(root, 'j1', new Date('2026-01-01T00:00:04Z'));
  fs.writeFileSync(path.join(bad.dir, 'manifest.json'), '{"format": "symrun-checkpoint", ');
  t.match((await verifyCheckpoint(bad.dir)).reason, /not valid JSON/);

  const newer = await makeCheckpoint(root, 'j1', new Date('2026-01-01T00:00:05Z'));
  const m = JSON.parse(fs.readFileSync(path.join(newer.dir, 'manifest.json'), 'utf8'));
  fs.writeFileSync(path.join(newer.dir, 'manifest.json'), JSON.stringify({ ...m, formatVersion: 99 }));
  t.match((await verifyCheckpoint(newer.dir)).reason, /unsupported checkpoint format version 99/);

  const escape = await makeCheckpoint(root, 'j1', new Date('2026-01-01T00:00:06Z'));
  fs.writeFileSync(path.join(escape.dir, 'manifest.json'), JSON.stringify({ ...m, vms: [{ ...m.vms[0], file: '../../etc/passwd' }] }));
  t.match((await verifyCheckpoint(escape.dir)).reason, /outside the checkpoint/);

  const none = path.join(root, 'nothing-here');
  fs.mkdirSync(none);
  fs.writeFileSync(path.join(none, 'vm1.state'), 'x');
  t.match((await verifyCheckpoint(none)).reason, /no manifest\.json/);
});

t.test('listCheckpoints: newest first, complete / incomplete / corrupt with the reason, unrelated dirs skipped', async (t) => {
  const root = tmpRoot(t);
  const old = await makeCheckpoint(root, 'j1', new Date('2026-01-01T00:00:00Z'), ['vm1', 'vm2', 'vm3']);
  const cur = await makeCheckpoint(root, 'j1', new Date('2026-01-02T00:00:00Z'));
  const copy = path.join(root, 'copy');
  fs.cpSync(cur.dir, copy, { recursive: true });
  fs.appendFileSync(path.join(copy, 'vm1.state'), 'x');
  const tmp = createTempDir(root, checkpointName('j2', new Date('2026-01-03T00:00:00Z')));
  fs.writeFileSync(path.join(tmp, 'vm1.state.part'), 'partial');
  fs.mkdirSync(path.join(root, 'lost+found'));
  fs.writeFileSync(path.join(root, 'README'), 'not a checkpoint');
  const l = await listCheckpoints(root);
  t.same(l.map((e) => e.name).sort(), [old.name, cur.name, 'copy', path.basename(tmp)].sort(), 'lost+found and files are not listed');
  const by = (n: string) => l.find((e) => e.name === n)!;
  t.equal(by(old.name).status, 'complete');
  t.same(by(old.name).vms, ['vm1', 'vm2', 'vm3']);
  t.ok(by(old.name).sizeBytes >= 300_000, 'size of all files');
  t.equal(by(old.name).time, '2026-01-01T00:00:00.000Z');
  t.equal(by('copy').status, 'corrupt');
  t.match(by('copy').reason, /vm1\.state \(vm1\) has \d+ bytes/);
  t.equal(by(path.basename(tmp)).status, 'incomplete');
  t.match(by(path.basename(tmp)).reason, /temporary directory/);
  t.equal(by(path.basename(tmp)).jobId, 'j2');
  const complete = l.filter((e) => e.status === 'complete');
  t.same(complete.map((e) => e.name), [cur.name, old.name], 'newest first');
  await t.rejects(listCheckpoints(path.join(root, 'nope')), { code: 'ESYM_CKPT_DIR' });
});

t.test('pruneCheckpoints keeps the N newest complete ones of the job only', async (t) => {
  const root = tmpRoot(t);
  const a = await makeCheckpoint(root, 'j1', new Date('2026-01-01T00:00:00Z'));
  const b = await makeCheckpoint(root, 'j1', new Date('2026-01-02T00:00:00Z'));
  const c = await makeCheckpoint(root, 'j1', new Date('2026-01-03T00:00:00Z'));
  const other = await makeCheckpoint(root, 'j2', new Date('2025-01-01T00:00:00Z'));
  const stale = createTempDir(root, checkpointName('j1', new Date('2026-01-02T12:00:00Z')));
  const r = pruneCheckpoints(root, 'j1', 2, { except: c.name });
  t.same(r.removed.sort(), [a.name, path.basename(stale)].sort(), 'oldest complete one and the abandoned temp dir of the job');
  t.same(r.kept, [c.name, b.name]);
  t.ok(fs.existsSync(other.dir), "another job's checkpoint is left alone");
  t.same(pruneCheckpoints(root, 'j1', 0).removed, [], 'keep 0 = keep all');
  const r1 = pruneCheckpoints(root, 'j1', 1);
  t.same(r1.removed, [b.name]);
  t.ok(fs.existsSync(c.dir));
});

t.test('space check: estimate = guest RAM per VM; too little space is a clear error', async (t) => {
  const root = tmpRoot(t);
  t.equal(estimateBytes(3, 512), 3 * (512 + 4) * 1024 * 1024);
  const ok = checkSpace(root, 1024);
  t.ok(ok.freeBytes > 1024);
  t.throws(() => checkSpace(root, Number.MAX_SAFE_INTEGER), { code: 'ESYM_CKPT_NO_SPACE', message: /not enough disk space for the checkpoint in .*: about .* needed \(guest RAM per VM\), .* free/ });
});

t.test('regression (found by fast-check): state files that are not regular files in the checkpoint are corrupt, not read', async (t) => {
  const made: string[] = [];
  const empty = crypto.createHash('sha256').digest('hex');
  t.teardown(() => { for (const d of made) fs.rmSync(d, { recursive: true, force: true }); });
  for (const file of ['zero', '', 'sub', 'link']) {
    const outer = fs.mkdtempSync(path.join(os.tmpdir(), 'ckpt-nonreg-'));
    made.push(outer);
    const dir = path.join(outer, 'ckpt');
    fs.mkdirSync(path.join(dir, 'sub'), { recursive: true });
    fs.writeFileSync(path.join(outer, 'outside'), '');
    fs.symlinkSync('/dev/zero', path.join(dir, 'zero'));
    fs.symlinkSync('../outside', path.join(dir, 'link'));
    fs.writeFileSync(path.join(dir, MANIFEST_FILE), JSON.stringify({ format: CKPT_FORMAT, formatVersion: CKPT_FORMAT_VERSION, jobId: 'j', createdAt: 'x', vms: [{ name: 'vm1', file, size: 0, sha256: empty }] }));
    const r = await Promise.race([
      verifyCheckpoint(dir),
      new Promise<'hang'>((resolve) => { const tm = setTimeout(() => resolve('hang'), 5000); tm.unref(); }),
    ]).catch((e: unknown) => e);
    t.not(r, 'hang', `${JSON.stringify(file)}: no hang`);
    t.ok(!(r instanceof Error), `${JSON.stringify(file)}: no exception (${String(r)})`);
    t.equal((r as { status?: string }).status, 'corrupt', `${JSON.stringify(file)}: corrupt`);
  }
});
