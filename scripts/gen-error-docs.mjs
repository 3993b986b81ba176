// Writes docs/errors.md from the error-code registry (launcher/src/error-codes.ts, compiled in dist/).
// Run after adding a code: `npm run build && node scripts/gen-error-docs.mjs` (test/unit/error-codes.test.ts checks it).
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { ERROR_CODES } = await import(path.join(repo, 'dist', 'launcher', 'src', 'error-codes.js'));
const EXIT = { usage: 2, environment: 3, runtime: 4, notMoved: 5, notFound: 127 };
let s = `# Error codes

Every error symrun reports carries a stable code (\`ESYM_*\`), a message naming what was wrong, and
usually the field or option, the value and a fix. With \`--json\` the error is printed as
\`{"error": {"code", "message", "field", "value", "fix"}}\` on stderr. The codes are registered in
\`launcher/src/error-codes.ts\`; this page is generated from it (\`node scripts/gen-error-docs.mjs\`) and
\`test/unit/error-codes.test.ts\` checks the two agree.

Exit status of symrun when the error ends it, unless the error says otherwise (e.g. a usage error
found by a component that is usually a runtime one): 2 bad usage or configuration, 3 a missing part
of the environment, 4 a failure of symrun itself, 5 an operation rolled back (nothing changed),
127 program not found. The application's own exit status is passed through unchanged.

| code | exit | means |
| --- | --- | --- |
`;
for (const [c, v] of Object.entries(ERROR_CODES).sort(([a], [b]) => a.localeCompare(b))) s += `| \`${c}\` | ${EXIT[v.exit]} | ${v.means.replace(/\|/g, '\\|')} |\n`;
fs.writeFileSync(path.join(repo, 'docs', 'errors.md'), s);
console.log(`docs/errors.md: ${Object.keys(ERROR_CODES).length} codes`);
