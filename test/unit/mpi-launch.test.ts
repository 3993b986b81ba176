import t from 'tap';
import { planMpi, retagLine, LineSplitter } from '../../launcher/src/mpi/launch.js';
import { SymError } from '../../launcher/src/errors.js';

const base = { program: '/w/ring', args: ['5'], cwd: '/w', ifName: 'symfab0', tagOutput: false, mca: {}, extraArgs: [] };

t.test('mpirun command line pins MPI to the passthrough interface and uses symrun-rsh', async (t) => {
  const p = planMpi({ ...base, vms: [{ name: 'vm1', slots: 2 }, { name: 'vm2', slots: 2 }] });
  t.equal(p.np, 4);
  const a = p.argv.join(' ');
  t.match(a, /--host vm1:2,vm2:2/);
  t.match(a, /--mca btl_tcp_if_include symfab0/);
  t.match(a, /--mca oob_tcp_if_include symfab0/);
  t.match(a, /--mca plm_rsh_agent \/opt\/symrun\/bin\/symrun-rsh/);
  t.same(p.argv.slice(-2), ['/w/ring', '5']);
  t.same(p.rankVm, ['vm1', 'vm1', 'vm2', 'vm2']);
});

t.test('user MCA parameters override defaults; -np is checked against slots', async (t) => {
  const p = planMpi({ ...base, vms: [{ name: 'vm1', slots: 1 }], mca: { btl: 'self,tcp' }, np: 1, tagOutput: true });
  t.match(p.argv.join(' '), /--mca btl self,tcp/);
  t.ok(p.argv.includes('--tag-output'));
  t.throws(() => planMpi({ ...base, vms: [{ name: 'vm1', slots: 1 }], np: 3 }), SymError);
  try { planMpi({ ...base, vms: [{ name: 'vm1', slots: 1 }], np: 3 }); } catch (e) { t.equal((e as SymError).field, '-np'); t.match((e as SymError).fix!, /slots/); }
});

t.test('-c: --map-by slot:PE=C binds each rank to C vCPUs; ranks still fill vm1 first', async (t) => {
  const p = planMpi({ ...base, vms: [{ name: 'vm1', slots: 2 }, { name: 'vm2', slots: 2 }], np: 3, mapBy: 'slot:PE=2' });
  const i = p.argv.indexOf('--map-by');
  t.equal(p.argv[i + 1], 'slot:PE=2');
  t.equal(p.argv.filter((a) => a === '--map-by').length, 1, 'one --map-by');
  t.same(p.rankVm, ['vm1', 'vm1', 'vm2']);
  t.equal(planMpi({ ...base, vms: [{ name: 'vm1', slots: 1 }] }).argv[planMpi({ ...base, vms: [{ name: 'vm1', slots: 1 }] }).argv.indexOf('--map-by') + 1], 'slot', 'default: slot');
});

t.test('tags name the VM of each rank', async (t) => {
  t.equal(retagLine('[1,2]<stdout>:hello\n', ['vm1', 'vm1', 'vm2']), '[vm2,2]<stdout>:hello\n');
  t.equal(retagLine('plain\n', ['vm1']), 'plain\n');
  const s = new LineSplitter();
  t.same(s.push('a\nb'), ['a\n']);
  t.same(s.push('c\n'), ['bc\n']);
  t.equal(s.flush(), '');
});
