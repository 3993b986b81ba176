// A job's side of the node helper (symrun-noded, helper.ts): the host agent (the job's user) asks it
// for the taps of a VM landing on its node and gives them back when the VM leaves.
import net from 'node:net';
import fs from 'node:fs';
import { SymError, EXIT, isErrorCode } from '../errors.js';
import { LineDecoder } from '../../../guest/protocol/index.js';
import { writeProof } from './proof.js';
import type { HelperMsg, NodeOps } from './wire.js';

export async function askHelper<K extends keyof NodeOps>(socket: string, op: K, args: NodeOps[K]['args'], timeoutMs = 30_000): Promise<NodeOps[K]['result']> {
  if (!fs.existsSync(socket)) {
    throw new SymError('ESYM_NODE_LAYER', { message: `this node has no symrun node helper (${socket} does not exist)`, fix: 'the site runs symrun-noded on every node (docs/site-install.md); without it jobs of ordinary users cannot create their VMs\' network', exitCode: EXIT.environment });
  }
  return new Promise((resolve, reject) => {
    const s = net.createConnection(socket);
    const dec = new LineDecoder(1024 * 1024);
    let proof: string | undefined;
    const fail = (e: Error) => { clearTimeout(t); s.destroy(); if (proof) fs.rmSync(proof, { force: true }); reject(e); };
    const t = setTimeout(() => fail(new SymError('ESYM_NODE_LAYER', { message: `the node helper did not answer ${op} within ${timeoutMs / 1000} s`, exitCode: EXIT.environment })), timeoutMs);
    s.on('error', (e) => fail(new SymError('ESYM_NODE_LAYER', { message: `cannot reach the node helper at ${socket}: ${e.message}`, fix: 'is symrun-noded running on this node? (docs/site-install.md)', exitCode: EXIT.environment })));
    s.on('data', (b: Buffer) => {
      let lines: string[];
      try { lines = dec.push(b); } catch (e) { fail(e as Error); return; }
      for (const line of lines) {
        if (!line.trim()) continue;
        let m: HelperMsg;
        try { m = JSON.parse(line) as HelperMsg; } catch { fail(new SymError('ESYM_NODE_LAYER', { message: 'the node helper sent something that is not JSON' })); return; }
        if (m.t === 'challenge') {
          try { proof = writeProof(m.dir, m.nonce); } catch (e) { fail(new SymError('ESYM_NODE_LAYER', { message: `cannot prove who this is to the node helper (${m.dir}): ${(e as Error).message}`, exitCode: EXIT.environment })); return; }
          s.write(JSON.stringify({ t: 'request', nonce: m.nonce, op, args }) + '\n');
        } else if (m.t === 'result') {
          clearTimeout(t);
          s.end();
          if (m.ok) resolve(m.value as NodeOps[K]['result']);
          else reject(new SymError(isErrorCode(m.error.code) ? m.error.code : 'ESYM_NODE_DENIED', { message: `node helper: ${m.error.message}`, fix: m.error.fix }));
        }
      }
    });
  });
}
