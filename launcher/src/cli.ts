// Entry point of the `symrun` command (bin/symrun runs this file).
import { main } from './main.js';

// `symrun ... | head`: a closed pipe is not an error
for (const s of [process.stdout, process.stderr]) s.on('error', (e: NodeJS.ErrnoException) => { if (e.code === 'EPIPE') process.exit(process.exitCode ?? 0); });
process.exitCode = await main(process.argv.slice(2));
