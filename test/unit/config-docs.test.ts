import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { Ajv } from 'ajv';
import { CONFIG_SCHEMA } from '../../launcher/src/config/index.js';
import { renderConfigDocs, updateConfigDocs, DOCS_BEGIN, DOCS_END } from '../../launcher/src/config/docs.js';
import { repoRoot } from '../../launcher/src/defaults.js';

const docsFile = path.join(repoRoot(), 'docs', 'config.md');

t.test('docs/config.md holds the current generated key reference', async (t) => {
  const md = fs.readFileSync(docsFile, 'utf8');
  t.ok(md.includes(DOCS_BEGIN) && md.includes(DOCS_END), 'has the markers');
  t.equal(
    updateConfigDocs(md),
    md,
    'out of date: run  npx tsc -p tsconfig.json && node -e "import(\'./dist/launcher/src/config/docs.js\').then(m => m.writeConfigDocs(\'docs/config.md\'))"',
  );
});

t.test('the reference lists every key with type and default', async (t) => {
  const out = renderConfigDocs();
  const keys: string[] = [];
  for (const [k, v] of Object.entries<any>((CONFIG_SCHEMA as any).properties)) {
    if (v.properties) for (const c of Object.keys(v.properties)) keys.push(`${k}.${c}`);
    else keys.push(k);
  }
  t.ok(keys.length >= 24);
  const lines = out.split('\n');
  for (const k of keys) {
    const row = lines.find((l) => l.startsWith(`| \`${k}\` | `));
    const cells = row?.replace(/\\\|/g, '').split('|').slice(1, -1).map((c) => c.trim());
    t.ok(cells && cells.length === 4 && cells.every((c) => c.length > 0), `${k}: key, type, default, meaning`);
  }
});

t.test('CONFIG_SCHEMA is a valid draft-07 schema for a plain ajv (annotations tolerated)', async (t) => {
  const ajv = new Ajv({ strict: false });
  const validate = ajv.compile(CONFIG_SCHEMA as object);
  t.ok(validate({ accel: 'kvm', vm: { memory: '1G' } }));
  t.notOk(validate({ acel: 'kvm' }));
});
