import t from 'tap';
import { editDistance, nearest } from '../../src/config/suggest.js';
import {
  addressKey,
  formatAddress,
  formatBytes,
  formatRateKiB,
  parseAddress,
  parseBoolean,
  parseIntInRange,
  parseRateKiB,
  parseScaledBytes,
  parseScaledNumber,
  parseSectors,
  parseSizeBytes,
  ValueError,
} from '../../src/config/values.js';

function valueError(fn: () => unknown): ValueError {
  try {
    fn();
  } catch (e) {
    if (e instanceof ValueError) return e;
    throw e;
  }
  throw new Error('expected a ValueError');
}

t.test('suffixes are powers of 1024, s is a sector, either case', async (t) => {
  t.equal(parseScaledBytes('1k', 1), 1024);
  t.equal(parseScaledBytes('1K', 1), 1024);
  t.equal(parseScaledBytes('3M', 1), 3 * 1024 ** 2);
  t.equal(parseScaledBytes('2g', 1), 2 * 1024 ** 3);
  t.equal(parseScaledBytes('1T', 1), 1024 ** 4);
  t.equal(parseScaledBytes('8s', 1), 4096);
  t.equal(parseScaledBytes('7', 512), 3584);
  for (const bad of ['', 'k', '1.5M', '-1', '1 M', '1KB', '1KiB', '0x10', '1P']) {
    t.equal(parseScaledBytes(bad, 1), undefined, bad);
  }
  t.equal(parseScaledBytes('99999999999999999999', 1), undefined, 'beyond 2^53');
});

t.test('rates: bare numbers are KiB/s', async (t) => {
  t.equal(parseRateKiB('resync-rate', '250', 1, 8 << 20), 250);
  t.equal(parseRateKiB('resync-rate', '250K', 1, 8 << 20), 250);
  t.equal(parseRateKiB('resync-rate', '100M', 1, 8 << 20), 102400);
  t.equal(parseRateKiB('resync-rate', '1G', 1, 8 << 20), 1048576);
  t.equal(parseRateKiB('c-min-rate', '0', 0, 8 << 20), 0);
  t.equal(
    valueError(() => parseRateKiB('resync-rate', '9G', 1, 8 << 20)).message,
    'resync-rate must be from 1 KiB/s to 8 GiB/s, not "9G"',
  );
  t.equal(
    valueError(() => parseRateKiB('c-max-rate', '100', 250, 4 << 20)).message,
    'c-max-rate must be from 250 KiB/s to 4 GiB/s, not "100"',
  );
  t.equal(
    valueError(() => parseRateKiB('resync-rate', 'fast', 1, 10)).message,
    'resync-rate must be a rate such as 100M or 250K (bare numbers are KiB/s), not "fast"',
  );
  t.equal(
    valueError(() => parseRateKiB('resync-rate', '1s', 1, 10)).message,
    'resync-rate must be a rate such as 100M or 250K (bare numbers are KiB/s), not "1s"',
    'half a KiB is not a whole rate',
  );
});

t.test('sizes: bare numbers are 512-byte sectors', async (t) => {
  t.equal(parseSizeBytes('size', '2048', 2 ** 50), 1024 * 1024);
  t.equal(parseSizeBytes('size', '10G', 2 ** 50), 10 * 1024 ** 3);
  t.equal(parseSizeBytes('size', '0', 2 ** 50), 0);
  t.equal(
    valueError(() => parseSizeBytes('size', '2T', 2 ** 40)).message,
    'size must be at most 1T, not "2T"',
  );
  t.equal(
    valueError(() => parseSizeBytes('size', 'big', 2 ** 40)).message,
    'size must be a size such as 10G or 2048 (bare numbers are 512-byte sectors), not "big"',
  );
  t.equal(parseSectors('c-fill-target', '100', 0, 1 << 20), 100);
  t.equal(parseSectors('c-fill-target', '1M', 0, 1 << 20), 2048);
  t.equal(
    valueError(() => parseSectors('c-fill-target', '1T', 0, 1 << 20)).message,
    'c-fill-target must be from 0 to 1048576 sectors, not "1T"',
  );
});

t.test('formatting uses the largest exact unit', async (t) => {
  t.equal(formatBytes(10 * 1024 ** 3), '10G');
  t.equal(formatBytes(1536 * 1024), '1536K');
  t.equal(formatBytes(1024 ** 4), '1T');
  t.equal(formatBytes(512), '1', 'one sector, bare');
  t.equal(formatRateKiB(102400), '100M');
  t.equal(formatRateKiB(1048576), '1G');
  t.equal(formatRateKiB(250), '250K');
  t.equal(formatRateKiB(0), '0K');
  t.equal(parseRateKiB('r', formatRateKiB(0), 0, 10), 0);
});

t.test('whole numbers in a range', async (t) => {
  t.equal(parseIntInRange('ko-count', '0', 0, 200), 0);
  t.equal(parseIntInRange('timeout', '600', 1, 600, 'unit 0.1 s'), 600);
  t.equal(
    valueError(() => parseIntInRange('timeout', '0', 1, 600, 'unit 0.1 s')).message,
    'timeout must be a whole number from 1 to 600 (unit 0.1 s), not "0"',
  );
  t.equal(
    valueError(() => parseIntInRange('al-extents', '12x', 7, 65534)).message,
    'al-extents must be a whole number from 7 to 65534, not "12x"',
  );
  t.equal(
    valueError(() => parseIntInRange('n', '-1', 0, 5)).message,
    'n must be a whole number from 0 to 5, not "-1"',
  );
});

t.test('booleans are yes or no', async (t) => {
  t.equal(parseBoolean('al-updates', 'yes'), true);
  t.equal(parseBoolean('al-updates', 'no'), false);
  t.equal(
    valueError(() => parseBoolean('al-updates', 'true')).message,
    'al-updates must be yes or no, not "true"',
  );
});

t.test('addresses in every DRBD spelling', async (t) => {
  const v4 = { family: 'ipv4', host: '10.0.0.1', port: 7789 };
  const v6 = { family: 'ipv6', host: 'fd00::1', port: 7789 };
  t.same(parseAddress('address', ['10.0.0.1:7789']), v4);
  t.same(parseAddress('address', ['ipv4', '10.0.0.1:7789']), v4);
  t.same(parseAddress('address', ['ipv6', '[fd00::1]:7789']), v6);
  t.same(parseAddress('address', ['[fd00::1]:7789']), v6);
  t.same(parseAddress('address', ['[::ffff:10.0.0.1]:1']), {
    family: 'ipv6',
    host: '::ffff:10.0.0.1',
    port: 1,
  });
  t.same(parseAddress('address', ['0.0.0.0:65535']), {
    family: 'ipv4',
    host: '0.0.0.0',
    port: 65535,
  });
  t.equal(formatAddress(v4 as never), 'ipv4 10.0.0.1:7789');
  t.equal(formatAddress(v6 as never), 'ipv6 [fd00::1]:7789');
  t.equal(addressKey(v6 as never), '[fd00::1]:7789');

  const bad: Array<[string[], string, number]> = [
    [['10.0.0.1:0'], 'port must be from 1 to 65535, not "0"', 0],
    [['10.0.0.1:65536'], 'port must be from 1 to 65535, not "65536"', 0],
    [['10.0.0.1:'], 'port must be from 1 to 65535, not ""', 0],
    [
      ['10.0.0.1'],
      'address must be an address such as 10.0.0.1:7789, ipv4 10.0.0.1:7789 or ipv6 [fd00::1]:7789, not "10.0.0.1"',
      0,
    ],
    [['10.0.0.256:1'], '"10.0.0.256" is not an IPv4 address (urbd needs numeric addresses)', 0],
    [
      ['alpha.example.com:7789'],
      '"alpha.example.com" is not an IPv4 address (urbd needs numeric addresses)',
      0,
    ],
    [
      ['fd00::1:7789'],
      'IPv6 addresses go in brackets with the port outside, such as [fd00::1]:7789, not "fd00::1:7789"',
      0,
    ],
    [['[fd00::g]:1'], '"fd00::g" is not an IPv6 address', 0],
    [['ipv4', '[fd00::1]:1'], '"fd00::1" is an IPv6 address but the family says ipv4', 1],
    [['ipv6', '10.0.0.1:1'], '"10.0.0.1" is an IPv4 address but the family says ipv6', 1],
    [['sdp', '10.0.0.1:1'], 'address family "sdp" is not supported by urbd; use ipv4 or ipv6', 0],
    [
      ['ssocks', '10.0.0.1:1'],
      'address family "ssocks" is not supported by urbd; use ipv4 or ipv6',
      0,
    ],
  ];
  for (const [args, message, index] of bad) {
    const e = valueError(() => parseAddress('address', args));
    t.equal(e.message, message, args.join(' '));
    t.equal(e.argIndex, index, `${args.join(' ')}: points at argument ${index}`);
  }
});

t.test('nearest keyword: close typos only', async (t) => {
  t.equal(editDistance('al-extent', 'al-extents'), 1);
  t.equal(editDistance('shraed', 'shared'), 1, 'a transposition is one edit');
  t.equal(editDistance('', 'abc'), 3);
  const words = ['al-extents', 'al-updates', 'resync-rate', 'protocol'];
  t.equal(nearest('al-extent', words), 'al-extents');
  t.equal(nearest('protocl', words), 'protocol');
  t.equal(nearest('Protocol', words), 'protocol', 'case differences are suggested');
  t.equal(nearest('resync-rat', words), 'resync-rate');
  t.equal(nearest('frobnicate', words), undefined);
  t.equal(nearest('al', words), undefined);
  t.equal(nearest('protocol', words), undefined, 'an exact match is not a suggestion');
  t.equal(nearest('x'.repeat(1000), words), undefined);
});

t.test('parseScaledNumber: k, m, g in either case are powers of 1024, as drbdadm', async (t) => {
  const cases: Array<[string, number | undefined]> = [
    ['0', 0],
    ['36k', 36864],
    ['36K', 36864],
    ['8k', 8192],
    ['2m', 2 << 20],
    ['1G', 1 << 30],
    ['1g', 1 << 30],
    ['', undefined],
    ['k', undefined],
    ['1s', undefined],
    ['1t', undefined],
    ['1.5k', undefined],
    ['-1', undefined],
    ['1 k', undefined],
    ['99999999999999999999', undefined],
    ['9007199254740991k', undefined],
  ];
  for (const [text, want] of cases) t.equal(parseScaledNumber(text), want, JSON.stringify(text));
});
