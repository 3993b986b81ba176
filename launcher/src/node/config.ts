// The site's node configuration for the root node layer: /etc/symrun/node.conf (SYMRUN_NODE_CONF names
// another file), KEY=VALUE lines as the shell prolog reads them. Root trusts this file only if root owns
// it and nobody else can write it; values are parsed, never evaluated; tools are absolute paths.
import fs from 'node:fs';
import { SymError, EXIT } from '../errors.js';

export interface NodeConfig {
  /** where root keeps its records: STATE/<node>/jobs/<J>/ (per node: a namespace lab shares /run) */
  stateDir: string;
  /** the job's run directory root on every node: RUNTIME/slurm-<J> (owned by the job's user, 0700) */
  runtimeDir: string;
  /** underlay device for the job's VXLAN ('' = the device holding this node's own address) */
  overlayDev: string;
  /** this node's address on the underlay ('' = resolve the node name) */
  nodeAddr: string;
  /** VXLAN UDP port */
  vxlanPort: number;
  /** added to the job id before the VNI is derived (a site with several fabrics/partitions) */
  vniBase: number;
  /** which jobs get the symrun layer: 'comment' (the job's --comment mentions symrun) or 'all' */
  prepare: 'comment' | 'all';
  /** vm.extraArgs allowed for users' jobs */
  allowExtraArgs: boolean;
  /** VFs the prolog claims for each symrun job on this node (node/vfs.ts; 0: none) */
  vfSlots: number;
  ip: string;
  nft: string;
  scontrol: string;
  qemu: string;
  nodeName?: string;
  /**
   * the site's read-only guest-image cache, looked up before each user's own cache ('' = none;
   * docs/site-install.md, docs/images.md): filled by `SYMRUN_CACHE_DIR=<its parent> symrun image build`
   */
  siteImages: string;
}

export const NODE_CONFIG_DEFAULTS: NodeConfig = {
  stateDir: '/run/symrun-node',
  runtimeDir: '/run/symrun',
  overlayDev: '',
  nodeAddr: '',
  vxlanPort: 4789,
  vniBase: 0,
  prepare: 'comment',
  allowExtraArgs: false,
  vfSlots: 0,
  ip: '/usr/sbin/ip',
  nft: '/usr/sbin/nft',
  scontrol: '/usr/bin/scontrol',
  qemu: '/usr/bin/qemu-system-x86_64',
  siteImages: '/var/cache/symrun/images',
};

const KEYS: Record<string, keyof NodeConfig> = {
  SYMRUN_NODE_STATE: 'stateDir',
  SYMRUN_RUNTIME_DIR: 'runtimeDir',
  SYMRUN_OVERLAY_DEV: 'overlayDev',
  SYMRUN_NODE_ADDR: 'nodeAddr',
  SYMRUN_VXLAN_PORT: 'vxlanPort',
  SYMRUN_VNI_BASE: 'vniBase',
  SYMRUN_PREPARE: 'prepare',
  SYMRUN_ALLOW_EXTRA_ARGS: 'allowExtraArgs',
  SYMRUN_VF_SLOTS: 'vfSlots',
  SYMRUN_IP: 'ip',
  SYMRUN_NFT: 'nft',
  SCONTROL: 'scontrol',
  SYMRUN_QEMU: 'qemu',
  SYMRUN_NODENAME: 'nodeName',
  SYMRUN_SITE_IMAGES: 'siteImages',
};

function bad(file: string, line: number, key: string, value: string, fix: string): SymError {
  return new SymError('ESYM_NODE_CONFIG', { message: `${file}:${line}: ${key}=${JSON.stringify(value)} is not valid`, field: key, value, fix, exitCode: EXIT.environment });
}

/** Parse node.conf text (KEY=VALUE, # comments, optional quotes; unknown keys are the shell prolog's). */
export function parseNodeConfig(text: string, file = 'node.conf'): NodeConfig {
  const c: NodeConfig = { ...NODE_CONFIG_DEFAULTS };
  text.split('\n').forEach((raw, n) => {
    const line = raw.trim();
    if (!line || line.startsWith('#')) return;
    const m = /^(?:export\s+)?([A-Z_][A-Z0-9_]*)=(.*)$/.exec(line);
    if (!m) return;
    const key = m[1]!;
    let v = m[2]!.trim();
    if ((v.startsWith('"') && v.endsWith('"')) || (v.startsWith("'") && v.endsWith("'"))) v = v.slice(1, -1);
    const field = KEYS[key];
    if (!field) return;
    switch (field) {
      case 'vxlanPort': case 'vniBase': {
        if (!/^[0-9]{1,8}$/.test(v) || (field === 'vxlanPort' && (Number(v) < 1 || Number(v) > 65535))) throw bad(file, n + 1, key, v, 'a whole number (VXLAN port 1-65535)');
        c[field] = Number(v);
        break;
      }
      case 'vfSlots':
        if (!/^[0-9]{1,2}$/.test(v) || Number(v) > 64) throw bad(file, n + 1, key, v, 'a whole number 0-64 (VFs claimed per job on this node; 0 = none)');
        c.vfSlots = Number(v);
        break;
      case 'prepare':
        if (v !== 'comment' && v !== 'all') throw bad(file, n + 1, key, v, 'comment (jobs whose --comment mentions symrun) or all');
        c.prepare = v;
        break;
      case 'allowExtraArgs':
        if (!/^(0|1|yes|no|true|false)$/.test(v)) throw bad(file, n + 1, key, v, '1 or 0');
        c.allowExtraArgs = /^(1|yes|true)$/.test(v);
        break;
      case 'ip': case 'nft': case 'scontrol': case 'qemu': case 'stateDir': case 'runtimeDir':
        if (!v.startsWith('/') || /\s|\.\./.test(v)) throw bad(file, n + 1, key, v, 'an absolute path without spaces or ".."');
        c[field] = v;
        break;
      case 'siteImages':
        if (v && (!v.startsWith('/') || /\s|\.\./.test(v))) throw bad(file, n + 1, key, v, 'an absolute path without spaces or ".." (or empty for no site cache)');
        c.siteImages = v;
        break;
      case 'overlayDev':
        if (v && !/^[A-Za-z0-9_.-]{1,15}$/.test(v)) throw bad(file, n + 1, key, v, 'a network interface name');
        c.overlayDev = v;
        break;
      case 'nodeAddr':
        if (v && (!/^[0-9]{1,3}(\.[0-9]{1,3}){3}$/.test(v) || v.split('.').some((o) => Number(o) > 255))) throw bad(file, n + 1, key, v, 'an IPv4 address (four numbers 0-255, e.g. 10.0.0.5)');
        c.nodeAddr = v;
        break;
      case 'nodeName':
        if (v && !/^[A-Za-z0-9_.-]{1,63}$/.test(v)) throw bad(file, n + 1, key, v, 'a Slurm node name');
        c.nodeName = v || undefined;
        break;
    }
  });
  return c;
}

/**
 * The node configuration root may trust: the file must be owned by root and writable by nobody else
 * (a user who could edit it would choose what root runs). A missing file means the defaults.
 */
export function readNodeConfig(file = process.env.SYMRUN_NODE_CONF || '/etc/symrun/node.conf'): NodeConfig {
  let st: fs.Stats;
  try {
    st = fs.statSync(file);
  } catch {
    return { ...NODE_CONFIG_DEFAULTS };
  }
  if (st.uid !== 0 || (st.mode & 0o022) !== 0) {
    throw new SymError('ESYM_NODE_CONFIG', { message: `${file} is not owned by root or is writable by others: root does not trust it`, field: 'SYMRUN_NODE_CONF', value: file, fix: `chown root ${file} && chmod go-w ${file}`, exitCode: EXIT.environment });
  }
  return parseNodeConfig(fs.readFileSync(file, 'utf8'), file);
}

/** The site's read-only image cache (SYMRUN_SITE_IMAGES) as resolveImage's siteDirs; none if node.conf is not trusted. */
export function siteImageDirs(): string[] {
  try { const d = readNodeConfig().siteImages; return d ? [d] : []; } catch { return []; }
}
