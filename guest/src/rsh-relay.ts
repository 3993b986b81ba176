// The rsh relay (mpirun's plm_rsh_agent): symrun-rsh in the guest connects to a unix socket here; the
// request travels to the host as a sequenced `rsh` frame, and the target's output and exit come back.
import fs from 'node:fs';
import net from 'node:net';
import { LineDecoder } from '../protocol/index.js';
import type { SeqFrame } from './channel.js';

export class RshRelay {
  private readonly clients = new Map<string, net.Socket>();
  private counter = 0;

  constructor(private readonly sock: string, private readonly sendSeq: (f: SeqFrame) => void) {}

  /** listen on the socket (mode 0600; the guest is the job's, but only root runs ranks there) */
  start(): net.Server {
    fs.mkdirSync(this.sock.replace(/\/[^/]+$/, ''), { recursive: true });
    try { fs.unlinkSync(this.sock); } catch { /* none */ }
    const srv = net.createServer((sock) => {
      const dec = new LineDecoder(1024 * 1024);
      let rid: string | undefined;
      sock.on('data', (d) => {
        let lines: string[];
        try { lines = dec.push(d); } catch { sock.destroy(); return; }
        for (const l of lines) {
          if (rid) continue;
          try {
            const req = JSON.parse(l) as { host: string; argv: string[] };
            rid = `r${process.pid}-${++this.counter}`;
            this.clients.set(rid, sock);
            this.sendSeq({ t: 'rsh', rid, host: String(req.host), argv: req.argv.map(String) });
          } catch {
            sock.end(JSON.stringify({ code: 255, error: 'bad request' }) + '\n');
          }
        }
      });
      sock.on('close', () => { if (rid) this.clients.delete(rid); });
      sock.on('error', () => {});
    });
    srv.listen(this.sock, () => fs.chmodSync(this.sock, 0o600));
    return srv;
  }

  /** output of the remote command for client rid */
  out(rid: string, fd: number, data: string): void {
    this.clients.get(rid)?.write(JSON.stringify({ fd, data }) + '\n');
  }

  /** the remote command ended: its status to the client, which then exits */
  exit(rid: string, code: number): void {
    const sock = this.clients.get(rid);
    this.clients.delete(rid);
    sock?.end(JSON.stringify({ code }) + '\n');
  }
}
