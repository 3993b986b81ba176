// Property-based tests (fast-check) of the Slurm codecs: hostlist expansion/compression, scontrol
// node/job records, the SLURM_* environment. Valid inputs round-trip; hostile inputs give a SymError
// with an ESYM_ code and nothing else (no other exception, no huge expansion).
import t from 'tap';
import fc from 'fast-check';
import fs from 'node:fs';
import path from 'node:path';
import { repoRoot } from '../../launcher/src/defaults.js';
import { SymError } from '../../launcher/src/errors.js';
import { compressHostlist, expandHostlist, MAX_HOSTLIST_NAMES } from '../../launcher/src/slurm/hostlist.js';
import { parseNodes, parseJobs, parseKeyValues, parseNodeState } from '../../launcher/src/slurm/scontrol.js';
import { parseSlurmEnv } from '../../launcher/src/slurm/env.js';
import { fuzzParams, caught, hostileString } from '../fixtures/fuzz.js';

const prefix = fc.stringMatching(/^[a-z][a-z0-9-]{0,6}[a-z-]$/);
const nodeName = fc.oneof(
  fc.tuple(prefix, fc.nat({ max: 2000 }), fc.integer({ min: 1, max: 4 })).map(([p, n, w]) => p + String(n).padStart(w, '0')),
  fc.stringMatching(/^[a-z][a-z.-]{0,8}$/),
);

function symCode(e: unknown): string | undefined {
  return e instanceof SymError ? e.code : undefined;
}

t.test('hostlist: expand(compress(names)) = names', async () => {
  fc.assert(fc.property(fc.array(nodeName, { maxLength: 40 }), (names) => {
    const list = compressHostlist(names);
    const back = expandHostlist(list);
    if (JSON.stringify(back) !== JSON.stringify(names)) throw new Error(`${JSON.stringify(names)} -> ${list} -> ${JSON.stringify(back)}`);
  }), fuzzParams());
});

t.test('hostlist: hostile text is a list or ESYM_BAD_HOSTLIST, never more than the cap', async () => {
  fc.assert(fc.property(hostileString('n[]0123456789-,x ', 40), (s) => {
    let out: string[] | undefined;
    const e = caught(() => { out = expandHostlist(s); });
    if (e !== undefined && symCode(e) !== 'ESYM_BAD_HOSTLIST') throw e;
    if (out && out.length > MAX_HOSTLIST_NAMES) throw new Error(`${out.length} names`);
  }), fuzzParams());
});

t.test('hostlist: huge ranges and products are refused, not expanded', async () => {
  fc.assert(fc.property(
    fc.integer({ min: MAX_HOSTLIST_NAMES, max: Number.MAX_SAFE_INTEGER - 1 }),
    fc.constantFrom('n[0-%]', 'n[1-%],m[1-%]', 'a[1-1001]b[0-%]', 'n[0-%]-ib', 'x[1-1000][1-%]', 'n[0-%0000000000000000000]'),
    (hi, shape) => {
      const s = shape.replaceAll('%', String(hi));
      const e = caught(() => expandHostlist(s));
      if (symCode(e) !== 'ESYM_BAD_HOSTLIST') throw e ?? new Error(`${s} was expanded`);
      if (!/expands to more than|too large/.test((e as SymError).message)) throw new Error(`unclear message: ${(e as SymError).message}`);
    },
  ), fuzzParams(0.25));
  t.equal(symCode(caught(() => expandHostlist('n[0-99999999]'))), 'ESYM_BAD_HOSTLIST', 'n[0-99999999]');
  t.equal(symCode(caught(() => expandHostlist(Array(2000).fill('n[1-1000]').join(',')))), 'ESYM_BAD_HOSTLIST', 'many entries add up');
});

t.test('hostlist: compress refuses names it cannot write, with ESYM_BAD_HOSTNAME', async () => {
  fc.assert(fc.property(fc.array(fc.oneof(nodeName, hostileString('n1[], ', 8)), { maxLength: 10 }), (names) => {
    let list: string | undefined;
    const e = caught(() => { list = compressHostlist(names); });
    if (e !== undefined) {
      if (symCode(e) !== 'ESYM_BAD_HOSTNAME') throw e;
      return;
    }
    const back = expandHostlist(list!);
    if (JSON.stringify(back) !== JSON.stringify(names)) throw new Error(`${JSON.stringify(names)} -> ${list} -> ${JSON.stringify(back)}`);
  }), fuzzParams());
});

// ---------- scontrol ----------
const fixtures = path.join(repoRoot(), 'test/fixtures/slurm');
const fixtureText = fs.readdirSync(fixtures).filter((f) => f.endsWith('.txt')).map((f) => fs.readFileSync(path.join(fixtures, f), 'utf8'));
const value = fc.stringMatching(/^[A-Za-z0-9_.:/()@+-]{0,12}$/);
const key = fc.stringMatching(/^[A-Z][A-Za-z]{0,10}$/);

t.test('scontrol: a generated node record reads back its fields', async () => {
  fc.assert(fc.property(
    nodeName,
    fc.constantFrom('IDLE', 'ALLOCATED', 'MIXED+DRAIN', 'DOWN*', 'IDLE+DRAIN', 'ALLOCATED+COMPLETING'),
    fc.dictionary(key.filter((k) => !['NodeName', 'State', 'Reason'].includes(k)), value.filter((v) => v !== ''), { maxKeys: 8 }),
    fc.option(fc.stringMatching(/^[A-Za-z0-9 _.:-]{1,30}$/).map((s) => s.trim()).filter((s) => s !== '' && !/[A-Za-z]+=/.test(s))),
    (name, state, extra, reason) => {
      const rec = [`NodeName=${name}`, `State=${state}`, ...Object.entries(extra).map(([k, v]) => `${k}=${v}`)].join(' ')
        + (reason ? ` Reason=${reason} [root@2026-01-01T00:00:00]` : '');
      const [n] = parseNodes(rec + '\n');
      if (!n || n.name !== name || n.state !== state) throw new Error(`read ${JSON.stringify(n)}`);
      for (const [k, v] of Object.entries(extra)) if (n.fields[k] !== v) throw new Error(`${k}: ${n.fields[k]} != ${v}`);
      if (reason && n.reason !== reason) throw new Error(`reason ${n.reason} != ${reason}`);
    },
  ), fuzzParams());
});

t.test('scontrol: a generated job record reads back', async () => {
  fc.assert(fc.property(
    fc.integer({ min: 1, max: 1e7 }), fc.array(nodeName, { maxLength: 8 }),
    fc.constantFrom('RUNNING', 'PENDING', 'COMPLETED', 'NODE_FAIL'), fc.nat(255), fc.nat(64),
    (id, nodes, state, status, signal) => {
      const rec = `JobId=${id} JobName=x JobState=${state} NodeList=${nodes.length ? compressHostlist(nodes) : '(null)'} ExitCode=${status}:${signal}`;
      const [j] = parseJobs(rec);
      if (!j || j.jobId !== String(id) || j.state !== state || JSON.stringify(j.nodeList) !== JSON.stringify(nodes)
        || j.exitCode?.status !== status || j.exitCode?.signal !== signal) throw new Error(`${rec} read as ${JSON.stringify(j)}`);
    },
  ), fuzzParams());
});

t.test('scontrol: hostile output (mutated fixtures, garbage) parses or gives ESYM_ codes', async () => {
  const mutated = fc.tuple(fc.constantFrom(...fixtureText), fc.nat(), fc.nat(200), hostileString('= []\n,()NodeName=JobId=State=Reason=NodeList=n[1-', 20))
    .map(([text, at, cut, ins]) => { const i = at % (text.length + 1); return text.slice(0, i) + ins + text.slice(i + cut); });
  fc.assert(fc.property(fc.oneof(mutated, hostileString('=\n NodeName=JobId=State=', 50)), (text) => {
    for (const parse of [parseNodes, parseJobs, (s: string) => parseKeyValues(s), (s: string) => parseNodeState(s)]) {
      const e = caught(() => parse(text));
      if (e !== undefined && !(e instanceof SymError && e.code.startsWith('ESYM_'))) throw e;
    }
  }), fuzzParams());
});

// ---------- SLURM_* environment ----------
t.test('slurm env: a generated allocation reads back', async () => {
  fc.assert(fc.property(
    fc.integer({ min: 1, max: 1e6 }), fc.uniqueArray(nodeName, { minLength: 1, maxLength: 12 }), fc.integer({ min: 1, max: 64 }),
    (id, nodes, tpn) => {
      const counts = nodes.map((_, i) => tpn + (i % 2));
      const compressed: string[] = [];
      for (let i = 0; i < counts.length;) {
        let j = i;
        while (j < counts.length && counts[j] === counts[i]) j++;
        compressed.push(j - i > 1 ? `${counts[i]}(x${j - i})` : String(counts[i]));
        i = j;
      }
      const a = parseSlurmEnv({
        SLURM_JOB_ID: String(id), SLURM_JOB_NODELIST: compressHostlist(nodes), SLURM_NNODES: String(nodes.length),
        SLURM_TASKS_PER_NODE: compressed.join(','),
      });
      if (a.jobId !== String(id) || JSON.stringify(a.nodeList) !== JSON.stringify(nodes) || JSON.stringify(a.tasksPerNode) !== JSON.stringify(counts)) {
        throw new Error(JSON.stringify(a));
      }
    },
  ), fuzzParams());
});

t.test('slurm env: hostile variables give ESYM_ errors only, and counts stay bounded', async () => {
  const v = fc.oneof(hostileString('0123456789(x),n[]-', 24), fc.constantFrom('1(x1000000),1(x1000000),1(x1000000)', '1(x999999999999)', '99999999999999999999999'));
  fc.assert(fc.property(
    fc.record({
      SLURM_JOB_ID: fc.oneof(fc.constant('42'), v), SLURM_JOB_NODELIST: fc.oneof(fc.constant('n[1-2]'), v), SLURM_NNODES: fc.option(v, { nil: undefined }),
      SLURM_NTASKS: fc.option(v, { nil: undefined }), SLURM_NTASKS_PER_NODE: fc.option(v, { nil: undefined }),
      SLURM_TASKS_PER_NODE: fc.option(v, { nil: undefined }), SLURM_CPUS_PER_TASK: fc.option(v, { nil: undefined }),
    }, { requiredKeys: ['SLURM_JOB_ID', 'SLURM_JOB_NODELIST'] }),
    (env) => {
      const e = caught(() => parseSlurmEnv(env));
      if (e !== undefined && !(e instanceof SymError && e.code.startsWith('ESYM_'))) throw e;
    },
  ), fuzzParams(0.5));
});
