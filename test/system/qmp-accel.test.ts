// Accelerator probe against the real machine. Here KVM exists but guests hang (docs/lab-notes.md), so auto -> tcg.
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { detectQemu, probeAccel, runBootSectorProbe, BOOT_SECTOR_EXIT_STATUS } from '../../launcher/src/vm/index.js';

t.test('boot-sector payload exits through isa-debug-exit under TCG', async (t) => {
  await detectQemu().catch((e) => { throw new Error(`QEMU is required for system tests (bash scripts/setup installs it): ${e.message}`); });
  const r = await runBootSectorProbe('tcg', { timeoutMs: 20_000 });
  t.comment(`TCG boot sector: exit ${r.code} in ${r.ms} ms`);
  t.equal(r.code, BOOT_SECTOR_EXIT_STATUS);
  t.equal(r.ok, true);
});

t.test('probeAccel(auto) ends on TCG with a notice, and caches per boot', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'accel-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const cacheFile = path.join(dir, 'accel-probe.json');
  const t0 = Date.now();
  const r = await probeAccel('auto', { cacheFile });
  const ms = Date.now() - t0;
  t.comment(`probe: ${JSON.stringify(r)} in ${ms} ms`);
  if (fs.existsSync('/dev/kvm')) {
    t.equal(r.accel, 'tcg', 'KVM guests hang on this machine');
    t.match(r.notice, /^KVM present but .*; using TCG$/);
    t.notOk(r.notice!.includes('\n'), 'one line');
  }
  t.ok(ms < 8000, 'bounded by the probe deadline');
  if (!fs.existsSync('/dev/kvm')) {
    // nothing to probe (and nothing worth caching): TCG at once, with the reason
    t.equal(r.accel, 'tcg');
    t.match(r.notice, /\/dev\/kvm does not exist; using TCG/);
    t.notOk(fs.existsSync(cacheFile), 'no probe ran, so nothing is cached');
    return;
  }
  const cache = JSON.parse(fs.readFileSync(cacheFile, 'utf8'));
  t.equal(cache.bootId, fs.readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim());
  const t1 = Date.now();
  const r2 = await probeAccel('auto', { cacheFile });
  t.comment(`cached probe in ${Date.now() - t1} ms`);
  t.equal(r2.cached, true);
  t.equal(r2.accel, r.accel);
  t.ok(Date.now() - t1 < 500);
  if (r.accel === 'tcg' && fs.existsSync('/dev/kvm')) {
    await t.rejects(probeAccel('kvm', { cacheFile }), { code: 'ESYM_KVM_UNAVAILABLE' });
  }
});
