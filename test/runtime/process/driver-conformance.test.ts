import { ProcessDriver } from '../../../src/runtime/process/process-driver.ts';
import { listNamespaces } from '../../../src/runtime/process/netns.ts';
import { appMarker, runDriverConformance } from '../driver.conformance.ts';
import { netnsSkip, pidsWithArg } from './helpers.ts';

// Own prefix and subnet: the process driver's recover() deletes every namespace with its prefix.
const PREFIX = 'tcf';
const HOST_BASE = 'c1';

runDriverConformance('process driver (network namespaces)', {
  skip: netnsSkip(),
  hostBase: HOST_BASE,
  appPort: 8080,
  makeDriver: (stateDir) => new ProcessDriver({ stateDir, prefix: PREFIX, subnet: '10.214.40.0/24', isolation: 'netns', stopGraceMs: 2000 }),
  leftovers: async () => [
    ...(await listNamespaces()).filter((ns) => ns.startsWith(`${PREFIX}-`)).map((ns) => `namespace ${ns}`),
    ...(await pidsWithArg(appMarker(HOST_BASE))).map((pid) => `process ${pid}`),
  ],
});
