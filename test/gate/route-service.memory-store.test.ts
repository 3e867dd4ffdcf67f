import { MemoryRouteStore } from '../../src/store/route-store.ts';
import { runRouteStoreConformance } from './route-store.conformance.ts';

// The in-memory store the route service's unit tests use must keep the same contract as the real ones.
runRouteStoreConformance('memory', async () => new MemoryRouteStore());
