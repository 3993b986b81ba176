// The node config's pools resolved against sysfs: which VFs this node lends out, and which pool each
// belongs to. A pool entry that names nothing usable is a problem (reported by `check`, skipped by claim).
import { SymError, EXIT } from '../errors.js';
import { readPf, readVf, physfnOf, type VfRecord } from './discover.js';
import { isPciAddress } from './pci.js';
import { POOL_NAME_RE, type DevicePool } from './nodeconfig.js';
import type { DeviceIO } from './sysfs.js';

export interface PoolVf { pool: DevicePool; vf: VfRecord; type: 'ethernet' | 'infiniband' }

export interface PoolProblem { pool: string; device: string; problem: string; fix: string }

export interface ResolvedPools { vfs: PoolVf[]; problems: PoolProblem[] }

function vfType(vf: VfRecord, pfKind: string | undefined): 'ethernet' | 'infiniband' | undefined {
  const k = vf.kind === 'ethernet' || vf.kind === 'infiniband' ? vf.kind : pfKind;
  return k === 'ethernet' || k === 'infiniband' ? k : undefined;
}

/** Every VF of every pool, in config order (pool, then PF, then VF index). */
export function resolvePools(io: DeviceIO, pools: readonly DevicePool[]): ResolvedPools {
  const out: ResolvedPools = { vfs: [], problems: [] };
  const seen = new Set<string>();
  const add = (pool: DevicePool, vf: VfRecord, pfKind: string | undefined) => {
    if (seen.has(vf.address)) return;
    const type = vfType(vf, pfKind);
    if (!type) {
      out.problems.push({ pool: pool.name, device: vf.address, problem: `is neither an Ethernet nor an InfiniBand function (class ${vf.class?.toString(16) ?? 'unknown'})`, fix: 'take it out of the pool' });
      return;
    }
    seen.add(vf.address);
    out.vfs.push({ pool, vf, type });
  };
  for (const pool of pools) {
    for (const a of pool.pfs) {
      const pf = readPf(io, a);
      if (!pf) {
        const present = io.exists(`sys/bus/pci/devices/${a}`);
        out.problems.push({ pool: pool.name, device: a, problem: present ? 'is not SR-IOV capable (no sriov_totalvfs)' : 'is not present', fix: present ? 'list its VFs under vfs, or take it out of the pool' : 'check the address (lspci -D) and the NIC' });
        continue;
      }
      if (pf.numVfs === 0 || pf.vfs.length === 0) {
        out.problems.push({ pool: pool.name, device: a, problem: `has no VFs (sriov_numvfs is ${pf.numVfs}, at most ${pf.totalVfs})`, fix: `create them at boot: echo N > /sys/bus/pci/devices/${a}/sriov_numvfs (a udev rule or systemd unit)` });
        continue;
      }
      for (const vf of pf.vfs) add(pool, vf, pf.kind);
    }
    for (const a of pool.vfs) {
      const vf = readVf(io, a);
      if (!vf) {
        const present = io.exists(`sys/bus/pci/devices/${a}`);
        out.problems.push({ pool: pool.name, device: a, problem: present ? 'is not a VF (no physfn link)' : 'is not present', fix: present ? 'list PFs under pfs, VFs under vfs' : `check the address; VFs appear after echo N > …/sriov_numvfs on their PF` });
        continue;
      }
      add(pool, vf, readPf(io, vf.pf)?.kind);
    }
  }
  return out;
}

/**
 * A --pool selection: comma-separated pool names, PF addresses and VF addresses, each of which must be in
 * the configured pools. Returns the selected VFs (in pool order).
 */
export function selectPool(selection: string, resolved: ResolvedPools, io: DeviceIO, field = '--pool'): PoolVf[] {
  const items = selection.split(',').map((s) => s.trim());
  if (!items.length || items.some((s) => s === '')) {
    throw new SymError('ESYM_DEVICE_ARGS', { message: `${field} must name pools, PFs or VFs separated by commas`, field, value: selection, fix: 'e.g. --pool fabric, --pool 0000:3b:00.0 or --pool 0000:3b:02.0,0000:3b:02.1', exitCode: EXIT.usage });
  }
  const pick = new Set<string>();
  const poolNames = [...new Set(resolved.vfs.map((v) => v.pool.name))];
  for (const it of items) {
    if (isPciAddress(it)) {
      const asVf = resolved.vfs.filter((v) => v.vf.address === it);
      const asPf = resolved.vfs.filter((v) => v.vf.pf === it && v.pool.pfs.includes(it));
      if (!asVf.length && !asPf.length) {
        const why = io.exists(`sys/bus/pci/devices/${it}`) ? (physfnOf(io, it) ? 'is a VF that is in no pool of the node config' : 'is in no pool of the node config') : 'does not exist on this node';
        throw new SymError('ESYM_DEVICE_NOT_IN_POOL', { message: `${field}: ${it} ${why}`, field, value: it, fix: `choose among the configured pools (symrun node devices list)${poolNames.length ? `: ${poolNames.join(', ')}` : ''}`, exitCode: EXIT.usage });
      }
      for (const v of [...asVf, ...asPf]) pick.add(v.vf.address);
    } else if (POOL_NAME_RE.test(it) && resolved.vfs.some((v) => v.pool.name === it)) {
      for (const v of resolved.vfs) if (v.pool.name === it) pick.add(v.vf.address);
    } else {
      throw new SymError('ESYM_DEVICE_NOT_IN_POOL', {
        message: `${field}: ${JSON.stringify(it)} is neither a configured pool with VFs nor a PCI address (0000:3b:02.0)`, field, value: it,
        fix: poolNames.length ? `use one of the pools ${poolNames.join(', ')}, or PF/VF addresses from them` : 'configure devices.pools in the node config (docs/passthrough.md)', exitCode: EXIT.usage,
      });
    }
  }
  return resolved.vfs.filter((v) => pick.has(v.vf.address));
}
