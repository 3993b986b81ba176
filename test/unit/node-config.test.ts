// node.conf (launcher/src/node/config.ts): regressions found by the property tests in fuzz-node.test.ts.
import t from 'tap';
import { parseNodeConfig } from '../../launcher/src/node/config.js';
import { SymError } from '../../launcher/src/errors.js';

t.test('regression (found by fast-check): SYMRUN_NODE_ADDR=0.0.0.256 is not an IPv4 address', async (t) => {
  for (const v of ['0.0.0.256', '999.1.1.1']) {
    try {
      parseNodeConfig(`SYMRUN_NODE_ADDR=${v}\n`, '/etc/symrun/node.conf');
      t.fail(`${v} accepted`);
    } catch (e) {
      t.ok(e instanceof SymError, 'SymError');
      t.equal((e as SymError).code, 'ESYM_NODE_CONFIG');
      t.match((e as SymError).message, `/etc/symrun/node.conf:1: SYMRUN_NODE_ADDR="${v}"`);
      t.match((e as SymError).fix, /0-255/);
    }
  }
  t.equal(parseNodeConfig('SYMRUN_NODE_ADDR=10.255.0.5\n').nodeAddr, '10.255.0.5', 'a real address still reads');
});
