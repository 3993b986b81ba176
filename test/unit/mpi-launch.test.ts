import t from 'tap';
import { planMpi, retagLine, LineSplitter, checkMpiOptions, HYDRA, FINALIZE_SHIM } from '../../launcher/src/mpi/launch.js';
import { detectMpi, chooseMpi, missingLauncher, launcherMissingError } from '../../launcher/src/mpi/detect.js';
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

t.test('MPICH: mpiexec.hydra through symrun-rsh, hosts and ranks per VM as for Open MPI, cwd, interface, env', async (t) => {
  const p = planMpi({ ...base, implementation: 'mpich', vms: [{ name: 'vm1', slots: 2 }, { name: 'vm2', slots: 2 }, { name: 'vm3', slots: 2 }], np: 5 });
  t.equal(p.argv[0], HYDRA, 'Hydra by its full path (mpirun is Open MPI\'s)');
  const a = p.argv.join(' ');
  t.match(a, /-launcher rsh -launcher-exec \/opt\/symrun\/bin\/symrun-rsh/);
  t.match(a, /-hosts vm1:2,vm2:2,vm3:2 -n 5 -wdir \/w -iface symfab0/);
  t.notMatch(a, /--mca|--map-by|--host /, 'no Open MPI options');
  t.same(p.argv.slice(-2), ['/w/ring', '5']);
  t.same(p.rankVm, ['vm1', 'vm1', 'vm2', 'vm2', 'vm3'], 'vm1 filled first, like Open MPI');
  t.equal(p.env.UCX_NET_DEVICES, 'symfab0', 'UCX (ch4:ucx) pinned to the passthrough interface');
  t.notOk('OMPI_ALLOW_RUN_AS_ROOT' in p.env);
  const q = planMpi({ ...base, implementation: 'mpich', vms: [{ name: 'vm1', slots: 1 }], tagOutput: true, mapBy: 'slot:PE=2', extraArgs: ['-genv', 'X', '1'], rshAgent: '/x/rsh' });
  t.match(q.argv.join(' '), /-launcher-exec \/x\/rsh .* -bind-to core:2 -prepend-pattern \[1,%r\]<out>: -genv X 1 \/w\/ring 5$/);
  t.throws(() => planMpi({ ...base, implementation: 'mpich', vms: [{ name: 'vm1', slots: 1 }], np: 2 }), SymError, '-np checked as for Open MPI');
});

t.test('MPICH: every rank gets the MPI_Finalize progress library (LD_PRELOAD through -genv), Open MPI ranks do not', async (t) => {
  t.equal(FINALIZE_SHIM, '/opt/symrun/lib/libsymrun-ucx-finalize.so');
  const p = planMpi({ ...base, implementation: 'mpich', vms: [{ name: 'vm1', slots: 1 }, { name: 'vm2', slots: 1 }], extraArgs: ['-genv', 'X', '1'] });
  const i = p.argv.indexOf('LD_PRELOAD');
  t.ok(i > 0, 'LD_PRELOAD is set');
  t.same(p.argv.slice(i - 1, i + 2), ['-genv', 'LD_PRELOAD', FINALIZE_SHIM], 'with -genv: the ranks\' environment, not mpiexec\'s own');
  t.ok(i < p.argv.indexOf('X'), 'before the user\'s extra arguments');
  t.ok(i < p.argv.indexOf('/w/ring'), 'before the program');
  t.notOk('LD_PRELOAD' in p.env, 'not in mpiexec\'s environment (Hydra and its proxies run without it)');
  t.same(p.argv.slice(-2), ['/w/ring', '5']);
  const o = planMpi({ ...base, vms: [{ name: 'vm1', slots: 1 }] });
  t.notMatch(o.argv.join(' '), /LD_PRELOAD|libsymrun-ucx-finalize/, 'Open MPI: not preloaded');
  t.notOk('LD_PRELOAD' in o.env);
});

t.test('MPICH: MCA parameters are refused naming the field; Hydra tags name VM and stream', async (t) => {
  try {
    checkMpiOptions('mpich', { btl: 'self,tcp' }, '/w/ring', 'mpi.mca (--mca)');
    t.fail('no error');
  } catch (e) {
    t.equal((e as SymError).code, 'ESYM_MPI_MISMATCH');
    t.equal((e as SymError).field, 'mpi.mca (--mca)');
    t.match((e as SymError).fix!, /-genv/);
  }
  t.doesNotThrow(() => checkMpiOptions('openmpi', { btl: 'self,tcp' }, '/w/ring'));
  t.equal(retagLine('[1,2]<out>:hi\n', ['vm1', 'vm1', 'vm2'], 'stderr'), '[vm2,2]<stderr>:hi\n');
  t.equal(retagLine('[1,0]<out>:hi\n', ['vm1']), '[vm1,0]<stdout>:hi\n');
});

t.test('detection: the MPI a program is linked against, from the libraries ldd lists', async (t) => {
  const ompi = ['/lib/x86_64-linux-gnu/libmpi.so.40', '/lib/x86_64-linux-gnu/libc.so.6'];
  const mpich = ['/lib/x86_64-linux-gnu/libmpich.so.12', '/lib/x86_64-linux-gnu/libucp.so.0', '/lib64/ld-linux-x86-64.so.2'];
  t.same(detectMpi(ompi), { impl: 'openmpi', lib: 'libmpi.so.40' });
  t.same(detectMpi(mpich), { impl: 'mpich', lib: 'libmpich.so.12' });
  t.same(detectMpi(['libmpich.so.12']), { impl: 'mpich', lib: 'libmpich.so.12' }, 'a soname ldd did not find counts too');
  t.same(detectMpi(['/lib/x86_64-linux-gnu/libc.so.6']), {}, 'no MPI library: nothing detected');
  t.same(detectMpi(['/usr/lib/libmpi.so.12']), {}, 'other sonames (Intel MPI, MVAPICH) are not guessed');
  t.throws(() => detectMpi([...ompi, ...mpich]), { code: 'ESYM_MPI_MISMATCH', field: 'program' }, 'both: refused');

  t.equal(chooseMpi('auto', detectMpi(mpich), '/w/r'), 'mpich');
  t.equal(chooseMpi('auto', detectMpi(ompi), '/w/r'), 'openmpi');
  t.equal(chooseMpi('auto', {}, '/w/hostname'), 'openmpi', 'no MPI library: Open MPI, as before');
  t.equal(chooseMpi('mpich', {}, '/w/script.sh'), 'mpich', 'an explicit setting for a program without MPI libraries (a script)');
  t.equal(chooseMpi('mpich', detectMpi(mpich), '/w/r'), 'mpich');
  try {
    chooseMpi('openmpi', detectMpi(mpich), '/w/ring-mpich', 'mpi.implementation (--mpi)');
    t.fail('no error');
  } catch (e) {
    const s = e as SymError;
    t.equal(s.code, 'ESYM_MPI_MISMATCH');
    t.equal(s.field, 'mpi.implementation (--mpi)');
    t.equal(s.value, 'openmpi');
    t.match(s.message, /linked against MPICH \(libmpich\.so\.12\).*singletons/);
    t.match(s.fix!, /--mpi mpich or --mpi auto/);
  }
  t.throws(() => chooseMpi('mpich', detectMpi(ompi), '/w/r'), { code: 'ESYM_MPI_MISMATCH', value: 'mpich' });
});

t.test('an image without Hydra cannot launch an MPICH program: the error names image', async (t) => {
  const withHydra = new Set(['/usr/bin/mpirun', '/usr/bin/mpiexec.hydra', '/usr/bin/hydra_pmi_proxy', FINALIZE_SHIM]);
  t.same(missingLauncher('mpich', withHydra), []);
  t.same(missingLauncher('mpich', new Set(['/usr/bin/mpirun'])), ['/usr/bin/mpiexec.hydra', '/usr/bin/hydra_pmi_proxy', FINALIZE_SHIM]);
  t.same(missingLauncher('mpich', new Set(['/usr/bin/mpiexec.hydra', '/usr/bin/hydra_pmi_proxy'])), [FINALIZE_SHIM], 'an MPICH image built before the finalize library: refused, it would hang at MPI_Finalize');
  t.same(missingLauncher('openmpi', new Set()), []);
  const e = launcherMissingError('mpich', ['/usr/bin/mpiexec.hydra'], '/srv/img', '/w/ring-mpich');
  t.equal(e.code, 'ESYM_MPI_MISSING');
  t.equal(e.field, 'image');
  t.equal(e.value, '/srv/img');
  t.match(e.fix!, /image: auto/);
});
