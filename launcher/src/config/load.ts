// symrun.yaml + CLI overrides + DEFAULTS -> one validated, fully resolved SymrunConfig.
//
// Flow: read + parse YAML (positions kept) -> merge CLI overrides into the raw object (remembering
// which paths came from which option) -> ajv against CONFIG_SCHEMA + semantic checks -> problems are
// sorted (CLI first, then file order) and the first becomes one SymError (ESYM_CONFIG_INVALID, exit 2)
// naming the field (dotted path, or the CLI option), the value, and a fix -> resolve defaults.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Ajv, type ErrorObject } from 'ajv';
import { LineCounter, parseDocument, isMap, isPair, isScalar, isNode, type Document } from 'yaml';
import { SymError, EXIT, suggest } from '../errors.js';
import { DEFAULTS, PROTOCOL_DEFAULTS, SLURM_DEFAULTS } from '../defaults.js';
import type { SymrunConfig, InterconnectConfig, MigrationConfig } from './types.js';
import {
  CONFIG_SCHEMA,
  CONFIG_DEFAULTS,
  ANNOTATION_KEYWORDS,
  MIN_MEMORY_MIB,
  SIZE_PATTERN,
} from './schema.js';

export { CONFIG_SCHEMA } from './schema.js';

export interface ConfigOverrides {
  accel?: string;
  image?: string;
  memory?: string;
  cpus?: string | number;
  local?: string | number;
  spares?: string | number;
  np?: string | number;
  slotsPerVm?: string | number;
  nodes?: string | number;
  ntasksPerNode?: string | number;
  cpusPerTask?: string | number;
  tagOutput?: boolean;
  mca?: Array<[string, string]>;
  hosts?: string[];
  subnet?: string;
  quiesce?: string;
  migrationTls?: string;
  checkpointDir?: string;
  checkpointInterval?: string | number;
  keep?: string | number;
  maxRestarts?: string | number;
  restartFromStart?: boolean;
}

/** The CLI option that sets each override; used to name the option in errors. */
export const OVERRIDE_OPTIONS: Readonly<Record<keyof ConfigOverrides, string>> = {
  accel: '--accel',
  image: '--image',
  memory: '--memory',
  cpus: '--cpus',
  local: '--local',
  spares: '--spares',
  np: '-np',
  slotsPerVm: '--slots-per-vm',
  nodes: '-N',
  ntasksPerNode: '--ntasks-per-node',
  cpusPerTask: '--cpus-per-task',
  tagOutput: '--tag-output',
  mca: '--mca',
  hosts: '--hosts',
  subnet: '--subnet',
  quiesce: '--quiesce',
  migrationTls: '--migration-tls',
  checkpointDir: '--checkpoint-dir',
  checkpointInterval: '--checkpoint-interval',
  keep: '--keep',
  maxRestarts: '--max-restarts',
  restartFromStart: '--restart-from-start',
};

/** Where each override lands in the YAML shape. */
const OVERRIDE_PATHS: Readonly<Record<keyof ConfigOverrides, readonly string[]>> = {
  accel: ['accel'],
  image: ['image'],
  memory: ['vm', 'memory'],
  cpus: ['vm', 'cpus'],
  local: ['local'],
  spares: ['spares'],
  np: ['mpi', 'np'],
  slotsPerVm: ['mpi', 'slotsPerVm'],
  nodes: ['nodes'],
  ntasksPerNode: ['mpi', 'ntasksPerNode'],
  cpusPerTask: ['mpi', 'cpusPerTask'],
  tagOutput: ['mpi', 'tagOutput'],
  mca: ['mpi', 'mca'],
  hosts: ['hosts'],
  subnet: ['network', 'subnet'],
  quiesce: ['migration', 'quiesce'],
  migrationTls: ['migration', 'tls'],
  checkpointDir: ['checkpoint', 'dir'],
  checkpointInterval: ['checkpoint', 'interval'],
  keep: ['checkpoint', 'keep'],
  maxRestarts: ['checkpoint', 'maxRestarts'],
  restartFromStart: ['checkpoint', 'restartFromStart'],
};

const INTEGER_OVERRIDES: ReadonlySet<keyof ConfigOverrides> = new Set(['cpus', 'local', 'spares', 'np', 'slotsPerVm', 'nodes', 'ntasksPerNode', 'cpusPerTask', 'keep', 'maxRestarts']);

export interface LoadConfigOptions {
  /** path of symrun.yaml (--config); else $SYMRUN_CONFIG; else defaults only */
  file?: string;
  overrides?: ConfigOverrides;
  /** environment to read SYMRUN_CONFIG and HOME from (default process.env) */
  env?: NodeJS.ProcessEnv;
  /** base for a relative file path and a relative --image (default process.cwd()) */
  cwd?: string;
  /** rename CLI options in errors, if the CLI spells them differently from OVERRIDE_OPTIONS */
  optionNames?: Partial<Record<keyof ConfigOverrides, string>>;
}

// ---------------------------------------------------------------------------------------------
// sizes

const UNIT: Record<string, number> = { '': 0, B: 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3, T: 1024 ** 4 };
const SIZE_RE = new RegExp(SIZE_PATTERN, 'i');
const MIB = 1024 * 1024;

type SizeResult = { bytes: number } | { problem: string; fix: string };

function sizeToBytes(text: string | number, bareUnitBytes: number): SizeResult {
  const expect = 'write a size like 512M, 2G or 524288K (binary units: K, M, G, T; optional iB)';
  if (typeof text === 'number') {
    if (!Number.isFinite(text) || text < 0) return { problem: 'is not a size', fix: expect };
    return { bytes: text * bareUnitBytes };
  }
  if (typeof text !== 'string') return { problem: 'is not a size', fix: expect };
  const m = SIZE_RE.exec(text) && /^\s*([0-9]+(?:\.[0-9]+)?)\s*([KMGTB]?)/i.exec(text);
  if (!m) return { problem: 'is not a size', fix: expect };
  const unit = m[2]!.toUpperCase();
  const factor = unit === '' ? bareUnitBytes : UNIT[unit]!;
  return { bytes: Number(m[1]) * factor };
}

function mibFrom(text: string | number): { mib: number } | { problem: string; fix: string } {
  const r = sizeToBytes(text, MIB);
  if ('problem' in r) return r;
  if (!Number.isInteger(r.bytes / MIB)) {
    const up = Math.ceil(r.bytes / MIB);
    return { problem: 'is not a whole number of MiB', fix: `round it to whole MiB, e.g. ${up}M` };
  }
  return { mib: r.bytes / MIB };
}

/**
 * Parse a size into MiB: '512M', '2G', '1.5G', '524288K', '512MiB', or a number (already MiB).
 * Suffixes are binary (M = MiB). The result must be a whole number of MiB.
 * Throws ESYM_CONFIG_INVALID naming `field`.
 */
export function parseSize(text: string | number, field: string): number {
  const r = mibFrom(text);
  if ('problem' in r) {
    throw new SymError('ESYM_CONFIG_INVALID', {
      message: `${field} ${r.problem}: ${JSON.stringify(text)}`,
      field,
      value: text,
      fix: r.fix,
      exitCode: EXIT.usage,
    });
  }
  return r.mib;
}

/** Like parseSize, but in bytes; a bare number is bytes. */
export function parseSizeBytes(text: string | number, field: string): number {
  const r = sizeToBytes(text, 1);
  if ('problem' in r) {
    throw new SymError('ESYM_CONFIG_INVALID', {
      message: `${field} ${r.problem}: ${JSON.stringify(text)}`,
      field,
      value: text,
      fix: r.fix,
      exitCode: EXIT.usage,
    });
  }
  return Math.floor(r.bytes);
}

// ---------------------------------------------------------------------------------------------
// problems

type Seg = string | number;

interface Problem {
  path: Seg[];
  /** the sentence after the field name, e.g. "must be at least 1" */
  text: string;
  value?: unknown;
  fix: string;
  /** the position to report is the key, not the value (unknown / invalid keys) */
  atKey?: boolean;
  /** replaces "<field> <text>" entirely (for messages that name the field differently) */
  message?: string;
  /** text to use when the value came from a CLI option (where everything is typed as a string) */
  cliText?: string;
}

const IDENT_RE = /^[A-Za-z_][A-Za-z0-9_-]*$/;

/** vm.memory, interconnect.pool[1], interconnect.addresses["node01.example.com"] */
export function dottedPath(p: readonly Seg[]): string {
  let s = '';
  for (const seg of p) {
    if (typeof seg === 'number') s += `[${seg}]`;
    else if (IDENT_RE.test(seg)) s += s ? `.${seg}` : seg;
    else s += `[${JSON.stringify(seg)}]`;
  }
  return s;
}

function show(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v);
  if (v === null || v === undefined) return 'empty';
  try {
    return JSON.stringify(v) ?? String(v);
  } catch {
    return String(v);
  }
}

function kindOf(v: unknown): string {
  if (v === null || v === undefined) return 'empty';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'number') return Number.isInteger(v) ? 'a whole number' : 'a number with a fraction';
  if (typeof v === 'string') return 'a string';
  if (typeof v === 'boolean') return 'true/false';
  if (typeof v === 'object') return 'a mapping';
  return typeof v;
}

const TYPE_NAMES: Record<string, string> = {
  string: 'a string',
  integer: 'a whole number',
  number: 'a number',
  boolean: 'true or false',
  object: 'a mapping (key: value)',
  array: 'a list',
  null: 'empty',
};

function pointerToPath(pointer: string, data: unknown): Seg[] {
  if (!pointer) return [];
  const out: Seg[] = [];
  let cur: unknown = data;
  for (const raw of pointer.slice(1).split('/')) {
    const key = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    if (Array.isArray(cur)) {
      const i = Number(key);
      out.push(i);
      cur = cur[i];
    } else {
      out.push(key);
      cur = cur !== null && typeof cur === 'object' ? (cur as Record<string, unknown>)[key] : undefined;
    }
  }
  return out;
}

function getAt(data: unknown, p: readonly Seg[]): unknown {
  let cur = data;
  for (const seg of p) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<string | number, unknown>)[seg];
  }
  return cur;
}

function listOf(values: readonly unknown[]): string {
  return values.map((v) => String(v)).join(', ');
}

function fromAjv(e: ErrorObject, data: unknown): Problem | undefined {
  const p = pointerToPath(e.instancePath, data);
  const ps = (e.parentSchema ?? {}) as Record<string, unknown>;
  const expect = typeof ps['x-expect'] === 'string' ? (ps['x-expect'] as string) : undefined;
  const value = e.data;

  // A key of a map failed propertyNames (ajv reports it at the map, with propertyName set).
  if (e.keyword === 'propertyNames') return undefined; // the inner error (with propertyName) says it better
  const propertyName = (e as ErrorObject & { propertyName?: string }).propertyName;
  if (propertyName !== undefined) {
    const keyExpect = expect ?? 'a valid name';
    return {
      path: [...p, propertyName],
      text: `is not a valid key here`,
      message: `invalid key '${propertyName}' in ${dottedPath(p) || 'the top level'}`,
      value: propertyName,
      fix: `use ${keyExpect}`,
      atKey: true,
    };
  }

  switch (e.keyword) {
    case 'additionalProperties': {
      const key = (e.params as { additionalProperty: string }).additionalProperty;
      const props = Object.keys((ps.properties ?? {}) as object);
      const guess = suggest(key, props);
      const where = p.length ? `in ${dottedPath(p)}` : 'at the top level';
      return {
        path: [...p, key],
        text: 'is not a known key',
        message: `unknown key '${key}' ${where}${guess ? `; did you mean '${guess}'?` : ''}`,
        value: getAt(data, [...p, key]),
        fix: guess
          ? `rename '${key}' to '${guess}'`
          : `remove '${key}'; the keys allowed ${where} are: ${listOf(props)}`,
        atKey: true,
      };
    }
    case 'type': {
      const want = String((e.params as { type: string | string[] }).type)
        .split(',')
        .map((t) => TYPE_NAMES[t] ?? t)
        .join(' or ');
      return {
        path: p,
        text:
          value === null || value === undefined
            ? `is empty; it must be ${want}`
            : `must be ${want}, not ${kindOf(value)} (${show(value)})`,
        cliText: `must be ${want}, not ${show(value)}`,
        value,
        fix: expect ? `use ${expect}` : `use ${want}`,
      };
    }
    case 'enum': {
      const allowed = (e.params as { allowedValues: unknown[] }).allowedValues;
      const guess = typeof value === 'string' ? suggest(value, allowed.map(String)) : undefined;
      return {
        path: p,
        text: `must be one of ${listOf(allowed)}, not ${show(value)}`,
        value,
        fix: `use one of: ${listOf(allowed)}${guess ? ` (did you mean '${guess}'?)` : ''}`,
      };
    }
    case 'minimum':
    case 'maximum': {
      const lim = (e.params as { limit: number }).limit;
      return {
        path: p,
        text: `must be ${e.keyword === 'minimum' ? 'at least' : 'at most'} ${lim}, not ${show(value)}`,
        value,
        fix: `use ${expect ?? `a number ${e.keyword === 'minimum' ? '>=' : '<='} ${lim}`}`,
      };
    }
    case 'pattern':
      return {
        path: p,
        text: `is not valid: ${show(value)}`,
        value,
        fix: `use ${expect ?? `a value matching ${(e.params as { pattern: string }).pattern}`}`,
      };
    case 'uniqueItems': {
      const { i, j } = e.params as { i: number; j: number };
      const arr = Array.isArray(value) ? value : [];
      return {
        path: [...p, Math.max(i, j)],
        text: `repeats ${show(arr[Math.max(i, j)])}`,
        message: `${dottedPath(p)} lists ${show(arr[Math.max(i, j)])} twice (items ${Math.min(i, j)} and ${Math.max(i, j)})`,
        value: arr[Math.max(i, j)],
        fix: 'remove the duplicate',
      };
    }
    case 'minItems':
    case 'minLength':
      return { path: p, text: 'must not be empty', value, fix: expect ? `use ${expect}` : 'give a value or remove the key' };
    default:
      return {
        path: p,
        text: e.message ?? 'is not valid',
        value,
        fix: expect ? `use ${expect}` : 'see docs/config.md',
      };
  }
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

const SIZE_FIELDS: ReadonlyArray<{ path: Seg[]; unit: 'MiB' | 'bytes'; minMiB?: number }> = [
  { path: ['vm', 'memory'], unit: 'MiB', minMiB: MIN_MEMORY_MIB },
  { path: ['share', 'maxBytes'], unit: 'bytes' },
  { path: ['migration', 'maxBandwidth'], unit: 'bytes' },
];

/** "30s", "2m", "1500ms", "1h" or a bare number of seconds -> ms (the schema checked the form). */
export function parseDurationMs(v: string | number): number {
  if (typeof v === 'number') return v * 1000;
  const m = /^\s*([0-9]+(?:\.[0-9]+)?)\s*(ms|s|m|h)?\s*$/.exec(v);
  if (!m) throw new RangeError(`not a duration: ${v}`);
  const n = Number(m[1]);
  const mult = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[(m[2] ?? 's') as 'ms' | 's' | 'm' | 'h'];
  return Math.round(n * mult);
}

/** Checks JSON schema cannot express clearly. Defensive: runs on data that may also have schema errors. */
function semanticProblems(raw: Record<string, unknown>): Problem[] {
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
      if (!hasAddresses && !hasPool && ic.addresses === undefined && ic.pool === undefined) {
        out.push({
          path: ['interconnect', 'type'],
          text: 'is vfio, but no device is given',
          message: 'interconnect type vfio needs a device to pass through, but neither interconnect.addresses nor interconnect.pool is set',
          value: 'vfio',
          fix:
            'add addresses (one PCI address per host, e.g. addresses: { node01: "0000:3b:00.1" }) or pool ' +
            '(SR-IOV VFs, e.g. pool: ["0000:3b:02.0", "0000:3b:02.1"]) under interconnect; or use type: emulated',
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

// ---------------------------------------------------------------------------------------------
// ajv (compiled once)

let validator: ReturnType<Ajv['compile']> | undefined;
function validate(data: unknown): ErrorObject[] {
  if (!validator) {
    const ajv = new Ajv({ allErrors: true, verbose: true, strict: true, allowUnionTypes: true });
    for (const k of ANNOTATION_KEYWORDS) ajv.addKeyword({ keyword: k, schemaType: 'string' });
    validator = ajv.compile(CONFIG_SCHEMA as object);
  }
  return validator(data) ? [] : [...(validator.errors ?? [])];
}

// ---------------------------------------------------------------------------------------------
// YAML

interface Parsed {
  file: string;
  doc: Document.Parsed;
  lines: LineCounter;
  data: unknown;
}

function readConfigFile(file: string, field: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') {
      throw new SymError('ESYM_CONFIG_NOT_FOUND', {
        message: `config file not found: ${file}`,
        field,
        value: file,
        fix:
          field === 'SYMRUN_CONFIG'
            ? 'point SYMRUN_CONFIG at an existing symrun.yaml, or unset it to use the defaults'
            : 'check the path given to --config, or copy one of examples/*/symrun.yaml; without --config symrun uses its defaults',
        exitCode: EXIT.usage,
        cause: err,
      });
    }
    if (code === 'EISDIR') {
      throw new SymError('ESYM_CONFIG_NOT_FOUND', {
        message: `config path is a directory, not a file: ${file}`,
        field,
        value: file,
        fix: `give the path of the YAML file itself, e.g. ${path.join(file, 'symrun.yaml')}`,
        exitCode: EXIT.usage,
        cause: err,
      });
    }
    throw new SymError('ESYM_CONFIG_UNREADABLE', {
      message: `cannot read config file ${file}: ${(err as Error).message}`,
      field,
      value: file,
      fix: 'check the file permissions',
      exitCode: EXIT.usage,
      cause: err,
    });
  }
}

function parseYaml(file: string, text: string): Parsed {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: true, uniqueKeys: true, strict: true });
  if (doc.errors.length > 0) {
    const e = doc.errors[0]!;
    const pos = e.linePos?.[0] ?? lines.linePos(e.pos[0]);
    const reason = e.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '');
    const excerpt = e.message.split('\n').slice(1).join('\n').replace(/^\n+|\n+$/g, '');
    const hint =
      e.code === 'TAB_AS_INDENT'
        ? 'indent with spaces, not tabs'
        : e.code === 'DUPLICATE_KEY'
          ? 'remove one of the two entries with the same key'
          : e.code === 'BAD_INDENT' || e.code === 'MISSING_CHAR' || e.code === 'UNEXPECTED_TOKEN'
            ? 'check the indentation and the ":" after each key; quote values containing ":", "#", "{" or "["'
            : 'check the indentation (spaces only; keys of one mapping at the same depth) on this line and the next';
    throw new SymError('ESYM_CONFIG_SYNTAX', {
      message: `${file}:${pos.line}:${pos.col}: YAML syntax error: ${reason}`,
      field: '--config',
      value: file,
      fix: `fix line ${pos.line} of ${file}: ${hint}`,
      exitCode: EXIT.usage,
      details: { file, line: pos.line, col: pos.col, yamlCode: e.code, excerpt },
    });
  }
  return { file, doc, lines, data: doc.toJS({ maxAliasCount: 100 }) };
}

/** line:col of the key (atKey) or value at path, if the YAML has it. */
function positionOf(parsed: Parsed | undefined, p: readonly Seg[], atKey: boolean): { line: number; col: number } | undefined {
  if (!parsed || p.length === 0) return undefined;
  const parent = p.length === 1 ? parsed.doc.contents : parsed.doc.getIn(p.slice(0, -1), true);
  const last = p[p.length - 1]!;
  let offset: number | undefined;
  if (isMap(parent)) {
    const pair = parent.items.find((it) => isPair(it) && isScalar(it.key) && String(it.key.value) === String(last));
    if (pair) {
      const node = atKey || !isNode(pair.value) ? pair.key : pair.value;
      offset = isNode(node) ? node.range?.[0] : undefined;
    }
  } else if (isNode(parent)) {
    const node = parsed.doc.getIn(p as Seg[], true);
    offset = isNode(node) ? node.range?.[0] : parent.range?.[0];
  }
  if (offset === undefined) {
    // fall back to the closest ancestor present in the file
    return p.length > 1 ? positionOf(parsed, p.slice(0, -1), true) : undefined;
  }
  return parsed.lines.linePos(offset);
}

// ---------------------------------------------------------------------------------------------
// overrides

function toIntIfNumeric(v: string | number): string | number {
  if (typeof v === 'string' && /^\s*[+-]?\d+\s*$/.test(v)) return Number(v);
  return v;
}

function setAt(obj: Record<string, unknown>, p: readonly string[], value: unknown): void {
  let cur = obj;
  for (const seg of p.slice(0, -1)) {
    if (!isPlainObject(cur[seg])) cur[seg] = {};
    cur = cur[seg] as Record<string, unknown>;
  }
  cur[p[p.length - 1]!] = value;
}

/** Merge overrides into raw (mutates); returns path-prefix -> option name. */
function applyOverrides(
  raw: Record<string, unknown>,
  ov: ConfigOverrides,
  names: Record<keyof ConfigOverrides, string>,
): Map<string, string> {
  const origin = new Map<string, string>();
  for (const key of Object.keys(OVERRIDE_PATHS) as Array<keyof ConfigOverrides>) {
    let v: unknown = ov[key];
    if (v === undefined) continue;
    const p = OVERRIDE_PATHS[key];
    if (key === 'mca') {
      const pairs = v as Array<[string, string]>;
      const cur = getAt(raw, p);
      const mca: Record<string, unknown> = isPlainObject(cur) ? { ...cur } : {};
      for (const [name, value] of pairs) {
        mca[name] = value;
        origin.set(JSON.stringify([...p, name]), names.mca);
      }
      setAt(raw, p, mca);
      continue;
    }
    if (key === 'hosts') {
      v = (v as string[]).flatMap((h) => String(h).split(',')).map((h) => h.trim()).filter((h) => h !== '');
    } else if (INTEGER_OVERRIDES.has(key)) {
      v = toIntIfNumeric(v as string | number);
    }
    setAt(raw, p, v);
    origin.set(JSON.stringify(p), names[key]);
  }
  return origin;
}

function optionFor(origin: Map<string, string>, p: readonly Seg[]): string | undefined {
  for (let n = p.length; n > 0; n--) {
    const o = origin.get(JSON.stringify(p.slice(0, n)));
    if (o) return o;
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// resolve

function expandHome(p: string, env: NodeJS.ProcessEnv): string {
  if (p === '~' || p.startsWith('~/')) return path.join(env.HOME || os.homedir(), p.slice(1));
  return p;
}

function resolveConfig(raw: Record<string, unknown>, source: string, imageBase: string, env: NodeJS.ProcessEnv, ckptBase: string = imageBase, fileBase: string = imageBase): SymrunConfig {
  const obj = (k: string): Record<string, unknown> => (isPlainObject(raw[k]) ? (raw[k] as Record<string, unknown>) : {});
  const vm = obj('vm'), ic = obj('interconnect'), net = obj('network'), mpi = obj('mpi'), share = obj('share'), mig = obj('migration'), ckpt = obj('checkpoint');

  const imageRaw = (raw.image as string | undefined) ?? CONFIG_DEFAULTS.image;
  const image = imageRaw === 'auto' ? 'auto' : path.resolve(imageBase, expandHome(imageRaw, env));

  let interconnect: InterconnectConfig;
  if ((ic.type ?? CONFIG_DEFAULTS.interconnectType) === 'vfio') {
    const v: InterconnectConfig & { type: 'vfio' } = { type: 'vfio' };
    if (isPlainObject(ic.addresses)) {
      v.addresses = Object.fromEntries(Object.entries(ic.addresses).map(([h, a]) => [h, String(a).toLowerCase()]));
    }
    if (Array.isArray(ic.pool)) v.pool = ic.pool.map((a) => String(a).toLowerCase());
    interconnect = v;
  } else {
    interconnect = { type: 'emulated', model: (ic.model as 'virtio-net-pci' | 'e1000e' | undefined) ?? DEFAULTS.interconnect.model };
  }

  const mca = Object.fromEntries(Object.entries(isPlainObject(mpi.mca) ? mpi.mca : {}).map(([k, v]) => [k, String(v)]));

  const cfg: SymrunConfig = {
    source,
    accel: (raw.accel as SymrunConfig['accel'] | undefined) ?? DEFAULTS.accel,
    image,
    vm: {
      memoryMiB: vm.memory !== undefined ? parseSize(vm.memory as string | number, 'vm.memory') : DEFAULTS.vm.memoryMiB,
      cpus: (vm.cpus as number | undefined) ?? DEFAULTS.vm.cpus,
      machine: (vm.machine as string | undefined) ?? DEFAULTS.vm.machine,
      extraArgs: [...((vm.extraArgs as string[] | undefined) ?? [])],
    },
    interconnect,
    network: {
      subnet: (net.subnet as string | undefined) ?? CONFIG_DEFAULTS.subnet,
      guestIfName: (net.guestIfName as string | undefined) ?? DEFAULTS.interconnect.guestIfName,
      ...(net.bridge !== undefined ? { bridge: net.bridge as string } : {}),
    },
    mpi: {
      ...(mpi.np !== undefined ? { np: mpi.np as number } : {}),
      ...(mpi.slotsPerVm !== undefined ? { slotsPerVm: mpi.slotsPerVm as number } : {}),
      ...(mpi.ntasksPerNode !== undefined ? { ntasksPerNode: mpi.ntasksPerNode as number } : {}),
      ...(mpi.cpusPerTask !== undefined ? { cpusPerTask: mpi.cpusPerTask as number } : {}),
      tagOutput: (mpi.tagOutput as boolean | undefined) ?? CONFIG_DEFAULTS.tagOutput,
      mca,
      extraArgs: [...((mpi.extraArgs as string[] | undefined) ?? [])],
    },
    share: {
      cwd: (share.cwd as boolean | undefined) ?? CONFIG_DEFAULTS.shareCwd,
      maxBytes: share.maxBytes !== undefined ? parseSizeBytes(share.maxBytes as string | number, 'share.maxBytes') : DEFAULTS.share.maxBytes,
      exclude: [...((share.exclude as string[] | undefined) ?? CONFIG_DEFAULTS.shareExclude)],
    },
    migration: {
      mode: (mig.mode as MigrationConfig['mode'] | undefined) ?? PROTOCOL_DEFAULTS.mode,
      quiesce: (mig.quiesce as MigrationConfig['quiesce'] | undefined) ?? PROTOCOL_DEFAULTS.quiesce,
      maxBandwidthBytes: mig.maxBandwidth !== undefined ? parseSizeBytes(mig.maxBandwidth as string | number, 'migration.maxBandwidth') : DEFAULTS.migration.maxBandwidthBytes,
      multifdChannels: (mig.multifdChannels as number | undefined) ?? 0,
      downtimeLimitMs: (mig.downtimeLimitMs as number | undefined) ?? DEFAULTS.migration.downtimeLimitMs,
      ...(mig.deadline !== undefined ? { deadlineMs: parseDurationMs(mig.deadline as string | number) } : {}),
      deadlineActions: [...((mig.deadlineActions as MigrationConfig['deadlineActions'] | undefined) ?? PROTOCOL_DEFAULTS.deadlineActions)],
      maxConcurrent: (mig.maxConcurrent as number | undefined) ?? PROTOCOL_DEFAULTS.maxConcurrent,
      tls: (mig.tls as MigrationConfig['tls'] | undefined) ?? PROTOCOL_DEFAULTS.migrationTls,
      hooks: { ...(isPlainObject(mig.hooks) ? (mig.hooks as { quiesce?: string; resume?: string }) : {}) },
    },
    checkpoint: {
      ...(ckpt.dir !== undefined ? { dir: path.resolve(ckptBase, expandHome(ckpt.dir as string, env)) } : {}),
      ...(ckpt.interval !== undefined ? { intervalMs: parseDurationMs(ckpt.interval as string | number) } : {}),
      keep: (ckpt.keep as number | undefined) ?? CONFIG_DEFAULTS.checkpointKeep,
      maxRestarts: (ckpt.maxRestarts as number | undefined) ?? CONFIG_DEFAULTS.maxRestarts,
      restartFromStart: (ckpt.restartFromStart as boolean | undefined) ?? CONFIG_DEFAULTS.restartFromStart,
    },
    slurm: {
      pollIntervalMs: obj('slurm').pollInterval !== undefined ? parseDurationMs(obj('slurm').pollInterval as string | number) : SLURM_DEFAULTS.pollIntervalMs,
      ...(obj('slurm').watcher !== undefined ? { watcher: obj('slurm').watcher as string } : {}),
      watcherKey: obj('slurm').watcherKey !== undefined ? path.resolve(fileBase, expandHome(obj('slurm').watcherKey as string, env)) : SLURM_DEFAULTS.watchdKeyFile,
    },
    local: (raw.local as number | undefined) ?? CONFIG_DEFAULTS.local,
    ...(raw.nodes !== undefined ? { nodes: raw.nodes as number } : {}),
    spares: (raw.spares as number | undefined) ?? CONFIG_DEFAULTS.spares,
    hosts: [...((raw.hosts as string[] | undefined) ?? [])],
  };
  return cfg;
}

// ---------------------------------------------------------------------------------------------
// entry point

/**
 * Load symrun.yaml (opts.file, else $SYMRUN_CONFIG, else none), apply CLI overrides, validate, and
 * resolve every default. Throws SymError: ESYM_CONFIG_NOT_FOUND, ESYM_CONFIG_UNREADABLE,
 * ESYM_CONFIG_SYNTAX, ESYM_CONFIG_INVALID (all exit code 2).
 */
export function loadConfig(opts: LoadConfigOptions = {}): SymrunConfig {
  const env = opts.env ?? process.env;
  const cwd = opts.cwd ?? process.cwd();
  const names = { ...OVERRIDE_OPTIONS, ...(opts.optionNames ?? {}) } as Record<keyof ConfigOverrides, string>;

  let fileField = '--config';
  let file = opts.file;
  if (file === undefined || file === '') {
    file = env.SYMRUN_CONFIG || undefined;
    fileField = 'SYMRUN_CONFIG';
  }

  let parsed: Parsed | undefined;
  let raw: Record<string, unknown> = {};
  if (file !== undefined) {
    file = path.resolve(cwd, expandHome(file, env));
    parsed = parseYaml(file, readConfigFile(file, fileField));
    const data = parsed.data;
    if (data === null || data === undefined) {
      raw = {}; // empty file (or only comments) = defaults
    } else if (!isPlainObject(data)) {
      throw new SymError('ESYM_CONFIG_INVALID', {
        message: `${file}: the top level must be a mapping of keys (like "accel: kvm"), not ${kindOf(data)}`,
        field: '(top level)',
        value: data,
        fix: 'write one key per line at the top level (accel, image, vm, interconnect, network, mpi, share, migration, checkpoint, slurm, local, nodes, spares, hosts); see docs/config.md',
        exitCode: EXIT.usage,
        details: { file },
      });
    } else {
      raw = structuredClone(data);
    }
  }

  const origin = applyOverrides(raw, opts.overrides ?? {}, names);

  const problems: Problem[] = [];
  for (const e of validate(raw)) {
    const pr = fromAjv(e, raw);
    if (pr) problems.push(pr);
  }
  problems.push(...semanticProblems(raw));

  if (problems.length > 0) throw toSymError(problems, parsed, origin);

  const imageBase = origin.has(JSON.stringify(['image'])) || !file ? cwd : path.dirname(file);
  const ckptBase = origin.has(JSON.stringify(['checkpoint', 'dir'])) || !file ? cwd : path.dirname(file);
  const cfg = resolveConfig(raw, file ?? 'defaults', imageBase, env, ckptBase, file ? path.dirname(file) : cwd);
  ORIGINS.set(cfg, { cli: origin, file: parsed?.data });
  return cfg;
}

/** Where the keys of each config loadConfig returned came from (kept beside it, not in it). */
const ORIGINS = new WeakMap<SymrunConfig, { cli: Map<string, string>; file: unknown }>();

/**
 * Where a key of a config returned by loadConfig came from: the CLI option that set it (e.g. "--cpus"),
 * the dotted key itself when symrun.yaml set it (e.g. "vm.cpus"), or undefined when it is a default
 * (or cfg is a copy: only the object loadConfig returned is known).
 */
export function configOrigin(cfg: SymrunConfig, dotted: string): string | undefined {
  const o = ORIGINS.get(cfg);
  if (!o) return undefined;
  const p = dotted.split('.');
  const cli = optionFor(o.cli, p);
  if (cli) return cli;
  return getAt(o.file, p) !== undefined ? dotted : undefined;
}

function toSymError(problems: Problem[], parsed: Parsed | undefined, origin: Map<string, string>): SymError {
  // de-duplicate (same path, same text), then CLI problems first, then in file order
  const seen = new Set<string>();
  const rows = problems
    .filter((pr) => {
      const k = JSON.stringify([pr.path, pr.message ?? pr.text]);
      if (seen.has(k)) return false;
      seen.add(k);
      return true;
    })
    .map((pr, i) => {
      const option = optionFor(origin, pr.path);
      const pos = option ? undefined : positionOf(parsed, pr.path, pr.atKey ?? false);
      const field = option ?? (dottedPath(pr.path) || '(top level)');
      const message = option
        ? pr.message
          ? `${option}: ${pr.message}`
          : `${option} ${pr.cliText ?? pr.text}`
        : pr.message ?? `${field} ${pr.text}`;
      return { pr, i, option, pos, field, message };
    })
    .sort((a, b) => {
      if (!!a.option !== !!b.option) return a.option ? -1 : 1;
      if (a.pos && b.pos) return a.pos.line - b.pos.line || a.pos.col - b.pos.col || a.i - b.i;
      if (!!a.pos !== !!b.pos) return a.pos ? -1 : 1;
      return a.i - b.i;
    });

  const first = rows[0]!;
  const where = first.pos && parsed ? `${parsed.file}:${first.pos.line}:${first.pos.col}: ` : parsed && !first.option ? `${parsed.file}: ` : '';
  const more = rows.length > 1 ? ` (and ${rows.length - 1} more problem${rows.length > 2 ? 's' : ''}; fix this one and run again, or see them all with --json)` : '';
  return new SymError('ESYM_CONFIG_INVALID', {
    message: `${where}${first.message}${more}`,
    field: first.field,
    value: first.pr.value,
    fix: first.pr.fix,
    exitCode: EXIT.usage,
    details: {
      ...(parsed ? { file: parsed.file } : {}),
      ...(first.pos ? { line: first.pos.line, col: first.pos.col } : {}),
      problems: rows.map((r) => ({
        field: r.field,
        message: r.message,
        ...(r.pr.value !== undefined ? { value: r.pr.value } : {}),
        fix: r.pr.fix,
        ...(r.pos ? { line: r.pos.line, col: r.pos.col } : {}),
      })),
    },
  });
}

// ---------------------------------------------------------------------------------------------
// summary

function size(mib: number): string {
  return mib % 1024 === 0 ? `${mib / 1024} GiB` : `${mib} MiB`;
}

/** A short human summary, for `symrun config show`. */
export function describeConfig(cfg: SymrunConfig): string {
  const ic = cfg.interconnect;
  const icText =
    ic.type === 'emulated'
      ? `emulated ${ic.model} (stand-in for a passthrough NIC)`
      : [
          'vfio passthrough',
          ic.addresses && Object.keys(ic.addresses).length
            ? `by host: ${Object.entries(ic.addresses).map(([h, a]) => `${h}=${a}`).join(', ')}`
            : undefined,
          ic.pool?.length ? `VF pool: ${ic.pool.join(', ')}` : undefined,
        ]
          .filter(Boolean)
          .join('; ');
  const hostsText =
    cfg.local > 0
      ? `local: ${cfg.local} emulated host${cfg.local === 1 ? '' : 's'}`
      : cfg.hosts.length
        ? `hosts: ${cfg.hosts.join(', ')}`
        : cfg.nodes !== undefined
          ? `${cfg.nodes} node${cfg.nodes === 1 ? '' : 's'} of the Slurm allocation`
          : 'from the Slurm allocation';
  const mca = Object.entries(cfg.mpi.mca);
  const slots = cfg.mpi.slotsPerVm ?? cfg.mpi.ntasksPerNode ?? cfg.vm.cpus;
  const lines: Array<[string, string]> = [
    ['config', cfg.source],
    ['accel', cfg.accel === 'auto' ? 'auto (KVM if usable, else TCG)' : cfg.accel],
    ['image', cfg.image === 'auto' ? 'auto (built or reused from the cache)' : cfg.image],
    ['hosts', `${hostsText}; ${cfg.spares} spare${cfg.spares === 1 ? '' : 's'}`],
    [
      'vm',
      `${cfg.vm.cpus} cpu${cfg.vm.cpus === 1 ? '' : 's'}, ${size(cfg.vm.memoryMiB)}, machine ${cfg.vm.machine}` +
        (cfg.vm.extraArgs.length ? `, extra: ${cfg.vm.extraArgs.join(' ')}` : ''),
    ],
    ['interconnect', icText],
    [
      'network',
      `subnet ${cfg.network.subnet}, guest interface ${cfg.network.guestIfName}` +
        (cfg.network.bridge ? `, bridge ${cfg.network.bridge}` : ''),
    ],
    [
      'mpi',
      `np ${cfg.mpi.np ?? 'auto (slots per VM x VMs)'}, ` +
        `${slots} slot${slots === 1 ? '' : 's'} per VM${cfg.mpi.slotsPerVm === undefined && cfg.mpi.ntasksPerNode === undefined ? ' (= vm.cpus)' : ''}` +
        (cfg.mpi.ntasksPerNode !== undefined ? `, ${cfg.mpi.ntasksPerNode} per node (--ntasks-per-node)` : '') +
        (cfg.mpi.cpusPerTask !== undefined ? `, ${cfg.mpi.cpusPerTask} cpu${cfg.mpi.cpusPerTask === 1 ? '' : 's'} per rank` : '') +
        (cfg.mpi.tagOutput ? ', tagged output' : '') +
        (mca.length ? `, mca ${mca.map(([k, v]) => `${k}=${v}`).join(' ')}` : '') +
        (cfg.mpi.extraArgs.length ? `, extra: ${cfg.mpi.extraArgs.join(' ')}` : ''),
    ],
    [
      'share',
      cfg.share.cwd
        ? `current directory, up to ${size(Math.ceil(cfg.share.maxBytes / MIB))}` +
          (cfg.share.exclude.length ? `, excluding ${cfg.share.exclude.join(' ')}` : '')
        : 'off',
    ],
  ];
  const w = Math.max(...lines.map(([k]) => k.length)) + 1;
  return lines.map(([k, v]) => `${(k + ':').padEnd(w + 1)}${v}`).join('\n');
}
