// The man pages (docs/man/*.1, installed by scripts/setup) against what `--help` really prints: every
// command --help lists has a section, every option every command's --help lists is on its page and in
// that command's section of symrun.1, the committed pages are what scripts/gen-manpage.mjs writes now,
// and groff formats them without a warning (-ww). The --help side is read from main()'s output, not
// from the tree the pages are rendered from, so the two cannot drift apart unnoticed.
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { main, buildProgram } from '../../launcher/src/main.js';
import { repoRoot } from '../../launcher/src/defaults.js';
import { renderManPages, parseHelpText, roffEscape, roffTerm, MAN_OPTIONS } from '../../launcher/src/cli/manpage.js';

const MAN_DIR = path.join(repoRoot(), 'docs', 'man');

/** `symrun ARGS --help` as a user sees it (stdout). */
async function helpOf(args: string[]): Promise<string> {
  const out: string[] = [];
  const w = process.stdout.write.bind(process.stdout);
  (process.stdout as { write: unknown }).write = (s: string) => { out.push(String(s)); return true; };
  let code: number;
  try { code = await main([...args, '--help']); } finally { (process.stdout as { write: unknown }).write = w; }
  if (code !== 0) throw new Error(`symrun ${args.join(' ')} --help: exit ${code}`);
  return out.join('');
}

/** The terms of a help section ('Options:' or 'Commands:'): the text before the description column. */
function helpItems(help: string, heading: string): string[] {
  const lines = help.split('\n');
  const at = lines.indexOf(`${heading}:`);
  if (at < 0) return [];
  const items: string[] = [];
  for (const l of lines.slice(at + 1)) {
    if (!l.startsWith('  ')) break;
    if (/^ {3}/.test(l)) continue; // a wrapped description
    items.push(l.trim().split(/\s{2,}/)[0]!);
  }
  return items;
}

/** Plain text of roff source: fonts dropped, escapes resolved (enough to find option terms in it). */
function deroff(s: string): string {
  return s.replace(/\\f[BIRP]/g, '').replace(/\\-/g, '-').replace(/\\&/g, '').replace(/\\e/g, '\\').replace(/\\ /g, ' ');
}

/** The plain text of an option term as a page shows it: -C, --config <file> -> -C, --config file */
const shown = (term: string) => term.replace(/<([^>]*)>/g, '$1');

interface Cmd { path: string[]; options: string[] }

/** Every command reachable from `symrun --help` (and `symrun run --help`), with the options its --help lists. */
async function walk(p: string[] = []): Promise<Cmd[]> {
  const help = await helpOf(p);
  const here: Cmd = { path: p, options: helpItems(help, 'Options') };
  const subs = helpItems(help, 'Commands').map((c) => c.split(/\s/)[0]!).filter((c) => c !== 'help');
  const out = [here];
  for (const s of subs) out.push(...(await walk([...p, s])));
  return out;
}

const pages = new Map(fs.readdirSync(MAN_DIR).filter((f) => f.endsWith('.1')).map((f) => [f, fs.readFileSync(path.join(MAN_DIR, f), 'utf8')]));
const main1 = pages.get('symrun.1') ?? '';

/** The .SS section of symrun.1 for a command (its usage line starts `symrun A B`), up to the next .SS/.SH. */
function sectionOf(cmdPath: string[]): string | undefined {
  const lines = main1.split('\n');
  const head = `symrun ${cmdPath.join(' ')} `;
  const i = lines.findIndex((l) => l.startsWith('.SS ') && deroff(l.slice(4)).replace(/^"|"$/g, '').startsWith(head));
  if (i < 0) return undefined;
  let j = i + 1;
  while (j < lines.length && !/^\.S[SH] /.test(lines[j]!)) j++;
  return deroff(lines.slice(i, j).join('\n'));
}

t.test('the committed pages are what scripts/gen-manpage.mjs writes from the command definitions', async (t) => {
  const fresh = renderManPages(buildProgram(), MAN_OPTIONS);
  t.same([...pages.keys()].sort(), fresh.map((p) => p.file).sort(), 'the same files (run: npm run build && node scripts/gen-manpage.mjs)');
  for (const p of fresh) t.equal(pages.get(p.file), p.text, `docs/man/${p.file} is current (run: npm run build && node scripts/gen-manpage.mjs)`);
});

t.test('every option --help lists is on the man pages, in its command\'s section', async (t) => {
  const cmds = await walk();
  cmds.push(...(await walk(['run']))); // the default command: --help does not list it, its own --help does
  t.ok(cmds.length >= 20, `${cmds.length} commands walked`);
  let checked = 0;
  for (const c of cmds) {
    const name = c.path.join(' ') || '(symrun)';
    if (c.path.length === 0 || c.path[0] === 'run') {
      // symrun's own options and the run options: the OPTIONS section of symrun.1
      const opts = deroff(main1.split('\n.SH OPTIONS\n')[1]?.split('\n.SH ')[0] ?? '');
      for (const o of c.options) { t.ok(opts.includes(shown(o)), `symrun.1 OPTIONS lists ${o} (${name})`); checked++; }
      if (c.path[0] === 'run') {
        const runPage = deroff(pages.get('symrun-run.1') ?? '');
        for (const o of c.options) t.ok(runPage.includes(shown(o)), `symrun-run.1 lists ${o}`);
      }
      continue;
    }
    const sec = sectionOf(c.path);
    t.ok(sec, `symrun.1 has a section for symrun ${name}`);
    const sub = deroff(pages.get(`symrun-${c.path[0]}.1`) ?? '');
    t.ok(sub, `symrun-${c.path[0]}.1 exists`);
    for (const o of c.options) {
      if (/--help\b/.test(o)) continue; // every command has it; the COMMANDS section says so once
      t.ok(sec?.includes(shown(o)), `symrun.1, section symrun ${name}: ${o}`);
      t.ok(sub.includes(shown(o)), `symrun-${c.path[0]}.1: ${o}`);
      checked++;
    }
  }
  t.ok(checked >= 80, `${checked} options checked`);
  t.match(deroff(main1), /symrun help \[COMMAND\] prints the same/, 'the help command is mentioned');
});

t.test('every page is well-formed roff: header, NAME, SYNOPSIS, no unknown request; groff -ww gives no warning', async (t) => {
  const known = new Set(['TH', 'SH', 'SS', 'PP', 'TP', 'RS', 'RE', 'br', 'ad', 'nh', '\\"']);
  for (const [f, text] of pages) {
    const lines = text.split('\n');
    t.match(lines.find((l) => l.startsWith('.TH ')) ?? '', /^\.TH SYMRUN(\\-[A-Z]+)* 1 /, `${f}: .TH`);
    t.ok(lines.includes('.SH NAME') && lines.includes('.SH SYNOPSIS') && lines.includes('.SH DESCRIPTION'), `${f}: NAME, SYNOPSIS, DESCRIPTION`);
    const name = lines[lines.indexOf('.SH NAME') + 1] ?? '';
    t.match(name, /^[a-z\\-]+ \\- \S/, `${f}: the NAME line is "name \\- what" (whatis/apropos read it)`);
    const bad = lines.filter((l) => /^[.']/.test(l) && !known.has(/^[.'](\S+)/.exec(l)![1]!));
    t.same(bad, [], `${f}: only man macros`);
    t.notOk(lines.some((l) => /\\f[BI][^\\]*$/.test(l)), `${f}: every font change ends on its line`);
  }
  const groff = spawnSync('sh', ['-c', 'command -v groff']).status === 0;
  if (!groff) { t.comment('groff is not installed (scripts/setup installs man-db and groff-base): the structure was checked, not the formatting'); return; }
  for (const f of pages.keys()) {
    const r = spawnSync('groff', ['-man', '-Tutf8', '-ww', '-z', path.join(MAN_DIR, f)], { encoding: 'utf8', env: { ...process.env, LC_ALL: 'C.UTF-8' } });
    t.equal(r.status, 0, `groff ${f}: exit 0`);
    t.equal(r.stderr, '', `groff -ww ${f}: no warning`);
  }
});

t.test('help text parsing: paragraphs, examples (with a description column, continued lines), exit status', async (t) => {
  const p = parseHelpText(`
First paragraph
goes on here.
Exit status: 0 done;
2 bad usage.

Examples:
  symrun a b                   does a
                               and more
  symrun one space between a command and text is part of the command
  symrun c
`);
  t.same(p.paragraphs, ['First paragraph goes on here.']);
  t.equal(p.exitStatus, '0 done; 2 bad usage.');
  t.same(p.examples, [
    { command: 'symrun a b', description: 'does a and more' },
    { command: 'symrun one space between a command and text is part of the command', description: '' },
    { command: 'symrun c', description: '' },
  ]);
});

t.test('roff escaping: backslashes, option dashes, leading dots; terms bold with italic arguments', async (t) => {
  t.equal(roffEscape('a\\b'), 'a\\eb');
  t.equal(roffEscape('use --ntasks-per-node or -c, not a-b'), 'use \\-\\-ntasks\\-per\\-node or \\-c, not a-b');
  t.equal(roffEscape('.hidden\n\'quote'), '\\&.hidden\n\\&\'quote');
  t.equal(roffTerm('-C, --config <file>'), '\\fB\\-C\\fR, \\fB\\-\\-config\\fR \\fIfile\\fR');
  t.equal(roffTerm('--no-wait'), '\\fB\\-\\-no\\-wait\\fR');
});
