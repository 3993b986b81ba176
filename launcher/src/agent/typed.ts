// Typed handle / call / notify on top of the channel's RpcPeer (agent/channel.ts), for a contract of
// wire/ (wire/rpc.ts explains the maps). Nothing of the wire changes: the same call, result and event
// messages; what this adds is the compiler checking both sides against one table, and the answering
// side refusing params that lack a required field (ESYM_RPC_PARAMS, naming the method and the field)
// before a handler sees them.
//   serve<M>(peer, checks, what).handle('vm.start', (p) => …)   p typed as M's params, result checked
//   callerOf<M>(peer).call('vm.start', {…})                     params checked, result typed
//   notifier<E>(peer).notify('vm.exit', {…})                    payload checked
//   eventOf<E>(checks, name, data)                              an arriving event, checked and typed
import { SymError } from '../errors.js';
import type { CallOptions, Caller, EventChecks, EventOf, FieldKind, Handler, Method, MethodMap, Notifier, ParamChecks, Params, Result } from '../wire/rpc.js';
import type { RpcPeer } from './channel.js';

const kindOf = (v: unknown): string => (v === null ? 'null' : Array.isArray(v) ? 'array' : typeof v);

/**
 * The params of `method` as they arrived, checked against the contract's required fields: a JSON
 * object with every required field of its kind. Returns them typed; throws ESYM_RPC_PARAMS.
 */
export function checkParams<M extends MethodMap<M>, K extends Method<M>>(what: string, method: K, required: Record<string, FieldKind>, params: unknown): Params<M, K> {
  const fix = 'the caller and this side must be the same symrun installation (this is a bug otherwise: report it)';
  if (kindOf(params) !== 'object') {
    throw new SymError('ESYM_RPC_PARAMS', { message: `${what} ${method}: params must be an object, got ${kindOf(params)}`, field: 'params', value: params ?? null, fix });
  }
  const p = params as Record<string, unknown>;
  for (const [field, kind] of Object.entries(required)) {
    const got = kindOf(p[field]);
    if (kind !== 'any' && got !== kind) {
      throw new SymError('ESYM_RPC_PARAMS', { message: `${what} ${method}: params.${field} must be ${kind === 'array' || kind === 'object' ? 'an' : 'a'} ${kind}, got ${got}`, field, value: p[field] ?? null, fix });
    }
  }
  return params as Params<M, K>;
}

/** The answering side of contract M on `peer`: register one typed handler per method (chainable). */
export interface TypedServer<M extends MethodMap<M>> {
  handle<K extends Method<M>>(method: K, fn: Handler<M, K>): TypedServer<M>;
}

/**
 * Answer contract M on `peer`: each handler gets its method's params, checked against `checks` first
 * (`what` names this side in the refusal: "host agent h1").
 */
export function serve<M extends MethodMap<M>>(peer: RpcPeer, checks: ParamChecks<M>, what: string): TypedServer<M> {
  const server: TypedServer<M> = {
    handle(method, fn) {
      const required: Record<string, FieldKind> = checks[method];
      peer.handle(method, (params: unknown) => fn(checkParams<M, typeof method>(what, method, required, params)));
      return server;
    },
  };
  return server;
}

/** The calling side of contract M over `peer`. */
export function callerOf<M extends MethodMap<M>>(peer: RpcPeer): Caller<M> {
  return {
    call<K extends Method<M>>(method: K, params: Params<M, K>, opts?: CallOptions) {
      // the one place a result gets its type: the peer answers this contract (the same installation)
      return peer.call<Result<M, K>>(method, params, opts);
    },
  };
}

/** Send the events of map E over `peer`, each with its payload type. */
export function notifier<E>(peer: RpcPeer): Notifier<E> {
  return { notify: (name, data) => peer.notify(name, data) };
}

/**
 * An event that arrived, as one typed value (switch on `.name` narrows `.data`), or why it was not:
 * an unknown name or a payload that lacks a required field of its kind. The receiver drops what is
 * not an event of E (it came from the other side of a boundary) and may say why.
 */
export function eventOf<E>(checks: EventChecks<E>, name: string, data: unknown): EventOf<E> | { bad: string } {
  if (!Object.prototype.hasOwnProperty.call(checks, name)) return { bad: `unknown event ${JSON.stringify(name).slice(0, 80)}` };
  if (kindOf(data) !== 'object') return { bad: `event ${name}: payload must be an object, got ${kindOf(data)}` };
  const d = data as Record<string, unknown>;
  for (const [field, kind] of Object.entries(checks[name as keyof E & string] as Record<string, FieldKind>)) {
    if (kind !== 'any' && kindOf(d[field]) !== kind) return { bad: `event ${name}: ${field} must be ${kind === 'array' || kind === 'object' ? 'an' : 'a'} ${kind}, got ${kindOf(d[field])}` };
  }
  return { name, data } as EventOf<E>;
}

/**
 * Receive the events of map E on `peer`: each one checked (eventOf) and handed on typed; what is not
 * an event of E goes to `onBad` (default: dropped).
 */
export function onEvents<E>(peer: RpcPeer, checks: EventChecks<E>, fn: (ev: EventOf<E>) => void, onBad?: (why: string) => void): void {
  peer.on('event', (name: string, data: unknown) => {
    const ev = eventOf<E>(checks, name, data);
    if ('bad' in ev) onBad?.(ev.bad);
    else fn(ev);
  });
}
