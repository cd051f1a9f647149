import t from 'tap';
import { findByHostName, sameHost, shortHostName } from '../../src/config/hostname.js';

t.test('short host names: first label, lower case; addresses stay whole', async (t) => {
  const cases: Array<[string, string]> = [
    ['alice', 'alice'],
    ['Alice', 'alice'],
    ['alice.example.com', 'alice'],
    ['ALICE.Example.COM', 'alice'],
    ['10.0.0.1', '10.0.0.1'],
    ['.hidden', '.hidden'],
    ['node-1.lan', 'node-1'],
  ];
  for (const [name, short] of cases) t.equal(shortHostName(name), short, name);
});

t.test('sameHost, and an exact match wins over a drbdadm-style one', async (t) => {
  t.ok(sameHost('alice.example.com', 'alice'));
  t.ok(sameHost('Alice', 'alice'));
  t.ok(sameHost('alice.a', 'ALICE.b'));
  t.notOk(sameHost('alice', 'alicia'));
  t.notOk(sameHost('10.0.0.1', '10.0.0.2'));
  const list = [{ name: 'alice.example.com' }, { name: 'alice' }, { name: 'bob' }];
  t.equal(findByHostName(list, 'alice'), list[1]);
  t.equal(findByHostName(list, 'Alice.example.com'), list[0]);
  t.equal(findByHostName(list, 'BOB.lan'), list[2]);
  t.equal(findByHostName(list, 'carol'), undefined);
});
