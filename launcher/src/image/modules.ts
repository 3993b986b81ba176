// Kernel-module closure resolution over a modules.dep text. Pure functions, no I/O.
import { SymError, EXIT } from '../errors.js';

/** modules.dep as a map: relative module path -> relative paths of its direct dependencies. */
export type ModuleDeps = Map<string, string[]>;

const KO_RE = /\.ko(\.(xz|zst|gz))?$/;

/** Module name as the kernel sees it: basename without .ko[.xz|.zst|.gz], dashes as underscores. */
export function moduleName(relPath: string): string {
  const base = relPath.slice(relPath.lastIndexOf('/') + 1).replace(KO_RE, '');
  return base.replace(/-/g, '_');
}

/** Parse modules.dep ("kernel/a.ko: kernel/b.ko kernel/c.ko" per line). */
export function parseModulesDep(text: string): ModuleDeps {
  const deps: ModuleDeps = new Map();
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    const colon = line.indexOf(':');
    if (colon < 0) continue;
    const mod = line.slice(0, colon).trim();
    const rest = line.slice(colon + 1).trim();
    deps.set(mod, rest ? rest.split(/\s+/) : []);
  }
  return deps;
}

/** Names of built-in modules from modules.builtin text (paths, one per line). */
export function parseModulesBuiltin(text: string): Set<string> {
  const s = new Set<string>();
  for (const line of text.split('\n')) if (line.trim()) s.add(moduleName(line.trim()));
  return s;
}

export interface ClosureResult {
  /** relative module paths, every module after all of its dependencies, requested order kept otherwise */
  order: string[];
  /** requested names that are built into the kernel (nothing to load) */
  builtin: string[];
}

/**
 * The dependency closure of the requested module names, in load order (dependencies first; among
 * independent modules the requested order is kept). Names may use '-' or '_'. A name that is neither
 * in modules.dep nor built-in is an error (ESYM_IMAGE_MODULE_MISSING).
 */
export function moduleClosure(
  depsOrText: ModuleDeps | string,
  names: readonly string[],
  builtin: ReadonlySet<string> = new Set(),
): ClosureResult {
  const deps = typeof depsOrText === 'string' ? parseModulesDep(depsOrText) : depsOrText;
  const byName = new Map<string, string>();
  for (const p of deps.keys()) byName.set(moduleName(p), p);

  const order: string[] = [];
  const builtinHit: string[] = [];
  const done = new Set<string>();
  const visiting = new Set<string>();

  const visit = (p: string, chain: string[]): void => {
    if (done.has(p)) return;
    if (visiting.has(p)) {
      throw new SymError('ESYM_IMAGE_MODULE_CYCLE', {
        message: `kernel module dependency cycle: ${[...chain, p].map(moduleName).join(' -> ')}`,
        fix: 'modules.dep looks corrupt; run `depmod` for this kernel version and rebuild the image',
        exitCode: EXIT.environment,
      });
    }
    visiting.add(p);
    // modules.dep lists the full closure of a module; each dependency's own line orders it further.
    const ds = deps.get(p) ?? [];
    for (let i = ds.length - 1; i >= 0; i--) {
      const d = ds[i]!;
      if (!deps.has(d)) {
        throw new SymError('ESYM_IMAGE_MODULE_MISSING', {
          message: `kernel module ${moduleName(p)} depends on ${d}, which modules.dep does not list`,
          fix: 'modules.dep looks incomplete; run `depmod` for this kernel version and rebuild the image',
          value: d,
          exitCode: EXIT.environment,
        });
      }
      visit(d, [...chain, p]);
    }
    visiting.delete(p);
    done.add(p);
    order.push(p);
  };

  for (const n of names) {
    const name = n.replace(/-/g, '_');
    const p = byName.get(name);
    if (p === undefined) {
      if (builtin.has(name)) { builtinHit.push(name); continue; }
      throw new SymError('ESYM_IMAGE_MODULE_MISSING', {
        message: `kernel module ${n} is not in modules.dep and not built into the kernel`,
        fix: 'install the matching linux-image package (bash scripts/setup) or remove the module from the list',
        value: n,
        exitCode: EXIT.environment,
      });
    }
    visit(p, []);
  }
  return { order, builtin: builtinHit };
}

/** modules.dep text restricted to the given modules (paths may be renamed, e.g. after decompression). */
export function renderModulesDep(deps: ModuleDeps, keep: readonly string[], rename: (p: string) => string = (p) => p): string {
  const lines: string[] = [];
  for (const p of keep) {
    const ds = deps.get(p) ?? [];
    lines.push(`${rename(p)}:${ds.length ? ' ' + ds.map(rename).join(' ') : ''}`);
  }
  return lines.join('\n') + '\n';
}
