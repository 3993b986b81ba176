// Entry point of the `symrun` command (bin/symrun runs this file).
import { main } from './main.js';
import { DEFAULTS } from './defaults.js';
import { exitWhenDone } from './util/exitguard.js';

// `symrun ... | head`: a closed pipe is not an error
for (const s of [process.stdout, process.stderr]) s.on('error', (e: NodeJS.ErrnoException) => { if (e.code === 'EPIPE') process.exit(process.exitCode ?? 0); });
// done: end now, or (a handle nobody closed) within a bounded time, naming it
exitWhenDone(await main(process.argv.slice(2)), DEFAULTS.teardown.exitGraceMs, (l) => process.stderr.write(`${l}\n`));
