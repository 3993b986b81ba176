// Slurm hostlists ("n[1-3,5],gpu[01-02],x"): a pure codec, no I/O.
//
// Grammar (what Slurm 22.05's `scontrol show hostnames` accepts, measured on this machine; the
// captured answers are test/fixtures/slurm/hostnames-22.05.txt):
//   list    := entry ( (',' | whitespace) entry )*          empty entries are skipped
//   entry   := ( text | '[' ranges ']' )+                  several bracket groups = cartesian product
//   ranges  := range ( ',' range )*                        commas inside brackets do not split entries
//   range   := digits | digits '-' digits                  lo <= hi
// Zero padding: every number of a range is printed with the width of its lower bound
// ("n[01-10]" → n01 … n10, "n[9-11]" → n9 n10 n11, "n[1-003]" → n1 n2 n3), as Slurm does.
// Duplicates and order are kept ("n[1-3,2]" → n1 n2 n3 n2).
// Where we are stricter or more lenient than Slurm (documented, tested):
//   - a suffix after a bracket ("n[1-3]-ib") is accepted here (Slurm 22.05 says "Invalid hostlist");
//   - an unbalanced bracket ("n[1-2") is an error here (Slurm silently prints "n]").
import { SymError, EXIT } from '../errors.js';

/** Largest number of names one hostlist may expand to (a typo like n[1-100000000] must not eat memory). */
export const MAX_HOSTLIST_NAMES = 1_000_000;

export interface HostlistOpts {
  /** the config field / option / variable the hostlist came from, for error messages */
  field?: string;
}

function bad(input: string, why: string, opts: HostlistOpts, fix?: string): SymError {
  return new SymError('ESYM_BAD_HOSTLIST', {
    message: `invalid Slurm hostlist: ${why}`,
    field: opts.field ?? 'hostlist',
    value: input,
    fix: fix ?? 'write node names like "n[1-3,5],gpu[01-02],x": ranges lo-hi with lo <= hi, digits only inside [ ]',
    exitCode: EXIT.usage,
  });
}

/** Split at top-level commas / whitespace (not inside brackets). */
function splitEntries(input: string, opts: HostlistOpts): string[] {
  const out: string[] = [];
  let depth = 0;
  let cur = '';
  for (const ch of input) {
    if (ch === '[') {
      if (depth > 0) throw bad(input, 'nested "[" inside a bracket', opts);
      depth++;
      cur += ch;
    } else if (ch === ']') {
      if (depth === 0) throw bad(input, 'a "]" without its "["', opts);
      depth--;
      cur += ch;
    } else if (depth === 0 && (ch === ',' || /\s/.test(ch))) {
      if (cur !== '') out.push(cur);
      cur = '';
    } else {
      if (depth > 0 && /\s/.test(ch)) throw bad(input, 'whitespace inside a bracket', opts);
      cur += ch;
    }
  }
  if (depth !== 0) throw bad(input, 'a "[" without its "]"', opts);
  if (cur !== '') out.push(cur);
  return out;
}

/** "1-3,5" → ["1","2","3","5"] with lower-bound padding. */
function expandRanges(body: string, input: string, opts: HostlistOpts, budget: number): string[] {
  if (body === '') throw bad(input, 'empty brackets "[]"', opts);
  const out: string[] = [];
  for (const part of body.split(',')) {
    const m = /^([0-9]+)(?:-([0-9]+))?$/.exec(part);
    if (!m) throw bad(input, `"${part}" inside brackets is not a number or a range lo-hi`, opts);
    const loStr = m[1]!;
    const hiStr = m[2] ?? loStr;
    const lo = Number(loStr);
    const hi = Number(hiStr);
    if (!Number.isSafeInteger(lo) || !Number.isSafeInteger(hi)) throw bad(input, `number too large in "${part}"`, opts);
    if (hi < lo) throw bad(input, `range "${part}" goes downwards`, opts, `write it as ${hiStr}-${loStr}`);
    if (out.length + (hi - lo + 1) > budget) {
      throw bad(input, `expands to more than ${MAX_HOSTLIST_NAMES} names`, opts, 'check the range bounds for a typo');
    }
    const width = loStr.length;
    for (let v = lo; v <= hi; v++) out.push(String(v).padStart(width, '0'));
  }
  return out;
}

function expandEntry(entry: string, input: string, opts: HostlistOpts, budget: number): string[] {
  // alternate text / bracket groups
  let names = [''];
  const re = /\[([^\]]*)\]|[^[\]]+/g;
  let m: RegExpExecArray | null;
  while ((m = re.exec(entry)) !== null) {
    if (m[1] !== undefined) {
      const nums = expandRanges(m[1], input, opts, budget);
      if (names.length * nums.length > budget) {
        throw bad(input, `expands to more than ${MAX_HOSTLIST_NAMES} names`, opts, 'check the range bounds for a typo');
      }
      const next: string[] = [];
      for (const n of names) for (const v of nums) next.push(n + v);
      names = next;
    } else {
      names = names.map((n) => n + m![0]);
    }
  }
  return names;
}

/**
 * Expand a Slurm hostlist into node names, in order, duplicates kept.
 * expandHostlist("n[1-3,5],gpu[01-02],x") → ["n1","n2","n3","n5","gpu01","gpu02","x"].
 * "" and "(null)" (what Slurm prints for "no nodes") expand to [].
 * Throws SymError ESYM_BAD_HOSTLIST (with field/value/fix) for malformed input.
 */
export function expandHostlist(hostlist: string, opts: HostlistOpts = {}): string[] {
  if (typeof hostlist !== 'string') throw bad(String(hostlist), 'not a string', opts);
  const s = hostlist.trim();
  if (s === '' || s === '(null)') return [];
  const out: string[] = [];
  for (const entry of splitEntries(s, opts)) {
    for (const name of expandEntry(entry, hostlist, opts, MAX_HOSTLIST_NAMES - out.length)) out.push(name);
  }
  return out;
}

interface Run {
  prefix: string;
  /** digits as written (keeps padding) */
  parts: Array<{ lo: number; hi: number; width: number }>;
}

/** "n009" → {prefix:"n", digits:"009"}; names without trailing digits → undefined */
function splitName(name: string): { prefix: string; digits: string } | undefined {
  const m = /^(.*?)([0-9]+)$/.exec(name);
  if (!m || m[2]!.length > 15) return undefined;
  return { prefix: m[1]!, digits: m[2]! };
}

function fmtRun(r: Run): string {
  const body = r.parts
    .map((p) => (p.lo === p.hi ? String(p.lo).padStart(p.width, '0') : `${String(p.lo).padStart(p.width, '0')}-${String(p.hi).padStart(p.width, '0')}`))
    .join(',');
  const single = r.parts.length === 1 && r.parts[0]!.lo === r.parts[0]!.hi;
  return single ? `${r.prefix}${body}` : `${r.prefix}[${body}]`;
}

/**
 * Compress node names into a hostlist, keeping their order (like `scontrol show hostlist`):
 * consecutive names with the same prefix and a trailing number are merged into one bracket group,
 * ascending runs of equal width become lo-hi. expandHostlist(compressHostlist(x)) equals x.
 * ["n1","n2","n3","n5","gpu01","gpu02","x"] → "n[1-3,5],gpu[01-02],x"; ["n1","n3","n2"] → "n[1,3,2]".
 */
export function compressHostlist(names: readonly string[], opts: HostlistOpts = {}): string {
  const out: string[] = [];
  let run: Run | undefined;
  const flush = () => {
    if (run) out.push(fmtRun(run));
    run = undefined;
  };
  for (const name of names) {
    if (typeof name !== 'string' || name === '' || /[\s,[\]]/.test(name)) {
      throw new SymError('ESYM_BAD_HOSTNAME', {
        message: 'a node name for a Slurm hostlist must be non-empty and contain no whitespace, "," "[" or "]"',
        field: opts.field ?? 'hostlist',
        value: name,
        fix: 'pass plain node names such as "n1"',
        exitCode: EXIT.usage,
      });
    }
    const sp = splitName(name);
    if (!sp) {
      flush();
      out.push(name);
      continue;
    }
    const v = Number(sp.digits);
    const width = sp.digits.length;
    if (run && run.prefix === sp.prefix) {
      const last = run.parts[run.parts.length - 1]!;
      // extend lo-hi if the next number, printed with the run's width, is exactly this name
      if (v === last.hi + 1 && String(v).padStart(last.width, '0') === sp.digits) {
        last.hi = v;
      } else {
        run.parts.push({ lo: v, hi: v, width });
      }
      continue;
    }
    flush();
    run = { prefix: sp.prefix, parts: [{ lo: v, hi: v, width }] };
  }
  flush();
  return out.join(',');
}
