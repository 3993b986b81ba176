// A free TCP port on an address (for migration listeners). QEMU 7.2 cannot report the port it
// bound for `tcp:IP:0`, so the host agent picks one; the window between close and QEMU's bind is tiny
// and a clash surfaces as a migrate-incoming error (the migration then rolls back).
import net from 'node:net';

export function freePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, host, () => {
      const a = srv.address();
      const port = typeof a === 'object' && a ? a.port : 0;
      srv.close(() => (port ? resolve(port) : reject(new Error(`no free port on ${host}`))));
    });
  });
}
