// guest/src/rxe.ts: the name and the 169.254.0.0/16 address of the ipvlan Soft-RoCE sits on when the
// interconnect is the failover bond (unique per VM for every /16-or-longer interconnect subnet).
import t from 'tap';
import { rxeIpvlanAddress, rxeIpvlanName } from '../../guest/src/rxe.js';

t.test('the host part of the interconnect address becomes the last two octets', async (t) => {
  t.equal(rxeIpvlanAddress('10.77.0.12/24'), '169.254.0.12/16');
  t.equal(rxeIpvlanAddress('192.168.3.200/16'), '169.254.3.200/16');
  t.equal(rxeIpvlanAddress('172.16.5.1/22'), '169.254.1.1/16', 'only the host bits (a /22 keeps 10 bits)');
  t.not(rxeIpvlanAddress('10.77.0.2/24'), rxeIpvlanAddress('10.77.0.3/24'), 'two VMs of a job differ');
});

t.test('addresses that cannot map are refused, naming the address', async (t) => {
  t.throws(() => rxeIpvlanAddress('10.1.2.3/8'), { code: 'EINVAL', message: /10\.1\.2\.3\/8.*\/16 or longer/ }, 'a /8 host part over 16 bits');
  t.throws(() => rxeIpvlanAddress('10.77.0.0/24'), { code: 'EINVAL' }, 'the network address itself');
  t.throws(() => rxeIpvlanAddress('10.77.0.12'), { code: 'EINVAL', message: /bad interconnect address/ }, 'no prefix');
});

t.test('the ipvlan is named after the bond, within IFNAMSIZ', async (t) => {
  t.equal(rxeIpvlanName('symfab0'), 'symfab0r');
  t.equal(rxeIpvlanName('abcdefghijklmnop').length, 15);
});
