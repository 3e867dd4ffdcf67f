import { test } from 'node:test';
import assert from 'node:assert/strict';
import { APP_USER, DOCKER_LOG_BYTES, HOSTNAME_LABEL, OWNER_LABEL, execSimpleCommand, serviceSpec, tmpVolumeName } from '../../../src/runtime/swarm/service-spec.ts';
import type { ServiceInput } from '../../../src/runtime/swarm/service-spec.ts';

const input: ServiceInput = {
  name: 'tss-1a2b3c4d',
  owner: 'tss',
  hostname: 'eph-1a2b3c4d.eph.test',
  image: 'eph-runtime:1',
  network: 'eph-runtime',
  nodeId: 'node123',
  argv: ['/bin/sh', '-c', 'exec node server.js'],
  cwd: '/data/images/abc',
  env: { FOO: 'bar', PORT: '1234' },
  readOnly: ['/usr', '/etc', '/data/images/abc', '/data/images/abc/sub', '/usr/lib/squeak'],
  files: { '/data/run/tss-1a2b3c4d/stunnel.conf': '/run/eph/stunnel.conf' },
  memoryBytes: 64 * 1024 ** 2,
  nanoCpus: 5e8,
  pids: 100,
  tmpfsBytes: 1024 ** 2,
  stopGraceMs: 1500,
};

test('the service runs one replica, never restarted by Docker, read-only, as 65534 without capabilities, with the limits asked for', () => {
  const spec = serviceSpec(input);
  assert.equal(spec.Name, 'tss-1a2b3c4d');
  assert.deepEqual(spec.Mode, { Replicated: { Replicas: 1 } });
  assert.deepEqual(spec.Labels, { [OWNER_LABEL]: 'tss', [HOSTNAME_LABEL]: 'eph-1a2b3c4d.eph.test' });
  assert.equal(spec.EndpointSpec, undefined, 'no published ports: the app is reached at its bridge address');
  const task = spec.TaskTemplate as { ContainerSpec: Record<string, unknown>; RestartPolicy: unknown; Resources: unknown; Placement: unknown; Networks: unknown; LogDriver: unknown };
  const c = task.ContainerSpec;
  assert.equal(c.User, APP_USER);
  assert.equal(c.ReadOnly, true);
  assert.equal(c.Init, true);
  assert.deepEqual(c.CapabilityDrop, ['ALL']);
  assert.equal(c.Hostname, 'eph-1a2b3c4d');
  assert.equal(c.StopGracePeriod, 1500e6);
  assert.deepEqual(c.Labels, spec.Labels);
  assert.deepEqual(task.RestartPolicy, { Condition: 'none', MaxAttempts: 0 });
  assert.deepEqual(task.Resources, { Limits: { MemoryBytes: 64 * 1024 ** 2, NanoCPUs: 5e8, Pids: 100 } });
  assert.deepEqual(task.Placement, { Constraints: ['node.id==node123'] });
  assert.deepEqual(task.Networks, [{ Target: 'eph-runtime' }]);
  assert.deepEqual(task.LogDriver, { Name: 'json-file', Options: { 'max-size': String(DOCKER_LOG_BYTES), 'max-file': '2' } });
  // PORT is the driver's, whatever the spec's env says.
  assert.ok((c.Env as string[]).includes('PORT=8080'));
  assert.ok((c.Env as string[]).includes('FOO=bar'));
  assert.ok(!(c.Env as string[]).includes('PORT=1234'));
});

test('mounts: system and image directories read-only (children of a bound directory not twice), files read-only, /tmp a private tmpfs volume', () => {
  const c = (serviceSpec(input).TaskTemplate as { ContainerSpec: { Mounts: { Type: string; Source: string; Target: string; ReadOnly?: boolean; VolumeOptions?: { DriverConfig: { Options: Record<string, string> } } }[] } }).ContainerSpec;
  const binds = c.Mounts.filter((m) => m.Type === 'bind');
  assert.deepEqual(binds.map((m) => [m.Source, m.Target, m.ReadOnly]), [
    ['/data/images/abc', '/data/images/abc', true],
    ['/etc', '/etc', true],
    ['/usr', '/usr', true],
    ['/data/run/tss-1a2b3c4d/stunnel.conf', '/run/eph/stunnel.conf', true],
  ]);
  const tmp = c.Mounts.find((m) => m.Target === '/tmp');
  assert.equal(tmp?.Type, 'volume');
  assert.equal(tmp?.Source, tmpVolumeName('tss-1a2b3c4d'));
  assert.deepEqual(tmp?.VolumeOptions?.DriverConfig.Options, { type: 'tmpfs', device: 'tmpfs', o: `size=${1024 ** 2},mode=1777,nosuid,nodev` });
});

test('a task may run on any node when no node is given', () => {
  const task = serviceSpec({ ...input, nodeId: null }).TaskTemplate as { Placement: unknown };
  assert.deepEqual(task.Placement, {});
});

test('a simple Procfile command is exec-ed so that the app gets the stop signal; anything else is left as written', () => {
  assert.deepEqual(execSimpleCommand(['/bin/sh', '-c', 'node server.js --port $PORT']), ['/bin/sh', '-c', 'exec node server.js --port $PORT']);
  assert.deepEqual(execSimpleCommand(['/bin/sh', '-c', '  ./bin/app > out.log ']), ['/bin/sh', '-c', 'exec ./bin/app > out.log']);
  for (const cmd of ['echo hi; node s.js', 'a && b', 'a | b', 'FOO=1 node s.js', 'cd sub', 'x $(y)', 'sleep 1 &', 'exec node s.js', 'if true; then x; fi', '']) {
    assert.deepEqual(execSimpleCommand(['/bin/sh', '-c', cmd]), ['/bin/sh', '-c', cmd], cmd);
  }
  const pharo = ['/usr/bin/pharo', '--headless', 'app.image', '--no-quit'];
  assert.deepEqual(execSimpleCommand(pharo), pharo);
});
