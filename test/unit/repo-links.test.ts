// The repository explains itself: no comment, doc or README points outside it (a clone has nothing
// beside it), and every repository path a file names (docs/<page>.md, launcher/src/<module>.ts, a markdown link)
// exists (tracked files and new ones git does not ignore). docs/architecture.md is the map; docs/lab-notes.md
// holds the measured facts the code relies on.
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { repoRoot } from '../../launcher/src/defaults.js';

const root = repoRoot();
const files = execFileSync('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], { cwd: root, encoding: 'utf8' }).split('\0').filter(Boolean)
  .filter((f) => !/(^|\/)package-lock\.json$/.test(f) && fs.existsSync(path.join(root, f)));
const text = new Map<string, string>();
for (const f of files) {
  const buf = fs.readFileSync(path.join(root, f));
  if (!buf.includes(0)) text.set(f, buf.toString('utf8')); // text files only
}

t.test('nothing points outside the repository', async (t) => {
  // spelled in pieces so that this file does not match itself
  const outside = [['..', '/shared'].join(''), ['ARCHITECTURE', '.md'].join(''), ['LAB', '-NOTES'].join('')];
  const hits: string[] = [];
  for (const [f, s] of text) {
    s.split('\n').forEach((line, i) => { if (outside.some((o) => line.includes(o))) hits.push(`${f}:${i + 1}: ${line.trim()}`); });
  }
  t.same(hits, [], 'write the fact into the comment or into docs/ (docs/architecture.md, docs/lab-notes.md) instead');
  t.ok(text.has('docs/architecture.md') && text.has('docs/lab-notes.md'), 'the map and the lab notes are in the repository');
  t.match(text.get('README.md'), /## How it works \(docs\/architecture\.md/, 'README\'s "How it works" points inside the repository');
});

t.test('every repository path a file names exists', async (t) => {
  const missing: string[] = [];
  // a path from the top of the repository with a file extension (not dist/… and not .js: compiled names)
  const repoPath = /(?<![\w./-])((?:launcher|guest|test|bench|docs|slurm-plugins|scripts|examples)\/[\w./-]*\.(?:ts|md|cjs|sh|json|txt|yaml|service))\b/g;
  for (const [f, s] of text) {
    for (const m of s.matchAll(repoPath)) {
      if (!fs.existsSync(path.join(root, m[1]!))) missing.push(`${f}: ${m[1]}`);
    }
    if (!f.endsWith('.md')) continue;
    // markdown links, relative to the file
    for (const m of s.matchAll(/\]\(([^)\s#]+)(#[^)]*)?\)/g)) {
      const target = m[1]!;
      if (/^[a-z]+:/i.test(target)) continue; // http:, mailto:
      if (!fs.existsSync(path.join(root, path.dirname(f), target))) missing.push(`${f}: (${target})`);
    }
  }
  t.same([...new Set(missing)], [], 'fix the reference or the path');
});
