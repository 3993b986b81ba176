// The error-code registry (launcher/src/error-codes.ts): every code the sources mention is registered
// (SymError's type checks constructions; this also catches comparisons like e.code === 'ESYM_TYPO'),
// and docs/errors.md lists exactly the registry with each code's exit status.
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { ERROR_CODES, isErrorCode, SymError, EXIT } from '../../launcher/src/errors.js';
import { repoRoot } from '../../launcher/src/defaults.js';

function sources(dir: string): string[] {
  const out: string[] = [];
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...sources(p));
    else if (/\.ts$/.test(e.name)) out.push(p);
  }
  return out;
}

t.test('every ESYM_ code mentioned in launcher/, guest/ and test/cluster/ is registered', async (t) => {
  const root = repoRoot();
  const unknown = new Set<string>();
  for (const d of ['launcher/src', 'guest', 'test/cluster']) {
    for (const f of sources(path.join(root, d))) {
      for (const m of fs.readFileSync(f, 'utf8').matchAll(/['"`](ESYM_[A-Z0-9_]+)['"`]/g)) if (!isErrorCode(m[1])) unknown.add(`${m[1]} (${path.relative(root, f)})`);
    }
  }
  t.same([...unknown], [], 'unregistered codes');
});

t.test('docs/errors.md lists exactly the registered codes with their exit status', async (t) => {
  const doc = fs.readFileSync(path.join(repoRoot(), 'docs', 'errors.md'), 'utf8');
  const rows = new Map([...doc.matchAll(/^\| `(ESYM_[A-Z0-9_]+)` \| (\d+) \|/gm)].map((m) => [m[1]!, Number(m[2])]));
  for (const [code, v] of Object.entries(ERROR_CODES)) t.equal(rows.get(code), EXIT[v.exit], `${code} documented with exit ${EXIT[v.exit]} (regenerate: node scripts/gen-error-docs.mjs)`);
  t.same([...rows.keys()].filter((c) => !isErrorCode(c)), [], 'no documented code that does not exist');
});

t.test('a SymError takes its exit status from the registry unless it says otherwise', async (t) => {
  t.equal(new SymError('ESYM_NO_APP', { message: 'x' }).exitCode, EXIT.usage);
  t.equal(new SymError('ESYM_QEMU_MISSING', { message: 'x' }).exitCode, EXIT.environment);
  t.equal(new SymError('ESYM_NO_APP', { message: 'x', exitCode: 9 }).exitCode, 9);
  t.notOk(isErrorCode('ESYM_MADE_UP'), 'a code that is not registered is not one');
});
