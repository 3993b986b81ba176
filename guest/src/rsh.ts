// mpirun's plm_rsh_agent inside the guest: `symrun-rsh HOST CMD...` behaves like `ssh HOST CMD...`
// without sshd: the request goes to the local agent, which relays it over the host to the agent of the
// target guest. stdout/stderr and the exit status come back the same way.
import net from 'node:net';

const sockPath = process.env.SYMRUN_RSH_SOCK || '/run/symrun/rsh.sock';
const args = process.argv.slice(2);
// tolerate ssh-style options mpirun may add (-x, -T, -o X, -p N, -l USER)
while (args.length && args[0]!.startsWith('-')) {
  const o = args.shift()!;
  if (['-o', '-p', '-l', '-i', '-F'].includes(o)) args.shift();
}
const host = args.shift();
if (!host || args.length === 0) {
  process.stderr.write('usage: symrun-rsh HOST COMMAND...\n');
  process.exit(255);
}
const sock = net.createConnection(sockPath);
sock.on('connect', () => sock.write(JSON.stringify({ host, argv: args }) + '\n'));
let buf = '';
let code = 255;
sock.on('data', (d) => {
  buf += d.toString('utf8');
  let nl: number;
  while ((nl = buf.indexOf('\n')) >= 0) {
    const line = buf.slice(0, nl);
    buf = buf.slice(nl + 1);
    try {
      const m = JSON.parse(line) as { fd?: 1 | 2; data?: string; code?: number; error?: string };
      if (m.data !== undefined) (m.fd === 2 ? process.stderr : process.stdout).write(Buffer.from(m.data, 'base64'));
      if (m.error) process.stderr.write(`symrun-rsh: ${m.error}\n`);
      if (m.code !== undefined) code = m.code;
    } catch {
      /* ignore */
    }
  }
});
sock.on('error', (e) => {
  process.stderr.write(`symrun-rsh: cannot reach the symrun agent at ${sockPath}: ${e.message}\n`);
  process.exit(255);
});
sock.on('close', () => process.exit(code));
for (const s of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) process.on(s, () => { sock.destroy(); process.exit(128 + 15); });
