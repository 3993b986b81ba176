// interconnect.transport (mpi/transport.ts, mpi/launch.ts): the tcp pin, UCX over verbs for rdma, which
// adapters keep which transport, and the refusals with the field, value and fix named.
import t from 'tap';
import { adaptersKeeping, checkTransportAdapter, checkTransportMca, openMpiTransport, rdmaKindOf, RXE_DEVICE } from '../../launcher/src/mpi/transport.js';
import { planMpi } from '../../launcher/src/mpi/launch.js';

const base = { vms: [{ name: 'vm1', slots: 1 }, { name: 'vm2', slots: 1 }, { name: 'vm3', slots: 1 }], program: '/w/ring', args: ['10'], cwd: '/w', ifName: 'symfab0', tagOutput: false, mca: {}, extraArgs: [] };
const mcaOf = (argv: string[]) => {
  const out: Record<string, string> = {};
  argv.forEach((a, i) => { if (a === '--mca') out[argv[i + 1]!] = argv[i + 2]!; });
  return out;
};
const xOf = (argv: string[]) => argv.flatMap((a, i) => (a === '-x' ? [argv[i + 1]!] : []));

t.test('tcp (the default): Open MPI pinned to ob1 + btl tcp on the interconnect, UCX excluded', async (t) => {
  for (const p of [planMpi(base), planMpi({ ...base, transport: 'tcp' })]) {
    const mca = mcaOf(p.argv);
    t.equal(mca.pml, 'ob1');
    t.equal(mca.btl, 'self,vader,tcp');
    t.equal(mca.osc, '^ucx', 'the UCX one-sided component is not opened either');
    t.equal(mca.btl_tcp_if_include, 'symfab0');
    t.equal(mca.oob_tcp_if_include, 'symfab0');
    t.same(xOf(p.argv), [], 'no UCX environment');
    t.notOk(Object.keys(p.env).some((k) => k.startsWith('UCX_')));
  }
});

t.test('rdma: pml ucx + osc ucx, UCX limited to verbs on the Soft-RoCE device, handed to remote ranks with -x', async (t) => {
  const p = planMpi({ ...base, transport: 'rdma', ucxDevice: `${RXE_DEVICE}:1` });
  const mca = mcaOf(p.argv);
  t.equal(mca.pml, 'ucx');
  t.equal(mca.osc, 'ucx');
  t.equal(mca.btl, 'self,vader', 'no TCP BTL to fall back to silently');
  t.equal(mca.oob_tcp_if_include, 'symfab0', 'the launcher\'s own wire stays on the interconnect');
  t.same(xOf(p.argv), ['UCX_TLS=self,sm,rc_verbs,ud_verbs', 'UCX_NET_DEVICES=rxe0:1', 'UCX_UD_VERBS_ETH_DGID_CHECK=n'], 'Soft-RoCE: rxe0, and UD\'s GID check off (it drops every rxe packet)');
  t.ok(p.argv.indexOf('-x') < p.argv.indexOf('/w/ring'), '-x before the program');
  const hca = planMpi({ ...base, transport: 'rdma' });
  t.same(xOf(hca.argv), ['UCX_TLS=self,sm,rc_verbs,ud_verbs'], 'a real HCA: UCX picks the device');
});

t.test('--mca that would undo the pin is refused, naming the parameter; harmless ones pass', async (t) => {
  t.throws(() => planMpi({ ...base, mca: { pml: 'ucx' }, mcaOrigin: 'mpi.mca (--mca)' }), { code: 'ESYM_TRANSPORT_MCA', field: 'mpi.mca (--mca) pml', value: 'ucx', message: /never uses UCX/ });
  t.throws(() => checkTransportMca('tcp', { osc: 'ucx,sm' }), { code: 'ESYM_TRANSPORT_MCA', field: /osc/ });
  t.throws(() => checkTransportMca('tcp', { osc: '^pt2pt' }), { code: 'ESYM_TRANSPORT_MCA' }, 'an exclusion list that lets ucx back in');
  t.throws(() => checkTransportMca('tcp', { btl: 'self,openib' }), { code: 'ESYM_TRANSPORT_MCA', field: /btl/ });
  t.throws(() => checkTransportMca('tcp', { btl: '^vader' }), { code: 'ESYM_TRANSPORT_MCA' }, '^vader lets openib and ofi in');
  t.throws(() => checkTransportMca('rdma', { pml: 'ob1' }), { code: 'ESYM_TRANSPORT_MCA', message: /uses UCX over verbs/ });
  t.doesNotThrow(() => checkTransportMca('tcp', { pml: 'ob1', btl: 'self,tcp', osc: '^ucx,pt2pt', btl_tcp_eager_limit: '65536' }));
  t.doesNotThrow(() => checkTransportMca('tcp', { btl: '^openib,ofi,uct' }));
  t.doesNotThrow(() => checkTransportMca('rdma', { pml: 'ucx', btl: 'self' }));
  const p = planMpi({ ...base, mca: { btl_tcp_eager_limit: '65536' } });
  t.equal(mcaOf(p.argv).btl_tcp_eager_limit, '65536');
});

t.test('MPICH with rdma: refused with the field and the fix; MPICH with tcp unchanged', async (t) => {
  t.throws(() => planMpi({ ...base, implementation: 'mpich', transport: 'rdma' }), { code: 'ESYM_TRANSPORT_UNSUPPORTED', field: 'interconnect.transport (--transport)', value: 'rdma', fix: /--transport tcp/ });
  const p = planMpi({ ...base, implementation: 'mpich', transport: 'tcp' });
  t.equal(p.env.UCX_TLS, 'tcp,self,sm');
});

t.test('which adapter keeps which transport', async (t) => {
  t.equal(rdmaKindOf('emulated'), 'soft-roce');
  t.equal(rdmaKindOf('vfio'), 'hca');
  t.same(adaptersKeeping('tcp', 'soft-roce', 'migrate'), ['freeze', 'failover', 'hooks']);
  t.same(adaptersKeeping('tcp', 'hca', 'checkpoint'), ['freeze', 'failover', 'hooks']);
  t.same(adaptersKeeping('rdma', 'soft-roce', 'migrate'), ['failover', 'hooks']);
  t.same(adaptersKeeping('rdma', 'hca', 'migrate'), ['hooks']);
  t.same(adaptersKeeping('rdma', 'soft-roce', 'checkpoint'), ['hooks']);
  for (const adapter of ['freeze', 'failover', 'hooks'] as const) {
    t.doesNotThrow(() => checkTransportAdapter({ transport: 'tcp', kind: 'hca', adapter, op: 'migrate' }));
  }
  t.throws(() => checkTransportAdapter({ transport: 'rdma', kind: 'soft-roce', adapter: 'freeze', op: 'migrate', vm: 'vm2' }),
    { code: 'ESYM_TRANSPORT_ADAPTER', field: '--quiesce', value: 'freeze', message: /refusing migrating vm2 with the freeze adapter.*rxe0/, fix: /--quiesce failover or --quiesce hooks/ });
  t.throws(() => checkTransportAdapter({ transport: 'rdma', kind: 'soft-roce', adapter: 'failover', op: 'checkpoint', field: 'migration.quiesce' }),
    { code: 'ESYM_TRANSPORT_ADAPTER', field: 'migration.quiesce', message: /a checkpoint/, fix: /--transport tcp/ });
  t.doesNotThrow(() => checkTransportAdapter({ transport: 'rdma', kind: 'hca', adapter: 'hooks', op: 'checkpoint' }));
  t.equal(openMpiTransport('tcp').mca.pml, 'ob1');
});
