// net-options / disk-options arguments (running-options.ts): drbdsetup's --key value forms,
// read by the resource file's own specs, nothing applied unless everything is good.
import t from 'tap';
import { parseConfigText } from '../../src/config/index.js';
import {
  OptionArgError,
  parseSettingArgs,
  withSettings,
} from '../../src/resource/running-options.js';

const config = parseConfigText(
  `resource r0 {
  on alpha { node-id 0; address 127.0.0.1:7001; device minor 0; disk /tmp/a.img; meta-disk internal; }
  on beta { node-id 1; address 127.0.0.1:7002; device minor 0; disk /tmp/b.img; meta-disk internal; }
}
`,
  '/etc/urbd/urbd.conf',
).resources[0]!;

function argError(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    if (err instanceof OptionArgError) return err.message;
    throw err;
  }
  throw new Error('expected an OptionArgError');
}

t.test('parseSettingArgs: --key value, --key=value, bare flags', async (t) => {
  t.same(parseSettingArgs(['--ping-int', '3', '--protocol=B', '--allow-two-primaries']), [
    { keyword: 'ping-int', args: ['3'] },
    { keyword: 'protocol', args: ['B'] },
    { keyword: 'allow-two-primaries', args: [] },
  ]);
  t.same(parseSettingArgs(['--always-asbp', '--ko-count', '0']), [
    { keyword: 'always-asbp', args: [] },
    { keyword: 'ko-count', args: ['0'] },
  ]);
  t.same(parseSettingArgs(['--shared-secret=a b=c']), [
    { keyword: 'shared-secret', args: ['a b=c'] },
  ]);
  t.match(
    argError(() => parseSettingArgs(['3'])),
    /"3" is not an option/,
  );
  t.match(
    argError(() => parseSettingArgs(['--ping-int', '3', '4'])),
    /"4" is not an option/,
  );
  t.match(
    argError(() => parseSettingArgs([])),
    /no option given/,
  );
  t.match(
    argError(() => parseSettingArgs(['-p', '3'])),
    /"-p" is not an option/,
  );
});

t.test('withSettings: values as the resource file reads them', async (t) => {
  const next = withSettings(config, 'net', [
    { keyword: 'ping-int', args: ['3'] },
    { keyword: 'timeout', args: ['20'] },
    { keyword: 'protocol', args: ['A'] },
    { keyword: 'allow-two-primaries', args: [] },
    { keyword: 'after-sb-0pri', args: ['discard-node-beta'] },
  ]);
  t.equal(next.net.pingIntMs, 3000, 'ping-int in seconds');
  t.equal(next.net.timeoutMs, 2000, 'timeout in tenths of a second');
  t.equal(next.protocol, 'A');
  t.equal(next.net.allowTwoPrimaries, true, 'a bare flag means yes');
  t.equal(next.net.afterSb0pri, 'discard-node-beta');
  t.equal(config.net.pingIntMs, 10000, 'the running config is not touched');
  t.equal(config.protocol, 'C');

  const disk = withSettings(config, 'disk', [
    { keyword: 'c-max-rate', args: ['200M'] },
    { keyword: 'resync-rate', args: ['4096'] },
    { keyword: 'c-plan-ahead', args: ['0'] },
    { keyword: 'fencing', args: ['resource-only'] },
  ]);
  t.equal(disk.disk.cMaxRateKiB, 200 * 1024);
  t.equal(disk.disk.resyncRateKiB, 4096, 'bare rates are KiB/s');
  t.equal(disk.disk.cPlanAheadMs, 0);
  t.equal(disk.net.fencing, 'resource-only', "8.4's disk-section fencing");
  t.equal(config.disk.cMaxRateKiB, 4 * 1024 * 1024);
});

t.test('withSettings: bad options are refused, naming them', async (t) => {
  const net = (keyword: string, ...args: string[]): string =>
    argError(() => withSettings(config, 'net', [{ keyword, args }]));
  t.equal(net('pingint', '3'), 'unknown net option --pingint; did you mean "ping-int"?');
  t.match(net('ping-int', '0'), /ping-int/);
  t.match(net('ping-int', 'soon'), /ping-int/);
  t.match(net('ping-int'), /--ping-int needs a whole number of seconds from 1 to 120/);
  t.match(net('protocol', 'D'), /protocol must be A, B or C, not "D"/);
  t.match(net('sndbuf-size', '0'), /--sndbuf-size .* has no effect in urbd/);
  t.match(net('after-sb-0pri', 'discard-node-gamma'), /r0 has no host named gamma/);
  t.match(
    net('c-max-rate', '1G'),
    /unknown net option --c-max-rate/,
    'a disk option is not a net option',
  );
  t.match(
    argError(() => withSettings(config, 'disk', [{ keyword: 'ping-int', args: ['3'] }])),
    /unknown disk option --ping-int/,
  );
  t.match(
    argError(() =>
      withSettings(config, 'net', [
        { keyword: 'ping-int', args: ['3'] },
        { keyword: 'ko-count', args: ['-1'] },
      ]),
    ),
    /ko-count/,
    'one bad value fails the whole request',
  );
});
