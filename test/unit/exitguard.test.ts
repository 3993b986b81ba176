// symrun exits when its work is done, even if a handle was left open (regression: `symrun recover`
// hung forever on a TCP connection to a removed namespace). Real child processes run the guard.
import t from 'tap';
import path from 'node:path';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const guard = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../launcher/src/util/exitguard.js');

function runScript(body: string): Promise<{ code: number | null; stderr: string; ms: number }> {
  const src = `import { exitWhenDone } from ${JSON.stringify(guard)};\nimport net from 'node:net';\n${body}`;
  const t0 = Date.now();
  return new Promise((resolve) => {
    execFile(process.execPath, ['--input-type=module', '-e', src], { timeout: 20_000 }, (err, _out, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : null) : 0, stderr, ms: Date.now() - t0 });
    });
  });
}

t.test('a left-open connection: exits with the status after the grace, naming the connection', async (t) => {
  const r = await runScript(`
    const srv = net.createServer((s) => s.on('error', () => {}));
    srv.listen(0, '127.0.0.1', () => {
      const c = net.createConnection({ port: srv.address().port, host: '127.0.0.1' });
      c.on('connect', () => exitWhenDone(7, 300, (l) => process.stderr.write(l + '\\n')));
    });`);
  t.equal(r.code, 7, 'the status given, not a hang (execFile would time out after 20 s)');
  t.match(r.stderr, /warning: .*TCP connection 127\.0\.0\.1:\d+ -> 127\.0\.0\.1:\d+/, 'the connection is named');
  t.match(r.stderr, /server listening on 127\.0\.0\.1:\d+/, 'and the server');
  t.match(r.stderr, /exiting anyway \(status 7\)/);
});

t.test('nothing left open: exits by itself with the status, no warning', async (t) => {
  const r = await runScript(`exitWhenDone(3, 10000, (l) => process.stderr.write(l + '\\n'));`);
  t.equal(r.code, 3);
  t.equal(r.stderr, '');
  t.ok(r.ms < 10_000, 'did not wait for the grace');
});
