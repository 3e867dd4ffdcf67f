#!/usr/bin/env node
// Installs the Debian packages the test suite uses, only those missing, and starts the services it needs
// (a Docker engine with a one-node swarm). Used by `npm test` and by `.ci/run`.
// As root: installs what is missing and says what. Not root, or not Debian: installs nothing, lists what is
// missing; the tests that need it skip and name it. Never fails the run: a package that cannot be installed
// turns into named skips, not into a broken suite.
import { spawn, spawnSync } from 'node:child_process';
import { openSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Each Debian package and why the tests need it. */
export const PACKAGES = [
  ['stunnel4', 'TLS-PSK interop with the real stunnel'],
  ['nginx-light', 'gate benchmark peer; static app in instances'],
  ['haproxy', 'gate benchmark peer'],
  ['wrk', 'gate benchmark load'],
  ['redis-server', 'Redis appliance'],
  ['redis-tools', 'redis-cli in appliance tests'],
  ['postgresql-15', 'PostgreSQL appliance and store'],
  ['postgresql-client-15', 'psql in appliance tests'],
  ['squeak-vm', 'a real Smalltalk VM for the process lifecycle test'],
  ['scratch', 'the Squeak image the VM test runs'],
  ['bubblewrap', 'instance sandbox'],
  ['iproute2', 'instance network namespaces'],
  ['iptables', 'instance network isolation'],
  ['util-linux', 'unshare, mount'],
  ['procps', 'ps, pkill'],
  ['curl', 'replays of the original curl commands'],
  ['zip', 'archives in tests'],
  ['unzip', 'archives in tests'],
  ['tar', 'archives in tests'],
  ['openssl', 'test certificates'],
  ['ca-certificates', 'TLS'],
  ['chromium', 'browser tests (console, gate pages)'],
  ['git', 'eph ci --git'],
  ['docker.io', 'the swarm runtime driver'],
  ['litmus', 'WebDAV compliance of static sites'],
  ['davfs2', 'a real WebDAV file-system client writing to a static site'],
  ['pebble', "Let's Encrypt's ACME test server, for automatic HTTPS"],
];

const SERVICES_STARTED_BY_APT = ['redis-server', 'postgresql', 'nginx', 'haproxy'];

function installed(pkg) {
  // biome-ignore lint/suspicious/noTemplateCurlyInString: dpkg-query's own format syntax
  const r = spawnSync('dpkg-query', ['-W', '-f=${Status}', pkg], { encoding: 'utf8' });
  return r.status === 0 && r.stdout.includes('install ok installed');
}

function run(cmd, args, opts = {}) {
  return spawnSync(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8', ...opts });
}

function say(line) {
  console.log(`provision: ${line}`);
}

function installMissing() {
  if (spawnSync('dpkg-query', ['--version']).status !== 0) {
    say('not a Debian system: installing nothing; tests needing system packages will skip');
    return;
  }
  const missing = PACKAGES.filter(([pkg]) => !installed(pkg));
  if (missing.length === 0) return say('all system packages present');
  const names = missing.map(([pkg]) => pkg);
  if (process.getuid?.() !== 0) {
    say(`not root: not installing ${names.join(' ')}; the tests that need them skip`);
    return;
  }
  say(`installing ${names.join(' ')}`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  if (run('apt-get', ['update', '-qq'], { env }).status !== 0) say('apt-get update failed; trying with the current lists');
  const all = run('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...names], { env });
  if (all.status !== 0) {
    // One unavailable package must not cost the others: retry one by one and name the failures.
    for (const pkg of names) {
      const one = run('apt-get', ['install', '-y', '-qq', '--no-install-recommends', pkg], { env });
      if (one.status !== 0) say(`could not install ${pkg}: ${one.stderr.trim().split('\n').pop()}`);
    }
  }
  for (const svc of SERVICES_STARTED_BY_APT) {
    // Debian starts these on install; the tests run their own instances on their own ports.
    run('service', [svc, 'stop']);
  }
}

function dockerAnswers() {
  return run('docker', ['info'], { timeout: 20_000 }).status === 0;
}

async function startDocker() {
  if (run('docker', ['--version']).status !== 0) return;
  if (!dockerAnswers()) {
    if (process.getuid?.() !== 0 || run('dockerd', ['--version']).status !== 0) return;
    const log = join(tmpdir(), 'eph-provision-dockerd.log');
    say(`starting dockerd --iptables=false (log: ${log})`);
    const fd = openSync(log, 'a');
    const child = spawn('dockerd', ['--iptables=false'], { detached: true, stdio: ['ignore', fd, fd] });
    child.unref();
    for (let i = 0; i < 150 && !dockerAnswers(); i++) await new Promise((r) => setTimeout(r, 200));
    if (!dockerAnswers()) return say('dockerd did not answer; the swarm tests skip');
  }
  const state = spawnSync('docker', ['info', '--format', '{{.Swarm.LocalNodeState}}'], { encoding: 'utf8' });
  if (state.stdout.trim() !== 'active') {
    const init = run('docker', ['swarm', 'init', '--advertise-addr', '127.0.0.1']);
    if (init.status !== 0) say(`docker swarm init failed: ${init.stderr.trim()}`);
  }
}

if (process.env.EPH_NO_PROVISION) {
  say('EPH_NO_PROVISION is set: nothing checked or installed');
} else {
  try {
    installMissing();
    await startDocker();
  } catch (err) {
    say(`provisioning stopped: ${err instanceof Error ? err.message : String(err)}`);
  }
}
