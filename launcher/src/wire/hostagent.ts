// The coordinator <-> host agent contract: every method the host agent answers and every event either
// side sends, with its types. One table; both sides and the unit-test fakes are built from it.
//
// The wire: the job channel (agent/channel.ts), one TCP connection per host agent, opened by the host
// agent to the coordinator and authenticated both ways with the job secret, then sealed. On it:
//   call   coordinator -> host agent   {t:'call', id, method, params} -> {t:'result', id, ok, value|error}
//                                      (HostAgentMethods: the host agent never calls the coordinator)
//   event  host agent -> coordinator   {t:'event', name, data}, no reply (HostAgentEvents)
//   event  coordinator -> host agent   guest.send only (CoordinatorEvents)
// Errors cross as SymErrors with their ESYM_* code (a code the peer invents becomes ESYM_REMOTE). A
// method the host agent does not have is refused with ESYM_NO_METHOD; params without a required field,
// or with one of the wrong JSON kind, with ESYM_RPC_PARAMS naming the field (HOST_AGENT_PARAMS below).
// Sides: agent/hostagent.ts answers (agent/typed.ts serve); coordinator/** calls through the typed
// views HostAgents.peer (HostAgentPeer) and JobAccess.peer (HostAgentCaller), wire/rpc.ts Caller;
// test/fakes/host-agent.ts plays the host agent in unit tests.
// Types only (and one constant table): no I/O.
import type { GuestFrame, HostFrame } from '../../../guest/protocol/index.js';
import type { HeldVf, InterconnectDevice, PciDeviceInfo, PlugResult, TapRequest, UnplugResult, VfOffer } from './device.js';
import type { MigrationMode, MigrationProgress, MigrationTlsRequest, MigrationTuning } from './migration.js';
import type { Caller, EventChecks, Notifier, ParamChecks } from './rpc.js';
import type { VmSpec } from './vm.js';

/** `{}` on the wire: a method without parameters. */
export type NoParams = Record<string, never>;
/** `{}` answered: the method did its work and has nothing to report. */
export type Done = Record<string, never>;
/** Most methods act on one VM of this host, by name. */
export interface ByName { name: string }

/** Every method of the host agent: params (what the coordinator sends) and result (what it answers). */
export interface HostAgentMethods {
  // ---- the agent and its VMs ----
  'host.info':       { params: NoParams; result: { host: string; pid: number; vms: string[] } };   // heartbeat
  'vm.start':        { params: { spec: VmSpec; taps?: TapRequest[] }; result: { pid: number } };
  'vm.stop':         { params: ByName; result: { stopped: boolean } };                     // false: no such VM here
  'vm.kill':         { params: ByName; result: Done };                                     // SIGKILL QEMU (fault injection)
  'vm.cont':         { params: ByName; result: { resumed: boolean } };                     // false: it was running
  'vm.qmp':          { params: ByName & { command: string; args?: Record<string, unknown>; timeoutMs?: number }; result: unknown };
  'vm.devices':      { params: ByName; result: PciDeviceInfo[] };
  'vm.plug':         { params: ByName & { device: InterconnectDevice; bridge?: string; timeoutMs?: number }; result: PlugResult };
  'vm.unplug':       { params: ByName & { id: string; netdevId?: string; timeoutMs?: number }; result: UnplugResult };
  'guest.reconnect': { params: ByName; result: Done };                                     // reopen the guest socket
  'shutdown':        { params: NoParams; result: Done };                                   // stop every VM, then exit
  // ---- the job's VFs on this node (device/job-vfs.ts) ----
  'dev.claim':       { params: { vm: string; offers: VfOffer[]; nodeLayerJob?: string }; result: HeldVf };  // idempotent
  'dev.release':     { params: { vm: string }; result: { released: HeldVf | null } };
  'dev.list':        { params: NoParams; result: HeldVf[] };
  // ---- migration endpoints (the coordinator drives the protocol: coordinator/migrate.ts) ----
  'mig.prepare':     { params: { spec: VmSpec; taps?: TapRequest[]; tuning: MigrationTuning; listenIp: string; tls?: MigrationTlsRequest }; result: { uri: string; pid: number; tls: boolean } };
  'mig.perform':     { params: ByName & { uri: string; tuning: MigrationTuning; mode: MigrationMode; op: string; tls?: MigrationTlsRequest }; result: MigrationProgress };
  'mig.action':      { params: ByName & { action: MigrationAction; percent?: number; bytesPerSec?: number }; result: Done };
  'mig.cancel':      { params: ByName; result: { status: string; migration: string } };   // does not resume the source
  'mig.finish':      { params: ByName & { timeoutMs?: number }; result: { status: string; resumed: boolean } };
  // ---- checkpoints (coordinator/checkpoint.ts, restart.ts) ----
  'ckpt.save':       { params: ByName & { file: string; timeoutMs?: number }; result: MigrationProgress & { saveMs: number } };
  'ckpt.resume':     { params: ByName; result: { status: string; migration: string; resumed: boolean } };
  'ckpt.restore':    { params: { spec: VmSpec; taps?: TapRequest[]; file: string; timeoutMs?: number }; result: { pid: number; status: string; loadMs: number; bytes?: number } };
}

/** What the deadline policy may ask of a running migration (mig.action). */
export type MigrationAction = 'postcopy' | 'throttle' | 'stop-copy' | 'bandwidth';

/** Events the host agent sends the coordinator (no reply). */
export interface HostAgentEvents {
  'vm.exit':      { vm: string; code: number | null; signal: string | null; expected: boolean };  // QEMU is gone
  'qmp.event':    { vm: string; event: string; data: unknown };                                  // every QMP event
  'guest.link':   { vm: string; up: boolean };                                                   // guest socket open / closed
  'guest.frame':  { vm: string; frame: GuestFrame };                                             // a checked guest frame
  'guest.bad':    { vm: string; reason: string };                                                // a frame dropped
  'mig.progress': { vm: string; op: string; progress: MigrationProgress } | { vm: string; op: string; note: string };
}

/** Events the coordinator sends a host agent (no reply). */
export interface CoordinatorEvents {
  'guest.send': { vm: string; frame: HostFrame };   // a frame for the guest agent, written as is
}

/** The coordinator's handle on one host agent: its methods (coordinator/migrate.ts JobAccess.peer). */
export type HostAgentCaller = Caller<HostAgentMethods>;
/** ... and the events the coordinator sends it (coordinator/job/agents.ts HostAgents.peer). */
export interface HostAgentPeer extends HostAgentCaller, Notifier<CoordinatorEvents> {}

/** The host agent's check of what arrives: each method's required fields (optional ones are the handler's). */
export const HOST_AGENT_PARAMS: ParamChecks<HostAgentMethods> = {
  'host.info': {},
  'vm.start': { spec: 'object' },
  'vm.stop': { name: 'string' },
  'vm.kill': { name: 'string' },
  'vm.cont': { name: 'string' },
  'vm.qmp': { name: 'string', command: 'string' },
  'vm.devices': { name: 'string' },
  'vm.plug': { name: 'string', device: 'object' },
  'vm.unplug': { name: 'string', id: 'string' },
  'guest.reconnect': { name: 'string' },
  'shutdown': {},
  'dev.claim': { vm: 'string', offers: 'array' },
  'dev.release': { vm: 'string' },
  'dev.list': {},
  'mig.prepare': { spec: 'object', tuning: 'object', listenIp: 'string' },
  'mig.perform': { name: 'string', uri: 'string', tuning: 'object', mode: 'string', op: 'string' },
  'mig.action': { name: 'string', action: 'string' },
  'mig.cancel': { name: 'string' },
  'mig.finish': { name: 'string' },
  'ckpt.save': { name: 'string', file: 'string' },
  'ckpt.resume': { name: 'string' },
  'ckpt.restore': { spec: 'object', file: 'string' },
};

/** The coordinator's check of each host agent event's payload (agent/typed.ts eventOf). */
export const HOST_AGENT_EVENTS: EventChecks<HostAgentEvents> = {
  'vm.exit': { vm: 'string', code: 'any', signal: 'any', expected: 'boolean' },
  'qmp.event': { vm: 'string', event: 'string', data: 'any' },
  'guest.link': { vm: 'string', up: 'boolean' },
  'guest.frame': { vm: 'string', frame: 'object' },
  'guest.bad': { vm: 'string', reason: 'string' },
  'mig.progress': { vm: 'string', op: 'string' },
};

/** The host agent's check of each coordinator event's payload. */
export const COORDINATOR_EVENTS: EventChecks<CoordinatorEvents> = {
  'guest.send': { vm: 'string', frame: 'object' },
};
