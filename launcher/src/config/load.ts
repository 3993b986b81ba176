// symrun.yaml + CLI overrides + DEFAULTS -> one validated, fully resolved SymrunConfig.
//
// Flow: read + parse YAML (positions kept) -> merge CLI overrides into the raw object (remembering
// which paths came from which option) -> ajv against CONFIG_SCHEMA + semantic checks -> problems are
// sorted (CLI first, then file order) and the first becomes one SymError (ESYM_CONFIG_INVALID, exit 2)
// naming the field (dotted path, or the CLI option), the value, and a fix -> resolve defaults.
//
// One concern a file: yaml.ts (reading, positions), overrides.ts (CLI over file), problems.ts (ajv's
// errors as problems), semantic.ts (what the schema cannot say), resolve.ts (defaults), units.ts,
// describe.ts (summary). This file runs the flow and turns the first problem into the error.
import path from 'node:path';
import { SymError, EXIT } from '../errors.js';
import { type SymrunConfig } from './types.js';
import { type ConfigOverrides, OVERRIDE_OPTIONS, applyOverrides, optionFor } from './overrides.js';
import { type Problem, dottedPath, kindOf, getAt, fromAjv, isPlainObject, validate } from './problems.js';
import { expandHome, resolveConfig } from './resolve.js';
import { semanticProblems } from './semantic.js';
import { type Parsed, readConfigFile, parseYaml, positionOf } from './yaml.js';

export { CONFIG_SCHEMA } from './schema.js';
export { parseSize, parseSizeBytes, parseDurationMs } from './units.js';
export { dottedPath } from './problems.js';
export { OVERRIDE_OPTIONS, type ConfigOverrides } from './overrides.js';
export { describeConfig } from './describe.js';

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
  problems.push(...semanticProblems(raw, { slurmJob: !!(env.SLURM_JOB_ID ?? env.SLURM_JOBID) }));

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
