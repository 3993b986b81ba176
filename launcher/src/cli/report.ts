// `symrun report EVENTS.jsonl [-o timeline.svg]`: a job's events (--events FILE) as a timeline SVG and a
// short summary on the terminal. Works on the events of a job that is still running (the file so far).
import fs from 'node:fs';
import type { Command } from 'commander';
import { SymError, EXIT } from '../errors.js';
import { parseEvents, buildTimeline } from '../report/timeline.js';
import { renderSvg } from '../report/svg.js';
import { summarize, summaryText } from '../report/summary.js';

const HELP = `
Rows: the job's phases; one per host (which VM ran there when, Slurm's node events as marks); one per
migration, checkpoint and restart (its phases as bars, its result as a mark). Shaded: the ranks frozen.
Open the SVG in a browser; hover a bar for its phase and duration.

Examples:
  symrun --local 3 --spares 1 --events ev.jsonl -- ./app     (a job that records its events)
  symrun report ev.jsonl                                     writes ev.svg, prints the summary
  symrun report ev.jsonl -o /tmp/job.svg --json              the summary as JSON on stdout

Exit status: 0; 2 if EVENTS cannot be read or holds no event.`;

/** Default output: the events file's name with .svg instead of its extension. */
export function defaultSvgPath(events: string): string {
  return /\.[A-Za-z0-9]+$/.test(events) ? events.replace(/\.[A-Za-z0-9]+$/, '.svg') : `${events}.svg`;
}

export function registerReport(program: Command): void {
  program
    .command('report <events>')
    .description('draw a job\'s events (--events FILE) as a timeline SVG, and summarize them')
    .option('-o, --output <file>', 'where to write the SVG (default: EVENTS with .svg)')
    .option('--json', 'print the summary as JSON')
    .addHelpText('after', HELP)
    .action((events: string, f: { output?: string; json?: boolean }) => {
      let text: string;
      try {
        text = fs.readFileSync(events, 'utf8');
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        throw new SymError('ESYM_REPORT_INPUT', {
          message: `cannot read the events file ${events}: ${code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'it is a directory' : (e as Error).message}`,
          field: 'EVENTS', value: events, fix: 'give the file a job wrote with --events FILE', exitCode: EXIT.usage,
        });
      }
      const { events: evs, skipped } = parseEvents(text);
      if (!evs.length) {
        throw new SymError('ESYM_REPORT_INPUT', {
          message: `${events} holds no symrun event${skipped ? ` (${skipped} line${skipped === 1 ? '' : 's'} that are not events)` : ''}`,
          field: 'EVENTS', value: events, fix: 'give the file a job wrote with --events FILE (JSON lines with ts, op, kind, phase, event)', exitCode: EXIT.usage,
        });
      }
      const tl = buildTimeline(evs, skipped);
      const out = f.output ?? defaultSvgPath(events);
      try {
        fs.writeFileSync(out, renderSvg(tl, `symrun job timeline: ${events}`));
      } catch (e) {
        throw new SymError('ESYM_REPORT_OUTPUT', { message: `cannot write ${out}: ${(e as Error).message}`, field: '--output', value: out, fix: 'pass -o FILE in a directory you can write', exitCode: EXIT.usage });
      }
      const sum = summarize(tl);
      process.stdout.write(f.json ? JSON.stringify({ svg: out, ...sum }, null, 2) + '\n' : summaryText(sum) + `wrote ${out}\n`);
    });
}
