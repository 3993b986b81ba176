// Writes the man pages docs/man/symrun.1 and docs/man/symrun-COMMAND.1 from the command definitions
// (launcher/src/main.ts buildProgram, launcher/src/cli/; compiled in dist/) through
// launcher/src/cli/manpage.ts. Run after changing a command, an option or a help text:
// `npm run build && node scripts/gen-manpage.mjs` (test/unit/manpage.test.ts checks the pages are current;
// scripts/setup installs them into /usr/local/share/man/man1).
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const dist = path.join(repo, 'dist', 'launcher', 'src');
const { buildProgram } = await import(path.join(dist, 'main.js'));
const { renderManPages, MAN_OPTIONS } = await import(path.join(dist, 'cli', 'manpage.js'));
const dir = path.join(repo, 'docs', 'man');
fs.mkdirSync(dir, { recursive: true });
const pages = renderManPages(buildProgram(), MAN_OPTIONS);
const keep = new Set(pages.map((p) => p.file));
for (const f of fs.readdirSync(dir)) if (/\.1$/.test(f) && !keep.has(f)) fs.rmSync(path.join(dir, f)); // a command that is gone
for (const p of pages) fs.writeFileSync(path.join(dir, p.file), p.text);
console.log(`docs/man: ${pages.map((p) => p.file).join(' ')}`);
