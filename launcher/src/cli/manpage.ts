// The man pages (man symrun, man symrun-COMMAND), rendered from the same commander tree `--help` prints
// (main.ts buildProgram): every visible command, its usage, description and options, and the text the
// command adds after its help (addHelpText: paragraphs, an "Examples:" block, an "Exit status:"
// paragraph). No I/O: scripts/gen-manpage.mjs writes the pages into docs/man/, scripts/setup installs
// them, test/unit/manpage.test.ts checks that they list every option --help lists and that groff reads
// them without a warning.
//
// roff: text is escaped (backslash as \e, a leading . or ' guarded with \&, the dashes of options as
// \- so they print and copy as ASCII minus); paragraphs are filled by man itself.
import type { Command, Help, Option } from 'commander';

export interface ManOption {
  /** as --help prints it: '-C, --config <file>' */
  term: string;
  description: string;
}

export interface ManExample {
  command: string;
  description: string;
}

/** One command as its help shows it. */
export interface CommandDoc {
  /** ['symrun', 'node', 'devices', 'claim'] */
  path: string[];
  /** the Usage: line without 'Usage: ' */
  usage: string;
  description: string;
  /** visible options, -h/--help included */
  options: ManOption[];
  /** the paragraphs of the text added before and after the help */
  paragraphs: string[];
  examples: ManExample[];
  /** the "Exit status: ..." paragraph without its label */
  exitStatus?: string;
  subcommands: CommandDoc[];
}

export interface ManPage {
  /** file name: symrun.1, symrun-migrate.1 */
  file: string;
  text: string;
}

export interface ManOptions {
  /** default: the program's --version */
  version?: string;
  /** the command that runs when none is named (symrun's `run`, hidden in --help) */
  defaultCommand: string;
  /** the manual's section title (centre of the header) */
  manual?: string;
  /** further reading in SEE ALSO, e.g. 'docs/config.md in the symrun source' */
  seeAlso?: string[];
}

/** The text a command adds around its help (addHelpText 'before' and 'after'), as --help prints it. */
export function helpTexts(cmd: Command): string {
  let out = '';
  const ctx = { error: false, command: cmd, write: (s: string) => { out += s; } };
  // a Command is an EventEmitter (addHelpText adds listeners of these events); its typings do not say so
  const events = cmd as unknown as { emit(event: string, context: typeof ctx): boolean };
  events.emit('beforeHelp', ctx);
  events.emit('afterHelp', ctx);
  return out;
}

/** Split help text into paragraphs, an examples block and an exit-status paragraph. */
export function parseHelpText(text: string): Pick<CommandDoc, 'paragraphs' | 'examples' | 'exitStatus'> {
  const lines = text.replace(/\s+$/, '').split('\n');
  const paragraphs: string[] = [];
  const examples: ManExample[] = [];
  let exitStatus: string | undefined;
  let i = 0;
  const blockEnd = (l: string | undefined) => l === undefined || l.trim() === '' || /^(Examples:\s*$|Exit status:)/.test(l);
  while (i < lines.length) {
    const l = lines[i]!;
    if (l.trim() === '') { i++; continue; }
    if (/^Examples:\s*$/.test(l)) {
      i++;
      let descCol = 0;
      for (; i < lines.length && lines[i]!.trim() !== ''; i++) {
        const e = lines[i]!;
        const indent = e.length - e.trimStart().length;
        const last = examples[examples.length - 1];
        // a line indented past the command column continues the description above
        if (last && descCol > 0 && indent >= descCol - 2) { last.description = `${last.description} ${e.trim()}`.trim(); continue; }
        const m = /^(\s*)(\S.*?)(?:\s{2,}(\S.*))?$/.exec(e)!;
        examples.push({ command: m[2]!, description: m[3] ?? '' });
        if (m[3]) descCol = e.indexOf(m[3], m[1]!.length + m[2]!.length);
      }
      continue;
    }
    const start = i;
    i++;
    while (!blockEnd(lines[i])) i++;
    const para = lines.slice(start, i).map((x) => x.trim()).join(' ');
    const exit = /^Exit status:\s*(.*)$/.exec(para);
    if (exit) exitStatus = exit[1]!;
    else paragraphs.push(para);
  }
  return { paragraphs, examples, exitStatus };
}

/** What --help shows for `cmd` and (recursively) its visible subcommands. */
export function describeCommand(cmd: Command, parents: readonly string[] = []): CommandDoc {
  // (the parents are passed down: commander's own help command is listed but has no .parent)
  const help: Help = cmd.createHelp();
  const path = [...parents, cmd.name()];
  const options = help.visibleOptions(cmd).map((o: Option) => ({ term: help.optionTerm(o), description: help.optionDescription(o) }));
  return {
    path,
    usage: `${path.join(' ')} ${cmd.usage()}`,
    description: help.commandDescription(cmd),
    options,
    ...parseHelpText(helpTexts(cmd)),
    subcommands: help.visibleCommands(cmd).map((c) => describeCommand(c, path)),
  };
}

// ---- roff ----

/** Escape text for roff; the dashes that start an option (-x, --long) become \- . */
export function roffEscape(s: string): string {
  return s
    .replace(/\\/g, '\\e')
    .replace(/(?<=^|[\s([{`'"=|,/])-[-\w]*/g, (opt) => opt.replace(/-/g, '\\-'))
    .replace(/^([.'])/gm, '\\&$1');
}

/** '-C, --config <file>' -> \fB\-C\fR, \fB\-\-config\fR \fIfile\fR */
export function roffTerm(term: string): string {
  return term
    .split(/(\s+|,\s*)/)
    .map((tok) => {
      if (/^\s*$|^,\s*$/.test(tok)) return tok;
      if (/^-/.test(tok)) return `\\fB${roffEscape(tok)}\\fR`;
      const arg = /^([<[])(.*)([>\]])$/.exec(tok);
      if (arg) return `${arg[1] === '[' ? '[' : ''}\\fI${roffEscape(arg[2]!)}\\fR${arg[1] === '[' ? ']' : ''}`;
      return roffEscape(tok);
    })
    .join('');
}

/** A usage line: the command words bold, <arg> and UPPERCASE words italic, the rest as is. */
export function roffUsage(usage: string, words: number): string {
  const toks = usage.split(/\s+/).filter(Boolean);
  return toks
    .map((tok, i) => {
      if (i < words) return `\\fB${roffEscape(tok)}\\fR`;
      const arg = /^([<[]?)([A-Za-z.]+(?:\.\.\.)?)([>\]]?)$/.exec(tok);
      if (arg && (arg[1] === '<' || /^[A-Z][A-Z.]*$/.test(arg[2]!)) && arg[2] !== 'options') {
        return `${arg[1] === '[' ? '[' : ''}\\fI${roffEscape(arg[2]!)}\\fR${arg[3] === ']' ? ']' : ''}`;
      }
      return roffEscape(tok);
    })
    .join(' ');
}

function optionList(opts: ManOption[]): string[] {
  const out: string[] = [];
  for (const o of opts) out.push('.TP', roffTerm(o.term), roffEscape(o.description || '(no description)'));
  return out;
}

function exampleList(ex: ManExample[]): string[] {
  const out: string[] = [];
  for (const e of ex) {
    out.push('.TP', `\\fB${roffEscape(e.command)}\\fR`);
    if (e.description) out.push(roffEscape(e.description));
    else out.push('\\&');
  }
  return out;
}

function paras(ps: string[]): string[] {
  return ps.flatMap((p) => ['.PP', roffEscape(p)]);
}

/** commander's own `help [command]` (every command with subcommands has one): one sentence says it */
const isHelp = (d: CommandDoc) => d.path[d.path.length - 1] === 'help' && d.description === 'display help for command';
const notHelp = (o: ManOption) => !/(^|\s|,)--help\b/.test(o.term);

/** A command inside a page: .SS with its usage, then description, options, text, examples, exit status. */
function commandSection(d: CommandDoc): string[] {
  const out = [`.SS "${roffUsage(d.usage, d.path.length)}"`];
  if (d.description) out.push(roffEscape(d.description));
  const opts = d.options.filter(notHelp);
  if (opts.length) out.push('.RS 4', ...optionList(opts), '.RE');
  out.push(...paras(d.paragraphs));
  if (d.examples.length) out.push('.PP', 'Examples:', '.RS 4', ...exampleList(d.examples), '.RE');
  if (d.exitStatus) out.push('.PP', `\\fIExit status:\\fR ${roffEscape(d.exitStatus)}`);
  for (const s of d.subcommands) if (!isHelp(s)) out.push(...commandSection(s));
  return out;
}

function header(name: string, opts: ManOptions): string[] {
  return [
    `.\\" Generated by scripts/gen-manpage.mjs from symrun's command definitions (launcher/src/main.ts, launcher/src/cli/); do not edit.`,
    `.TH ${name.toUpperCase().replace(/-/g, '\\-')} 1 "" "symrun ${opts.version}" "${opts.manual ?? 'User Commands'}"`,
    '.ad l', // left-aligned: long command lines are not stretched
    '.nh', // nor option names and paths hyphenated
  ];
}

function pageName(d: CommandDoc): string {
  return d.path.join('-');
}

/** man symrun: the run options, every command with its options, examples, exit status. */
export function renderMainPage(prog: CommandDoc, opts: ManOptions): string {
  const run = prog.subcommands.find((s) => s.path[1] === opts.defaultCommand);
  const commands = prog.subcommands.filter((s) => s !== run);
  const out = [...header('symrun', opts), '.SH NAME', `symrun \\- ${roffEscape(prog.description)}`, '.SH SYNOPSIS'];
  out.push(roffUsage(prog.usage, 1), '.br', `\\fBsymrun\\fR \\fICOMMAND\\fR [options] [\\fIARGS\\fR]`);
  out.push('.SH DESCRIPTION', roffEscape(`${prog.description}.`));
  if (run) {
    out.push('.PP', `Without a \\fICOMMAND\\fR, symrun runs \\fIPROGRAM\\fR as an MPI job with the options below (the \\fB${opts.defaultCommand}\\fR command, which \\fB\\-\\-help\\fR does not list: ${roffUsage(run.usage, 2)} is the same). Everything after \\fB\\-\\-\\fR is the program and its arguments.`);
  }
  out.push(...paras(prog.paragraphs));
  out.push('.SH OPTIONS', ...optionList([...(run?.options.filter(notHelp) ?? []), ...prog.options]));
  if (run) out.push(...paras(run.paragraphs));
  out.push('.SH COMMANDS', 'Every command takes \\fB\\-h\\fR, \\fB\\-\\-help\\fR (its own help, as below); \\fBsymrun help\\fR [\\fICOMMAND\\fR] prints the same.');
  for (const c of commands) if (!isHelp(c)) out.push(...commandSection(c));
  if (prog.examples.length) out.push('.SH EXAMPLES', ...exampleList(prog.examples));
  if (prog.exitStatus) out.push('.SH "EXIT STATUS"', roffEscape(prog.exitStatus));
  const subPages = [...(run ? [run] : []), ...commands.filter((c) => !isHelp(c))].map((c) => `\\fB${roffEscape(pageName(c))}\\fR(1)`);
  out.push('.SH "SEE ALSO"', subPages.join(', ') + '.');
  if (opts.seeAlso?.length) out.push('.PP', roffEscape(opts.seeAlso.join(' ')));
  return out.join('\n') + '\n';
}

/** man symrun-COMMAND: one command (and its subcommands) on its own page. */
export function renderCommandPage(d: CommandDoc, opts: ManOptions): string {
  const name = pageName(d);
  const out = [...header(name, opts), '.SH NAME', `${roffEscape(name)} \\- ${roffEscape(d.description || d.usage)}`];
  out.push('.SH SYNOPSIS', roffUsage(d.usage, d.path.length));
  for (const s of d.subcommands) if (!isHelp(s)) out.push('.br', roffUsage(s.usage, s.path.length));
  out.push('.SH DESCRIPTION', roffEscape(d.description ? `${d.description}.` : d.usage), ...paras(d.paragraphs));
  const own = d.options.filter(notHelp);
  out.push('.SH OPTIONS', ...optionList(own.length ? [...own, ...d.options.filter((o) => !notHelp(o))] : d.options));
  if (d.subcommands.length) {
    out.push('.SH COMMANDS');
    for (const s of d.subcommands) if (!isHelp(s)) out.push(...commandSection(s));
  }
  if (d.examples.length) out.push('.SH EXAMPLES', ...exampleList(d.examples));
  if (d.exitStatus) out.push('.SH "EXIT STATUS"', roffEscape(d.exitStatus));
  out.push('.SH "SEE ALSO"', '\\fBsymrun\\fR(1)');
  return out.join('\n') + '\n';
}

/** symrun's pages: `run` is the default command; SEE ALSO names the documentation that explains more. */
export const MAN_OPTIONS: ManOptions = {
  defaultCommand: 'run',
  seeAlso: [
    'In the symrun source: README.md, docs/config.md (symrun.yaml), docs/placement.md (-N, -n, -c), docs/mpi.md (Open MPI and MPICH),',
    'docs/migration.md, docs/checkpoint.md, docs/restart.md, docs/site-install.md (Slurm), docs/passthrough.md, docs/errors.md (error codes).',
  ],
};

/** Every page: symrun.1 and one symrun-COMMAND.1 per command (the default one included, help not). */
export function renderManPages(program: Command, opts: ManOptions): ManPage[] {
  opts = { ...opts, version: opts.version ?? program.version() ?? '' };
  const prog = describeCommand(program);
  // the default command is hidden in --help but has its own help (symrun run --help) and page
  const runCmd = program.commands.find((c) => c.name() === opts.defaultCommand);
  if (runCmd && !prog.subcommands.some((s) => s.path[1] === opts.defaultCommand)) prog.subcommands.unshift(describeCommand(runCmd, prog.path));
  const pages: ManPage[] = [{ file: 'symrun.1', text: renderMainPage(prog, opts) }];
  for (const c of prog.subcommands) if (!isHelp(c)) pages.push({ file: `${pageName(c)}.1`, text: renderCommandPage(c, opts) });
  return pages;
}
