// The node helper's wire (symrun-noded <-> a job's host agent): one request per connection over the
// helper's unix socket, JSON lines. Types only (both sides import them).
//   helper -> caller   {t:'challenge', nonce, dir}
//   caller -> helper   {t:'request', nonce, op, args}     (after creating dir/nonce: proof.ts)
//   helper -> caller   {t:'result', ok, value | error}

export interface AttachArgs {
  job: string;
  /** the VM's index in the job (its MAC and tap name derive from it) */
  vm: number;
  /** the VM's IPv4 address on the job network (the only address its tap may send from) */
  ip: string;
  /** also the failover adapter's standby tap */
  standby?: boolean;
}

export interface AttachResult {
  tap: string;
  mac: string;
  mtu: number;
  bridge: string;
  standby?: { tap: string; mac: string };
}

export interface NodeOps {
  attach: { args: AttachArgs; result: AttachResult };
  detach: { args: { job: string; vm: number }; result: { removed: string[] } };
  info: { args: { job: string }; result: { bridge: string; mtu: number; runDir: string; vms: number[] } };
}

export type NodeOp = keyof NodeOps;
export const NODE_OPS: readonly NodeOp[] = ['attach', 'detach', 'info'];

export type HelperMsg =
  | { t: 'challenge'; nonce: string; dir: string }
  | { t: 'result'; ok: true; value: unknown }
  | { t: 'result'; ok: false; error: { code: string; message: string; fix?: string } };

export interface RequestMsg { t: 'request'; nonce: string; op: string; args: unknown }
