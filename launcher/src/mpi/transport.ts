// The MPI transport of a job (interconnect.transport, --transport) and which quiesce adapter keeps it
// alive across a migration or a checkpoint. Pure: no I/O. docs/passthrough.md, "Transports and adapters".
//
// tcp   Open MPI pinned to TCP over the interconnect interface: pml ob1 with the btls self,vader,tcp,
//       and the UCX one-sided component excluded, so UCX is never loaded, whatever RDMA device a guest
//       has (Open MPI's default picks pml ucx as soon as UCX finds a verbs device). MPICH: UCX's tcp
//       transport on the interconnect, as before (mpi/launch.ts).
// rdma  Open MPI's pml ucx (and osc ucx) with UCX limited to its verbs transports (rc_verbs, ud_verbs
//       for the wire-up) plus shared memory and self inside a VM. With `interconnect.type: emulated`
//       the verbs device is Soft-RoCE: the guest agent creates `rxe0` (kernel rdma_rxe) on the
//       interconnect interface (with the failover bond: on an ipvlan over the bond, guest/src/rxe.ts)
//       and UCX is pinned to it; with `vfio` it is the passed-through HCA (UCX picks it).
//
// Which adapter keeps which transport (the rule migrate and checkpoint apply before anything is touched):
//   tcp:                  freeze, failover, hooks     (TCP state lives in guest memory)
//   rdma, Soft-RoCE:      failover, hooks             rxe's queue pairs are software objects in guest
//                                                     RAM, bound to a netdev: on the ipvlan over the
//                                                     failover bond they move with the VM (shown:
//                                                     test/system/rdma.test.ts); freeze unplugs the NIC
//                                                     rxe runs on, which destroys the rxe device and its QPs
//   rdma, hardware HCA:   hooks                       QPs and registrations live in the HCA: unplugging
//                                                     it (freeze) or failing IP traffic over to a virtio
//                                                     standby (failover) leaves the ranks with dead verbs
//                                                     resources; only an MPI that reconnects (the site's
//                                                     hooks) can cope
//   checkpoints of rdma jobs: hooks only (a checkpoint quiesces with freeze; rxe across a save and
//   restore of every VM was not verified).
import { SymError, EXIT } from '../errors.js';

export type Transport = 'tcp' | 'rdma';
export const TRANSPORTS: readonly Transport[] = ['tcp', 'rdma'];
export type Adapter = 'freeze' | 'failover' | 'hooks';
/** what carries verbs for an rdma job: Soft-RoCE in the guest (emulated interconnect) or a passed-through HCA */
export type RdmaKind = 'soft-roce' | 'hca';

/** Name of the Soft-RoCE device the guest agent creates on the interconnect interface. */
export const RXE_DEVICE = 'rxe0';
/** UCX's verbs transports (rc for data, ud for the wire-up), shared memory and self. */
export const UCX_RDMA_TLS = 'self,sm,rc_verbs,ud_verbs';

export function rdmaKindOf(interconnectType: 'emulated' | 'vfio'): RdmaKind {
  return interconnectType === 'emulated' ? 'soft-roce' : 'hca';
}

/** The adapters that keep `transport` alive for a migration or a checkpoint. */
export function adaptersKeeping(transport: Transport, kind: RdmaKind, op: 'migrate' | 'checkpoint'): Adapter[] {
  if (transport === 'tcp') return ['freeze', 'failover', 'hooks'];
  if (op === 'checkpoint') return ['hooks'];
  return kind === 'soft-roce' ? ['failover', 'hooks'] : ['hooks'];
}

const WHY: Record<RdmaKind, Partial<Record<Adapter, string>>> = {
  'soft-roce': {
    freeze: 'freeze unplugs the interconnect NIC that Soft-RoCE (rxe0) runs on: the rxe device and every queue pair of the ranks go with it',
    failover: 'a checkpoint quiesces with freeze, and Soft-RoCE across a save and restore of every VM is not verified',
  },
  hca: {
    freeze: 'the queue pairs and memory registrations live in the HCA, which is unplugged: the ranks would resume with dead verbs resources',
    failover: 'the failover bond moves IP traffic to a virtio standby, but verbs queue pairs stay bound to the HCA, which is unplugged',
  },
};

/**
 * Refuses (ESYM_TRANSPORT_ADAPTER) a migration or checkpoint whose adapter cannot keep the job's
 * transport alive; the caller runs this before any phase starts, so nothing has been touched.
 */
export function checkTransportAdapter(o: { transport: Transport; kind: RdmaKind; adapter: Adapter; op: 'migrate' | 'checkpoint'; vm?: string; field?: string }): void {
  const ok = adaptersKeeping(o.transport, o.kind, o.op);
  if (ok.includes(o.adapter)) return;
  const what = o.op === 'migrate' ? `migrating ${o.vm ?? 'the VM'}` : 'a checkpoint';
  const why = o.op === 'checkpoint' && o.adapter !== 'freeze' ? WHY[o.kind].failover! : (WHY[o.kind][o.adapter] ?? WHY[o.kind].freeze!);
  const rdma = o.kind === 'soft-roce' ? 'RDMA over Soft-RoCE' : 'RDMA over the passed-through HCA';
  throw new SymError('ESYM_TRANSPORT_ADAPTER', {
    message: `refusing ${what} with the ${o.adapter} adapter: the job's MPI uses ${rdma} (interconnect.transport: rdma), and ${why}; nothing was touched, the job goes on`,
    field: o.field ?? '--quiesce', value: o.adapter, exitCode: EXIT.usage,
    fix: o.op === 'migrate'
      ? `use ${ok.map((a) => `--quiesce ${a}`).join(' or ')}${ok.includes('failover') ? ' (the job must have been started with --quiesce failover)' : ''}; hooks: the site's migration.hooks make its MPI reconnect (docs/passthrough.md)`
      : 'run jobs that need checkpoints with --transport tcp, or with migration.quiesce: hooks and an MPI whose hooks reconnect its verbs connections (docs/passthrough.md)',
  });
}

export interface OpenMpiTransport {
  mca: Record<string, string>;
  /** mpirun -x NAME=VALUE: environment every rank gets (remote orteds do not inherit mpirun's) */
  env: Record<string, string>;
}

/**
 * Soft-RoCE only: UCX's ud_verbs checks the destination GID in the GRH of every packet it receives on
 * Ethernet and silently drops those that do not match; with rxe (kernel 6.1, UCX 1.13) every packet
 * fails that check, so the wire-up messages (ud_verbs carries them for rc_verbs too) never arrive and
 * every endpoint dies with "UD endpoint ...: unhandled timeout error" after UCX_UD_VERBS_TIMEOUT (30 s).
 * Raw verbs (ibv_ud_pingpong, ibv_rc_pingpong) over the same rxe0 work; UCX with the check off works.
 * The check only filters packets meant for another GID on a shared port; rxe0 has the VM's own GIDs.
 */
export const SOFT_ROCE_UCX_ENV: Readonly<Record<string, string>> = { UCX_UD_VERBS_ETH_DGID_CHECK: 'n' };

/**
 * MCA parameters and rank environment for Open MPI. `ucxDevice`: UCX_NET_DEVICES, given for Soft-RoCE
 * (rxe0:1, with SOFT_ROCE_UCX_ENV); undefined lets UCX pick the HCA. The user's --mca may not undo the
 * pin (checkTransportMca).
 */
export function openMpiTransport(transport: Transport, ucxDevice?: string): OpenMpiTransport {
  if (transport === 'tcp') return { mca: { pml: 'ob1', btl: 'self,vader,tcp', osc: '^ucx' }, env: {} };
  return {
    mca: { pml: 'ucx', osc: 'ucx', btl: 'self,vader' },
    env: { UCX_TLS: UCX_RDMA_TLS, ...(ucxDevice ? { UCX_NET_DEVICES: ucxDevice, ...SOFT_ROCE_UCX_ENV } : {}) },
  };
}

/** MCA parameters that would undo the transport's pin: refused before any VM boots. */
export function checkTransportMca(transport: Transport, mca: Record<string, string>, origin = 'mpi.mca (--mca)'): void {
  const pinned = openMpiTransport(transport).mca;
  // an MCA list selects the components it names, or with a leading ^ every component but those
  const names = (v: string) => v.trim().replace(/^\^/, '').split(',').map((c) => c.trim());
  const allows = (v: string, c: string) => (v.trim().startsWith('^') ? !names(v).includes(c) : names(v).includes(c));
  for (const k of ['pml', 'osc', 'btl'] as const) {
    const v = mca[k];
    if (v === undefined || v === pinned[k]) continue;
    const conflict = transport === 'tcp'
      ? (k === 'pml' ? v.trim() !== 'ob1' : k === 'osc' ? allows(v, 'ucx') : ['uct', 'openib', 'ofi'].some((c) => allows(v, c)))
      : k === 'pml' && v.trim() !== 'ucx';
    if (!conflict) continue;
    throw new SymError('ESYM_TRANSPORT_MCA', {
      message: `--mca ${k} ${v} contradicts interconnect.transport: ${transport} (symrun sets ${k} ${pinned[k]}${transport === 'tcp' ? ' so that Open MPI never uses UCX or verbs' : ' so that Open MPI uses UCX over verbs'})`,
      field: `${origin} ${k}`, value: v, exitCode: EXIT.usage,
      fix: transport === 'tcp' ? `leave out ${k}, or use --transport rdma for UCX over verbs` : `leave out ${k}, or use --transport tcp`,
    });
  }
}
