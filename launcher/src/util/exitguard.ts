// A command line program must end when its work is done. Node's process stays alive while any handle
// (a socket, a server, a child process, a timer) is open; one that nobody closes (e.g. a connection to
// a peer whose network namespace was removed: no FIN ever comes) would make symrun hang forever after
// the job ended. exitWhenDone() lets the process end by itself if it can, and otherwise, after a grace,
// names what still held it open (as a warning) and exits with the command's status anyway.
import net from 'node:net';
import { ChildProcess } from 'node:child_process';

/** What an open handle is, in words (sockets with their addresses, children with their pid). */
export function describeHandle(h: unknown): string {
  if (h instanceof net.Socket) {
    const local = h.localAddress ? `${h.localAddress}:${h.localPort}` : 'unix';
    return h.remoteAddress ? `TCP connection ${local} -> ${h.remoteAddress}:${h.remotePort}` : `socket (${local})`;
  }
  if (h instanceof net.Server) {
    const a = h.address();
    return `server listening on ${typeof a === 'string' ? a : a ? `${a.address}:${a.port}` : '?'}`;
  }
  if (h instanceof ChildProcess) return `child process ${h.pid} (${h.spawnfile})`;
  return (h as { constructor?: { name?: string } })?.constructor?.name ?? typeof h;
}

/** Handles that keep the process alive, except its own stdio. */
export function openHandles(): string[] {
  const get = (process as unknown as { _getActiveHandles?: () => unknown[] })._getActiveHandles;
  const std = new Set<unknown>([process.stdin, process.stdout, process.stderr]);
  if (typeof get === 'function') {
    return get.call(process)
      .filter((h) => !std.has(h) && (h as { hasRef?: () => boolean }).hasRef?.() !== false)
      .map(describeHandle);
  }
  return process.getActiveResourcesInfo().filter((r) => r !== 'TTYWrap' && r !== 'Timeout');
}

/**
 * Set the exit status and let the process end; if something still holds it open after `graceMs`,
 * say what (through `warn`), destroy it by exiting. The timer itself does not keep the process alive.
 */
export function exitWhenDone(code: number, graceMs: number, warn: (line: string) => void): void {
  process.exitCode = code;
  const t = setTimeout(() => {
    const left = openHandles();
    warn(`symrun: warning: ${left.length ? left.join('; ') : 'an open handle'} still held symrun open ${graceMs} ms after it was done; exiting anyway (status ${code})`);
    process.exit(code);
  }, graceMs);
  t.unref();
}
