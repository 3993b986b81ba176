// The typed face of the channel's RPC (agent/channel.ts carries it: `call` -> `result`, `event`). A
// contract is a map from method name to `{ params; result }` and one from event name to its payload
// (wire/hostagent.ts, wire/control.ts); the types below turn such a map into what each side holds:
//   Caller<M>      the calling side's view: call('vm.start', params) -> Promise<result>, checked by the
//                  compiler (agent/typed.ts gives it to a connected peer; unit-test fakes implement it)
//   Notifier<E>    the sending side of events: notify('vm.exit', payload), checked by the compiler
//   Handlers<M>    the answering side's table: one function per method, params in, result out
//   ParamChecks<M> the answering side's runtime check of what arrived: for each method, its required
//                  fields and their JSON kind. The compiler derives the table's shape from M, so a
//                  field added to a contract must be added here too (and a field that is not in M
//                  cannot be listed).
//   EventChecks<E> the same for events: the receiving side checks each payload (agent/typed.ts
//                  eventOf) and switches on EventOf<E>, which narrows the payload by name.
// Types only (and no I/O): imported by both sides and by the fakes.

/** One method of a contract: what the caller sends, what the callee answers. */
export interface MethodSpec { params: object; result: unknown }

/** A contract's methods: name -> MethodSpec (declared as a type literal or an interface). */
export type MethodMap<M> = { [K in keyof M]: MethodSpec };

export type Method<M> = keyof M & string;
export type Params<M, K extends keyof M> = M[K] extends { params: infer P } ? P : never;
export type Result<M, K extends keyof M> = M[K] extends { result: infer R } ? R : never;

export interface CallOptions { timeoutMs?: number; signal?: AbortSignal }

/** The calling side of a contract: every method with its own params and result type. */
export interface Caller<M extends MethodMap<M>> {
  call<K extends Method<M>>(method: K, params: Params<M, K>, opts?: CallOptions): Promise<Result<M, K>>;
}

/** The sending side of a map of events (name -> payload): no reply. */
export interface Notifier<E> {
  notify<K extends keyof E & string>(name: K, data: E[K]): void;
}

/** The handler of one method. */
export type Handler<M extends MethodMap<M>, K extends Method<M>> = (params: Params<M, K>) => Result<M, K> | Promise<Result<M, K>>;

/** The answering side of a contract: a handler per method. */
export type Handlers<M extends MethodMap<M>> = { [K in Method<M>]: Handler<M, K> };

/** An event of a contract as one value (name and payload), for a switch that narrows the payload. */
export type EventOf<E> = { [K in keyof E & string]: { name: K; data: E[K] } }[keyof E & string];

/** The JSON kind of a field, as the runtime check sees it ('any': a field that may be null or of any kind). */
export type FieldKind = 'string' | 'number' | 'boolean' | 'array' | 'object' | 'any';

/** The kind a field of type T has on the wire (an enum of strings is a string; a record is an object). */
export type KindOf<T> = null extends T ? 'any'
  : [T] extends [string] ? 'string'
  : [T] extends [number] ? 'number'
  : [T] extends [boolean] ? 'boolean'
  : [T] extends [readonly unknown[]] ? 'array'
  : 'object';

/** The keys of P that are not optional. */
export type RequiredKeys<P> = { [F in keyof P]-?: object extends Pick<P, F> ? never : F }[keyof P];

/** Every required field of P with its kind: the table must name each, with the kind its type has. */
export type RequiredFields<P> = { [F in RequiredKeys<P> & string]: KindOf<P[F]> };

/** The runtime check table of a contract: each method's required fields (see the header). */
export type ParamChecks<M extends MethodMap<M>> = { [K in Method<M>]: RequiredFields<Params<M, K>> };

/** The receiving side's check of a map of events: each event's required payload fields. */
export type EventChecks<E> = { [K in keyof E & string]: RequiredFields<E[K]> };
