// The mailauth CLI from the TypeScript sources (node --import bench/register.mjs this-file ARGS…), for
// tests that need the daemon in a process of its own without a build.
import { main } from '../../src/cli/main.js';

await main();
