import t from 'tap';
import { parseSize, parseSizeBytes } from '../../launcher/src/config/index.js';
import { SymError, EXIT } from '../../launcher/src/errors.js';
import { thrown } from '../fixtures/config/helpers.js';

t.test('parseSize → MiB', async (t) => {
  const ok: Array<[string | number, number]> = [
    ['512M', 512], ['512m', 512], ['512MiB', 512], ['512MB', 512], ['512 M', 512],
    ['2G', 2048], ['2g', 2048], ['2GiB', 2048], ['1.5G', 1536], ['1T', 1024 * 1024],
    ['524288K', 512], ['1024k', 1], ['1048576B', 1], ['512', 512], [' 64M ', 64],
    [512, 512], [0, 0],
  ];
  for (const [input, mib] of ok) t.equal(parseSize(input, 'vm.memory'), mib, JSON.stringify(input));
});

t.test('parseSize errors name the field, keep the value, give a fix', async (t) => {
  const bad: Array<string | number> = ['', 'lots', '2 GB RAM', '-1G', '1P', '1..5G', 'G', -5, NaN, 1.5, '1000K', '0.1M'];
  for (const input of bad) {
    const e = thrown(() => parseSize(input, '--memory'));
    t.type(e, SymError);
    t.equal(e.code, 'ESYM_CONFIG_INVALID');
    t.equal(e.exitCode, EXIT.usage);
    t.equal(e.field, '--memory', JSON.stringify(input));
    t.same(e.value, input);
    t.match(e.message, /^--memory /);
    t.ok(e.fix, 'fix');
  }
  t.match(thrown(() => parseSize('1000K', 'vm.memory')).message, 'whole number of MiB');
  t.match(thrown(() => parseSize('lots', 'vm.memory')).fix, '512M');
});

t.test('parseSizeBytes → bytes; bare numbers are bytes', async (t) => {
  t.equal(parseSizeBytes('256M', 'share.maxBytes'), 256 * 1024 * 1024);
  t.equal(parseSizeBytes('1K', 'share.maxBytes'), 1024);
  t.equal(parseSizeBytes(1000, 'share.maxBytes'), 1000);
  t.equal(parseSizeBytes('1000', 'share.maxBytes'), 1000);
  t.equal(parseSizeBytes('1.5K', 'share.maxBytes'), 1536);
  t.equal(thrown(() => parseSizeBytes('x', 'share.maxBytes')).field, 'share.maxBytes');
});
