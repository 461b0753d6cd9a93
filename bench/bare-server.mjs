// The yardstick: node:http answering every request with a fixed 200 JSON body,
// after reading the request body (as any real endpoint must).
// argv[3]: microseconds of busy work per request (0 by default), the calibration
// row of the benchmark: what a given amount of CPU per request costs on this machine.
import http from 'node:http';

const body = Buffer.from(JSON.stringify({ result: 'ok', user: 'user@bench.test' }));
const spinNs = BigInt(Math.round(Number(process.argv[3] ?? 0) * 1000));
const server = http.createServer((req, res) => {
  req.on('data', () => {});
  req.on('end', () => {
    if (spinNs > 0n) for (const t = process.hrtime.bigint(); process.hrtime.bigint() - t < spinNs; );
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length });
    res.end(body);
  });
});
server.keepAliveTimeout = 65_000;
server.listen(Number(process.argv[2]), '127.0.0.1');
process.on("SIGTERM", () => {
  server.closeAllConnections();
  server.close(() => process.exit(0));
});
