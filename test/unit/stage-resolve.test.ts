import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { resolveProgram } from '../../launcher/src/stage/index.js';
import { SymError } from '../../launcher/src/errors.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'stage-resolve-'));
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
fs.mkdirSync(path.join(dir, 'bin'));
fs.writeFileSync(path.join(dir, 'app'), '#!/bin/sh\necho hi\n', { mode: 0o755 });
fs.writeFileSync(path.join(dir, 'data.txt'), 'x', { mode: 0o644 });
fs.writeFileSync(path.join(dir, 'bin', 'tool'), '#!/bin/sh\n', { mode: 0o755 });
fs.writeFileSync(path.join(dir, 'bin', 'noexec'), '#!/bin/sh\n', { mode: 0o644 });

function code127(t: any, fn: () => unknown, re: RegExp) {
  try {
    fn();
    t.fail('expected an error');
  } catch (e) {
    t.ok(e instanceof SymError, 'SymError');
    const s = e as SymError;
    t.equal(s.code, 'ESYM_APP_NOT_FOUND');
    t.equal(s.exitCode, 127);
    t.match(s.message, re);
    t.ok(s.fix && s.fix.length > 10, 'has a fix');
  }
}

t.test('relative to cwd', async (t) => {
  const r = resolveProgram('./app', { cwd: dir });
  t.same(r, { argv0: './app', hostPath: path.join(dir, 'app'), kind: 'cwd' });
  t.equal(resolveProgram('bin/tool', { cwd: dir }).hostPath, path.join(dir, 'bin', 'tool'));
});

t.test('absolute', async (t) => {
  t.same(resolveProgram('/bin/sh', { cwd: dir }), { argv0: '/bin/sh', hostPath: '/bin/sh', kind: 'absolute' });
});

t.test('PATH search, in order, empty element = cwd', async (t) => {
  t.same(resolveProgram('tool', { cwd: dir, PATH: `/nonexistent:${dir}/bin:/usr/bin` }),
    { argv0: 'tool', hostPath: path.join(dir, 'bin', 'tool'), kind: 'path' });
  t.equal(resolveProgram('app', { cwd: dir, PATH: '/nonexistent::/usr/bin' }).hostPath, path.join(dir, 'app'));
  t.equal(resolveProgram('tool', { cwd: dir, PATH: 'bin' }).hostPath, path.join(dir, 'bin', 'tool'), 'relative PATH element');
  t.equal(resolveProgram('sh', { cwd: dir, PATH: '/usr/bin:/bin' }).hostPath, '/usr/bin/sh');
});

t.test('missing file', async (t) => {
  code127(t, () => resolveProgram('./nope', { cwd: dir }), new RegExp(`${path.join(dir, 'nope')} does not exist`));
});

t.test('not executable', async (t) => {
  code127(t, () => resolveProgram('./data.txt', { cwd: dir }), /is not executable/);
  code127(t, () => resolveProgram('noexec', { cwd: dir, PATH: `${dir}/bin` }), /found in PATH at .*noexec but it is not executable/);
});

t.test('a directory', async (t) => {
  code127(t, () => resolveProgram('./bin', { cwd: dir }), /is a directory/);
});

t.test('not on PATH names where it looked', async (t) => {
  code127(t, () => resolveProgram('no-such-prog-xyz', { cwd: dir, PATH: `/usr/bin:${dir}/bin` }),
    new RegExp(`not found in PATH \\(looked in /usr/bin, ${dir}/bin\\)`));
  try { resolveProgram('no-such-prog-xyz', { cwd: dir, PATH: '/usr/bin' }); } catch (e) {
    t.same((e as SymError).details?.looked, ['/usr/bin']);
  }
});

t.test('empty argv0', async (t) => {
  code127(t, () => resolveProgram('', { cwd: dir }), /no program/);
});
