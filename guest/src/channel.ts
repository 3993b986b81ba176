// The guest end of the host channel: the virtio-serial port, reopened whenever the host side goes away
// (boot, migration). A host's `sync` starts a session: unacknowledged sequenced frames are replayed, so
// output and exits survive a move. Frames before a sync belong to a stale connection and are dropped.
import fs from 'node:fs';
import { PROTOCOL_VERSION, LineDecoder, parseHostFrame, encodeFrame, ProtocolError, type HostFrame, type GuestFrame, type AgentInfo } from '../protocol/index.js';
import { log } from './util.js';

/** Sequenced frames kept for replay after a reconnect (the oldest go first beyond this). */
const MAX_REPLAY_BYTES = 16 * 1024 * 1024;

type Seqd = Extract<GuestFrame, { seq: number }>;
type DistributiveOmit<T, K extends keyof any> = T extends any ? Omit<T, K> : never;
/** A sequenced frame before the channel numbers it. */
export type SeqFrame = DistributiveOmit<Seqd, 'seq'>;

export class Channel {
  /** port: the virtio-serial device; info: what the agent says of itself in its sync reply */
  constructor(private readonly port: string, private readonly info: () => AgentInfo) {}

  private fd: number | null = null;
  private connected = false; // a host has synced on the current open
  private decoder = new LineDecoder();
  private writeQueue: Buffer[] = [];
  private writing = false;
  private seq = 0;
  private replay: Array<{ seq: number; line: string }> = [];
  private replayBytes = 0;
  onFrame: (f: HostFrame) => void = () => {};

  start(): void {
    this.open();
  }

  private open(): void {
    fs.open(this.port, 'r+', (err, fd) => {
      if (err) {
        setTimeout(() => this.open(), err.code === 'ENOENT' ? 500 : 200);
        return;
      }
      this.fd = fd;
      this.decoder.reset();
      this.readLoop(fd);
    });
  }

  private readLoop(fd: number): void {
    const buf = Buffer.allocUnsafe(64 * 1024);
    const next = (): void => {
      fs.read(fd, buf, 0, buf.length, null, (err, n) => {
        if (err || n === 0) {
          // EOF: no host connected (boot, or the VM just moved). Reopen and wait for a new host.
          if (this.connected) log('host disconnected');
          this.connected = false;
          this.fd = null;
          fs.close(fd, () => setTimeout(() => this.open(), 200));
          return;
        }
        let lines: string[] = [];
        try {
          lines = this.decoder.push(buf.subarray(0, n));
        } catch (e) {
          log(`dropping oversize input: ${(e as Error).message}`);
        }
        for (const line of lines) {
          if (!line.trim()) continue;
          let f: HostFrame;
          try {
            f = parseHostFrame(line);
          } catch (e) {
            if (e instanceof ProtocolError) log(`bad frame from host: ${e.message}`);
            continue;
          }
          try {
            this.handle(f);
          } catch (e) {
            log(`handler failed: ${(e as Error).stack}`);
          }
        }
        next();
      });
    };
    next();
  }

  private handle(f: HostFrame): void {
    if (f.t === 'sync') {
      this.connected = true;
      this.ackUpTo(f.lastSeq);
      this.writeRaw(encodeFrame({ t: 'sync', id: f.id, v: PROTOCOL_VERSION, agent: this.info() }));
      for (const r of this.replay) this.writeRaw(r.line);
      return;
    }
    if (f.t === 'ack') {
      this.ackUpTo(f.seq);
      return;
    }
    if (!this.connected) return; // frames before sync are from a stale connection
    this.onFrame(f);
  }

  private ackUpTo(seq: number): void {
    while (this.replay.length && this.replay[0]!.seq <= seq) {
      this.replayBytes -= this.replay.shift()!.line.length;
    }
  }

  /** Unsequenced frame (responses, pong): only meaningful to the current host. */
  send(f: GuestFrame): void {
    if (this.connected) this.writeRaw(encodeFrame(f));
  }

  /** Sequenced frame: kept until acknowledged, replayed after reconnect. */
  sendSeq(f: SeqFrame): void {
    const seq = ++this.seq;
    const line = encodeFrame({ ...f, seq } as GuestFrame);
    this.replay.push({ seq, line });
    this.replayBytes += line.length;
    while (this.replayBytes > MAX_REPLAY_BYTES && this.replay.length > 1) {
      this.replayBytes -= this.replay.shift()!.line.length;
    }
    if (this.connected) this.writeRaw(line);
  }

  private writeRaw(line: string): void {
    this.writeQueue.push(Buffer.from(line));
    this.pump();
  }

  private pump(): void {
    if (this.writing) return;
    const fd = this.fd;
    if (fd === null || !this.connected) {
      this.writeQueue = [];
      return;
    }
    const b = this.writeQueue.shift();
    if (!b) return;
    this.writing = true;
    const writeAll = (buf: Buffer): void => {
      fs.write(fd, buf, 0, buf.length, null, (err, n) => {
        if (err) {
          this.writing = false;
          this.writeQueue = [];
          return; // replay covers sequenced frames
        }
        if (n < buf.length) return writeAll(buf.subarray(n));
        this.writing = false;
        this.pump();
      });
    };
    writeAll(b);
  }
}

