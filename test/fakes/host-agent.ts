// Fake host agents for unit tests of the coordinator, built from the contract (wire/hostagent.ts): a
// test gives a partial handler table (each handler typed by the contract: its method's params in, its
// result out, and the host it was called on), gets one HostAgentPeer per host (what JobAccess.peer and
// HostAgents.peer hand the coordinator), and reads back every call in order. A method the test did not
// give is refused like the real channel refuses a method nobody registered (ESYM_NO_METHOD).
// okAnswers() is a table of the answers of a host agent whose QEMU does what it is told, for the methods
// a test does not care about. `otherwise` forwards what the table does not answer to another host agent
// (e.g. a real one on an in-memory channel: the fake plays QEMU's part, the real agent the rest).
import { SymError } from '../../launcher/src/errors.js';
import type { CoordinatorEvents, HostAgentCaller, HostAgentMethods, HostAgentPeer } from '../../launcher/src/wire/hostagent.js';
import type { PciDeviceInfo } from '../../launcher/src/wire/device.js';
import type { CallOptions, Method, Params, Result } from '../../launcher/src/wire/rpc.js';

type M = HostAgentMethods;

/** A handler of the fake: the method's params and the host it was called on. */
export type FakeHandler<K extends Method<M>> = (params: Params<M, K>, host: string, opts?: CallOptions) => Result<M, K> | Promise<Result<M, K>>;
export type FakeHandlers = { [K in Method<M>]?: FakeHandler<K> };

/** One call as the coordinator made it (`of` gives the params their contract type). */
export interface FakeCall { host: string; method: Method<M>; params: unknown }

/** The answers of a host agent whose QEMU does what it is told (no state kept). */
export function okAnswers(): FakeHandlers {
  return {
    'host.info': (_p, host) => ({ host, pid: 1, vms: [] }),
    'vm.stop': () => ({ stopped: true }),
    'vm.kill': () => ({}),
    'vm.cont': () => ({ resumed: true }),
    'vm.plug': (p) => ({ id: p.device.id, bus: p.device.bus, ms: 0 }),
    'vm.unplug': (p) => ({ id: p.id, ms: 0, netdevRemoved: p.netdevId !== undefined }),
    'guest.reconnect': () => ({}),
    'mig.action': () => ({}),
    'shutdown': () => ({}),
  };
}

/** A device of the VM as vm.devices lists it: `qdevId` on root port `parent` (a NIC's PCI ids). */
export function pciDevice(qdevId: string, parent = 'rp1'): PciDeviceInfo {
  return { qdevId, parent, bus: 1, slot: 0, function: 0, vendor: 0x1af4, device: 0x1041, classCode: 0x0200, isBridge: false, children: 0 };
}

export class FakeHostAgents {
  /** every call, in the order the coordinator made them */
  readonly calls: FakeCall[] = [];
  /** every event the coordinator sent a host agent */
  readonly sent: Array<{ host: string; name: keyof CoordinatorEvents; data: CoordinatorEvents[keyof CoordinatorEvents] }> = [];

  constructor(readonly handlers: FakeHandlers, private otherwise?: (host: string) => HostAgentCaller) {}

  /** The coordinator's handle on the host agent of `host`. */
  peer(host: string): HostAgentPeer {
    return {
      call: async (method, params, opts) => {
        this.calls.push({ host, method, params });
        const h = this.handlers[method];
        if (h) return h(params, host, opts);
        const o = this.otherwise?.(host);
        if (o) return o.call(method, params, opts);
        throw new SymError('ESYM_NO_METHOD', { message: `no method ${method} (fake host agent ${host})` });
      },
      notify: (name, data) => { this.sent.push({ host, name, data }); },
    };
  }

  /** The calls of one method, params typed by the contract. */
  of<K extends Method<M>>(method: K): Array<{ host: string; params: Params<M, K> }> {
    // recorded by call(), whose params the compiler checked against this very method
    return this.calls.filter((c) => c.method === method).map((c) => ({ host: c.host, params: c.params as Params<M, K> }));
  }

  /** `host:method[:name]` of every call, in order (for order assertions). */
  log(): string[] {
    return this.calls.map((c) => {
      const name = (c.params as { name?: unknown }).name;
      return `${c.host}:${c.method}${typeof name === 'string' ? `:${name}` : ''}`;
    });
  }
}
