// The checks JSON schema cannot express clearly (sizes, relations between fields), as problems.
import { DEFAULTS } from '../defaults.js';
import { CONFIG_DEFAULTS, MIN_MEMORY_MIB } from './schema.js';
import { type Seg, type Problem, show, getAt, isPlainObject } from './problems.js';
import { SIZE_RE, mibFrom } from './units.js';

export const SIZE_FIELDS: ReadonlyArray<{ path: Seg[]; unit: 'MiB' | 'bytes'; minMiB?: number }> = [
  { path: ['vm', 'memory'], unit: 'MiB', minMiB: MIN_MEMORY_MIB },
  { path: ['share', 'maxBytes'], unit: 'bytes' },
  { path: ['migration', 'maxBandwidth'], unit: 'bytes' },
];


/**
 * Checks JSON schema cannot express clearly. Defensive: runs on data that may also have schema errors.
 * ctx.slurmJob: loaded inside a Slurm job, where the site's node layer may claim the VFs of a vfio job
 * (SYMRUN_VF_SLOTS, docs/passthrough.md), so a vfio interconnect may name no device of its own.
 */
export function semanticProblems(raw: Record<string, unknown>, ctx: { slurmJob?: boolean } = {}): Problem[] {
  const out: Problem[] = [];

  for (const f of SIZE_FIELDS) {
    const v = getAt(raw, f.path);
    const wellFormed = (typeof v === 'number' && Number.isInteger(v) && v >= 0) || (typeof v === 'string' && SIZE_RE.test(v));
    if (!wellFormed) continue; // the schema reports it
    if (f.unit === 'MiB') {
      const r = mibFrom(v as string | number);
      if ('problem' in r) {
        out.push({ path: f.path, text: `${r.problem}: ${show(v)}`, value: v, fix: r.fix });
      } else if (f.minMiB !== undefined && r.mib < f.minMiB) {
        out.push({
          path: f.path,
          text: `is too small: ${show(v)} is ${r.mib} MiB, the minimum is ${f.minMiB} MiB`,
          value: v,
          fix: `use at least ${f.minMiB}M (${DEFAULTS.vm.memoryMiB}M is the default)`,
        });
      }
    }
  }

  const ic = raw.interconnect;
  if (isPlainObject(ic)) {
    const type = ic.type ?? CONFIG_DEFAULTS.interconnectType;
    const hasAddresses = isPlainObject(ic.addresses) && Object.keys(ic.addresses).length > 0;
    const hasPool = Array.isArray(ic.pool) && ic.pool.length > 0;
    if (type === 'vfio') {
      if (!hasAddresses && !hasPool && ic.addresses === undefined && ic.pool === undefined && !ctx.slurmJob) {
        out.push({
          path: ['interconnect', 'type'],
          text: 'is vfio, but no device is given',
          message: 'interconnect type vfio needs a device to pass through, but neither interconnect.addresses nor interconnect.pool is set',
          value: 'vfio',
          fix:
            'add addresses (one PCI address per host, e.g. addresses: { node01: "0000:3b:00.1" }) or pool ' +
            '(SR-IOV VFs, e.g. pool: ["0000:3b:02.0", "0000:3b:02.1"]) under interconnect; or use type: emulated ' +
            '(inside a Slurm job on a site whose prolog claims VFs, neither is needed: docs/passthrough.md)',
        });
      } else if (isPlainObject(ic.addresses) && !hasAddresses && !hasPool) {
        out.push({
          path: ['interconnect', 'addresses'],
          text: 'is empty, and there is no pool',
          value: ic.addresses,
          fix: 'give one PCI address per host, e.g. addresses: { node01: "0000:3b:00.1" }, or set interconnect.pool',
        });
      }
      if (ic.model !== undefined) {
        out.push({
          path: ['interconnect', 'model'],
          text: 'applies only to type: emulated',
          value: ic.model,
          fix: 'remove interconnect.model (a vfio device is what it is), or set interconnect.type: emulated',
        });
      }
      // With addresses only, every explicitly listed host needs one.
      if (hasAddresses && !hasPool && Array.isArray(raw.hosts)) {
        const addrs = ic.addresses as Record<string, unknown>;
        raw.hosts.forEach((h, i) => {
          if (typeof h === 'string' && !(h in addrs)) {
            out.push({
              path: ['hosts', i],
              text: `names host '${h}', which has no entry in interconnect.addresses (and there is no pool)`,
              value: h,
              fix: `add ${h}: "<PCI address>" under interconnect.addresses, or set interconnect.pool`,
            });
          }
        });
      }
    } else if (type === 'emulated') {
      for (const k of ['addresses', 'pool'] as const) {
        if (ic[k] !== undefined) {
          out.push({
            path: ['interconnect', k],
            text: 'is only used with type: vfio',
            value: ic[k],
            fix: `add 'type: vfio' under interconnect to pass real devices through, or remove ${k}`,
          });
        }
      }
    }
  }

  const ck = raw.checkpoint;
  if (isPlainObject(ck) && ck.interval !== undefined && ck.dir === undefined) {
    out.push({
      path: ['checkpoint', 'interval'],
      text: 'is set, but checkpoint.dir is not',
      message: 'periodic checkpoints (checkpoint.interval) need a directory to write to, but checkpoint.dir is not set',
      value: ck.interval,
      fix: 'set checkpoint.dir (or --checkpoint-dir DIR; in Slurm mode a path every node shares)',
    });
  }

  // rdma (mpi/transport.ts): checkpoints keep RDMA connections only with the site's hooks adapter
  const mig = raw.migration;
  const quiesce = isPlainObject(mig) && typeof mig.quiesce === 'string' ? mig.quiesce : 'freeze';
  if (isPlainObject(ic) && ic.transport === 'rdma' && isPlainObject(ck) && ck.interval !== undefined && quiesce !== 'hooks') {
    out.push({
      path: ['checkpoint', 'interval'],
      text: `is set, but checkpoints of an rdma job need migration.quiesce: hooks (it is ${quiesce})`,
      message: `periodic checkpoints (checkpoint.interval) of a job with interconnect.transport: rdma would be refused: a checkpoint quiesces with freeze, which does not keep RDMA connections alive (migration.quiesce is ${quiesce})`,
      value: ck.interval,
      fix: 'use --transport tcp for checkpointed jobs, or migration.quiesce: hooks with an MPI whose hooks reconnect its verbs connections (docs/passthrough.md)',
    });
  }

  const net = raw.network;
  if (isPlainObject(net) && typeof net.subnet === 'string' && net.subnet !== 'auto') {
    const m = /^(\d+)\.(\d+)\.(\d+)\.(\d+)\/(\d+)$/.exec(net.subnet);
    if (m && m.slice(1, 5).every((o) => Number(o) <= 255)) {
      const prefix = Number(m[5]);
      const ip = m.slice(1, 5).reduce((a, o) => a * 256 + Number(o), 0);
      const mask = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
      const netAddr = (ip & mask) >>> 0;
      if (netAddr !== ip && prefix >= 16 && prefix <= 28) {
        const dotted = [24, 16, 8, 0].map((s) => (netAddr >>> s) & 255).join('.');
        out.push({
          path: ['network', 'subnet'],
          text: `is not a network address: ${show(net.subnet)} has host bits set`,
          value: net.subnet,
          fix: `use ${dotted}/${prefix}`,
        });
      }
    }
  }
  return out;
}
