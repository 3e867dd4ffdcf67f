import Docker from 'dockerode';
import { SwarmDriver } from '../../../src/runtime/swarm/swarm-driver.ts';
import { DEFAULT_DOCKER_SOCKET, dockerUnavailableReason } from '../../../src/runtime/swarm/docker-api.ts';
import { OWNER_LABEL } from '../../../src/runtime/swarm/service-spec.ts';
import { runDriverConformance } from '../driver.conformance.ts';

// Own prefix: recover() removes every service and container labelled with it.
const PREFIX = 'tsc';
const why = await dockerUnavailableReason();
const docker = new Docker({ socketPath: DEFAULT_DOCKER_SOCKET });

runDriverConformance('swarm driver (Docker Swarm services)', {
  skip: why ?? false,
  hostBase: 'c2',
  appPort: 8080,
  startTimeoutMs: 30_000,
  makeDriver: (stateDir) => new SwarmDriver({ stateDir, prefix: PREFIX, stopGraceMs: 2000 }),
  leftovers: async () => {
    const filters = { label: [`${OWNER_LABEL}=${PREFIX}`] };
    const services = await docker.listServices({ filters });
    const containers = await docker.listContainers({ all: true, filters });
    const volumes = (await docker.listVolumes({ filters })).Volumes ?? [];
    return [
      ...services.map((s) => `service ${s.Spec?.Name}`),
      ...containers.map((c) => `container ${c.Names.join(',')} (${c.State})`),
      ...volumes.map((v) => `volume ${v.Name}`),
    ];
  },
});
