// Property-based tests (fast-check) of the YAML config loader (launcher/src/config/, loadConfig with a
// file): generated valid configs read back; hostile files (alias bombs, deep nesting, duplicate keys,
// tabs, binary, wrong types, mutated examples) give ESYM_CONFIG_* errors and nothing else.
import t from 'tap';
import fc from 'fast-check';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import { loadConfig } from '../../launcher/src/config/index.js';
import { repoRoot } from '../../launcher/src/defaults.js';
import { SymError } from '../../launcher/src/errors.js';
import { fuzzParams, caught, hostileString } from '../fixtures/fuzz.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fuzz-config-'));
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
const env = { HOME: dir };
let n = 0;

function load(text: string | Buffer): ReturnType<typeof loadConfig> {
  const file = path.join(dir, `c${n++}.yaml`);
  fs.writeFileSync(file, text);
  try {
    return loadConfig({ file, env, cwd: dir });
  } finally {
    fs.rmSync(file, { force: true });
  }
}

function onlyConfigError(e: unknown): void {
  if (e !== undefined && !(e instanceof SymError && /^ESYM_CONFIG_|^ESYM_/.test(e.code))) throw e;
}

t.test('generated valid configs read back', async () => {
  fc.assert(fc.property(
    fc.record({
      accel: fc.constantFrom('auto', 'kvm', 'tcg'),
      vm: fc.record({ cpus: fc.integer({ min: 1, max: 64 }), memory: fc.integer({ min: 1, max: 64 }).map((g) => `${g}G`) }),
      mpi: fc.record({ slotsPerVm: fc.integer({ min: 1, max: 64 }) }),
    }),
    (c) => {
      const cfg = load(YAML.stringify(c)) as unknown as Record<string, any>;
      if (cfg.accel !== c.accel || cfg.vm.cpus !== c.vm.cpus || cfg.mpi.slotsPerVm !== c.mpi.slotsPerVm) {
        throw new Error(`${JSON.stringify(c)} read as ${JSON.stringify({ accel: cfg.accel, vm: cfg.vm, mpi: cfg.mpi })}`);
      }
    },
  ), fuzzParams(0.5));
});

const examples = fs.readdirSync(path.join(repoRoot(), 'examples'))
  .map((d) => path.join(repoRoot(), 'examples', d, 'symrun.yaml')).filter((f) => fs.existsSync(f)).map((f) => fs.readFileSync(f, 'utf8'));

const hostileYaml = fc.oneof(
  // alias bombs: each level refers to the previous one k times
  fc.tuple(fc.integer({ min: 2, max: 12 }), fc.integer({ min: 2, max: 10 })).map(([levels, k]) => {
    let s = 'a0: &a0 ["lol"]\n';
    for (let i = 1; i < levels; i++) s += `a${i}: &a${i} [${Array(k).fill(`*a${i - 1}`).join(', ')}]\n`;
    return s + `vm:\n  extraArgs: *a${levels - 1}\n`;
  }),
  fc.integer({ min: 1, max: 3000 }).map((d) => `vm: ${'['.repeat(d)}${']'.repeat(d)}\n`),
  fc.integer({ min: 1, max: 300 }).map((d) => Array.from({ length: d }, (_, i) => `${' '.repeat(i)}k${i}:`).join('\n') + ' 1\n'),
  fc.constantFrom('vm:\n  cpus: 2\n  cpus: 3\n', 'vm:\n\tcpus: 2\n', 'accel: kvm\naccel: tcg\n', '*undefined\n', '&a [*a]\n', '!!binary AAAA\n', '<<: *x\n', 'vm: !!js/function "x"\n', '%YAML 9.9\n---\n', '---\na: 1\n---\nb: 2\n'),
  fc.uint8Array({ maxLength: 200 }).map((b) => Buffer.from(b).toString('latin1')),
  hostileString('vm:cpus memory accel- []{}&*!|>"\'#\n\t ', 60),
  fc.tuple(fc.constantFrom(...examples), fc.nat(), fc.nat(40), hostileString(':\n\t -[]{}&*!|"\'#0123456789abc', 10))
    .map(([text, at, cut, ins]) => { const i = at % (text.length + 1); return text.slice(0, i) + ins + text.slice(i + cut); }),
  fc.record({ vm: fc.anything({ maxDepth: 2 }), mpi: fc.anything({ maxDepth: 2 }), accel: fc.anything({ maxDepth: 1 }) }, { requiredKeys: [] })
    .map((o) => { try { return YAML.stringify(o); } catch { return '{}'; } }),
);

t.test('hostile YAML gives ESYM_ errors only', async () => {
  fc.assert(fc.property(hostileYaml, (text) => {
    onlyConfigError(caught(() => load(text)));
  }), fuzzParams(0.5));
});

t.test('an alias bomb is refused, not expanded', async (t) => {
  let s = 'a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n';
  for (let i = 1; i < 9; i++) s += `a${i}: &a${i} [${Array(9).fill(`*a${i - 1}`).join(',')}]\n`;
  const e = caught(() => load(s + 'vm:\n  extraArgs: *a8\n'));
  t.ok(e instanceof SymError, `SymError: ${String(e)}`);
  t.match((e as SymError).code, /^ESYM_CONFIG_/);
});
