// Slurm hostlist codec (launcher/src/slurm/hostlist.ts) against answers captured from Slurm 22.05.8's
// `scontrol show hostnames` / `scontrol show hostlist` on this machine (test/fixtures/slurm/host*.txt).
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { repoRoot } from '../../launcher/src/defaults.js';
import { SymError } from '../../launcher/src/errors.js';
import { compressHostlist, expandHostlist, MAX_HOSTLIST_NAMES } from '../../launcher/src/slurm/hostlist.js';

function table(file: string): Array<[string, string]> {
  return fs.readFileSync(path.join(repoRoot(), 'test/fixtures/slurm', file), 'utf8')
    .split('\n')
    .filter((l) => l !== '' && !l.startsWith('#'))
    .map((l) => l.split('\t') as [string, string]);
}

function thrown(fn: () => unknown): SymError | undefined {
  try {
    fn();
  } catch (e) {
    if (e instanceof SymError) return e;
    throw e;
  }
  return undefined;
}

// where we knowingly differ from Slurm 22.05 (see hostlist.ts)
const LENIENT = new Map([['n[1-3]-ib', ['n1-ib', 'n2-ib', 'n3-ib']]]);
const STRICT = new Set(['n[1-2']); // Slurm prints the garbage "n]"

t.test('expandHostlist agrees with scontrol show hostnames', async (t) => {
  const rows = table('hostnames-22.05.txt');
  t.ok(rows.length >= 20, 'fixture has the captured cases');
  for (const [input, want] of rows) {
    if (LENIENT.has(input)) {
      t.same(expandHostlist(input), LENIENT.get(input), `${input} (accepted here, an error in Slurm)`);
    } else if (STRICT.has(input) || want === 'ERROR') {
      const e = thrown(() => expandHostlist(input));
      t.equal(e?.code, 'ESYM_BAD_HOSTLIST', `${input} is an error`);
    } else {
      t.same(expandHostlist(input), want.split(' '), input);
    }
  }
});

t.test('the example of the brief', async (t) => {
  t.same(expandHostlist('n[1-3,5],gpu[01-02],x'), ['n1', 'n2', 'n3', 'n5', 'gpu01', 'gpu02', 'x']);
  t.equal(compressHostlist(['n1', 'n2', 'n3', 'n5', 'gpu01', 'gpu02', 'x']), 'n[1-3,5],gpu[01-02],x');
});

t.test('empty and null lists', async (t) => {
  t.same(expandHostlist(''), []);
  t.same(expandHostlist('  '), []);
  t.same(expandHostlist('(null)'), []);
  t.equal(compressHostlist([]), '');
});

t.test('errors carry field, value and fix', async (t) => {
  const e = thrown(() => expandHostlist('n[3-1]', { field: 'SLURM_JOB_NODELIST' }));
  t.equal(e?.code, 'ESYM_BAD_HOSTLIST');
  t.equal(e?.field, 'SLURM_JOB_NODELIST');
  t.equal(e?.value, 'n[3-1]');
  t.match(e?.fix, /1-3/, 'suggests the range the right way round');
  t.match(e?.message, /downwards/);
  t.equal(thrown(() => expandHostlist('n[1-2]')), undefined, 'valid input does not throw');
  for (const bad of ['n[1-2', 'n1-2]', 'n[[1]]', 'n[1,,2]', 'n[1-]', 'n[-1]', 'n[x]', 'n[1 2]', 'n[]']) {
    const err = thrown(() => expandHostlist(bad));
    t.equal(err?.code, 'ESYM_BAD_HOSTLIST', bad);
    t.equal(err?.field, 'hostlist', `${bad}: default field`);
    t.ok(err?.fix, `${bad}: has a fix`);
  }
});

t.test('a typo cannot expand to millions of names', async (t) => {
  t.equal(thrown(() => expandHostlist('n[1-100000000]'))?.code, 'ESYM_BAD_HOSTLIST');
  t.equal(thrown(() => expandHostlist('a[1-2000]b[1-2000]'))?.code, 'ESYM_BAD_HOSTLIST', 'cartesian products are bounded too');
  t.equal(expandHostlist(`n[1-${MAX_HOSTLIST_NAMES}]`).length, MAX_HOSTLIST_NAMES, 'the bound itself is fine');
});

t.test('compressHostlist agrees with scontrol show hostlist', async (t) => {
  for (const [input, want] of table('hostlist-22.05.txt')) {
    t.equal(compressHostlist(input.split(',')), want, input);
  }
});

t.test('round trip expand(compress(names)) keeps order and duplicates', async (t) => {
  const cases = [
    ['n1', 'n2', 'n3'], ['n3', 'n1', 'n2', 'n2'], ['n009', 'n010', 'n011', 'n9', 'n10'], ['a', 'b1', 'b2', 'c'],
    ['x1y2', 'x1y3', 'x2y2'], ['gpu01', 'gpu02', 'gpu03', 'gpu10'], ['n0', 'n00', 'n000'], ['n99', 'n100', 'n101'],
    ['007', '008', '010'], ['rack1-n1', 'rack1-n2', 'rack2-n1'],
  ];
  for (const names of cases) t.same(expandHostlist(compressHostlist(names)), names, names.join(','));
  // a longer pseudo-random list
  const names: string[] = [];
  let x = 7;
  for (let i = 0; i < 500; i++) {
    x = (x * 1103515245 + 12345) % 2 ** 31;
    names.push(`${['n', 'gpu', 'r1n'][x % 3]}${String(x % 97).padStart(x % 2 ? 1 : 3, '0')}`);
  }
  t.same(expandHostlist(compressHostlist(names)), names, '500 random names');
});

t.test('compressHostlist rejects names a hostlist cannot carry', async (t) => {
  for (const bad of ['', 'a b', 'a,b', 'n[1]']) {
    let e: unknown;
    try {
      compressHostlist(['n1', bad]);
    } catch (err) {
      e = err;
    }
    t.equal((e as SymError | undefined)?.code, 'ESYM_BAD_HOSTNAME', JSON.stringify(bad));
  }
});
