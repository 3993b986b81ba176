import t from 'tap';
import { parseLdd, parseDpkgS, parseShebang, envTarget, compileGlob, matchesAny } from '../../launcher/src/stage/index.js';

t.test('parseLdd: the usual shapes', async (t) => {
  const out = [
    '\tlinux-vdso.so.1 (0x00007ffd)',
    '\tlibblas.so.3 => /lib/x86_64-linux-gnu/libblas.so.3 (0x00007f91f6442000)',
    '\tlibfoo.so.1 => not found',
    '\tlibold.so => (0x0000)',
    '\tlib with space.so => /opt/my libs/lib with space.so (0x00007f)',
    '\t/lib64/ld-linux-x86-64.so.2 (0x00007f91f655b000)',
    '\tlibblas.so.3 => /lib/x86_64-linux-gnu/libblas.so.3 (0x00007f91f6442000)',
    "./x: /lib/x86_64-linux-gnu/libc.so.6: version `GLIBC_2.99' not found (required by ./x)",
  ].join('\n');
  const r = parseLdd(out);
  t.same(r.paths, ['/lib/x86_64-linux-gnu/libblas.so.3', '/opt/my libs/lib with space.so', '/lib64/ld-linux-x86-64.so.2']);
  t.same(r.missing, ['libfoo.so.1']);
  t.equal(r.isStatic, false);
  t.equal(r.warnings.length, 1);
});

t.test('parseLdd: static', async (t) => {
  t.equal(parseLdd('\tnot a dynamic executable\n').isStatic, true);
  t.equal(parseLdd('\tstatically linked\n').isStatic, true);
});

t.test('parseDpkgS', async (t) => {
  const m = parseDpkgS('libc6:amd64: /lib/x86_64-linux-gnu/libm.so.6\ndiversion by foo from: /bin/x\nhpcc, other: /usr/bin/hpcc\n');
  t.same(m.get('/lib/x86_64-linux-gnu/libm.so.6'), ['libc6:amd64']);
  t.same(m.get('/usr/bin/hpcc'), ['hpcc', 'other']);
  t.equal(m.size, 2);
});

t.test('shebang and env', async (t) => {
  t.same(parseShebang(Buffer.from('#!/bin/sh -e\necho')), ['/bin/sh', '-e']);
  t.same(parseShebang(Buffer.from('#! /usr/bin/env python3\r\n')), ['/usr/bin/env', 'python3']);
  t.equal(parseShebang(Buffer.from('\x7fELF')), null);
  t.equal(envTarget(['python3']), 'python3');
  t.equal(envTarget(['-S', 'python3', '-u']), 'python3');
  t.equal(envTarget(['-S python3 -u']), 'python3');
  t.equal(envTarget(['-u', 'HOME', 'A=b', 'perl']), 'perl');
  t.equal(envTarget(['-i']), undefined);
});

t.test('globs', async (t) => {
  const g = ['*.o', '.git', 'build/', 'data/*.bin', '**/tmp'].map(compileGlob);
  const m = (p: string, d = false) => matchesAny(g, p, d)?.pattern;
  t.equal(m('a.o'), '*.o');
  t.equal(m('src/deep/a.o'), '*.o');
  t.equal(m('a.oo'), undefined);
  t.equal(m('.git', true), '.git');
  t.equal(m('sub/.git', true), '.git');
  t.equal(m('build', true), 'build/');
  t.equal(m('build', false), undefined, 'build/ matches directories only');
  t.equal(m('x/build', true), 'build/');
  t.equal(m('data/a.bin'), 'data/*.bin');
  t.equal(m('x/data/a.bin'), undefined, 'patterns with a slash are anchored');
  t.equal(m('data/sub/a.bin'), undefined, '* does not cross /');
  t.equal(m('a/b/tmp', true), '**/tmp');
  t.equal(m('tmp', true), '**/tmp');
});
