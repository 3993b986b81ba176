// The node config: what a site sets on each node for the root node layer (/etc/symrun/node.yaml, or the
// file SYMRUN_NODE_CONFIG names). Parsed and checked here; errors name the key (dotted path), the file
// position, the value and the fix (ESYM_NODE_CONFIG_*, exit 2), as symrun.yaml's do.
//
//   node:
//     name: n17                  # default: $SLURMD_NODENAME, else the short host name
//     index: 17                  # 0..4095, unique in the cluster; default: the number the name ends with
//   binaries:                    # absolute paths: root never searches PATH
//     ip: /sbin/ip
//     getent: /usr/bin/getent
//     scontrol: /usr/bin/scontrol
//   devices:
//     root: /                    # below it: sys/, dev/, proc/ (a test points it at a fake tree)
//     stateDir: /run/symrun-node/claims
//     pools:
//       fabric:                  # a name for --pool
//         pfs: ["0000:3b:00.0"]  # every VF of these PFs
//         vfs: ["0000:5e:02.0"]  # and these VFs
//         spoofCheck: true       # Ethernet VFs: the NIC drops frames with another source MAC (default true)
//         trust: false           # Ethernet VFs: trusted VFs may change MAC / go promiscuous (default false)
// When run as root, the file must belong to root and not be writable by group or others: it decides what
// root does. The default state directory is on /run (tmpfs): claims live exactly as long as the VFs and
// bindings they describe, which a reboot resets.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { LineCounter, parseDocument, isMap, isPair, isScalar, isNode, type Document } from 'yaml';
import { SymError, EXIT, suggest } from '../errors.js';
import { isPciAddress } from './pci.js';
import { MAX_NODE_INDEX } from './identity.js';

export const NODE_CONFIG_FILE = '/etc/symrun/node.yaml';
export const NODE_DEFAULTS = {
  binaries: { ip: '/sbin/ip', getent: '/usr/bin/getent', scontrol: '/usr/bin/scontrol' },
  devices: { root: '/', stateDir: '/run/symrun-node/claims', spoofCheck: true, trust: false },
} as const;

export interface DevicePool {
  name: string;
  /** PFs whose every VF is in the pool */
  pfs: string[];
  /** single VFs in the pool */
  vfs: string[];
  spoofCheck: boolean;
  trust: boolean;
}

export interface NodeConfig {
  /** the file read, or undefined when there was none (defaults) */
  file?: string;
  node: {
    name: string;
    /** undefined: not set and the name ends in no number (an error only where a MAC/GUID is needed) */
    index?: number;
    indexFrom: 'config' | 'name' | 'none';
  };
  binaries: { ip: string; getent: string; scontrol: string };
  devices: { root: string; stateDir: string; pools: DevicePool[] };
}

type Seg = string | number;
interface Problem { path: Seg[]; message: string; fix: string; value?: unknown; atKey?: boolean }

const KEYS: Record<string, readonly string[]> = {
  '': ['node', 'binaries', 'devices'],
  node: ['name', 'index'],
  binaries: ['ip', 'getent', 'scontrol'],
  devices: ['root', 'stateDir', 'pools'],
  pool: ['pfs', 'vfs', 'spoofCheck', 'trust'],
};
const NODE_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
export const POOL_NAME_RE = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$/;

/** devices.pools.fabric.vfs[1] (as symrun.yaml's errors name keys; not imported from config/load, which
 * would load the whole symrun.yaml validator into every root-side command) */
function dottedPath(p: readonly Seg[]): string {
  let s = '';
  for (const seg of p) s += typeof seg === 'number' ? `[${seg}]` : /^[A-Za-z_][A-Za-z0-9_-]*$/.test(seg) ? (s ? `.${seg}` : seg) : `[${JSON.stringify(seg)}]`;
  return s;
}

const isObj = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

function absPath(v: unknown): boolean {
  return typeof v === 'string' && v.startsWith('/') && !v.split('/').includes('..') && !/[\0\n]/.test(v);
}

function checkKeys(o: Record<string, unknown>, at: Seg[], allowed: readonly string[], out: Problem[]): void {
  for (const k of Object.keys(o)) {
    if (allowed.includes(k)) continue;
    const guess = suggest(k, allowed);
    const where = at.length ? `in ${dottedPath(at)}` : 'at the top level';
    out.push({ path: [...at, k], atKey: true, value: k, message: `unknown key '${k}' ${where}${guess ? `; did you mean '${guess}'?` : ''}`, fix: guess ? `rename '${k}' to '${guess}'` : `remove '${k}'; the keys allowed ${where} are: ${allowed.join(', ')}` });
  }
}

/** Problems of a parsed node config (pure). */
export function nodeConfigProblems(raw: unknown): Problem[] {
  const out: Problem[] = [];
  if (raw === null || raw === undefined) return out;
  if (!isObj(raw)) return [{ path: [], message: 'the top level must be a mapping (node:, binaries:, devices:)', fix: 'see docs/passthrough.md, "What a site configures"', value: raw }];
  checkKeys(raw, [], KEYS['']!, out);
  const section = (k: string): Record<string, unknown> | undefined => {
    const v = raw[k];
    if (v === undefined || v === null) return undefined;
    if (!isObj(v)) { out.push({ path: [k], message: `${k} must be a mapping`, fix: `write the keys of ${k} indented below it (${KEYS[k]!.join(', ')})`, value: v }); return undefined; }
    checkKeys(v, [k], KEYS[k]!, out);
    return v;
  };
  const node = section('node');
  if (node?.name !== undefined && (typeof node.name !== 'string' || !NODE_NAME_RE.test(node.name))) {
    out.push({ path: ['node', 'name'], value: node.name, message: `node.name must be a host name, not ${JSON.stringify(node.name)}`, fix: 'use the Slurm node name (letters, digits, . _ -)' });
  }
  if (node?.index !== undefined && !(typeof node.index === 'number' && Number.isInteger(node.index) && node.index >= 0 && node.index <= MAX_NODE_INDEX)) {
    out.push({ path: ['node', 'index'], value: node.index, message: `node.index must be a whole number 0..${MAX_NODE_INDEX}, not ${JSON.stringify(node.index)}`, fix: `give each node its own number 0..${MAX_NODE_INDEX} (VF MACs and GUIDs encode it)` });
  }
  const bins = section('binaries');
  for (const k of KEYS.binaries!) {
    if (bins?.[k] !== undefined && !absPath(bins[k])) out.push({ path: ['binaries', k], value: bins[k], message: `binaries.${k} must be an absolute path, not ${JSON.stringify(bins[k])}`, fix: `e.g. ${(NODE_DEFAULTS.binaries as Record<string, string>)[k]}: root runs it, and never searches PATH` });
  }
  const dev = section('devices');
  if (dev?.root !== undefined && !absPath(dev.root)) out.push({ path: ['devices', 'root'], value: dev.root, message: `devices.root must be an absolute path, not ${JSON.stringify(dev.root)}`, fix: 'leave it out (default /): only tests use another root' });
  if (dev?.stateDir !== undefined && (!absPath(dev.stateDir) || dev.stateDir === '/')) out.push({ path: ['devices', 'stateDir'], value: dev.stateDir, message: `devices.stateDir must be an absolute directory path other than /, not ${JSON.stringify(dev.stateDir)}`, fix: `e.g. ${NODE_DEFAULTS.devices.stateDir}` });
  if (dev?.pools !== undefined && dev.pools !== null) {
    if (!isObj(dev.pools)) {
      out.push({ path: ['devices', 'pools'], value: dev.pools, message: 'devices.pools must be a mapping of pool names to pools', fix: 'e.g. pools: { fabric: { pfs: ["0000:3b:00.0"] } }' });
    } else {
      const seen = new Map<string, string>();
      for (const [name, p] of Object.entries(dev.pools)) {
        const at: Seg[] = ['devices', 'pools', name];
        if (!POOL_NAME_RE.test(name)) out.push({ path: at, atKey: true, value: name, message: `invalid pool name '${name}'`, fix: 'pool names are letters, digits, _ . - (up to 64)' });
        if (!isObj(p)) { out.push({ path: at, value: p, message: `${dottedPath(at)} must be a mapping with pfs and/or vfs`, fix: 'e.g. { pfs: ["0000:3b:00.0"] }' }); continue; }
        checkKeys(p, at, KEYS.pool!, out);
        let n = 0;
        for (const k of ['pfs', 'vfs'] as const) {
          const list = p[k];
          if (list === undefined || list === null) continue;
          if (!Array.isArray(list)) { out.push({ path: [...at, k], value: list, message: `${dottedPath([...at, k])} must be a list of PCI addresses`, fix: `e.g. ${k}: ["0000:3b:0${k === 'pfs' ? '0' : '2'}.0"] (quote them)` }); continue; }
          list.forEach((a, i) => {
            if (!isPciAddress(a)) {
              out.push({ path: [...at, k, i], value: a, message: `${dottedPath([...at, k, i])} must be a PCI address like 0000:3b:02.0 (lower case, domain included), not ${JSON.stringify(a)}`, fix: 'lspci -D shows the full address; quote it in YAML' });
              return;
            }
            n++;
            const prev = seen.get(a);
            if (prev) out.push({ path: [...at, k, i], value: a, message: `${a} is listed twice (${prev} and ${dottedPath([...at, k, i])})`, fix: 'a function belongs to one pool: remove one' });
            else seen.set(a, dottedPath([...at, k, i]));
          });
        }
        if (n === 0 && !out.some((x) => x.path.length > 3 && x.path[2] === name)) out.push({ path: at, value: p, message: `pool ${name} has no devices`, fix: 'give pfs (every VF of these PFs) and/or vfs (single VFs)' });
        for (const k of ['spoofCheck', 'trust'] as const) {
          if (p[k] !== undefined && typeof p[k] !== 'boolean') out.push({ path: [...at, k], value: p[k], message: `${dottedPath([...at, k])} must be true or false, not ${JSON.stringify(p[k])}`, fix: `${k}: ${String(NODE_DEFAULTS.devices[k])} is the default` });
        }
      }
    }
  }
  return out;
}

/** The number a node name ends with: n17 -> 17, node-0042 -> 42; undefined if none. */
export function indexFromName(name: string): number | undefined {
  const m = /([0-9]{1,9})$/.exec(name);
  return m ? Number(m[1]) : undefined;
}

/** Resolve defaults of a checked config (pure). */
export function resolveNodeConfig(raw: Record<string, unknown>, env: NodeJS.ProcessEnv, hostname: string, file?: string): NodeConfig {
  const node = (raw.node ?? {}) as { name?: string; index?: number };
  const bins = (raw.binaries ?? {}) as Partial<NodeConfig['binaries']>;
  const dev = (raw.devices ?? {}) as { root?: string; stateDir?: string; pools?: Record<string, Record<string, unknown>> };
  const name = node.name ?? (env.SLURMD_NODENAME && NODE_NAME_RE.test(env.SLURMD_NODENAME) ? env.SLURMD_NODENAME : hostname.split('.')[0]!);
  const fromName = indexFromName(name);
  const index = node.index ?? (fromName !== undefined && fromName <= MAX_NODE_INDEX ? fromName : undefined);
  const pools: DevicePool[] = Object.entries(dev.pools ?? {}).map(([n, p]) => ({
    name: n,
    pfs: (p.pfs as string[] | undefined) ?? [],
    vfs: (p.vfs as string[] | undefined) ?? [],
    spoofCheck: (p.spoofCheck as boolean | undefined) ?? NODE_DEFAULTS.devices.spoofCheck,
    trust: (p.trust as boolean | undefined) ?? NODE_DEFAULTS.devices.trust,
  }));
  return {
    ...(file ? { file } : {}),
    node: { name, ...(index !== undefined ? { index } : {}), indexFrom: node.index !== undefined ? 'config' : index !== undefined ? 'name' : 'none' },
    binaries: { ...NODE_DEFAULTS.binaries, ...bins },
    devices: { root: dev.root ?? NODE_DEFAULTS.devices.root, stateDir: dev.stateDir ?? NODE_DEFAULTS.devices.stateDir, pools },
  };
}

function position(doc: Document.Parsed, lines: LineCounter, p: readonly Seg[], atKey: boolean): { line: number; col: number } | undefined {
  if (!p.length) return undefined;
  const parent = p.length === 1 ? doc.contents : doc.getIn(p.slice(0, -1), true);
  let offset: number | undefined;
  if (isMap(parent)) {
    const pair = parent.items.find((it) => isPair(it) && isScalar(it.key) && String(it.key.value) === String(p[p.length - 1]));
    const n = pair ? (atKey || !isNode(pair.value) ? pair.key : pair.value) : undefined;
    offset = isNode(n) ? n.range?.[0] : undefined;
  } else {
    const n = doc.getIn(p as Seg[], true);
    offset = isNode(n) ? n.range?.[0] : isNode(parent) ? parent.range?.[0] : undefined;
  }
  return offset === undefined ? undefined : lines.linePos(offset);
}

export interface LoadNodeConfigOptions {
  /** the file (else $SYMRUN_NODE_CONFIG, else /etc/symrun/node.yaml, which may be missing) */
  file?: string;
  env?: NodeJS.ProcessEnv;
  hostname?: string;
  /** refuse a file that is not root's or that group/others may write (default: when running as root) */
  strictOwner?: boolean;
}

export function loadNodeConfig(opts: LoadNodeConfigOptions = {}): NodeConfig {
  const env = opts.env ?? process.env;
  const hostname = opts.hostname ?? os.hostname();
  const named = opts.file ?? (env.SYMRUN_NODE_CONFIG || undefined);
  const field = opts.file ? '--node-config' : env.SYMRUN_NODE_CONFIG ? 'SYMRUN_NODE_CONFIG' : 'node config';
  const file = path.resolve(named ?? NODE_CONFIG_FILE);
  let text: string;
  try {
    if (opts.strictOwner ?? (process.geteuid?.() === 0)) {
      const st = fs.statSync(file);
      if (st.uid !== 0 || (st.mode & 0o022)) {
        throw new SymError('ESYM_NODE_CONFIG_UNSAFE', { message: `${file} ${st.uid !== 0 ? `belongs to uid ${st.uid}` : `is writable by group or others (mode ${(st.mode & 0o777).toString(8)})`}: root will not follow it`, field, value: file, fix: `chown root:root ${file} && chmod 0644 ${file}`, exitCode: EXIT.usage });
      }
    }
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    if (e instanceof SymError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    if ((code === 'ENOENT' || code === 'ENOTDIR') && named === undefined) return resolveNodeConfig({}, env, hostname);
    throw new SymError(code === 'ENOENT' || code === 'ENOTDIR' ? 'ESYM_NODE_CONFIG_NOT_FOUND' : 'ESYM_NODE_CONFIG_UNREADABLE', {
      message: `cannot read the node config ${file}: ${code ?? (e as Error).message}`, field, value: file,
      fix: code === 'ENOENT' ? `create it (docs/passthrough.md, "What a site configures") or unset ${field}` : 'check its permissions', exitCode: EXIT.usage, cause: e,
    });
  }
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: true, uniqueKeys: true, strict: true });
  if (doc.errors.length) {
    const e = doc.errors[0]!;
    const pos = e.linePos?.[0] ?? lines.linePos(e.pos[0]);
    throw new SymError('ESYM_NODE_CONFIG_SYNTAX', {
      message: `${file}:${pos.line}:${pos.col}: YAML syntax error: ${e.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '')}`,
      field, value: file, fix: `fix line ${pos.line} of ${file} (indent with spaces; quote PCI addresses)`, exitCode: EXIT.usage,
      details: { file, line: pos.line, col: pos.col },
    });
  }
  let raw: unknown;
  try {
    raw = doc.toJS({ maxAliasCount: 100 });
  } catch (e) {
    // the yaml library refuses alias bombs ("Excessive alias count") here
    throw new SymError('ESYM_NODE_CONFIG_SYNTAX', {
      message: `${file}: YAML aliases cannot be expanded: ${(e as Error).message}`,
      field, value: file, fix: `write the values out in ${file} instead of repeating them through aliases (*name); at most 100 alias expansions are accepted`, exitCode: EXIT.usage, cause: e,
    });
  }
  const problems = nodeConfigProblems(raw);
  if (problems.length) {
    const first = problems[0]!;
    const pos = position(doc, lines, first.path, !!first.atKey);
    throw new SymError('ESYM_NODE_CONFIG_INVALID', {
      message: `${file}:${pos ? `${pos.line}:${pos.col}:` : ''} ${first.message}${problems.length > 1 ? ` (and ${problems.length - 1} more problem${problems.length > 2 ? 's' : ''})` : ''}`,
      field: dottedPath(first.path) || '(top level)', value: first.value, fix: first.fix, exitCode: EXIT.usage,
      details: { file, ...(pos ? { line: pos.line, col: pos.col } : {}), problems: problems.map((p) => ({ field: dottedPath(p.path) || '(top level)', message: p.message, fix: p.fix })) },
    });
  }
  return resolveNodeConfig(isObj(raw) ? raw : {}, env, hostname, file);
}

/** The node index, or the error that says how to set it. */
export function requireNodeIndex(cfg: NodeConfig): number {
  if (cfg.node.index !== undefined) return cfg.node.index;
  throw new SymError('ESYM_NODE_CONFIG_INVALID', {
    message: `node ${cfg.node.name} has no index: node.index is not set and the name ends in no number 0..${MAX_NODE_INDEX}`,
    field: 'node.index', value: cfg.node.name,
    fix: `set node.index in ${cfg.file ?? NODE_CONFIG_FILE} to a number 0..${MAX_NODE_INDEX} that no other node of the cluster has (VF MACs and GUIDs encode it)`,
    exitCode: EXIT.usage,
  });
}
