// A problem in a configuration (path, text, value, fix) and the translation of ajv's schema errors
// into such problems, worded for people (the JSON schema is compiled once).
import { Ajv, type ErrorObject } from 'ajv';
import { suggest } from '../errors.js';
import { CONFIG_SCHEMA, ANNOTATION_KEYWORDS } from './schema.js';

export type Seg = string | number;

export interface Problem {
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

export const IDENT_RE = /^[A-Za-z_][A-Za-z0-9_-]*$/;

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

export function show(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v);
  if (v === null || v === undefined) return 'empty';
  try {
    return JSON.stringify(v) ?? String(v);
  } catch {
    return String(v);
  }
}

export function kindOf(v: unknown): string {
  if (v === null || v === undefined) return 'empty';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'number') return Number.isInteger(v) ? 'a whole number' : 'a number with a fraction';
  if (typeof v === 'string') return 'a string';
  if (typeof v === 'boolean') return 'true/false';
  if (typeof v === 'object') return 'a mapping';
  return typeof v;
}

export const TYPE_NAMES: Record<string, string> = {
  string: 'a string',
  integer: 'a whole number',
  number: 'a number',
  boolean: 'true or false',
  object: 'a mapping (key: value)',
  array: 'a list',
  null: 'empty',
};

export function pointerToPath(pointer: string, data: unknown): Seg[] {
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

export function getAt(data: unknown, p: readonly Seg[]): unknown {
  let cur = data;
  for (const seg of p) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<string | number, unknown>)[seg];
  }
  return cur;
}

export function listOf(values: readonly unknown[]): string {
  return values.map((v) => String(v)).join(', ');
}

export function fromAjv(e: ErrorObject, data: unknown): Problem | undefined {
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

export function isPlainObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}



export let validator: ReturnType<Ajv['compile']> | undefined;
export function validate(data: unknown): ErrorObject[] {
  if (!validator) {
    const ajv = new Ajv({ allErrors: true, verbose: true, strict: true, allowUnionTypes: true });
    for (const k of ANNOTATION_KEYWORDS) ajv.addKeyword({ keyword: k, schemaType: 'string' });
    validator = ajv.compile(CONFIG_SCHEMA as object);
  }
  return validator(data) ? [] : [...(validator.errors ?? [])];
}
